//! `diorama-isaac`: a configurable three-tier service after DieCast's Isaac.
//!
//! A client's request reaches a front end (FS); the FS calls `fanout` app servers (AS)
//! chosen at random; each AS performs `reads` and `writes` of `size` bytes against one
//! randomly chosen DB server and computes `as_hashes` SHA-1 rounds over what it read; the FS
//! computes `fs_hashes` rounds over the concatenated answers. Every answer carries a
//! `Diorama-Timing` header with each tier's time, and each process writes `isaac.csv`.
//!
//! # Design
//! One binary, `--tier front|app|db`, configured by flags only (the harness turns a
//! topology's `args` into flags). Request classes live at the front end, which passes a
//! call's parameters to the AS in the request, so only one tier needs the mix.
//!
//! # Limitations
//! The DB tier's store is SQLite only; PostgreSQL is not implemented (refused by `--store`).

pub mod app;
pub mod db;
pub mod flags;
pub mod front;
pub mod hash;
pub mod http;
pub mod plan;
pub mod service;
pub mod stats;
pub mod store;
pub mod timing;

pub use service::{run, Args, StoreKind, Tier};
