//! The time model of diorama. See `docs/dilation.md`.
#![forbid(unsafe_code)]
