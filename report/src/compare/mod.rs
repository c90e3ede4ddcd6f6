//! Comparing two runs of one topology (DieCast's fidelity check): a time-dilated run against
//! a reference, or any two runs. Figures and thresholds are described in docs/reports.md.
//!
//! # Design
//! Both runs are read with [`crate::analyze`]; latency distributions are compared as
//! HDR histograms ([`ks`]), scalar figures by relative error, and node CPU and link
//! utilization by resampling both series on one virtual-time grid ([`diff::align`]).
//!
//! # Limitations
//! - KS is exact over the histograms' buckets (3 significant digits), not the raw samples.
//! - Only nodes and links present in both runs are compared; the rest are listed as notes.

pub mod diff;
mod html;
pub mod ks;
pub mod thresholds;

pub use diff::{compare, compare_runs, Check, CompareError, Comparison, Overlay, RunRef, SeriesCheck};
pub use ks::{ks_histograms, ks_samples};
pub use thresholds::Thresholds;

#[cfg(test)]
mod tests;
