//! Bad input gets a clear error naming the file, the line and the field, and the documented
//! exit code; nothing is left behind (these need no root: they fail before any set-up). A
//! closed stdout or stderr ends every subcommand quietly, and real runs (`run`, `test`,
//! `validate`: root) still run to their end and leave nothing behind.

use diorama_tests::{diorama, leftovers_of, need_root, need_tool, require, run_json, topology, undilatable_topology};

#[test]
fn malformed_yaml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "bad", "name: bad\nnodes:\n  - name: a\n    run: {command: [x, y}\n");
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(&format!("{}:4:", t.display())), "{}", r.stderr);
    assert!(r.stderr.contains("malformed YAML"), "{}", r.stderr);
}

#[test]
fn unknown_field_and_bad_unit_are_both_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        "name: bad\nnodes:\n  - name: a\n    colour: red\n    run: {command: x}\n  - name: b\n    memory: 3 bushels\n    run: {command: x}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3));
    assert!(r.stderr.contains(":4:5: nodes[0].colour: unknown field `colour`"), "{}", r.stderr);
    assert!(r.stderr.contains(":7:") && r.stderr.contains("nodes[1].memory"), "{}", r.stderr);
}

#[test]
fn impossible_plan_says_which_tdf_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "big",
        "name: big\ntdf: 1\nnodes:\n  - name: n[0..64]\n    memory: 1MiB\n    run: {command: [\"true\"]}\n",
    );
    let r = diorama(&["plan", t.to_str().unwrap(), "--out", tmp.path().join("p.json").to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr.contains("TDF 1 does not fit") && r.stderr.contains("the smallest TDF that fits is"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_binary_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "nobin",
        "name: nobin\nnodes:\n  - name: a\n    run: {command: [\"no-such-binary-diorama\"]}\n",
    );
    let out = tmp.path().join("out");
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    // Exit 3, as every problem named at a field of a topology file (docs/cli.md).
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(":4:") && r.stderr.contains("nodes[0].run.command"), "{}", r.stderr);
    assert!(r.stderr.contains("\"no-such-binary-diorama\" of node a not found"), "{}", r.stderr);
    assert!(!out.exists(), "a refused run must leave nothing behind");
}

#[test]
fn a_private_directory_that_would_hide_the_results_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The tempdir is under /tmp: a node's private /tmp would cover its own results.
    let t = topology(
        tmp.path(),
        "hides",
        "name: hides\nnodes:\n  - name: a\n    filesystem:\n      private: [/var/tmp, /tmp]\n    run: {command: [\"true\"]}\n",
    );
    let out = tmp.path().join("out");
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(":5:") && r.stderr.contains("nodes[0].filesystem.private[1]"), "{}", r.stderr);
    assert!(r.stderr.contains("a private /tmp would hide the results directory"), "{}", r.stderr);
    assert!(!out.exists(), "a refused run must leave nothing behind");
}

#[test]
fn schema_is_json() {
    let r = diorama(&["schema"]);
    assert_eq!(r.code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["properties"]["nodes"].is_object(), "{v}");
}

#[test]
fn a_bad_type_and_a_dangling_reference_are_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        "name: bad\nnodes:\n  - name: db\n    cpus: lots\n    run: {command: x}\n  - name: web\n    depends_on: [cache]\n    run: {command: x}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("invalid topology (2 problems)"), "{}", r.stderr);
    let cpus = r.stderr.find(":4:").expect("the cpus problem");
    let cache = r.stderr.find("nodes[1].depends_on[0]").expect("the dangling reference");
    assert!(cpus < cache, "not sorted by position: {}", r.stderr);
}

#[test]
fn check_knows_suites_and_checks_their_scenarios_topologies() {
    let tmp = tempfile::tempdir().unwrap();
    topology(tmp.path(), "good", "name: good\nnodes:\n  - name: a\n    run: {command: x}\n");
    topology(tmp.path(), "bad", "name: bad\nnodes:\n  - name: a\n    memory: 3 bushels\n    run: {command: x}\n");
    let ok = topology(tmp.path(), "ok-suite", "name: s\nscenarios:\n  - {name: one, topology: good.yaml}\n");
    let r = diorama(&["check", ok.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("ok (suite s, 1 scenarios)"), "{}", r.stdout);
    let bad = topology(
        tmp.path(),
        "bad-suite",
        "name: s\nscenarios:\n  - {name: one, topology: good.yaml}\n  - {name: two, topology: bad.yaml}\n",
    );
    let r = diorama(&["check", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("bad.yaml:4:") && r.stderr.contains("nodes[0].memory"), "{}", r.stderr);
    assert!(r.stderr.contains("1 of 1 files are invalid"), "{}", r.stderr);
}

#[test]
fn the_repository_topologies_and_suites_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    for file in ["quickstart.yaml", "isaac.yaml", "nightly.yaml", "ci-suite.yaml"] {
        let r = diorama(&["check", root.join(file).to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{file}: {r:?}");
    }
}

/// Runs diorama with stdout or stderr (`which`: 1 or 2) a pipe whose reader is already
/// closed, the other captured.
fn into_closed_pipe(args: &[&str], which: i32) -> (Option<i32>, String) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let closed = std::process::Stdio::from(write);
    let mut cmd = std::process::Command::new(diorama_tests::artifact("diorama"));
    cmd.args(args).env("DIORAMA_LOG", "info").stdin(std::process::Stdio::null());
    let out = if which == 1 {
        cmd.stdout(closed).stderr(std::process::Stdio::piped()).output().expect("run diorama")
    } else {
        cmd.stderr(closed).stdout(std::process::Stdio::piped()).output().expect("run diorama")
    };
    let other = if which == 1 { out.stderr } else { out.stdout };
    (out.status.code(), String::from_utf8_lossy(&other).into_owned())
}

#[test]
fn every_subcommand_ends_quietly_into_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let good = topology(tmp.path(), "good", "name: good\nnodes:\n  - name: a\n    run: {command: [\"true\"]}\n");
    let bad = topology(tmp.path(), "bad", "name: bad\nnodes:\n  - name: a\n    memory: 0\n    run: {command: x}\n");
    let (g, b) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let plan = tmp.path().join("plan.json");
    let p = plan.to_str().unwrap();
    let not_a_run = tmp.path().to_str().unwrap();
    let suite = suite_of(tmp.path(), &good);
    let suite = suite.to_str().unwrap();
    // (arguments, status into a closed stdout, status into a closed stderr)
    let cases: Vec<(Vec<&str>, i32, i32)> = vec![
        (vec!["schema"], 141, 0),
        (vec!["test", suite, "--check"], 141, 0),
        (vec!["check", g], 141, 0),
        (vec!["check", "--plan", g], 141, 0),
        (vec!["check", b], 3, 3),
        (vec!["plan", g, "--out", p], 141, 0),
        (vec!["report", not_a_run], 3, 3),
        (vec!["compare", not_a_run, not_a_run], 3, 3),
        (vec!["exec", "--", "true"], 0, 0),
        (vec!["run", "--tdf", "0", g], 2, 2),
        (vec!["clean", "no-such-run-diorama"], 2, 2),
    ];
    for (args, stdout_code, stderr_code) in cases {
        for (which, want) in [(1, stdout_code), (2, stderr_code)] {
            let (code, other) = into_closed_pipe(&args, which);
            assert!(!other.contains("panicked"), "{args:?} into closed fd {which}: {other}");
            if which == 1 && want == 141 {
                assert!(!other.contains("error"), "{args:?} into closed stdout is not quiet: {other}");
            }
            assert_eq!(code, Some(want), "{args:?} into closed fd {which}: {other}");
        }
    }
}

/// A suite of one scenario, `topology`, with one assertion (its fidelity verdict).
fn suite_of(dir: &std::path::Path, topology: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("suite.yaml");
    let yaml = format!(
        "name: piped\nscenarios:\n  - name: piped-scenario\n    topology: {}\n    assert:\n      - fidelity: ok\n",
        topology.display()
    );
    std::fs::write(&path, yaml).expect("write the suite");
    path
}

#[test]
fn runs_suites_and_validations_end_quietly_into_a_closed_pipe() {
    require!("runs_suites_and_validations_end_quietly_into_a_closed_pipe", need_root());
    let tmp = tempfile::tempdir().unwrap();
    // Two nodes that run: a server that is stopped at the end and a main client that writes.
    let t = topology(
        tmp.path(),
        "piped",
        "name: piped\ntdf: 2\nduration: 3s\ndefaults: {cpus: 0.2, memory: 32MiB}\nnodes:\n  - name: srv\n    run: {command: [sleep, \"60\"]}\n  - name: cli\n    main: true\n    depends_on: [srv]\n    run: {command: \"for i in 1 2 3; do echo tick $i; sleep 0.3; done\"}\n",
    );
    let suite = suite_of(tmp.path(), &t);
    let t = t.to_str().unwrap();
    for (which, name) in [(1, "stdout"), (2, "stderr")] {
        // `run` writes nothing to stdout: into either closed pipe it runs to its own end.
        let out = tmp.path().join(format!("run-{name}"));
        let (code, other) = into_closed_pipe(&["run", t, "--out", out.to_str().unwrap()], which);
        assert!(!other.contains("panicked"), "run into closed {name}: {other}");
        assert_eq!(code, Some(0), "run into closed {name}: {other}");
        let run = run_json(&out);
        assert_eq!(run["status"], "succeeded", "{run}");
        let ends: Vec<_> = run["nodes"].as_array().unwrap().iter().map(|n| n["exit"].clone()).collect();
        assert!(ends.iter().all(|e| !e.is_null()), "every node was stopped: {ends:?}");
        let tail = std::fs::read_to_string(out.join("events.jsonl")).unwrap_or_default();
        assert!(tail.contains("\"run_end\""), "the run ended in order: {tail}");
        assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));

        // `test` and `validate` print their verdict to stdout at the end: 141 into a closed
        // stdout, after everything ran; into a closed stderr, their own status (0, or 6 when
        // the verdict they wrote is a failure).
        let (suite_out, validate_out) =
            (tmp.path().join(format!("test-{name}")), tmp.path().join(format!("validate-{name}")));
        let (s, v) = (suite_out.to_str().unwrap(), validate_out.to_str().unwrap());
        let cases = [
            (
                vec!["test", suite.to_str().unwrap(), "--out", s],
                suite_out.join("suite.json"),
                "passed",
                vec![suite_out.join("piped-scenario")],
            ),
            (
                vec!["validate", t, "--tdf", "2", "--duration", "1s", "--out", v],
                validate_out.join("validate.json"),
                "pass",
                ["baseline", "scaled", "naive"].map(|leg| validate_out.join(leg)).to_vec(),
            ),
        ];
        for (args, verdict, key, runs) in cases {
            let what = format!("{} into closed {name}", args[0]);
            let (code, other) = into_closed_pipe(&args, which);
            assert!(!other.contains("panicked"), "{what}: {other}");
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&verdict).unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{what}: {}: {e}\n{other}", verdict.display()));
            let own = if written[key] == true { 0 } else { 6 };
            assert_eq!(code, Some(if which == 1 { 141 } else { own }), "{what}: {other}");
            if which == 1 {
                assert!(!other.lines().any(|l| l.starts_with("error:")), "{what} is not quiet: {other}");
            }
            for run in runs {
                assert_eq!(run_json(&run)["status"], "succeeded", "{what}: {}", run.display());
                assert!(leftovers_of(&run).is_empty(), "{what}: {:?}", leftovers_of(&run));
            }
        }
    }
}

#[test]
fn check_plan_refuses_a_node_no_mechanism_dilates() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = undilatable_topology(tmp.path(), "refused", false);
    let r = diorama(&["check", refused.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "without --plan the programs are not looked at: {r:?}");
    let r = diorama(&["check", "--plan", refused.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    let at = format!("{}:7:11: nodes[0].run.command: node old cannot be dilated", refused.display());
    assert!(r.stderr.contains(&at) && r.stderr.contains("another architecture"), "{}", r.stderr);
    assert!(r.stderr.contains("allow_undilated"), "the refusal says how to allow it: {}", r.stderr);
    let allowed = undilatable_topology(tmp.path(), "allowed", true);
    let r = diorama(&["check", "--plan", allowed.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn tdf_values_follow_one_rule_in_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "t", "name: t\nnodes:\n  - name: a\n    run: {command: [\"true\"]}\n");
    let t = t.to_str().unwrap();
    for bad in ["0", "-1", "nan", "inf", "x"] {
        let flag = format!("--tdf={bad}");
        for args in [
            vec!["run", t, &flag],
            vec!["plan", t, &flag],
            vec!["validate", t, &flag],
            vec!["exec", &flag, "--", "true"],
        ] {
            let r = diorama(&args);
            assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
            assert!(r.stderr.contains("--tdf"), "{args:?}: {}", r.stderr);
        }
    }
}

#[test]
fn clean_of_an_unknown_run_is_an_error() {
    if let Err(reason) = diorama_tests::need_root() {
        return diorama_tests::skip("clean_of_an_unknown_run_is_an_error", &reason);
    }
    let r = diorama(&["clean", "no-such-run-diorama-test"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("no run \"no-such-run-diorama-test\""), "{}", r.stderr);
    let r = diorama(&["clean", "--check", "no-such-run-diorama-test"]);
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[test]
fn nonsense_values_are_refused_at_their_field() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        "name: bad\nduration: 0s\nswitches: [sw]\nnodes:\n  - name: a\n    memory: 0\n    pids: 0\n    run: {command: x}\n  - name: b\n    run: {command: x}\n    link: {to: sw, delay: -5ms}\n  - name: c\n    run: {command: x}\n    link: {to: sw, loss: 150%}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    for needle in [
        ":2:11: duration:",
        ":6:13: nodes[0].memory:",
        ":7:11: nodes[0].pids:",
        ":11:20: nodes[1].link.delay:",
        ":14:20: nodes[2].link.loss:",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}

#[test]
fn a_fault_after_the_duration_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "late",
        "name: late\nduration: 5s\nnodes:\n  - name: a\n    run: {command: [sleep, \"60\"]}\nfaults:\n  - {at: 2s, kill: a}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let out = tmp.path().join("out");
    let r = diorama(&["run", t.to_str().unwrap(), "--duration", "1s", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("faults[0] at 2s would never fire"), "{}", r.stderr);
    assert!(!out.exists(), "a refused run must leave nothing behind");
    let late = topology(tmp.path(), "later", &std::fs::read_to_string(&t).unwrap().replace("at: 2s", "at: 5s"));
    let r = diorama(&["check", late.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(":7:10: faults[0].at: at 5s is not before the run's duration 5s"), "{}", r.stderr);
}

#[test]
fn unreadable_and_binary_files_are_named_without_a_position() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = tmp.path().join("binary.yaml");
    std::fs::write(&binary, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1]).unwrap();
    let missing = tmp.path().join("missing.yaml");
    for (file, needle) in [(&binary, "not a text file"), (&missing, "cannot read the file: no such file")] {
        for cmd in ["check", "plan"] {
            let r = diorama(&[cmd, file.to_str().unwrap()]);
            assert_eq!(r.code, Some(3), "{cmd} {}: {r:?}", file.display());
            assert!(r.stderr.contains(&format!("{}: {needle}", file.display())), "{}", r.stderr);
            assert!(!r.stderr.contains(":0:0"), "{}", r.stderr);
        }
    }
}

#[test]
fn out_naming_a_file_is_a_usage_error() {
    if let Err(reason) = diorama_tests::need_root() {
        return diorama_tests::skip("out_naming_a_file_is_a_usage_error", &reason);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "t", "name: t\nnodes:\n  - name: a\n    run: {command: [\"true\"]}\n");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "keep me").unwrap();
    let r = diorama(&["run", t.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("is a file, not a directory"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn logs_carry_no_colour_off_a_terminal() {
    // At debug level `exec` logs whether the shim was mapped; stderr here is a pipe.
    let r = diorama(&["--log", "debug", "exec", "--", "sleep", "0.1"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("shim"), "no log line to look at: {}", r.stderr);
    assert!(!r.stderr.contains('\u{1b}'), "ANSI escape in {:?}", r.stderr);
}

/// Two memcached-like servers and a client on one switch (node i has address 10.77.0.(i+1)),
/// then `balancers` (from line 10).
const BALANCED: &str = "name: lb\nswitches: [sw]\nnodes:\n  - name: mc[0..2]\n    run: {command: [sleep, \"60\"]}\n    link: {to: sw}\n  - name: client\n    run: {command: [sleep, \"60\"]}\n    link: {to: sw}\nbalancers:\n";

#[test]
fn bad_balancers_are_refused_at_their_field() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        &format!(
            "{BALANCED}  - name: l4\n    vip: 10.77.0.3\n    port: 11211\n    backends: [mc0, web]\n    policy: fastest\n  - {{name: l4b, vip: 10.77.255.1, port: 80, backends: [], policy: maglev}}\n"
        ),
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    for needle in [
        ":12:10: balancers[0].vip:",
        "node client's address",
        ":14:",
        "balancers[0].backends[1]:",
        "\"web\" is not a node",
        ":15:13: balancers[0].policy:",
        "unknown policy",
        ":16:",
        "balancers[1].backends:",
        "at least one backend",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    // Every problem is reported at once, each with its file.
    assert_eq!(r.stderr.matches(&format!("{}:", t.display())).count(), 4, "{}", r.stderr);
}

#[test]
fn a_balancer_on_the_kernel_network_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "kernel",
        &format!("{BALANCED}  - {{name: l4, vip: 10.77.255.1, port: 11211, backends: mc, policy: maglev}}\n"),
    );
    assert_eq!(diorama(&["check", t.to_str().unwrap()]).code, Some(0), "a good topology");
    let out = tmp.path().join("out");
    let r = diorama(&["run", t.to_str().unwrap(), "--net", "kernel", "--out", out.to_str().unwrap()]);
    // Exit 3, as every problem named at a field of a topology file (docs/cli.md).
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr.contains(&format!("{}:11:5: balancers[0]: balancer l4: the kernel network backend", t.display())),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "a refused run must leave nothing behind");
}

/// Runs `diorama ARGS…` on a pseudo-terminal (`script`), with `NO_COLOR` set to `no_color`
/// or unset; returns what the terminal showed.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> String {
    let command = format!("{} {args}", diorama_tests::artifact("diorama").display());
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"]).env("DIORAMA_LOG", "info").stdin(std::process::Stdio::null());
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let out = cmd.output().expect("run script");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_turns_the_colour_off_at_a_terminal() {
    require!("no_color_turns_the_colour_off_at_a_terminal", need_tool("script"));
    // At debug level `exec` logs whether the shim was mapped; stderr is the terminal here.
    let args = "--log debug exec -- sleep 0.1";
    let coloured = on_a_terminal(args, None);
    assert!(coloured.contains("shim"), "no log line to look at: {coloured:?}");
    assert!(coloured.contains('\u{1b}'), "a terminal gets colour (else this test proves nothing): {coloured:?}");
    let plain = on_a_terminal(args, Some("1"));
    assert!(plain.contains("shim"), "no log line to look at: {plain:?}");
    assert!(!plain.contains('\u{1b}'), "ANSI escape with NO_COLOR=1: {plain:?}");
    // no-color.org: an empty NO_COLOR is as if unset.
    assert!(on_a_terminal(args, Some("")).contains('\u{1b}'), "an empty NO_COLOR turned the colour off");
}
