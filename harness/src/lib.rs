//! The diorama harness library. The `diorama` binary is a thin layer over it.
