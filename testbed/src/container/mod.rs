//! Node containers: each node runs in its own network, PID, UTS, mount and IPC namespaces,
//! inside its cgroups, with its hostname and an `/etc/hosts` that names every node.
//!
//! # Design
//! The process tree of a node is
//!
//! ```text
//! diorama (harness) ─┬─ diorama:<node> __init   (outer: new mnt/uts/ipc ns, node netns, cgroups)
//!                    │     └─ diorama:<node> __init (PID 1 of the node's PID namespace)
//!                    │           └─ the node's command (PID 2, own process group)
//! ```
//!
//! The harness forks and, before exec, joins the node's cgroups (writing `0` into
//! pre-opened `cgroup.procs` files, so the process is accounted from its first instruction),
//! enters the node's network namespace, unshares the others and asks for `SIGKILL` when the
//! harness dies. `unshare(CLONE_NEWPID)` only affects children, so the re-executed `__init`
//! forks once more: that child is PID 1, mounts a fresh `/proc`, starts the command and
//! reaps orphans. Signals to the outer process are relayed down; the node's exit status is
//! relayed up. When PID 1 exits the kernel kills everything left in the namespace.
//!
//! In its mount namespace a node sees `/sys` and the host-wide parts of `/proc` read-only,
//! and its command runs without the capabilities that would undo that (`confine`), so it
//! cannot lift its own limits. Its filesystem view ([`View`]) makes the run's results and
//! the harness's state read-only except its own directory and control file, and adds the
//! topology's private directories and read-only host paths. See `docs/security.md`.
//!
//! Nothing here is bind-mounted or persisted outside the node's own namespaces, so a
//! `kill -9` of the harness tears the node down through `PR_SET_PDEATHSIG`, leaving only the
//! (empty) cgroups for `diorama clean`.
//!
//! # Limitations
//! The node shares the host's filesystem (no pivot_root) and runs as root: confinement
//! keeps a node inside its limits and out of other nodes' results and the harness's state;
//! it is not a boundary against a hostile program (`docs/security.md`).

mod confine;
mod enter;
mod init;
mod launch;
mod program;
mod spec;
pub(crate) mod sys;

pub use confine::View;
pub use enter::enter_command;
pub use init::init_main;
pub use launch::{spawn, ContainerError, Launch, NodeProcess};
pub use program::{find_program, DEFAULT_PATH};
pub use spec::{exit_code_of, InitConfig};
