//! Parsing and validation: every error names file, line, column and field.

use std::path::Path;
use std::time::Duration;

use super::{topology_faults as from_topology, topology_str as load_str};
use crate::fault::{load_scenario, Action, DirChoice, FaultError};

const BASE: &str = "name: t
switches: [sw]
nodes:
  - name: db[0..3]
    run: {command: [sleep, '100']}
    link: {to: sw, delay: 1ms}
  - name: app0
    run: {command: [sleep, '100']}
    link: {to: sw, delay: 1ms}
  - name: client
    run: {command: [sleep, '100']}
    link: {to: sw, delay: 1ms}
links: []
";

fn faults(yaml: &str) -> Result<Vec<crate::fault::Fault>, FaultError> {
    // Loading a topology validates its faults, so `diorama check` refuses bad ones too.
    let text = format!("{BASE}faults:\n{yaml}");
    match load_str(Path::new("t.yaml"), &text) {
        Ok(t) => from_topology(&t),
        Err(e) => Err(FaultError { diagnostics: e.diagnostics }),
    }
}

/// Asserts one diagnostic at `line`:`col` for `field` containing `needle`.
fn has(err: &FaultError, line: usize, field: &str, needle: &str) {
    assert!(
        err.diagnostics.iter().any(|d| d.pos.line == line
            && d.field == field
            && d.message.contains(needle)
            && d.file == Path::new("t.yaml")),
        "no diagnostic at line {line} for {field} containing {needle:?} in:\n{err}"
    );
}

#[test]
fn every_fault_type_parses() {
    let f = faults(
        "  - {at: 1s, kill: 'db[0..2]', for: 2s, name: db-down}
  - {at: 2s, stop: app0}
  - {at: 3s, start: app0}
  - {at: 4s, pause: db, for: 1s}
  - {at: 5s, cpu: app0, fraction: 0.5, for: 5s}
  - {at: 6s, clock: client, step: -500ms}
  - {at: 6s, clock: client, skew: 1.5, for: 1s}
  - {at: 7s, link_down: db0--sw, for: 1s}
  - {at: 8s, partition: [[db0, db1], app0], for: 2s}
  - {at: 9s, degrade: app0, delay: 10ms, loss: 1%, rate: 1Mbit, dir: forward, for: 1s}
  - {at: 9s, inflate: db2, delay: 1ms}
  - {at: 10s, load: client, rate: 500}
  - {at: 11s, kill: db2}
  - {at: 12s, restart: db2}
",
    )
    .unwrap();
    assert_eq!(f.len(), 14);
    assert_eq!(f[0].id, "faults[0]");
    assert_eq!(f[0].name.as_deref(), Some("db-down"));
    assert_eq!(f[0].action, Action::Kill(vec!["db0".into(), "db1".into()]));
    assert_eq!(f[0].undo_after, Some(Duration::from_secs(2)));
    assert_eq!(f[3].action, Action::Pause(vec!["db0".into(), "db1".into(), "db2".into()]));
    assert_eq!(f[4].action, Action::Cpu { nodes: vec!["app0".into()], fraction: 0.5 });
    assert_eq!(f[5].action, Action::ClockStep { nodes: vec!["client".into()], offset_ns: -500_000_000 });
    assert_eq!(f[8].action, Action::Partition(vec![vec!["db0".into(), "db1".into()], vec!["app0".into()]]));
    match &f[9].action {
        Action::Degrade(d) => {
            assert_eq!(d.links, ["app0--sw"]);
            assert_eq!(d.dir, DirChoice::Forward);
            assert_eq!(d.delay, Duration::from_millis(10));
            assert_eq!(d.rate_bps, Some(1_000_000));
            assert!((d.loss - 0.01).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f[11].action, Action::Load { nodes: vec!["client".into()], rate: 500.0 });
}

#[test]
fn unknown_targets_are_refused_at_their_position() {
    let err = faults("  - {at: 1s, kill: nope}\n  - {at: 2s, link_down: [db0--sw, nowhere]}\n").unwrap_err();
    // BASE has 13 lines, `faults:` is line 14.
    has(&err, 15, "faults[0].kill", "unknown node or group \"nope\"");
    has(&err, 16, "faults[1].link_down[1]", "unknown link \"nowhere\"");
    let d = err.diagnostics.iter().find(|d| d.field == "faults[0].kill").unwrap();
    assert_eq!(d.pos.col, 20, "{err}");
    assert!(err.to_string().contains("t.yaml:15:20: faults[0].kill: unknown node"), "{err}");
}

#[test]
fn bad_durations_and_unknown_types_name_the_field() {
    let err = faults("  - {at: 10 parsecs, kill: db0}\n  - {at: 1s, explode: db0}\n  - {at: 1s}\n").unwrap_err();
    has(&err, 15, "faults[0].at", "unknown duration unit");
    has(&err, 16, "faults[1].explode", "unknown field `explode`");
    has(&err, 17, "faults[2]", "missing fault type");
}

#[test]
fn undo_before_do_is_refused() {
    let err = faults(
        "  - {at: 5s, resume: app0}\n  - {at: 6s, pause: app0}\n  - {at: 1s, restart: db0}\n  - {at: 2s, kill: db0}\n",
    )
    .unwrap_err();
    has(&err, 15, "faults[0].resume", "undo before do: app0 is not paused");
    has(&err, 17, "faults[2].restart", "undo before do");
    // In order it is fine, and an explicit undo after a `for` undo is refused.
    faults("  - {at: 1s, pause: app0}\n  - {at: 2s, resume: app0}\n").unwrap();
    let err = faults("  - {at: 1s, pause: app0, for: 1s}\n  - {at: 3s, resume: app0}\n").unwrap_err();
    has(&err, 16, "faults[1].resume", "not paused");
    let err = faults("  - {at: 1s, heal: true}\n").unwrap_err();
    has(&err, 15, "faults[0].heal", "no partition");
}

#[test]
fn for_needs_an_undo_and_parameters_belong_to_their_type() {
    let err = faults("  - {at: 1s, load: client, rate: 5, for: 2s}\n  - {at: 1s, kill: db0, fraction: 0.5}\n  - {at: 1s, cpu: db0, fraction: 1.5}\n  - {at: 1s, clock: db0}\n  - {at: 1s, kill: db0, for: 0s}\n").unwrap_err();
    has(&err, 15, "faults[0].for", "`for` cannot apply to a `load` fault");
    has(&err, 16, "faults[1].fraction", "does not apply to a `kill` fault");
    has(&err, 17, "faults[2].fraction", "must be in (0, 1]");
    has(&err, 18, "faults[3]", "exactly one of `step`");
    has(&err, 19, "faults[4].for", "must be positive");
    let err = faults("  - {at: 1s, restart: db0, for: 1s}\n  - {at: 0s, kill: db0}\n").unwrap_err();
    has(&err, 15, "faults[0].for", "it is itself an undo");
}

#[test]
fn network_faults_need_links() {
    let text = "name: t\nnodes:\n  - name: a\n    run: {command: [sleep, '1']}\nfaults:\n  - {at: 1s, inflate: a, delay: 1ms}\n";
    let err = load_str(Path::new("t.yaml"), text).unwrap_err();
    let err = FaultError { diagnostics: err.diagnostics };
    has(&err, 6, "faults[0].inflate", "has no links");
}

#[test]
fn partitions_need_two_disjoint_sides() {
    let err = faults("  - {at: 1s, partition: [db]}\n  - {at: 1s, partition: [db, [db0, app0]]}\n").unwrap_err();
    has(&err, 15, "faults[0].partition", "at least two sides");
    has(&err, 16, "faults[1].partition[1]", "db0 is on more than one side");
}

#[test]
fn scenario_files_report_their_own_positions() {
    let dir = tempfile::tempdir().unwrap();
    let topo = load_str(Path::new("t.yaml"), BASE).unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(&file, "name: s\nfaults:\n  - at: 1s\n    kill: db0\n  - at: 2s\n    kill: ghost\n").unwrap();
    let err = load_scenario(&file, &topo).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    let d = &err.diagnostics[0];
    assert_eq!((d.file.as_path(), d.pos.line, d.pos.col, d.field.as_str()), (file.as_path(), 6, 11, "faults[1].kill"));
    std::fs::write(&file, "faults:\n  - {at: 1s, kill: db0, for: 1s}\n").unwrap();
    let ok = load_scenario(&file, &topo).unwrap();
    assert_eq!(ok[0].id, "scenario.faults[0]");
    std::fs::write(&file, "fault: []\n").unwrap();
    assert!(load_scenario(&file, &topo).unwrap_err().to_string().contains("unknown field `fault`"));
}
