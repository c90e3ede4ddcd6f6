//! The run report: `summary.json` and a self-contained `report.html` of a results directory.
//!
//! [`write`] runs after every `diorama run` and from `diorama report DIR`. It reads run.json,
//! events.jsonl, nodes.csv, links.csv and every load generator's `nodes/<node>/` outputs
//! (docs/results.md), and writes the figures of docs/reports.md.
//!
//! # Design
//! - [`data`] reads a directory into [`RunData`]; [`requests`] streams `requests.csv` into
//!   HDR histograms and per-second counters (bounded memory for millions of rows);
//!   [`summary`] derives [`Summary`]; [`html`] renders the page with [`plot`]'s SVG charts.
//! - The comparison (`crate::compare`) reuses [`analyze`] and [`plot`].
//!
//! # Limitations
//! - Latency quantiles come from HDR histograms with 3 significant digits (±0.1 %).
//! - Charts draw at most 10 nodes or links (the busiest); tables list all.

mod csvio;
pub mod data;
mod error;
pub mod html;
pub mod plot;
pub mod requests;
pub mod summary;

pub use data::{analyze, FaultSummary, Fidelity, Marker, RunData};
pub use error::ReportError;
pub use requests::RequestStats;
pub use summary::{summarize, write, Latency, Summary};

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod fixture;
