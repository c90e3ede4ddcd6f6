//! Comparisons of synthetic results directories.

use super::diff::{align, relative_error, series_error};
use super::*;
use crate::fixture::{self, Fixture};

fn lat(scale: f64) -> Vec<u64> {
    (1..=2000u64).map(|i| ((i % 100 + 1) as f64 * 1e6 * scale) as u64).collect()
}

fn runs(a: &Fixture<'_>, b: &Fixture<'_>) -> (tempfile::TempDir, tempfile::TempDir) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fixture::write(da.path(), a);
    fixture::write(db.path(), b);
    (da, db)
}

#[test]
fn a_run_matches_itself() {
    let l = lat(1.0);
    let (da, _db) = runs(&Fixture { latencies_ns: &l, ..Fixture::default() }, &Fixture::default());
    let c = compare(da.path(), da.path(), &Thresholds::default()).unwrap();
    assert!(c.pass, "{:?}", c.failures);
    assert_eq!(c.checks.len(), 8, "distance, ks, wasserstein, p50, p90, p99, mean, throughput");
    assert!(c.checks.iter().all(|k| k.value == Some(0.0)), "{:?}", c.checks);
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.links.len(), 2);
    assert!(c.nodes.iter().all(|n| n.mare == 0.0 && n.points == 10));
}

#[test]
fn a_slower_run_fails_with_its_figures() {
    let (la, lb) = (lat(1.0), lat(1.5));
    let (da, db) = runs(
        &Fixture { latencies_ns: &la, ..Fixture::default() },
        &Fixture { latencies_ns: &lb, cpu: 0.7, ..Fixture::default() },
    );
    let c = compare(da.path(), db.path(), &Thresholds::default()).unwrap();
    assert!(!c.pass);
    let ks = c.checks.iter().find(|k| k.name == "ks").unwrap();
    // 1..=100 ms against 1.5..=150 ms in steps of 1.5: at 100 ms, 1.0 against 0.66.
    assert!((ks.value.unwrap() - 0.34).abs() < 1e-9, "{ks:?}");
    let p50 = c.checks.iter().find(|k| k.name == "p50").unwrap();
    assert!((p50.value.unwrap() - 0.5).abs() < 0.01, "{p50:?}");
    let text = c.failures.join("\n");
    // A 50% shift is far beyond the 2% tolerance: the decisive distance is about KS's.
    let d = c.checks.iter().find(|k| k.name == "distance").unwrap();
    assert!(!d.pass && d.value.unwrap() > 0.3, "{d:?}");
    assert!(ks.informational && !d.informational);
    assert!(text.contains("tolerant KS distance") && text.contains("exceeds threshold 0.1000"), "{text}");
    assert!(
        text.contains("p50 latency: relative error 0.50") && text.contains("(A 50.") && text.contains("B 75."),
        "{text}"
    );
    // CPU 0.5 → 0.7: error 0.4; links are the same.
    assert!(c.nodes.iter().all(|n| (n.mare - 0.4).abs() < 1e-3 && !n.pass), "{:?}", c.nodes);
    assert!(text.contains("CPU of node a: mean absolute relative error 0.4000 exceeds threshold 0.1000"), "{text}");
    assert!(c.links.iter().all(|l| l.pass));
    // Generous thresholds pass the same pair.
    let loose = Thresholds {
        distance: 0.5,
        ks: 0.5,
        p50: 0.6,
        p90: 0.6,
        p99: 0.6,
        mean: 0.6,
        throughput: 0.6,
        cpu: 0.5,
        link_util: 0.1,
        ..Thresholds::default()
    };
    assert!(compare(da.path(), db.path(), &loose).unwrap().pass);
}

#[test]
fn different_topologies_are_refused() {
    let (da, db) = runs(&Fixture { name: "one", ..Fixture::default() }, &Fixture { name: "two", ..Fixture::default() });
    let err = compare(da.path(), db.path(), &Thresholds::default()).unwrap_err().to_string();
    assert!(err.contains("different topologies") && err.contains("`one`") && err.contains("`two`"), "{err}");
}

#[test]
fn a_missing_load_generator_fails_and_none_is_a_note() {
    let l = lat(1.0);
    let (da, db) = runs(&Fixture { latencies_ns: &l, ..Fixture::default() }, &Fixture::default());
    let c = compare(da.path(), db.path(), &Thresholds::default()).unwrap();
    assert!(!c.pass);
    assert!(c.failures[0].contains("only run A has completed requests"), "{:?}", c.failures);
    let c = compare(db.path(), db.path(), &Thresholds::default()).unwrap();
    assert!(c.pass && c.checks.is_empty());
    assert!(c.notes[0].contains("neither run"), "{:?}", c.notes);
}

#[test]
fn comparison_files_are_written_and_self_contained() {
    let (la, lb) = (lat(1.0), lat(1.2));
    let (da, db) = runs(
        &Fixture { latencies_ns: &la, ..Fixture::default() },
        &Fixture { latencies_ns: &lb, ..Fixture::default() },
    );
    let c = compare(da.path(), db.path(), &Thresholds::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    c.write_json(out.path()).unwrap();
    c.write_html(out.path()).unwrap();
    let back: Comparison =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("compare.json")).unwrap()).unwrap();
    assert_eq!(back.failures, c.failures);
    let html = std::fs::read_to_string(out.path().join("compare.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "CDF, throughput, cpu, links");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script"));
    assert!(html.contains("FAIL"));
}

#[test]
fn series_are_aligned_on_a_common_grid() {
    // A sampled every 1 s from 0.5, B every 2 s from 1.0; both linear in t.
    let a: Vec<(f64, f64)> = (0..20).map(|i| (0.5 + i as f64, 0.5 + i as f64)).collect();
    let b: Vec<(f64, f64)> = (0..10).map(|i| (1.0 + 2.0 * i as f64, 1.0 + 2.0 * i as f64)).collect();
    let g = align(&a, &b);
    assert_eq!(g.first().map(|p| p.0), Some(1.0));
    assert!(g.windows(2).all(|w| (w[1].0 - w[0].0 - 2.0).abs() < 1e-9));
    assert!(g.iter().all(|p| (p.1 - p.2).abs() < 1e-9), "{g:?}");
    assert_eq!(series_error(&g, 0.05).unwrap().0, 0.0);
    assert!(align(&a[..1], &b).is_empty());
}

#[test]
fn relative_errors() {
    assert_eq!(relative_error(10.0, 12.0), Some(0.2));
    assert_eq!(relative_error(0.0, 0.0), Some(0.0));
    assert_eq!(relative_error(0.0, 1.0), None);
    // An idle node's noise is measured against the 5 % floor.
    let g = [(0.0, 0.001, 0.003), (1.0, 0.001, 0.003)];
    assert!((series_error(&g, 0.05).unwrap().0 - 0.04).abs() < 1e-12);
}
