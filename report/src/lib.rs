//! Reports of diorama results directories: `summary.json` and a self-contained `report.html`
//! of one run, and the comparison of two runs ([`compare`]). This crate reads a results
//! directory (docs/results.md) and nothing else.
//!
//! [`write`] runs after every `diorama run` and from `diorama report DIR`. It reads run.json,
//! events.jsonl, nodes.csv, links.csv and every load generator's `nodes/<node>/` outputs
//! (docs/results.md), and writes the figures of docs/reports.md.
//!
//! # Design
//! - [`data`] reads a directory into [`RunData`]; [`requests`] streams `requests.csv` into
//!   HDR histograms and per-second counters (bounded memory for millions of rows);
//!   [`summary`] derives [`Summary`]; [`html`] renders the page with [`plot`]'s SVG charts.
//! - The comparison ([`compare`]) reuses [`analyze`] and [`plot`].
//!
//! # Limitations
//! - Latency quantiles come from HDR histograms with 3 significant digits (±0.1 %).
//! - Charts draw at most 10 nodes or links (the busiest); tables list all.

pub mod balancers;
pub mod compare;
mod csvio;
pub mod data;
mod error;
pub mod html;
mod markup;
pub mod plot;
pub mod probes;
pub mod replication;
pub mod requests;
pub mod summary;
mod write;

pub use data::{analyze, FaultSummary, Fidelity, Marker, RunData};
pub use error::ReportError;
pub use requests::RequestStats;
pub use summary::{summarize, Latency, Summary};
pub use write::write;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
