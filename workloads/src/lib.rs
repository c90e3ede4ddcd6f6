//! Workload programs of diorama. Each binary runs inside a node or stand-alone.
#![forbid(unsafe_code)]
