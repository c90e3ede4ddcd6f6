//! The configuration handed from the harness to a node's `__init` process.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything `__init` needs to set a node up. Written as JSON into the run's state
/// directory; its path is `__init`'s only argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InitConfig {
    /// Node name, used for the process name and in messages.
    pub node: String,
    /// Hostname inside the node's UTS namespace.
    pub hostname: String,
    /// File bind-mounted over `/etc/hosts` inside the node's mount namespace.
    pub hosts_file: Option<PathBuf>,
    /// The command; `argv[0]` is resolved through `PATH` of `env`.
    pub argv: Vec<String>,
    /// The complete environment of the command (the harness's is not inherited).
    pub env: Vec<(String, String)>,
    /// Working directory of the command.
    pub workdir: PathBuf,
    /// Run the command as this user (name or numeric uid), if set.
    pub user: Option<String>,
    /// `cgroup.procs` files the command joins before it executes its first instruction
    /// (diorama's own set-up runs outside them, so a tiny quota does not slow start-up).
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// The node's filesystem view (the harness gives every node one; `None` applies none).
    #[serde(default)]
    pub view: Option<super::View>,
}

/// Shell convention for a process's fate: the exit code, or 128 + the signal number.
pub fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_json() {
        let cfg = InitConfig {
            node: "web0".into(),
            hostname: "web0".into(),
            hosts_file: Some("/run/diorama/x/hosts".into()),
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("A".into(), "1".into())],
            workdir: "/tmp".into(),
            user: None,
            cgroup_procs: vec!["/sys/fs/cgroup/cpu/diorama/r/web0/cgroup.procs".into()],
            view: Some(super::super::View {
                private: vec!["/tmp".into()],
                read_only: vec!["/results".into()],
                writable: vec!["/results/nodes/web0".into()],
            }),
        };
        let text = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<InitConfig>(&text).unwrap(), cfg);
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(9)), 137);
    }
}
