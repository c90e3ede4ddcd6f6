//! `diorama validate`: DieCast's three-way experiment (baseline, scaled, naive).

mod three_way;

pub use three_way::{prepare, run, Against, Leg, Options, Validation, SCHEMA};
