//! The command line of `diorama-probe`: one binary, one role per subcommand.
//!
//! A topology's `run: {workload: probe, args: {role: server, …}}` becomes
//! `diorama-probe --role server …` (the harness passes flags only), so `--role ROLE`
//! anywhere on the command line is accepted as the subcommand `ROLE`.

use std::ffi::OsString;

use super::agent::AgentArgs;
use super::cli::CliArgs;
use super::serve::ServerArgs;

/// `diorama-probe`: measurement probes (server, agents, CLI).
#[derive(Debug, clap::Parser)]
#[command(name = "diorama-probe", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, clap::Subcommand)]
pub enum Role {
    /// The REST API, the scheduler and the results store.
    Server(ServerArgs),
    /// A measurement agent of one location.
    Agent(AgentArgs),
    /// A client of the API.
    Cli(CliArgs),
}

/// Moves `--role ROLE` (or `--role=ROLE`) to the subcommand position.
pub fn role_flag_as_subcommand(argv: Vec<OsString>) -> Vec<OsString> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut role = None;
    let mut it = argv.into_iter();
    let program = it.next();
    while let Some(arg) = it.next() {
        if role.is_none() && arg == "--role" {
            role = it.next();
        } else if let Some(r) = arg.to_str().and_then(|s| s.strip_prefix("--role=")).filter(|_| role.is_none()) {
            role = Some(OsString::from(r));
        } else {
            rest.push(arg);
        }
    }
    program.into_iter().chain(role).chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn role_flag_becomes_the_subcommand() {
        assert_eq!(
            role_flag_as_subcommand(os(&["p", "--listen", "0.0.0.0:80", "--role", "server"])),
            os(&["p", "server", "--listen", "0.0.0.0:80"])
        );
        assert_eq!(
            role_flag_as_subcommand(os(&["p", "--role=agent", "--server", "x"])),
            os(&["p", "agent", "--server", "x"])
        );
        assert_eq!(role_flag_as_subcommand(os(&["p", "cli", "agents"])), os(&["p", "cli", "agents"]));
    }

    #[test]
    fn every_role_parses() {
        let a = Args::try_parse_from(role_flag_as_subcommand(os(&[
            "p",
            "--role",
            "agent",
            "--server",
            "http://s:8080",
            "--location",
            "eu",
            "--kind",
            "on-demand",
            "--startup-delay",
            "lognormal:median=20ms,sigma=0.3",
        ])))
        .unwrap();
        assert!(matches!(a.role, Role::Agent(ref x) if x.location.as_deref() == Some("eu")));
        let s = Args::try_parse_from(os(&["p", "server", "--location", "eu,us", "--location", "ap"])).unwrap();
        assert!(matches!(s.role, Role::Server(ref x) if x.locations == ["eu", "us", "ap"]));
        let c = Args::try_parse_from(os(&["p", "cli", "--json", "task", "list", "--state", "RUNNING"])).unwrap();
        assert!(matches!(c.role, Role::Cli(ref x) if x.json));
        assert!(Args::try_parse_from(os(&[
            "p",
            "agent",
            "--server",
            "s",
            "--location",
            "eu",
            "--startup-delay",
            "soon"
        ]))
        .is_err());
    }
}
