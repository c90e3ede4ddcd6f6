//! Turning a node's `run: {workload: NAME, args: {…}}` into a command line.
//!
//! Workloads are separate programs (`diorama-<name>`), run like any user program. The
//! harness finds them beside its own executable (a cargo build puts every binary of the
//! workspace in one directory), else on `PATH`, and passes `args` as `--key value` flags.

use std::path::{Path, PathBuf};

/// Errors of resolving a workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("find workload {name}: no {program} beside {beside} or on PATH (build the workspace: cargo build --release --workspace)")]
    NotFound { name: String, program: String, beside: PathBuf },
    #[error("convert argument {key} of workload {name}: {reason}")]
    Arg { name: String, key: String, reason: String },
}

/// The executable of workload `name`: `diorama-<name>` beside `harness_exe`, else on `PATH`.
pub fn locate(name: &str, harness_exe: &Path) -> Result<PathBuf, WorkloadError> {
    let program = format!("diorama-{name}");
    let beside = harness_exe.parent().unwrap_or(Path::new("."));
    let candidate = beside.join(&program);
    if candidate.is_file() {
        return Ok(candidate);
    }
    testbed::container::find_program(std::ffi::OsStr::new(&program), std::env::var_os("PATH").as_deref())
        .ok_or_else(|| WorkloadError::NotFound { name: name.to_owned(), program, beside: beside.to_owned() })
}

/// Converts YAML `args` to flags: `key: v` → `--key v`; `flag: true` → `--flag`;
/// `false`/null → nothing; a list → the flag repeated; a mapping → JSON text.
pub fn args_to_flags(name: &str, args: &serde_yaml_ng::Mapping) -> Result<Vec<String>, WorkloadError> {
    use serde_yaml_ng::Value;
    let mut flags = Vec::new();
    for (key, value) in args {
        let key = match key {
            Value::String(s) => s.replace('_', "-"),
            other => {
                return Err(WorkloadError::Arg {
                    name: name.to_owned(),
                    key: format!("{other:?}"),
                    reason: "argument names must be strings".into(),
                })
            }
        };
        let mut push = |v: &Value| -> Result<(), WorkloadError> {
            match v {
                Value::Bool(true) => flags.push(format!("--{key}")),
                Value::Bool(false) | Value::Null => {}
                Value::String(s) => flags.extend([format!("--{key}"), s.clone()]),
                Value::Number(n) => flags.extend([format!("--{key}"), n.to_string()]),
                Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
                    let json = serde_json::to_string(v).map_err(|e| WorkloadError::Arg {
                        name: name.to_owned(),
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                    flags.extend([format!("--{key}"), json]);
                }
            }
            Ok(())
        };
        match value {
            Value::Sequence(items) => items.iter().try_for_each(&mut push)?,
            other => push(other)?,
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_become_flags() {
        let args: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(
            "mode: closed\nthink_time: 100ms\nclients: 32\nverbose: true\nquiet: false\nbackend: [a:1, b:2]\n",
        )
        .unwrap();
        assert_eq!(
            args_to_flags("loadgen", &args).unwrap(),
            [
                "--mode",
                "closed",
                "--think-time",
                "100ms",
                "--clients",
                "32",
                "--verbose",
                "--backend",
                "a:1",
                "--backend",
                "b:2"
            ]
        );
    }

    #[test]
    fn missing_workload_names_where_it_looked() {
        let err = locate("no-such-workload", Path::new("/nonexistent/diorama")).unwrap_err();
        assert!(err.to_string().contains("diorama-no-such-workload"), "{err}");
    }
}
