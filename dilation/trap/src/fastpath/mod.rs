//! The vDSO fast path (decision 022): dilated clock reads without a trap, for programs
//! that read the clock through the vDSO (the Go runtime, glibc).
//!
//! At every exec stop the tracer injects code and a data page after the vDSO, maps the
//! node's control page shared, and rewrites the `st_value` of `__vdso_clock_gettime`,
//! `__vdso_gettimeofday` and `__vdso_time` (and aliases) to point at the injected
//! functions ([`inject`]); those call the original entries and apply the shim's model
//! ([`code`]). On any failure the tracer hides the vDSO instead, as before.

mod code;
pub mod inject;
pub mod layout;
pub mod sys;
