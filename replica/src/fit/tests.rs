use super::*;
use crate::planner::{self, Dist, RegionModel};
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn prior(name: &str) -> RegionModel {
    crate::coordinator::model(name, &Dist::Const(0.05), &Dist::Const(0.1), 100.0 * MIB as f64, MIB)
}

fn setup(region: &str, s: f64) -> Sample {
    Sample { region: region.into(), setup_s: Some(s), ..Sample::default() }
}

/// A copy of `bytes` whose transfer took `per_chunk` seconds per MiB.
fn copy(region: &str, bytes: u64, per_chunk: f64) -> Sample {
    Sample {
        region: region.into(),
        setup_s: Some(0.01),
        transfer_s: Some(per_chunk * bytes as f64 / MIB as f64),
        bytes,
        ..Sample::default()
    }
}

#[test]
fn a_window_keeps_the_most_recent_samples_and_counts_all() {
    let mut w = Window::new(3);
    for x in [1.0, 2.0, 3.0, 4.0, 5.0] {
        assert!(w.push(x));
    }
    assert!(!w.push(-1.0) && !w.push(f64::NAN), "no time is no sample");
    assert_eq!((w.len(), w.total()), (3, 5));
    assert_eq!(w.xs.iter().copied().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
    // D without a platform: zeros fit the constant 0, not a log-normal of −∞.
    let mut zeros = Window::new(4);
    zeros.push(0.0);
    zeros.push(0.0);
    assert_eq!(zeros.fit(), Some(Dist::Const(0.0)));
}

#[test]
fn the_configured_model_holds_until_min_samples_then_the_fitted_one() {
    let mut m = Models::new(vec![prior("a"), prior("b")], Fitting { window: 200, min_samples: 3 });
    let before = m.planning();
    assert!(m.add(&setup("a", 0.2)).is_empty());
    assert!(m.add(&setup("a", 0.3)).is_empty());
    assert_eq!(m.planning(), before, "two samples: still the prior");
    let v = m.views("lambda", 1);
    assert_eq!((v[0].setup.source, v[0].setup.samples), (Source::Configured, 2));
    assert_eq!(m.add(&setup("a", 0.25)), vec![Kind::Setup]);
    let now = m.planning();
    assert!(matches!(now[0].setup, Dist::LogNormal { .. }), "{:?}", now[0].setup);
    assert!((now[0].setup.mean() - 0.25).abs() < 0.02, "{:?}", now[0].setup);
    // Only that kind of that region changed.
    assert_eq!((&now[0].invoke, &now[0].per_chunk), (&before[0].invoke, &before[0].per_chunk));
    assert_eq!(now[1], before[1]);
    let v = m.views("lambda", 2);
    assert_eq!((v[0].setup.source, v[0].setup.samples, v[0].setup.total), (Source::Fitted, 3, 3));
    assert_eq!(v[0].invoke.source, Source::Configured);
    // A fourth sample refits without announcing a switch; an unknown region is ignored.
    assert!(m.add(&setup("a", 0.25)).is_empty());
    assert!(m.add(&setup("elsewhere", 9.0)).is_empty());
    // min_samples 0: never fitted.
    let mut off = Models::new(vec![prior("a")], Fitting { window: 10, min_samples: 0 });
    for _ in 0..20 {
        off.add(&setup("a", 0.5));
    }
    assert_eq!(off.planning()[0], prior("a"));
    assert_eq!(off.views("lambda", 0)[0].setup.source, Source::Configured);
}

#[test]
fn a_fit_of_log_normal_samples_recovers_their_parameters() {
    // Per-chunk times of 4 MiB parts drawn from LogNormal(−3, 0.4) s per MiB; setups from
    // LogNormal(−4, 0.6); I and D likewise.
    let (c, st) = (LogNormal::new(-3.0, 0.4).unwrap(), LogNormal::new(-4.0, 0.6).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut m = Models::new(vec![prior("a")], Fitting::default());
    for _ in 0..200 {
        let mut s = copy("a", 4 * MIB, c.sample(&mut rng));
        s.setup_s = Some(st.sample(&mut rng));
        s.invoke_s = Some(st.sample(&mut rng));
        s.ready_s = Some(c.sample(&mut rng));
        m.add(&s);
    }
    let got = m.planning().remove(0);
    let close = |d: &Dist, mu0: f64, sigma0: f64| match d {
        Dist::LogNormal { mu, sigma } => (mu - mu0).abs() < 0.1 && (sigma - sigma0).abs() < 0.08,
        _ => false,
    };
    assert!(close(&got.per_chunk, -3.0, 0.4), "{:?}", got.per_chunk);
    assert!(close(&got.setup, -4.0, 0.6), "{:?}", got.setup);
    assert!(close(&got.invoke, -4.0, 0.6), "{:?}", got.invoke);
    assert!(close(&got.ready, -3.0, 0.4), "{:?}", got.ready);
    // Copies of less than a chunk give S only: their time is not a bandwidth.
    let mut small = Models::new(vec![prior("a")], Fitting { window: 50, min_samples: 2 });
    for _ in 0..5 {
        small.add(&copy("a", 1000, 5.0));
    }
    let v = small.views("lambda", 0).remove(0);
    assert_eq!((v.setup.samples, v.per_chunk.samples), (5, 0));
}

#[test]
fn measured_slower_transfers_make_the_planner_use_more_instances() {
    // 64 MiB in 8 MiB parts, 2 s of SLO left. Configured: 100 MiB/s, one instance is enough.
    let req = planner::Request {
        size: 64 * MIB,
        remaining: 2.0,
        percentile: 0.99,
        part_size: 8 * MIB,
        max_instances: 8,
        samples: 400,
        budget: Duration::from_secs(5),
        orchestrator_copies: false,
    };
    let mut m = Models::new(vec![prior("a")], Fitting { window: 32, min_samples: 8 });
    let first = planner::plan(&req, &m.planning(), 1).unwrap();
    assert_eq!((first.instances, first.meets_slo), (1, true), "{first:?}");
    // The instances measure about 10 ms per MiB (as configured): still one.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let near = |mean: f64| LogNormal::new(mean.ln(), 0.1).unwrap();
    for _ in 0..32 {
        m.add(&copy("a", 8 * MIB, near(0.01).sample(&mut rng)));
    }
    let same = planner::plan(&req, &m.planning(), 1).unwrap();
    assert_eq!(same.instances, 1, "{same:?}");
    // Then 50 ms per MiB (a slower link, or slower instances): 64 chunks take 3.2 s alone,
    // so the plan needs more instances. Nothing in the configuration changed.
    for _ in 0..32 {
        m.add(&copy("a", 8 * MIB, near(0.05).sample(&mut rng)));
    }
    let slower = planner::plan(&req, &m.planning(), 1).unwrap();
    assert!(slower.instances >= 2 && slower.meets_slo, "{slower:?}");
}

#[test]
fn a_model_record_names_its_sources_and_round_trips() {
    let mut m = Models::new(vec![prior("a")], Fitting { window: 10, min_samples: 2 });
    m.add(&copy("a", 2 * MIB, 0.02));
    m.add(&copy("a", 2 * MIB, 0.03));
    let v = m.views("lambda", 42).remove(0);
    let line = serde_json::to_string(&crate::record::Record::Model(v.clone())).unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((json["record"].as_str(), json["region"].as_str()), (Some("model"), Some("a")), "{line}");
    assert_eq!(json["per_chunk"]["source"], "fitted", "{line}");
    assert_eq!(json["per_chunk"]["dist"]["kind"], "lognormal", "{line}");
    assert_eq!(json["invoke"]["source"], "configured", "{line}");
    assert_eq!(json["invoke"]["dist"], serde_json::json!({"kind": "const", "value": 0.05}), "{line}");
    // It reads back as a model record (floats to their last digit aside: compared as JSON).
    let back: crate::record::Record = serde_json::from_str(&line).unwrap();
    assert!(matches!(back, crate::record::Record::Model(_)), "{back:?}");
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    assert!(v.same(&crate::fit::ModelView { at_ms: 7, ..v.clone() }));
}
