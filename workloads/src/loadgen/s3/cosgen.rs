//! A synthetic object-write trace shaped like the IBM Cloud Object Storage traces.
//!
//! - **Sizes.** A PUT is small with probability `--cos-small-share` (default 0.8): a
//!   log-normal body (median `--cos-small-median` 32 KiB, σ `--cos-small-sigma` 1.5) drawn
//!   again until it is under 1 MiB; else large: a Pareto tail from 1 MiB with shape
//!   `--cos-tail-alpha` (0.6: P(size > x) = (1 MiB/x)^0.6, so 1.6% of large PUTs reach 1 GiB),
//!   capped at `--cos-max-size` (1 GiB).
//! - **Bursts.** Time is cut into windows of `--cos-window` (1 minute, as the traces count);
//!   each window's rate is `--cos-rate` times a log-normal factor of mean 1 and σ
//!   `--cos-burst` (1.0; 0 gives a plain Poisson process), and arrivals within a window are
//!   Poisson at that rate.
//! - **Hot keys.** A write's key is drawn from a Zipf law of exponent `--cos-zipf` (1.1) over
//!   `--cos-keys` keys `cos/000000`, … (rank 1 is `cos/000000`), so the first keys are
//!   rewritten often.
//! - **Operations.** Weights `--cos-mix` PUT:COPY:CONCAT:APPEND:DELETE (default 90:3:2:3:2).
//!   A COPY copies an existing key to a Zipf-drawn other key; a CONCAT joins 2–4 existing
//!   objects of at most `--cos-compose-max` (8 MiB) into a Zipf-drawn key; an APPEND adds a
//!   small body to an existing object of at most that size; a DELETE removes an existing key.
//!   An operation with nothing to act on becomes a PUT.
//! - **Budget.** Every operation's new object counts against `--cos-max-bytes` (4 GiB, the
//!   disk a store may fill on a test host): a large PUT or a composition that would exceed it
//!   becomes a small PUT, and the trace ends at the first small PUT that does not fit.
//!
//! Every draw comes from one seeded generator: one seed, one trace.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Pareto, Zipf};

use super::trace::{Op, Row};
use crate::loadgen::units::duration_arg;

const MIB: u64 = 1 << 20;

/// The generator's parameters (flags `--cos-…`).
#[derive(Debug, Clone, clap::Args)]
pub struct CosParams {
    /// Length of the trace (virtual).
    #[arg(long = "cos-duration", value_parser = duration_arg, default_value = "60s")]
    pub duration_ns: u64,
    /// Mean operations per second.
    #[arg(long = "cos-rate", default_value_t = 10.0)]
    pub rate: f64,
    /// Window of a constant rate.
    #[arg(long = "cos-window", value_parser = duration_arg, default_value = "1m")]
    pub window_ns: u64,
    /// σ of each window's log-normal rate factor (mean 1); 0: Poisson.
    #[arg(long = "cos-burst", default_value_t = 1.0)]
    pub burst_sigma: f64,
    /// Number of keys.
    #[arg(long = "cos-keys", default_value_t = 1000)]
    pub keys: u64,
    /// Zipf exponent of the keys written.
    #[arg(long = "cos-zipf", default_value_t = 1.1)]
    pub zipf: f64,
    /// Share of PUTs under 1 MiB.
    #[arg(long = "cos-small-share", default_value_t = 0.8)]
    pub small_share: f64,
    /// Median bytes of the small body.
    #[arg(long = "cos-small-median", default_value_t = 32_768)]
    pub small_median: u64,
    /// σ of the small body's log-normal.
    #[arg(long = "cos-small-sigma", default_value_t = 1.5)]
    pub small_sigma: f64,
    /// Pareto shape of the large tail (from 1 MiB).
    #[arg(long = "cos-tail-alpha", default_value_t = 0.6)]
    pub tail_alpha: f64,
    /// The largest object, bytes.
    #[arg(long = "cos-max-size", default_value_t = 1 << 30)]
    pub max_size: u64,
    /// Bytes of all new objects together.
    #[arg(long = "cos-max-bytes", default_value_t = 4 << 30)]
    pub max_bytes: u64,
    /// Weights PUT:COPY:CONCAT:APPEND:DELETE.
    #[arg(long = "cos-mix", value_parser = parse_mix, default_value = "90:3:2:3:2")]
    pub mix: [u32; 5],
    /// The largest object a CONCAT takes as a part or an APPEND extends, bytes.
    #[arg(long = "cos-compose-max", default_value_t = 8 << 20)]
    pub compose_max: u64,
}

impl Default for CosParams {
    fn default() -> CosParams {
        CosParams {
            duration_ns: 60_000_000_000,
            rate: 10.0,
            window_ns: 60_000_000_000,
            burst_sigma: 1.0,
            keys: 1000,
            zipf: 1.1,
            small_share: 0.8,
            small_median: 32_768,
            small_sigma: 1.5,
            tail_alpha: 0.6,
            max_size: 1 << 30,
            max_bytes: 4 << 30,
            mix: [90, 3, 2, 3, 2],
            compose_max: 8 << 20,
        }
    }
}

/// Parses `PUT:COPY:CONCAT:APPEND:DELETE` weights such as `90:3:2:3:2`.
pub fn parse_mix(text: &str) -> Result<[u32; 5], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let err = || format!("{text:?}: want five weights PUT:COPY:CONCAT:APPEND:DELETE such as 90:3:2:3:2");
    if parts.len() != 5 {
        return Err(err());
    }
    let mut out = [0u32; 5];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p.trim().parse().map_err(|_| err())?;
    }
    if out[0] == 0 {
        return Err(format!("{text:?}: the PUT weight must be positive (other operations need objects)"));
    }
    Ok(out)
}

/// Errors of the generator's parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--cos-{flag}: {reason}")]
pub struct ParamError {
    pub flag: &'static str,
    pub reason: &'static str,
}

impl CosParams {
    fn check(&self) -> Result<(), ParamError> {
        let bad = |flag, reason| Err(ParamError { flag, reason });
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("rate", "must be a positive number of operations per second");
        }
        if self.window_ns == 0 {
            return bad("window", "must be positive");
        }
        if !(self.burst_sigma.is_finite() && self.burst_sigma >= 0.0) {
            return bad("burst", "must be a non-negative number");
        }
        if self.keys == 0 {
            return bad("keys", "must be positive");
        }
        if !(self.zipf.is_finite() && self.zipf > 0.0) {
            return bad("zipf", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.small_share) {
            return bad("small-share", "must be within 0 and 1");
        }
        if self.small_median == 0 || self.small_median >= MIB {
            return bad("small-median", "must be within 1 byte and 1 MiB");
        }
        if !(self.small_sigma.is_finite() && self.small_sigma > 0.0) {
            return bad("small-sigma", "must be positive");
        }
        if !(self.tail_alpha.is_finite() && self.tail_alpha > 0.0) {
            return bad("tail-alpha", "must be positive");
        }
        if self.max_size < MIB {
            return bad("max-size", "must be at least 1 MiB");
        }
        Ok(())
    }
}

struct Gen<'a> {
    p: &'a CosParams,
    rng: rand::rngs::StdRng,
    zipf: Zipf<f64>,
    body: LogNormal<f64>,
    tail: Pareto<f64>,
    /// Existing keys and their sizes.
    objects: BTreeMap<String, u64>,
    written: u64,
}

impl Gen<'_> {
    fn key(&mut self) -> String {
        let rank = self.zipf.sample(&mut self.rng) as u64;
        format!("cos/{:06}", rank.clamp(1, self.p.keys) - 1)
    }

    fn small(&mut self) -> u64 {
        for _ in 0..32 {
            let s = self.body.sample(&mut self.rng).round();
            if s >= 1.0 && s < MIB as f64 {
                return s as u64;
            }
        }
        self.p.small_median
    }

    fn large(&mut self) -> u64 {
        (self.tail.sample(&mut self.rng).round() as u64).clamp(MIB, self.p.max_size)
    }

    /// A uniformly drawn existing key whose size passes `keep`.
    fn existing(&mut self, keep: impl Fn(u64) -> bool) -> Option<(String, u64)> {
        let eligible: Vec<(&String, &u64)> = self.objects.iter().filter(|(_, s)| keep(**s)).collect();
        if eligible.is_empty() {
            return None;
        }
        let (k, s) = eligible[self.rng.random_range(0..eligible.len())];
        Some((k.clone(), *s))
    }

    fn fits(&self, bytes: u64) -> bool {
        self.written.saturating_add(bytes) <= self.p.max_bytes
    }

    /// The operation at `time_ms`, or `None` when the budget is spent.
    fn op(&mut self, time_ms: f64) -> Option<Row> {
        let total: u32 = self.p.mix.iter().sum();
        let mut pick = self.rng.random_range(0..total.max(1));
        let mut op = Op::Put;
        for (w, o) in self.p.mix.iter().zip([Op::Put, Op::Copy, Op::Concat, Op::Append, Op::Delete]) {
            if pick < *w {
                op = o;
                break;
            }
            pick -= w;
        }
        let row = |op, key, size, sources| Row { time: time_ms, op, key, size, sources, line: 0 };
        let cmax = self.p.compose_max;
        let composed = match op {
            Op::Copy => self.existing(|_| true).and_then(|(src, size)| {
                let dst = self.key();
                (dst != src).then(|| (row(Op::Copy, dst, 0, vec![src]), size))
            }),
            Op::Concat => {
                let n = self.rng.random_range(2..=4);
                let mut parts = Vec::new();
                let mut size = 0;
                for _ in 0..n {
                    if let Some((k, s)) = self.existing(|s| s <= cmax) {
                        parts.push(k);
                        size += s;
                    }
                }
                let dst = self.key();
                (parts.len() >= 2).then(|| (row(Op::Concat, dst, 0, parts), size))
            }
            Op::Append => {
                let hot = self.key();
                let current = self.objects.get(&hot).copied();
                let target = match current {
                    Some(s) if s <= cmax => Some((hot, s)),
                    _ => self.existing(|s| s <= cmax),
                };
                let add = self.small();
                target.map(|(k, s)| (row(Op::Append, k, add, Vec::new()), s + add))
            }
            Op::Delete => self.existing(|_| true).map(|(k, _)| (row(Op::Delete, k, 0, Vec::new()), 0)),
            Op::Put | Op::Move => None,
        };
        let (r, new_size) = match composed.filter(|(_, size)| self.fits(*size)) {
            Some(x) => x,
            None => {
                let size = if self.rng.random_bool(self.p.small_share) { self.small() } else { self.large() };
                let size = if self.fits(size) { size } else { self.small() };
                if !self.fits(size) {
                    return None;
                }
                (row(Op::Put, self.key(), size, Vec::new()), size)
            }
        };
        self.written += new_size;
        match r.op {
            Op::Delete => {
                self.objects.remove(&r.key);
            }
            _ => {
                self.objects.insert(r.key.clone(), new_size);
            }
        }
        Some(r)
    }
}

/// Generates a trace (rows sorted by time, ms).
pub fn generate(p: &CosParams, seed: u64) -> Result<Vec<Row>, ParamError> {
    p.check()?;
    let err = |flag, reason| ParamError { flag, reason };
    let mut g = Gen {
        p,
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        zipf: Zipf::new(p.keys as f64, p.zipf).map_err(|_| err("zipf", "not a valid Zipf law"))?,
        body: LogNormal::new((p.small_median as f64).ln(), p.small_sigma)
            .map_err(|_| err("small-sigma", "not a valid log-normal"))?,
        tail: Pareto::new(MIB as f64, p.tail_alpha).map_err(|_| err("tail-alpha", "not a valid Pareto law"))?,
        objects: BTreeMap::new(),
        written: 0,
    };
    let burst = LogNormal::new(-p.burst_sigma * p.burst_sigma / 2.0, p.burst_sigma)
        .map_err(|_| err("burst", "not a valid log-normal"))?;
    let mut rows = Vec::new();
    let mut start = 0u64;
    'windows: while start < p.duration_ns {
        let end = start.saturating_add(p.window_ns).min(p.duration_ns);
        let factor = if p.burst_sigma > 0.0 { burst.sample(&mut g.rng) } else { 1.0 };
        let rate_per_ns = p.rate * factor / 1e9;
        if let Ok(gap) = Exp::new(rate_per_ns) {
            let mut t = start as f64;
            loop {
                t += gap.sample(&mut g.rng);
                if t >= end as f64 {
                    break;
                }
                match g.op(t / 1e6) {
                    Some(r) => rows.push(r),
                    None => {
                        tracing::info!(
                            bytes = g.written,
                            max_bytes = p.max_bytes,
                            "the generator's byte budget is spent; the trace ends here"
                        );
                        break 'windows;
                    }
                }
            }
        }
        start = end;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::s3::model::Model;

    fn quantile(sorted: &[u64], q: f64) -> u64 {
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    fn big() -> CosParams {
        CosParams {
            duration_ns: 1_200_000_000_000,
            rate: 10.0,
            window_ns: 10_000_000_000,
            max_bytes: u64::MAX,
            ..CosParams::default()
        }
    }

    #[test]
    fn sizes_are_mostly_small_with_a_heavy_tail() {
        let rows = generate(&big(), 7).unwrap();
        let mut puts: Vec<u64> = rows.iter().filter(|r| r.op == Op::Put).map(|r| r.size).collect();
        puts.sort_unstable();
        let n = puts.len() as f64;
        assert!(puts.len() > 8000, "{}", puts.len());
        let small = puts.iter().filter(|&&s| s < MIB).count() as f64 / n;
        assert!((small - 0.8).abs() < 0.03, "share under 1 MiB {small}");
        // Body: median near 32 KiB; tail: p99 beyond 64 MiB and draws at the 1 GiB cap.
        let median = quantile(&puts, 0.5);
        assert!((16_384..65_536).contains(&median), "median {median}");
        assert!(quantile(&puts, 0.99) >= 64 * MIB, "p99 {}", quantile(&puts, 0.99));
        assert_eq!(*puts.last().unwrap(), 1 << 30);
        let at_cap = puts.iter().filter(|&&s| s == 1 << 30).count() as f64 / n;
        // (1 MiB / 1 GiB)^0.6 of the 20% large ones: 0.31%.
        assert!((0.001..0.007).contains(&at_cap), "{at_cap}");
        // Every kind of operation is there, and the trace is consistent with itself.
        for op in [Op::Copy, Op::Concat, Op::Append, Op::Delete] {
            let share = rows.iter().filter(|r| r.op == op).count() as f64 / rows.len() as f64;
            assert!((0.005..0.05).contains(&share), "{op}: {share}");
        }
        Model::check(&rows).unwrap();
    }

    fn cv_of_window_counts(p: &CosParams, seed: u64) -> f64 {
        let rows = generate(p, seed).unwrap();
        let windows = (p.duration_ns / p.window_ns) as usize;
        let mut counts = vec![0f64; windows];
        for r in &rows {
            counts[((r.time * 1e6) as u64 / p.window_ns) as usize] += 1.0;
        }
        let mean = counts.iter().sum::<f64>() / windows as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (windows - 1) as f64;
        var.sqrt() / mean
    }

    #[test]
    fn rates_are_bursty_per_window() {
        let p = CosParams { duration_ns: 600_000_000_000, rate: 20.0, window_ns: 10_000_000_000, ..big() };
        // A window's count is Poisson(200·F): with F log-normal of σ 1 the CV is about
        // √(e − 1) ≈ 1.3; a plain Poisson process gives 1/√200 ≈ 0.07.
        let bursty = cv_of_window_counts(&p, 3);
        assert!(bursty > 0.6, "{bursty}");
        let flat = cv_of_window_counts(&CosParams { burst_sigma: 0.0, ..p }, 3);
        assert!(flat < 0.15, "{flat}");
    }

    #[test]
    fn hot_keys_take_most_writes() {
        let rows = generate(&big(), 11).unwrap();
        let puts: Vec<&Row> = rows.iter().filter(|r| r.op == Op::Put).collect();
        let hot = puts.iter().filter(|r| r.key.as_str() < "cos/000010").count() as f64 / puts.len() as f64;
        // Zipf(1.1) over 1000 keys puts about 45% of writes on the first 10 (1% of the keys).
        assert!(hot > 0.35, "{hot}");
        let distinct: std::collections::BTreeSet<&str> = puts.iter().map(|r| r.key.as_str()).collect();
        assert!(distinct.len() > 300, "{}", distinct.len());
    }

    #[test]
    fn one_seed_one_trace() {
        let p = CosParams { duration_ns: 120_000_000_000, ..CosParams::default() };
        assert_eq!(generate(&p, 5).unwrap(), generate(&p, 5).unwrap());
        assert_ne!(generate(&p, 5).unwrap(), generate(&p, 6).unwrap());
    }

    #[test]
    fn the_byte_budget_holds() {
        let p = CosParams { max_bytes: 200 * MIB, ..big() };
        let rows = generate(&p, 2).unwrap();
        let (steps, _) = Model::plan(&rows, super::super::model::Upload { threshold: u64::MAX, part_size: 1 }).unwrap();
        let new_bytes: u64 = steps.iter().filter_map(|s| s.result.as_ref()).map(|o| o.size()).sum();
        assert!(new_bytes <= 200 * MIB, "{new_bytes}");
        assert!(new_bytes > 150 * MIB, "{new_bytes}");
        assert!(rows.last().unwrap().time < 1_200_000.0, "the trace ends early");
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(generate(&CosParams { rate: 0.0, ..CosParams::default() }, 1).unwrap_err().flag, "rate");
        assert_eq!(
            generate(&CosParams { small_share: 1.5, ..CosParams::default() }, 1).unwrap_err().flag,
            "small-share"
        );
        assert!(parse_mix("1:2:3").is_err() && parse_mix("0:1:1:1:1").is_err());
        assert_eq!(parse_mix("90:3:2:3:2").unwrap(), [90, 3, 2, 3, 2]);
    }
}
