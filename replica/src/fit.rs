//! The planner's model measured at run time: per region, the recent samples of I, D, S and C
//! that the instances report, and the distributions fitted to them.
//!
//! # Design
//! - Each region and kind keeps a window of its last `window` samples. While a kind has
//!   fewer than `min_samples`, the planner uses the configured distribution (the prior);
//!   from then on a log-normal fitted to the window ([`Dist::fit_lognormal`]), refitted at
//!   every sample, so the model follows a platform whose behaviour drifts.
//! - A log-normal rather than the samples themselves: the plan of n instances takes the
//!   percentile-p of the max of n draws, a quantile near `1 − (1 − p)/n` that a window of a
//!   few hundred samples cannot resolve (docs/decisions/094-planner-fitted-models.md).
//! - Samples (see [`crate::task::Sample`]): I from the invocation to the platform's slot
//!   (its queue included), D from the slot to the instance's code running (0 without a
//!   platform), S from a GET's request to its first byte, C the rest of that copy (read, then
//!   written at the destination) per `chunk` bytes. A copy of less than a chunk gives S only:
//!   its time is its fixed costs, not its bandwidth. An instance's own bandwidth (the
//!   platform's per-instance draw) is in its C samples.
//!
//! # Limitations
//! One window per region: the samples of every object size and of both copy directions mix.
//! Samples are not kept across a coordinator restart (the prior holds again until `min_samples`
//! arrive).

use crate::planner::{Dist, RegionModel};
use crate::task::Sample;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a region's model is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Invocation latency I.
    Invoke,
    /// Ready delay D.
    Ready,
    /// Transfer setup S.
    Setup,
    /// Time C per chunk.
    PerChunk,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Invoke, Kind::Ready, Kind::Setup, Kind::PerChunk];

    fn of(self, m: &RegionModel) -> &Dist {
        match self {
            Kind::Invoke => &m.invoke,
            Kind::Ready => &m.ready,
            Kind::Setup => &m.setup,
            Kind::PerChunk => &m.per_chunk,
        }
    }

    fn of_mut(self, m: &mut RegionModel) -> &mut Dist {
        match self {
            Kind::Invoke => &mut m.invoke,
            Kind::Ready => &mut m.ready,
            Kind::Setup => &mut m.setup,
            Kind::PerChunk => &mut m.per_chunk,
        }
    }
}

/// How much measuring the planner does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitting {
    /// Samples kept per region and kind (the most recent).
    pub window: usize,
    /// Samples a kind needs before its fitted distribution replaces the configured one; 0:
    /// never (the configured model throughout).
    pub min_samples: usize,
}

impl Default for Fitting {
    fn default() -> Fitting {
        Fitting { window: 200, min_samples: 8 }
    }
}

/// The last `cap` samples of one kind, and how many there were in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    cap: usize,
    xs: VecDeque<f64>,
    total: u64,
}

impl Window {
    pub fn new(cap: usize) -> Window {
        Window { cap: cap.max(1), xs: VecDeque::new(), total: 0 }
    }

    /// Keeps `x` (seconds), dropping the oldest beyond the window; a value that is no time
    /// (negative, not finite) is ignored. Answers whether it was kept.
    pub fn push(&mut self, x: f64) -> bool {
        if !x.is_finite() || x < 0.0 {
            return false;
        }
        if self.xs.len() == self.cap {
            self.xs.pop_front();
        }
        self.xs.push_back(x);
        self.total += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.xs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    /// Samples ever pushed (kept or since dropped from the window).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A log-normal fitted to the window. Times of 0 (D without a platform) are floored at
    /// 1 µs, the stamps' resolution; a window of zeros is the constant 0.
    pub fn fit(&self) -> Option<Dist> {
        if self.xs.is_empty() {
            return None;
        }
        if self.xs.iter().all(|x| *x <= 0.0) {
            return Some(Dist::Const(0.0));
        }
        let xs: Vec<f64> = self.xs.iter().map(|x| x.max(1e-6)).collect();
        Dist::fit_lognormal(&xs)
    }
}

/// One region's model: its prior, its windows and what the planner uses now.
#[derive(Debug, Clone)]
struct Region {
    prior: RegionModel,
    windows: [Window; 4],
    current: RegionModel,
}

/// Every region's measured model.
#[derive(Debug, Clone)]
pub struct Models {
    fitting: Fitting,
    regions: Vec<Region>,
}

impl Models {
    /// Models whose priors are `priors` (source region first, as the planner takes them).
    pub fn new(priors: Vec<RegionModel>, fitting: Fitting) -> Models {
        // A window smaller than the samples a fit needs would never fit.
        let fitting = Fitting { window: fitting.window.max(fitting.min_samples), ..fitting };
        let regions = priors
            .into_iter()
            .map(|prior| Region {
                windows: Kind::ALL.map(|_| Window::new(fitting.window)),
                current: prior.clone(),
                prior,
            })
            .collect();
        Models { fitting, regions }
    }

    /// The models to plan with.
    pub fn planning(&self) -> Vec<RegionModel> {
        self.regions.iter().map(|r| r.current.clone()).collect()
    }

    /// Takes in what an instance measured; answers the kinds whose distribution went from
    /// the configured one to a fitted one. A sample of a region without a model is ignored.
    pub fn add(&mut self, s: &Sample) -> Vec<Kind> {
        let Some(r) = self.regions.iter_mut().find(|r| r.prior.name == s.region) else { return Vec::new() };
        let chunk = r.prior.chunk.max(1);
        // C only from copies of a chunk or more (see the module's design).
        let per_chunk = s.transfer_s.filter(|_| s.bytes >= chunk).map(|t| t / (s.bytes as f64 / chunk as f64));
        let mut switched = Vec::new();
        for (kind, x) in [
            (Kind::Invoke, s.invoke_s),
            (Kind::Ready, s.ready_s),
            (Kind::Setup, s.setup_s),
            (Kind::PerChunk, per_chunk),
        ] {
            let Some(x) = x else { continue };
            let w = &mut r.windows[kind as usize];
            if !w.push(x) || self.fitting.min_samples == 0 || w.len() < self.fitting.min_samples {
                continue;
            }
            if let Some(fitted) = w.fit() {
                if w.total() == self.fitting.min_samples as u64 {
                    switched.push(kind);
                }
                *kind.of_mut(&mut r.current) = fitted;
            }
        }
        switched
    }

    /// What each region's planning uses now, as its record.
    pub fn views(&self, system: &str, at_ms: u64) -> Vec<ModelView> {
        self.regions
            .iter()
            .map(|r| {
                let term = |kind: Kind| {
                    let w = &r.windows[kind as usize];
                    let dist = kind.of(&r.current);
                    Term {
                        source: if self.fitted(w) { Source::Fitted } else { Source::Configured },
                        dist: DistView::from(dist),
                        mean_s: dist.mean(),
                        samples: w.len(),
                        total: w.total(),
                    }
                };
                ModelView {
                    system: system.to_owned(),
                    at_ms,
                    region: r.prior.name.clone(),
                    chunk: r.prior.chunk,
                    invoke: term(Kind::Invoke),
                    ready: term(Kind::Ready),
                    setup: term(Kind::Setup),
                    per_chunk: term(Kind::PerChunk),
                }
            })
            .collect()
    }

    fn fitted(&self, w: &Window) -> bool {
        self.fitting.min_samples > 0 && w.len() >= self.fitting.min_samples
    }
}

/// Where a term of the model in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The configuration (`--invoke`, `--ready`, `--bandwidth`): too few samples yet.
    Configured,
    /// Fitted to the measured samples.
    Fitted,
}

/// A distribution as recorded (seconds; a log-normal's parameters are its logarithm's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DistView {
    Const { value: f64 },
    Normal { mean: f64, sd: f64 },
    Lognormal { mu: f64, sigma: f64 },
    Empirical { n: usize },
}

impl From<&Dist> for DistView {
    fn from(d: &Dist) -> DistView {
        match d {
            Dist::Const(value) => DistView::Const { value: *value },
            Dist::Normal { mean, sd } => DistView::Normal { mean: *mean, sd: *sd },
            Dist::LogNormal { mu, sigma } => DistView::Lognormal { mu: *mu, sigma: *sigma },
            Dist::Empirical(xs) => DistView::Empirical { n: xs.len() },
        }
    }
}

/// One term (I, D, S or C) of the model in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub source: Source,
    pub dist: DistView,
    /// The distribution's mean (seconds).
    pub mean_s: f64,
    /// Samples in the window.
    pub samples: usize,
    /// Samples measured in all.
    pub total: u64,
}

/// The model a region's copies are planned with (a `model` line of `replication.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub system: String,
    pub at_ms: u64,
    pub region: String,
    /// Bytes per chunk (C is seconds per chunk).
    pub chunk: u64,
    pub invoke: Term,
    pub ready: Term,
    pub setup: Term,
    pub per_chunk: Term,
}

impl ModelView {
    /// Whether `other` is the same model (its time of writing aside).
    pub fn same(&self, other: &ModelView) -> bool {
        ModelView { at_ms: other.at_ms, ..self.clone() } == *other
    }
}

#[cfg(test)]
mod tests;
