//! Shared support for the system tests: locating built artifacts and skipping with a reason.
//!
//! System tests need the workspace's binaries (`diorama`, `libdilation.so`, the workload
//! programs). `scripts/test` builds them first; a test that cannot find one fails with the
//! path it looked at rather than silently passing.
//!
//! A test whose precondition is missing (not root, a kernel feature absent, a tool not
//! installed) calls [`skip`], which prints `SKIPPED: <test>: <reason>` so that the log says
//! plainly what did not run. A skip is never counted as a pass in the docs.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub mod pcap;

/// The target directory of the profile these tests were built with (`target/release` or
/// `target/debug`), derived from the test executable's own path (`<dir>/deps/<test>-<hash>`).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("DIORAMA_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe has a parent");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// Path of a built workspace artifact such as `diorama` or `libdilation.so`.
/// Panics with a clear message when it is missing: run `cargo build --workspace` first.
pub fn artifact(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test does: cargo build --release --workspace)",
        path.display()
    );
    path
}

/// The repository root (where the workspace Cargo.toml lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Prints a skip notice in a form `scripts/test` counts and reports.
pub fn skip(test: &str, reason: &str) {
    println!("SKIPPED: {test}: {reason}");
    eprintln!("SKIPPED: {test}: {reason}");
}

/// `Err(reason)` unless the process runs as root.
pub fn need_root() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err("needs root".into())
    }
}

/// `Err(reason)` unless `tool` is found on PATH.
pub fn need_tool(tool: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{tool} is not installed (scripts/setup installs it)"))
}

/// Evaluates preconditions; on the first failure prints the skip notice and returns from
/// the calling test.
#[macro_export]
macro_rules! require {
    ($test:expr, $($check:expr),+ $(,)?) => {
        $(
            if let Err(reason) = $check {
                $crate::skip($test, &reason);
                return;
            }
        )+
    };
}

/// A `diorama` invocation's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `diorama ARGS…` to completion with a private state root, returning its outcome.
pub fn diorama(args: &[&str]) -> Outcome {
    let out = std::process::Command::new(artifact("diorama"))
        .args(args)
        .env("DIORAMA_LOG", "info")
        .output()
        .expect("run diorama");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a topology file into `dir` and returns its path.
pub fn topology(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write topology");
    path
}

/// Everything of diorama's that is still on this machine: cgroups under any `diorama`
/// directory, node processes (`diorama:<node>`), and run state directories.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for ctrl in controllers.flatten() {
            let dir = ctrl.path().join("diorama");
            if let Ok(runs) = std::fs::read_dir(&dir) {
                // Only directories are runs; the rest are the controller's own files. A
                // parent that holds none is left behind too (no run is live here).
                let runs: Vec<_> = runs.flatten().filter(|r| r.path().is_dir()).collect();
                if runs.is_empty() {
                    found.push(format!("cgroup {} (empty parent)", dir.display()));
                }
                for run in runs {
                    found.push(format!("cgroup {}", run.path().display()));
                }
            }
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.starts_with("diorama:") {
                    found.push(format!("process {} {}", p.file_name().to_string_lossy(), cmd.replace('\0', " ")));
                }
            }
        }
    }
    if let Ok(runs) = std::fs::read_dir("/run/diorama") {
        for run in runs.flatten() {
            found.push(format!("state {}", run.path().display()));
        }
    }
    found
}

/// What is left of one run (its run id is its results directory's name, perhaps with a
/// `-N` suffix): leftovers filtered to that run, for tests that must not blame other runs.
pub fn leftovers_of(results: &Path) -> Vec<String> {
    let id = results.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    leftovers().into_iter().filter(|l| l.contains(&format!("/{id}"))).collect()
}

/// The network probe (`tests/netem/netprobe.py`): echo, RTT, TCP sink/source, UDP counts.
pub fn netprobe() -> String {
    repo_root().join("tests/netem/netprobe.py").display().to_string()
}

/// Writes `dir/i386-prog`, the ELF header of an i386 executable: a program that no dilation
/// mechanism reaches (`run` refuses its node unless the topology sets `allow_undilated`).
pub fn foreign_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut b = vec![0u8; 52 + 32];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 1; // 32-bit
    b[5] = 1;
    b[16] = 2; // ET_EXEC
    b[18] = 3; // EM_386
    let p = dir.join("i386-prog");
    std::fs::write(&p, b).expect("write the i386 program");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod the i386 program");
    p
}

/// Writes `dir/NAME.yaml`: a topology whose one node, `old`, runs [`foreign_binary`], which
/// no dilation mechanism reaches; `allow` sets `allow_undilated`. Its `nodes[0].run.command`
/// is at line 7 (8 with `allow`), column 11.
pub fn undilatable_topology(dir: &Path, name: &str, allow: bool) -> PathBuf {
    let prog = foreign_binary(dir);
    let allow = if allow { "allow_undilated: true\n" } else { "" };
    let yaml = format!(
        "name: undilatable\ntdf: 4\nduration: 1s\n{allow}nodes:\n  - name: old\n    cpus: 0.2\n    run: {{command: \"exec {} --serve\"}}\n",
        prog.display()
    );
    topology(dir, name, &yaml)
}

/// Reads a results directory's `run.json`.
pub fn run_json(results: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(results.join("run.json")).expect("run.json exists");
    serde_json::from_str(&text).expect("run.json parses")
}

/// Parses the `"ts":"2026-11-25T16:32:26.541Z"` of an etcd (zap) log line into Unix ns.
pub fn zap_ts_ns(line: &str) -> Option<i64> {
    let ts = line.split("\"ts\":\"").nth(1)?.split('"').next()?;
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    // Days from the civil date (proleptic Gregorian).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_ns: i64 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(((days * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2]) * 1_000_000_000) + frac_ns)
}

/// Builds the Go program `source` (relative to the repository root) as `dir/name` with
/// Debian's Go toolchain, without cgo or modules; `Err` says why it could not (no `go`, a
/// failed build) for the caller to skip with.
pub fn build_go(dir: &Path, source: &str, name: &str) -> Result<PathBuf, String> {
    need_tool("go")?;
    let exe = dir.join(name);
    let out = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(repo_root().join(source))
        .env("HOME", dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .output()
        .map_err(|e| format!("go build: {e}"))?;
    if !out.status.success() {
        return Err(format!("go build failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(exe)
}

/// Builds the C program `source` (relative to the repository root) statically as
/// `dir/name` with gcc; `Err` says why it could not (no gcc, no libc.a) for the caller to
/// skip with.
pub fn build_static_c(dir: &Path, source: &str, name: &str) -> Result<PathBuf, String> {
    need_tool("gcc")?;
    let exe = dir.join(name);
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&exe)
        .arg(repo_root().join(source))
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!("gcc -static failed (libc.a missing?): {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(exe)
}
