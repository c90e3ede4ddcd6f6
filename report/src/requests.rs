//! Streaming analysis of the load generators' `requests.csv` files.
//!
//! # Design
//! A run can hold millions of requests, so rows are read one at a time into fixed-size
//! aggregates: HDR histograms of corrected and uncorrected latency (ns, 3 significant
//! digits: every quantile within 0.1 %), one histogram per tier of the `timing` column (µs),
//! and per-virtual-second counters. Nothing grows with the number of requests.
//!
//! A request *completed* when it has no `error` and got a reply with a status below 500 (as
//! the load generator counts); every other row is an error. Latency figures cover completed requests only: a timeout's "latency" is
//! the client's timeout, not the service's.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;

use super::{csvio, ReportError};

/// Highest latency the histograms hold (1 virtual hour, in ns); longer ones saturate.
const MAX_NS: u64 = 3_600_000_000_000;

/// Columns `requests.csv` must have (results schema 1).
pub const REQUIRED: [&str; 8] =
    ["scheduled_ns", "dispatch_ns", "complete_ns", "latency_ns", "uncorrected_ns", "status", "error", "timing"];

/// A latency histogram in ns.
pub fn latency_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts: this cannot fail.
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Aggregates of every request of a run (or of one load generator).
#[derive(Debug, Clone)]
pub struct RequestStats {
    pub total: u64,
    pub completed: u64,
    pub errors: u64,
    /// Corrected latency (`latency_ns`, from the scheduled send time) of completed requests, ns.
    pub corrected: Histogram<u64>,
    /// Uncorrected latency (`uncorrected_ns`, from the actual send) of completed requests, ns.
    pub uncorrected: Histogram<u64>,
    /// Per tier of the `timing` column, µs.
    pub tiers: BTreeMap<String, Histogram<u64>>,
    /// Virtual second since the run's epoch → (completed, errors), by completion time.
    pub per_second: BTreeMap<i64, (u64, u64)>,
    /// Earliest scheduled and latest completion time (virtual unix ns): the load window.
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    /// Error kinds (`error` column, or `status NNN`) and their counts.
    pub error_kinds: BTreeMap<String, u64>,
    /// `timing` entries that were not `name=number`.
    pub malformed_timing: u64,
}

impl Default for RequestStats {
    fn default() -> Self {
        Self {
            total: 0,
            completed: 0,
            errors: 0,
            corrected: latency_histogram(),
            uncorrected: latency_histogram(),
            tiers: BTreeMap::new(),
            per_second: BTreeMap::new(),
            first_ns: None,
            last_ns: None,
            error_kinds: BTreeMap::new(),
            malformed_timing: 0,
        }
    }
}

struct Row<'a> {
    scheduled_ns: Option<u64>,
    dispatch_ns: Option<u64>,
    complete_ns: Option<u64>,
    latency_ns: Option<u64>,
    uncorrected_ns: Option<u64>,
    status: Option<u16>,
    error: &'a str,
    timing: &'a str,
}

impl RequestStats {
    /// Streams one `requests.csv` into these aggregates; `epoch_ns` is the run's virtual
    /// epoch. `Ok(false)` when the file does not exist.
    pub fn add_file(&mut self, path: &Path, epoch_ns: u64) -> Result<bool, ReportError> {
        let Some((mut reader, headers)) = csvio::open(path, &REQUIRED)? else { return Ok(false) };
        if headers.is_empty() {
            return Ok(true);
        }
        // Columns by index, parsed by hand: several times faster than serde by header name,
        // which matters at millions of rows. `open` checked that every column exists.
        let idx: Vec<usize> =
            REQUIRED.iter().map(|c| headers.iter().position(|h| h == *c).unwrap_or(usize::MAX)).collect();
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csvio::error(path, Some(&headers), e)),
            }
            let field = |i: usize| record.get(idx[i]).unwrap_or("");
            let bad = |i: usize, message: String| ReportError::Csv {
                path: path.to_owned(),
                line: record.position().map_or(0, csv::Position::line),
                field: REQUIRED[i].to_owned(),
                message: format!("{message} (value {:?})", field(i)),
            };
            let num = |i: usize| -> Result<Option<u64>, ReportError> {
                let text = field(i).trim();
                if text.is_empty() {
                    return Ok(None);
                }
                text.parse::<u64>().map(Some).map_err(|e| bad(i, e.to_string()))
            };
            let status = match num(5)? {
                None => None,
                Some(s) => Some(u16::try_from(s).map_err(|e| bad(5, e.to_string()))?),
            };
            let row = Row {
                scheduled_ns: num(0)?,
                dispatch_ns: num(1)?,
                complete_ns: num(2)?,
                latency_ns: num(3)?,
                uncorrected_ns: num(4)?,
                status,
                error: field(6),
                timing: field(7),
            };
            self.add(&row, epoch_ns);
        }
        Ok(true)
    }

    fn add(&mut self, row: &Row<'_>, epoch_ns: u64) {
        self.total += 1;
        let ok = row.error.is_empty() && row.status.is_some_and(|s| s > 0 && s < 500);
        let at = row.complete_ns.or(row.dispatch_ns).or(row.scheduled_ns);
        if let Some(s) = row.scheduled_ns.or(row.dispatch_ns) {
            self.first_ns = Some(self.first_ns.map_or(s, |f| f.min(s)));
        }
        if let Some(c) = at {
            self.last_ns = Some(self.last_ns.map_or(c, |l| l.max(c)));
            let second = (i128::from(c) - i128::from(epoch_ns)).div_euclid(1_000_000_000);
            let second = i64::try_from(second).unwrap_or(i64::MAX);
            let slot = self.per_second.entry(second).or_default();
            if ok {
                slot.0 += 1;
            } else {
                slot.1 += 1;
            }
        }
        if !ok {
            self.errors += 1;
            let kind =
                if row.error.is_empty() { format!("status {}", row.status.unwrap_or(0)) } else { row.error.to_owned() };
            *self.error_kinds.entry(kind).or_default() += 1;
            return;
        }
        self.completed += 1;
        let corrected = row.latency_ns.or_else(|| Some(row.complete_ns?.saturating_sub(row.scheduled_ns?)));
        let uncorrected = row.uncorrected_ns.or_else(|| Some(row.complete_ns?.saturating_sub(row.dispatch_ns?)));
        if let Some(ns) = corrected {
            self.corrected.saturating_record(ns.max(1));
        }
        if let Some(ns) = uncorrected {
            self.uncorrected.saturating_record(ns.max(1));
        }
        for part in row.timing.split(';').filter(|p| !p.trim().is_empty()) {
            let parsed = part.split_once('=').and_then(|(k, v)| Some((k.trim(), v.trim().parse::<f64>().ok()?)));
            match parsed {
                Some((tier, us)) if !tier.is_empty() && us.is_finite() && us >= 0.0 => {
                    let h = self.tiers.entry(tier.to_owned()).or_insert_with(latency_histogram);
                    // Rounded to whole µs; sub-µs tier times record as 1.
                    h.saturating_record((us.round() as u64).max(1));
                }
                _ => self.malformed_timing += 1,
            }
        }
    }

    /// Adds another run's (or load generator's) aggregates to these.
    pub fn merge(&mut self, other: &Self) {
        self.total += other.total;
        self.completed += other.completed;
        self.errors += other.errors;
        // Same bounds on both sides: `add` cannot fail; saturate if it ever did.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        for (tier, h) in &other.tiers {
            let _ = self.tiers.entry(tier.clone()).or_insert_with(latency_histogram).add(h);
        }
        for (s, (c, e)) in &other.per_second {
            let slot = self.per_second.entry(*s).or_default();
            slot.0 += c;
            slot.1 += e;
        }
        self.first_ns = match (self.first_ns, other.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ns = match (self.last_ns, other.last_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (k, n) in &other.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += n;
        }
        self.malformed_timing += other.malformed_timing;
    }

    /// Length of the load window (first scheduled → last completion), virtual seconds.
    pub fn window_s(&self) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(f), Some(l)) if l > f => (l - f) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Completed requests per virtual second over the load window.
    pub fn throughput_rps(&self) -> f64 {
        let w = self.window_s();
        if w > 0.0 {
            self.completed as f64 / w
        } else {
            0.0
        }
    }
}

/// Points `(latency in unit, cumulative fraction)` of a histogram's CDF, at most about
/// `max_points`, denser in the tail.
pub fn cdf_points(h: &Histogram<u64>, scale: f64, max_points: usize) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> =
        (0..=max_points.max(10) * 4 / 5).map(|i| i as f64 / (max_points.max(10) * 4 / 5) as f64).collect();
    // Tail: 0.99, 0.999, … in steps of a tenth of a "nine".
    let mut nines = 2.0;
    while nines <= 6.0 {
        qs.push(1.0 - 10f64.powf(-nines));
        nines += 0.1;
    }
    qs.sort_by(f64::total_cmp);
    qs.dedup();
    let mut points: Vec<(f64, f64)> = qs.iter().map(|&q| (h.value_at_quantile(q) as f64 * scale, q)).collect();
    points.insert(0, (h.min() as f64 * scale, 0.0));
    points.push((h.max() as f64 * scale, 1.0));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "id,scheduled_ns,dispatch_ns,complete_ns,latency_ns,uncorrected_ns,status,bytes,error,class,node,timing\n";

    fn file(dir: &Path, rows: &str) -> std::path::PathBuf {
        let path = dir.join("requests.csv");
        std::fs::write(&path, format!("{HEADER}{rows}")).unwrap();
        path
    }

    #[test]
    fn known_latencies_give_known_percentiles() {
        let dir = tempfile::tempdir().unwrap();
        // Requests 1..=1000 ms latency, one per ms of schedule, all OK.
        let mut rows = String::new();
        for i in 1..=1000u64 {
            let s = 10_000_000_000 + i * 1_000_000;
            let lat = i * 1_000_000;
            rows.push_str(&format!("{i},{s},{s},{},{lat},{},200,10,,get,lg,fs=1000;db={i}\n", s + lat, lat / 2));
        }
        let path = file(dir.path(), &rows);
        let mut stats = RequestStats::default();
        assert!(stats.add_file(&path, 10_000_000_000).unwrap());
        assert_eq!((stats.total, stats.completed, stats.errors), (1000, 1000, 0));
        let ms = |q: f64| stats.corrected.value_at_quantile(q) as f64 / 1e6;
        assert!((ms(0.5) - 500.0).abs() <= 0.5, "{}", ms(0.5));
        assert!((ms(0.9) - 900.0).abs() <= 1.0, "{}", ms(0.9));
        assert!((ms(0.99) - 990.0).abs() <= 1.0, "{}", ms(0.99));
        assert!((stats.corrected.mean() / 1e6 - 500.5).abs() < 0.5);
        assert!((stats.uncorrected.value_at_quantile(0.5) as f64 / 1e6 - 250.0).abs() <= 0.5);
        assert_eq!(stats.tiers["fs"].value_at_quantile(0.5), 1000);
        assert!((stats.tiers["db"].mean() - 500.5).abs() < 0.5);
        // Completions run from 10.002 s to 12.0 s after the epoch.
        assert_eq!(stats.per_second.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(stats.per_second.values().map(|v| v.0).sum::<u64>(), 1000);
        assert!((stats.window_s() - 1.999).abs() < 1e-9);
    }

    #[test]
    fn errors_are_counted_by_kind_and_left_out_of_latency() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "1,0,0,5000000,5000000,5000000,200,1,,,,\n\
             2,0,0,9000000000,9000000000,9000000000,0,0,timeout,,,\n\
             3,0,0,6000000,6000000,6000000,503,0,,,,\n\
             4,0,0,7000000,,,204,0,,,,bad;fs=x\n",
        );
        let mut stats = RequestStats::default();
        stats.add_file(&path, 0).unwrap();
        assert_eq!((stats.total, stats.completed, stats.errors), (4, 2, 2));
        assert_eq!(stats.error_kinds["timeout"], 1);
        assert_eq!(stats.error_kinds["status 503"], 1);
        // Row 4 has no latency columns: computed from the timestamps.
        assert_eq!(stats.corrected.len(), 2);
        assert!(stats.corrected.max() < 8_000_000);
        assert_eq!(stats.malformed_timing, 2);
    }

    #[test]
    fn a_bad_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "1,0,0,5,5,5,200,1,,,,\n2,0,0,x,5,5,200,1,,,,\n");
        let err = RequestStats::default().add_file(&path, 0).unwrap_err().to_string();
        assert!(err.contains("requests.csv:3: field `complete_ns`"), "{err}");
    }

    #[test]
    fn cdf_is_monotone_and_complete() {
        let mut h = latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let pts = cdf_points(&h, 1e-6, 200);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(pts.last().unwrap().1, 1.0);
        assert!(pts.len() < 300);
    }
}
