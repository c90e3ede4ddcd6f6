//! `diorama __init`: the process that turns namespaces into a node.
//!
//! It runs in the node's new mount, UTS and IPC namespaces (and network namespace), inside
//! its cgroups, with a new PID namespace pending for its children. It is single-threaded.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::confine;
use super::spec::InitConfig;
use super::sys;

/// Signals relayed from the harness down to the node's command.
const RELAYED: [Signal; 6] =
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Exit code when the node could not be set up (before its command ran).
const SETUP_FAILED: u8 = 125;
/// Exit code when the command could not be executed (shell convention).
const EXEC_FAILED: u8 = 127;

/// Entry point of `diorama __init CONFIG`. Returns the node's exit code: the command's own,
/// or 128 + signal. Errors go to stderr, which is the node's `stderr` file.
pub fn init_main(config_path: &Path) -> u8 {
    match setup(config_path) {
        Ok(node) => supervise(node),
        Err(message) => {
            eprintln!("diorama: node setup failed: {message}");
            SETUP_FAILED
        }
    }
}

/// A node set up: its configuration and the `cgroup.procs` files its command joins,
/// opened before `/sys` became read-only in the node's mount namespace.
struct Node {
    cfg: InitConfig,
    cgroup_procs: Vec<OwnedFd>,
}

fn setup(config_path: &Path) -> Result<Node, String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("read {}: {e}", config_path.display()))?;
    let cfg: InitConfig = serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", config_path.display()))?;
    nix::unistd::sethostname(&cfg.hostname).map_err(|e| format!("set hostname: {e}"))?;
    sys::loopback_up().map_err(|e| format!("bring up loopback: {e}"))?;
    // Mounts made from here on stay inside this node.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make mounts private: {e}"))?;
    if let Some(hosts) = &cfg.hosts_file {
        mount(Some(hosts.as_path()), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind {} on /etc/hosts: {e}", hosts.display()))?;
        // Every node sees this one file of the run's state: a node must not rename others.
        confine::read_only_tree(Path::new("/etc/hosts"))?;
    }
    let mut cgroup_procs = Vec::with_capacity(cfg.cgroup_procs.len());
    for path in &cfg.cgroup_procs {
        let file =
            std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        cgroup_procs.push(OwnedFd::from(file));
    }
    confine::read_only_sys()?;
    if let Some(view) = &cfg.view {
        confine::apply_view(view)?;
    }
    Ok(Node { cfg, cgroup_procs })
}

fn relayed_mask() -> SigSet {
    let mut mask = SigSet::empty();
    for sig in RELAYED {
        mask.add(sig);
    }
    mask.add(Signal::SIGCHLD);
    mask
}

/// Forks PID 1 of the node and relays signals to it until it exits.
fn supervise(node: Node) -> u8 {
    let mask = relayed_mask();
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None) {
        eprintln!("diorama: node setup failed: block signals: {e}");
        return SETUP_FAILED;
    }
    // PID 1 asks for SIGKILL on this process's death, but this process may die between the
    // fork and that request (a `kill -9` of the harness at that moment). The pipe tells PID 1:
    // its write end closes only when this process is gone. (`getppid` cannot: it reads 0 in
    // a new PID namespace.)
    let (alive_r, alive_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("diorama: node setup failed: pipe: {e}");
            return SETUP_FAILED;
        }
    };
    let pid1 = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(alive_w);
            std::process::exit(i32::from(pid1_main(&node.cfg, node.cgroup_procs, alive_r)))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            // Only the command joins the cgroups; this process needs no handle on them.
            drop(node.cgroup_procs);
            // Held open for this process's lifetime.
            std::mem::forget(alive_w);
            child
        }
        Err(e) => {
            eprintln!("diorama: node setup failed: fork: {e}");
            return SETUP_FAILED;
        }
    };
    relay(&mask, pid1, pid1)
}

/// Waits for signals: reaps children on SIGCHLD and returns `main`'s exit code when it
/// exits; relays every other signal to `target`.
fn relay(mask: &SigSet, main: Pid, target: Pid) -> u8 {
    loop {
        let Ok(sig) = mask.wait() else { continue };
        if sig == Signal::SIGCHLD {
            if let Some(code) = reap(main) {
                return code;
            }
        } else {
            let _ = kill(target, sig);
        }
    }
}

/// Reaps every exited child; returns the exit code of `main` if it was among them.
fn reap(main: Pid) -> Option<u8> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => result = Some(code as u8),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => {
                result = Some(128u8.wrapping_add(sig as u8));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

/// Whether the other end of a pipe is closed (its only writer exited).
fn parent_gone(read_end: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN))
}

/// PID 1 of the node: mounts `/proc`, runs the command, reaps orphans, relays signals to
/// the command's process group, and exits with the command's status.
fn pid1_main(cfg: &InitConfig, procs: Vec<OwnedFd>, parent_alive: OwnedFd) -> u8 {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if parent_gone(&parent_alive) {
        // The node's outer process (and so the harness) died before the request above.
        return SETUP_FAILED;
    }
    drop(parent_alive);
    if let Ok(name) = CString::new(format!("diorama:{}", cfg.node).into_bytes()) {
        // The kernel truncates to 15 bytes; the prefix still tells whose process it is.
        let _ = nix::sys::prctl::set_name(&name);
    }
    if let Err(e) = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        eprintln!("diorama: node setup failed: mount /proc: {e}");
        return SETUP_FAILED;
    }
    if let Err(message) = confine::read_only_proc() {
        eprintln!("diorama: node setup failed: {message}");
        return SETUP_FAILED;
    }
    if let Err(e) = sys::drop_capabilities(&confine::KEPT_CAPABILITIES) {
        eprintln!("diorama: node setup failed: drop capabilities: {e}");
        return SETUP_FAILED;
    }
    let Some((program, args)) = cfg.argv.split_first() else {
        eprintln!("diorama: node setup failed: empty command");
        return SETUP_FAILED;
    };
    let mut cmd = Command::new(resolve(program, &cfg.env));
    cmd.arg0(program)
        .args(args)
        .env_clear()
        .envs(cfg.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cfg.workdir)
        .process_group(0);
    if let Some(user) = &cfg.user {
        match lookup_user(user) {
            Ok((uid, gid)) => {
                cmd.uid(uid).gid(gid);
            }
            Err(message) => {
                eprintln!("diorama: node setup failed: {message}");
                return SETUP_FAILED;
            }
        }
    }
    sys::install_command_hook(&mut cmd, procs.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect());
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("diorama: cannot execute {program:?}: {e}");
            return EXEC_FAILED;
        }
    };
    drop(procs);
    let main = Pid::from_raw(child.id() as i32);
    // `child` is reaped through waitpid below, never through `Child::wait`.
    std::mem::forget(child);
    // Signals go to the command's whole process group: shells and their children stop together.
    relay(&relayed_mask(), main, Pid::from_raw(-main.as_raw()))
}

/// Resolves `program` through the command's own `PATH` (not the harness's).
fn resolve(program: &str, env: &[(String, String)]) -> std::path::PathBuf {
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| std::ffi::OsStr::new(v.as_str()));
    // Not found: exec reports the error with the name as given.
    super::find_program(std::ffi::OsStr::new(program), path).unwrap_or_else(|| program.into())
}

fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok((uid, uid));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("unknown user {user:?}")),
        Err(e) => Err(format!("look up user {user:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_uses_the_commands_path() {
        let env = vec![("PATH".to_owned(), "/nonexistent:/bin:/usr/bin".to_owned())];
        let found = resolve("sh", &env);
        assert!(found.is_absolute() && found.ends_with("sh"), "{found:?}");
        assert_eq!(resolve("./x", &env), std::path::PathBuf::from("./x"), "unresolved names stay as given");
    }

    #[test]
    fn numeric_and_named_users_resolve() {
        assert_eq!(lookup_user("0").unwrap(), (0, 0));
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(lookup_user("no-such-user-diorama").is_err());
    }
}
