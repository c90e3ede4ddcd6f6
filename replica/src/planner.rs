//! The SLO planner: which region runs the copy and with how many function instances.
//!
//! # Design
//! The replication time of a plan is `T_rep = T_func + T_transfer`:
//! - `T_func = I + D` (invocation latency and ready delay of a function of that region), or 0
//!   when the orchestrator copies the object itself;
//! - `T_transfer = S + C·⌈size/c⌉` for one instance (setup S, time C per chunk of c bytes); with
//!   n instances each takes `⌈parts/n⌉` parts and the plan waits for the slowest, so the
//!   time is the max over n independent draws.
//!
//! The max of n draws has no closed form for fitted distributions, so it is estimated by Monte
//! Carlo. Candidates are n = 1, 2, 4, … up to `max_instances` in each region; the first plan
//! (fewest instances, source region first) whose percentile-p time meets the remaining SLO
//! wins, else the plan with the smallest percentile-p time. Planning stops at `budget`: the
//! candidates not yet evaluated are skipped, and the best so far is returned.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};
use std::time::{Duration, Instant};

/// A distribution of a time in seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Const(f64),
    Normal {
        mean: f64,
        sd: f64,
    },
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    /// Measured samples, drawn uniformly.
    Empirical(Vec<f64>),
}

impl Dist {
    /// Fits a log-normal to measured positive samples (maximum likelihood); a constant when
    /// there is one sample or none vary.
    pub fn fit_lognormal(samples: &[f64]) -> Option<Dist> {
        let logs: Vec<f64> = samples.iter().filter(|s| **s > 0.0).map(|s| s.ln()).collect();
        if logs.is_empty() {
            return None;
        }
        let n = logs.len() as f64;
        let mu = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|l| (l - mu).powi(2)).sum::<f64>() / n;
        if var <= f64::EPSILON {
            return Some(Dist::Const(mu.exp()));
        }
        Some(Dist::LogNormal { mu, sigma: var.sqrt() })
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let x = match self {
            Dist::Const(c) => *c,
            Dist::Normal { mean, sd } => Normal::new(*mean, *sd).map(|d| d.sample(rng)).unwrap_or(*mean),
            Dist::LogNormal { mu, sigma } => LogNormal::new(*mu, *sigma).map(|d| d.sample(rng)).unwrap_or(mu.exp()),
            Dist::Empirical(xs) if xs.is_empty() => 0.0,
            Dist::Empirical(xs) => xs[rng.random_range(0..xs.len())],
        };
        x.max(0.0)
    }
}

/// A [`Dist`] that did not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "distribution {text:?}: {why} (expected const:S, normal:MEAN,SD, lognormal:MU,SIGMA or a bare number of seconds)"
)]
pub struct DistError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for Dist {
    type Err = DistError;

    /// `0.05`, `const:0.05`, `normal:0.1,0.02`, `lognormal:-2.3,0.5` (seconds; the
    /// log-normal's parameters are those of the logarithm).
    fn from_str(text: &str) -> Result<Dist, DistError> {
        let err = |why| DistError { text: text.to_owned(), why };
        let (kind, args) = text.split_once(':').unwrap_or(("const", text));
        let nums: Vec<f64> = args
            .split(',')
            .map(|a| a.trim().parse::<f64>().map_err(|_| err("not a number")))
            .collect::<Result<_, _>>()?;
        if nums.iter().any(|x| !x.is_finite()) {
            return Err(err("not a finite number"));
        }
        match (kind.trim(), nums.as_slice()) {
            ("const", [c]) if *c >= 0.0 => Ok(Dist::Const(*c)),
            ("normal", [mean, sd]) if *sd >= 0.0 => Ok(Dist::Normal { mean: *mean, sd: *sd }),
            ("lognormal", [mu, sigma]) if *sigma >= 0.0 => Ok(Dist::LogNormal { mu: *mu, sigma: *sigma }),
            ("const" | "normal" | "lognormal", _) => Err(err("wrong number or sign of parameters")),
            _ => Err(err("unknown kind")),
        }
    }
}

impl Dist {
    /// One draw in seconds (never negative).
    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        self.sample(rng)
    }

    /// The mean in seconds (a normal's as configured, before draws are floored at 0).
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Const(c) => *c,
            Dist::Normal { mean, .. } => *mean,
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Dist::Empirical(xs) if xs.is_empty() => 0.0,
            Dist::Empirical(xs) => xs.iter().sum::<f64>() / xs.len() as f64,
        }
    }
}

/// The measured behaviour of one region's functions.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionModel {
    pub name: String,
    /// Invocation latency I.
    pub invoke: Dist,
    /// Ready delay D.
    pub ready: Dist,
    /// Transfer setup S.
    pub setup: Dist,
    /// Time C to move one chunk of `chunk` bytes.
    pub per_chunk: Dist,
    pub chunk: u64,
}

/// What the planner is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub size: u64,
    /// The SLO less the time already elapsed since the write, in seconds.
    pub remaining: f64,
    /// Percentile in (0, 1], e.g. 0.99.
    pub percentile: f64,
    pub part_size: u64,
    pub max_instances: u32,
    pub samples: usize,
    pub budget: Duration,
    /// True when the orchestrator copies one-instance plans itself (T_func = 0).
    pub orchestrator_copies: bool,
}

/// The chosen plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub region: String,
    pub instances: u32,
    /// The estimated percentile-p replication time in seconds.
    pub time: f64,
    pub meets_slo: bool,
    /// Whether the orchestrator copies it itself (no function).
    pub orchestrator: bool,
}

/// Plans a copy over `regions` (source first). `None` only when `regions` is empty.
pub fn plan(req: &Request, regions: &[RegionModel], seed: u64) -> Option<Plan> {
    let start = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let parts = req.size.div_ceil(req.part_size.max(1)).max(1);
    let mut best: Option<Plan> = None;
    let mut n = 1u32;
    'grow: while n <= req.max_instances.max(1) {
        for region in regions {
            if best.is_some() && start.elapsed() >= req.budget {
                break 'grow;
            }
            let orchestrator = n == 1 && req.orchestrator_copies;
            let time = percentile_time(region, req, parts, n, orchestrator, &mut rng, start + req.budget);
            let candidate = Plan {
                region: region.name.clone(),
                instances: n,
                time,
                meets_slo: time <= req.remaining,
                orchestrator,
            };
            if candidate.meets_slo {
                return Some(candidate);
            }
            if best.as_ref().is_none_or(|b| candidate.time < b.time) {
                best = Some(candidate);
            }
        }
        if u64::from(n) >= parts {
            break;
        }
        n = n.saturating_mul(2);
    }
    best
}

fn percentile_time(
    region: &RegionModel,
    req: &Request,
    parts: u64,
    n: u32,
    orchestrator: bool,
    rng: &mut impl Rng,
    deadline: Instant,
) -> f64 {
    let n = u64::from(n).min(parts).max(1);
    let parts_each = parts.div_ceil(n);
    let bytes_each = (parts_each * req.part_size).min(req.size.max(1));
    let chunks_each = bytes_each.div_ceil(region.chunk.max(1)).max(1);
    // At least one draw; further draws only while the planning budget lasts.
    let mut times: Vec<f64> = (0..req.samples.max(1))
        .take_while(|i| *i == 0 || Instant::now() < deadline)
        .map(|_| {
            let func = if orchestrator { 0.0 } else { region.invoke.sample(rng) + region.ready.sample(rng) };
            let slowest = (0..n)
                .map(|_| {
                    let per: f64 = (0..chunks_each).map(|_| region.per_chunk.sample(rng)).sum();
                    region.setup.sample(rng) + per
                })
                .fold(0.0, f64::max);
            func + slowest
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let idx = ((req.percentile.clamp(0.0, 1.0) * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
    times[idx]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn region(name: &str, invoke: f64, per_chunk: Dist) -> RegionModel {
        RegionModel {
            name: name.into(),
            invoke: Dist::Const(invoke),
            ready: Dist::Const(0.1),
            setup: Dist::Const(0.05),
            per_chunk,
            chunk: MIB,
        }
    }

    fn request(size: u64, remaining: f64) -> Request {
        Request {
            size,
            remaining,
            percentile: 0.99,
            part_size: 8 * MIB,
            max_instances: 64,
            samples: 200,
            budget: Duration::from_secs(5),
            orchestrator_copies: false,
        }
    }

    #[test]
    fn constant_distributions_give_the_exact_time() {
        // 1 MiB, one chunk: 0.2 + 0.1 + 0.05 + 0.01.
        let p = plan(&request(MIB, 10.0), &[region("src", 0.2, Dist::Const(0.01))], 1).unwrap();
        assert_eq!((p.instances, p.region.as_str()), (1, "src"));
        assert!((p.time - 0.36).abs() < 1e-9, "{p:?}");
        assert!(p.meets_slo);
    }

    #[test]
    fn small_object_gets_one_instance_large_one_many() {
        let regions = [region("src", 0.2, Dist::Const(0.01)), region("dst", 0.2, Dist::Const(0.01))];
        let small = plan(&request(MIB, 2.0), &regions, 1).unwrap();
        assert_eq!(small.instances, 1);
        // 1 GiB = 1024 chunks: 10.6 s alone; within 2 s needs ⌈128/n⌉·8·0.01 + 0.35 ≤ 2, n ≥ 8.
        let large = plan(&request(1024 * MIB, 2.0), &regions, 1).unwrap();
        assert_eq!(large.instances, 8, "{large:?}");
        assert!(large.meets_slo);
    }

    #[test]
    fn cheaper_invocation_region_wins_when_only_it_meets_the_slo() {
        let regions = [region("src", 1.0, Dist::Const(0.01)), region("dst", 0.1, Dist::Const(0.01))];
        let p = plan(&request(MIB, 0.5), &regions, 1).unwrap();
        assert_eq!(p.region, "dst");
    }

    #[test]
    fn infeasible_slo_returns_the_fastest_plan() {
        let p = plan(&request(64 * MIB, 0.01), &[region("src", 0.2, Dist::Const(0.01))], 1).unwrap();
        assert!(!p.meets_slo);
        assert_eq!(p.instances, 8, "8 parts: 8 instances is fastest, {p:?}");
    }

    #[test]
    fn max_of_n_grows_with_n_for_variable_transfers() {
        // With variable per-chunk times the p99 of the max over n exceeds that of one draw:
        // for one chunk each, 8 instances take longer at p50 than 1 does.
        let r = region("src", 0.0, Dist::Normal { mean: 1.0, sd: 0.3 });
        let mut req = request(8 * MIB, 0.0);
        req.part_size = MIB;
        req.percentile = 0.5;
        req.samples = 4000;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let far = Instant::now() + Duration::from_secs(60);
        let one = percentile_time(&r, &req, 1, 1, false, &mut rng, far);
        let eight = percentile_time(&r, &req, 1, 8, false, &mut rng, far);
        assert!((one - 1.15).abs() < 0.05, "median of one draw ≈ 1 + 0.1 + 0.05: {one}");
        // E[max of 8 standard normals] ≈ 1.42 sd: 1.15 + 0.3·1.42 ≈ 1.58; its median ≈ 1.55.
        let both = percentile_time(&r, &Request { size: 8 * MIB, ..req.clone() }, 8, 8, false, &mut rng, far);
        assert!(both > one + 0.3, "max of 8 draws: {both} vs {one}");
        assert!((eight - one).abs() < 0.05, "one part gives one instance whatever n: {eight}");
    }

    #[test]
    fn orchestrator_copy_has_no_function_time() {
        let mut req = request(MIB, 10.0);
        req.orchestrator_copies = true;
        let p = plan(&req, &[region("src", 5.0, Dist::Const(0.01))], 1).unwrap();
        assert!(p.orchestrator && (p.time - 0.06).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn planning_time_is_bounded() {
        let mut req = request(1 << 40, 0.0);
        req.samples = 100_000;
        req.max_instances = 1 << 20;
        req.budget = Duration::from_millis(50);
        let start = Instant::now();
        let p = plan(&req, &[region("src", 0.2, Dist::Normal { mean: 0.01, sd: 0.001 })], 1);
        assert!(p.is_some());
        // One draw of each candidate is always made (a million chunks for n = 1); the rest
        // stops at the budget. Generous against a busy host, far below the unbounded minutes.
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn distributions_parse_and_bad_ones_are_refused() {
        assert_eq!("0.05".parse::<Dist>().unwrap(), Dist::Const(0.05));
        assert_eq!("const:1".parse::<Dist>().unwrap(), Dist::Const(1.0));
        assert_eq!("normal:0.1, 0.02".parse::<Dist>().unwrap(), Dist::Normal { mean: 0.1, sd: 0.02 });
        assert_eq!("lognormal:-2,0.5".parse::<Dist>().unwrap(), Dist::LogNormal { mu: -2.0, sigma: 0.5 });
        for bad in ["", "x", "normal:1", "normal:1,-1", "gamma:1,2", "const:-1", "const:inf"] {
            assert!(bad.parse::<Dist>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn lognormal_fit_recovers_parameters() {
        let d = LogNormal::new(0.5, 0.25).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let xs: Vec<f64> = (0..20_000).map(|_| d.sample(&mut rng)).collect();
        let Some(Dist::LogNormal { mu, sigma }) = Dist::fit_lognormal(&xs) else { panic!("not lognormal") };
        assert!((mu - 0.5).abs() < 0.01 && (sigma - 0.25).abs() < 0.01, "{mu} {sigma}");
        assert_eq!(Dist::fit_lognormal(&[2.0, 2.0]), Some(Dist::Const(2.0)));
    }
}
