//! Shared support for the system tests: locating built artifacts and skipping with a reason.
