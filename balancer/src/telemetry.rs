//! The time series a balancer records: slot shares, the timeout chosen per epoch, and
//! per-backend latency estimates. The caller drains them ([`Telemetry::take`]) and
//! appends them to CSV files; the CSV forms (with their headers) are here so every
//! writer agrees on them.

use std::io::{self, Write};

/// Why a share row was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareReason {
    Start,
    Epoch,
    Drain,
    Relax,
    Down,
    Up,
}

impl ShareReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Epoch => "epoch",
            Self::Drain => "drain",
            Self::Relax => "relax",
            Self::Down => "down",
            Self::Up => "up",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShareRow {
    pub t_ns: u64,
    pub backend: usize,
    pub share: f64,
    pub reason: ShareReason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    pub end_ns: u64,
    pub chosen_timeout_ns: u64,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EstimateRow {
    pub t_ns: u64,
    pub backend: usize,
    /// Empty until the backend has had a sample.
    pub estimate_ns: Option<f64>,
    /// Samples that fed the estimate since the previous row.
    pub samples: u64,
}

/// Recorded rows, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub shares: Vec<ShareRow>,
    pub epochs: Vec<EpochRow>,
    pub estimates: Vec<EstimateRow>,
}

/// CSV header of the shares series (`balancer_shares.csv`).
pub const SHARES_HEADER: &str = "t_virtual_ms,backend,share,reason";
/// CSV header of the epochs series (`balancer_epochs.csv`); one count column per rung
/// follows, named by its timeout in microseconds.
pub const EPOCHS_HEADER_PREFIX: &str = "end_virtual_ms,chosen_timeout_us";
/// CSV header of the estimates series (`balancer_estimates.csv`).
pub const ESTIMATES_HEADER: &str = "t_virtual_ms,backend,estimate_ms,samples";

#[expect(clippy::cast_precision_loss)]
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Telemetry {
    /// Moves the recorded rows out, leaving this empty.
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty() && self.epochs.is_empty() && self.estimates.is_empty()
    }

    /// The epochs header for a ladder.
    #[must_use]
    pub fn epochs_header(ladder_ns: &[u64]) -> String {
        let mut h = EPOCHS_HEADER_PREFIX.to_owned();
        for t in ladder_ns {
            h.push_str(&format!(",n_{}us", t / 1_000));
        }
        h
    }

    /// Writes the share rows, naming backends by `names`.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_shares(&self, w: &mut impl Write, names: &[String]) -> io::Result<()> {
        for r in &self.shares {
            let name = names.get(r.backend).map_or("?", String::as_str);
            writeln!(w, "{:.3},{name},{:.6},{}", ms(r.t_ns), r.share, r.reason.as_str())?;
        }
        Ok(())
    }

    /// # Errors
    /// The writer's.
    pub fn write_epochs(&self, w: &mut impl Write) -> io::Result<()> {
        for r in &self.epochs {
            write!(w, "{:.3},{}", ms(r.end_ns), r.chosen_timeout_ns / 1_000)?;
            for n in &r.counts {
                write!(w, ",{n}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    }

    /// # Errors
    /// The writer's.
    pub fn write_estimates(&self, w: &mut impl Write, names: &[String]) -> io::Result<()> {
        for r in &self.estimates {
            let name = names.get(r.backend).map_or("?", String::as_str);
            let est = r.estimate_ns.map(|e| format!("{:.4}", e / 1e6)).unwrap_or_default();
            writeln!(w, "{:.3},{name},{est},{}", ms(r.t_ns), r.samples)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let mut t = Telemetry::default();
        t.shares.push(ShareRow { t_ns: 1_500_000, backend: 1, share: 0.25, reason: ShareReason::Drain });
        t.epochs.push(EpochRow { end_ns: 64_000_000, chosen_timeout_ns: 512_000, counts: vec![5, 0] });
        t.estimates.push(EstimateRow { t_ns: 64_000_000, backend: 0, estimate_ns: None, samples: 0 });
        let names = vec!["a".to_owned(), "b".to_owned()];
        let mut out = Vec::new();
        t.write_shares(&mut out, &names).unwrap();
        t.write_epochs(&mut out).unwrap();
        t.write_estimates(&mut out, &names).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "1.500,b,0.250000,drain\n64.000,512,5,0\n64.000,a,,0\n");
        assert_eq!(Telemetry::epochs_header(&[64_000, 128_000]), "end_virtual_ms,chosen_timeout_us,n_64us,n_128us");
        assert!(!t.take().is_empty());
        assert!(t.is_empty());
    }
}
