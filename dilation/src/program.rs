//! What kind of program a node runs, and which dilation mechanism can reach it.
//!
//! The LD_PRELOAD shim only sees calls that go through the dynamic linker's symbol
//! resolution. Two kinds of program bypass it:
//! - **Go programs**, static or dynamic: the Go runtime reads the clock through the vDSO and
//!   waits through raw `futex`/`epoll_pwait`/`nanosleep` syscalls, never through libc;
//! - **static binaries** (no `PT_INTERP`): the dynamic linker never runs, so nothing is
//!   preloaded.
//!
//! Those get the syscall trap (`dilation-trap`: seccomp + ptrace, independent of libc);
//! every other program gets the shim, which costs far less per clock read. See
//! `docs/decisions/020-dilating-programs-that-bypass-libc.md`.
//!
//! # Detection
//! - static: the ELF has no `PT_INTERP` program header;
//! - Go: a `.go.buildinfo`, `.gopclntab` or `.note.go.buildid` section, or, in an image
//!   without section headers, the build-info magic `\xff Go buildinf:` (every Go ≥ 1.13
//!   binary has it, stripped or not); only headers are read ([`crate::elf`]);
//! - a script (`#!`) is classified by its interpreter (one level; `env` is followed to the
//!   program it names through `PATH`).
//!
//! # Limitations
//! Only the program the node starts is classified here. A Go or static program that a
//! process under the shim executes later is handed to the trap by the shim's exec hooks
//! (`dilation/shim/src/exec.rs`, same marks: `dilation_abi::exe`); what they miss runs
//! undilated and the fidelity monitor's coverage check ([`crate::coverage`]) flags it.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// How a program is built, as far as dilation is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// Dynamically linked, not Go: the shim reaches it.
    Dynamic,
    /// A Go program linked against libc (cgo): the runtime still bypasses libc for time.
    DynamicGo,
    /// A statically linked Go program.
    StaticGo,
    /// Statically linked, not Go (`gcc -static`, musl tools).
    Static,
    /// Built for another architecture or word size than this host's (an i386 binary on
    /// x86_64): the 64-bit shim cannot be loaded into it and the trap's filter only
    /// converts native system calls. No mechanism dilates it.
    Foreign,
}

/// The mechanism that dilates a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `LD_PRELOAD=libdilation.so`.
    Preload,
    /// The seccomp + ptrace syscall trap (`dilation-trap`).
    Trap,
}

impl ProgramKind {
    /// The rule: the shim for dynamic non-Go programs, the trap for Go and static ones
    /// (x86_64 only), `None` when no mechanism can dilate the program.
    pub fn mechanism(self) -> Option<Mechanism> {
        match self {
            ProgramKind::Dynamic => Some(Mechanism::Preload),
            ProgramKind::DynamicGo | ProgramKind::StaticGo | ProgramKind::Static => {
                cfg!(target_arch = "x86_64").then_some(Mechanism::Trap)
            }
            ProgramKind::Foreign => None,
        }
    }
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramKind::Dynamic => "dynamically linked",
            ProgramKind::DynamicGo => "Go program (dynamically linked; the Go runtime bypasses libc for time)",
            ProgramKind::StaticGo => "Go program (statically linked)",
            ProgramKind::Static => "statically linked",
            ProgramKind::Foreign => "built for another architecture than this host's",
        })
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Preload => "LD_PRELOAD shim",
            Mechanism::Trap => "syscall trap (seccomp + ptrace)",
        })
    }
}

/// Errors of program classification.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither an ELF executable nor a #! script")]
    NotExecutable { path: PathBuf },
    #[error("{path}: interpreter {interpreter} not found")]
    NoInterpreter { path: PathBuf, interpreter: String },
}

/// Finds `program` the way `execvp` would (a name without `/` is looked up in `path`).
pub fn resolve(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(program))
        .find(|p| p.is_file())
}

/// The programs a shell script (`sh -c SCRIPT`) starts: the first word of every simple
/// command (after `;`, `&`, `|`, `&&`, `||`, a newline, `(` or `{`), past variable
/// assignments and the prefixes `exec`, `env`, `nohup`, `nice`, `time`, `command`.
/// A heuristic, not a shell parser: words that are built-ins or are not found are
/// filtered out by the caller when it resolves them.
pub fn shell_programs(script: &str) -> Vec<String> {
    const PREFIXES: [&str; 7] = ["exec", "env", "nohup", "nice", "time", "command", "!"];
    let mut out = Vec::new();
    let normalised: String = script
        .chars()
        .map(|c| if matches!(c, ';' | '&' | '|' | '\n' | '(' | ')' | '{' | '}' | '`') { '\n' } else { c })
        .collect();
    for command in normalised.split('\n') {
        let first = command
            .split_whitespace()
            .find(|w| !(w.contains('=') && !w.starts_with('=') || PREFIXES.contains(w) || w.starts_with('-')));
        if let Some(word) = first {
            let word = word.trim_matches(|c| c == '"' || c == '\'');
            if !word.is_empty() && !out.iter().any(|o| o == word) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

/// The mechanism chosen for one command line, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The program that decided (the command, or the program a shell script starts).
    pub program: String,
    pub kind: Option<ProgramKind>,
    /// `None`: no mechanism dilates the program; `reason` says why.
    pub mechanism: Option<Mechanism>,
    pub reason: String,
}

/// Chooses the mechanism for `argv` (programs looked up in `path`). A shell started as
/// `sh -c SCRIPT` is looked through: every program its script starts is classified, and
/// the trap is chosen when any of them needs it (the trap dilates the shell and its other
/// children too, at a higher cost per call); a program no mechanism reaches decides.
pub fn choose(argv: &[String], path: Option<&str>) -> Choice {
    let Some(first) = argv.first() else {
        return Choice {
            program: String::new(),
            kind: None,
            mechanism: Some(Mechanism::Preload),
            reason: "empty command".into(),
        };
    };
    let mut candidates = vec![first.clone()];
    let shell =
        Path::new(first).file_name().and_then(|n| n.to_str()).is_some_and(|n| matches!(n, "sh" | "bash" | "dash"));
    if shell && argv.get(1).map(String::as_str) == Some("-c") {
        if let Some(script) = argv.get(2) {
            candidates.extend(shell_programs(script));
        }
    }
    let mut chosen: Option<Choice> = None;
    for name in &candidates {
        let Some(resolved) = resolve(name, path) else { continue };
        let Ok(kind) = classify(&resolved) else { continue };
        let program = resolved.display().to_string();
        let choice = match kind.mechanism() {
            None => {
                let reason =
                    format!("{program} is {kind}: neither the LD_PRELOAD shim nor the syscall trap can dilate it");
                return Choice { program, kind: Some(kind), mechanism: None, reason };
            }
            Some(Mechanism::Trap) => Choice {
                reason: format!("{program}: {kind}; the LD_PRELOAD shim cannot reach it"),
                program,
                kind: Some(kind),
                mechanism: Some(Mechanism::Trap),
            },
            Some(Mechanism::Preload) => Choice {
                reason: format!("{program}: {kind}"),
                program,
                kind: Some(kind),
                mechanism: Some(Mechanism::Preload),
            },
        };
        match &chosen {
            Some(c) if c.mechanism == Some(Mechanism::Trap) => {}
            Some(_) if choice.mechanism == Some(Mechanism::Preload) => {}
            _ => chosen = Some(choice),
        }
    }
    // Not found: the node's exec reports it with the name as given.
    chosen.unwrap_or_else(|| Choice {
        program: first.clone(),
        kind: None,
        mechanism: Some(Mechanism::Preload),
        reason: format!("{first} not found in PATH"),
    })
}

/// Classifies the program at `path` (scripts by their interpreter).
pub fn classify(path: &Path) -> Result<ProgramKind, ProgramError> {
    classify_depth(path, 0)
}

fn classify_depth(path: &Path, depth: u32) -> Result<ProgramKind, ProgramError> {
    let io = |source| ProgramError::Io { path: path.to_owned(), source };
    if let Some(kind) = crate::elf::classify_file(path).map_err(io)? {
        return Ok(kind);
    }
    // Not ELF: a script names its interpreter on its first line.
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path).and_then(|f| f.take(512).read_to_end(&mut head)).map_err(io)?;
    let Some(line) = head.strip_prefix(b"#!").and_then(|rest| rest.split(|&b| b == b'\n').next()) else {
        return Err(ProgramError::NotExecutable { path: path.to_owned() });
    };
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let interp = words.next().unwrap_or_default().to_owned();
    let no_interp = || ProgramError::NoInterpreter { path: path.to_owned(), interpreter: interp.clone() };
    if depth >= 2 || interp.is_empty() {
        return Err(no_interp());
    }
    let mut target = PathBuf::from(&interp);
    if target.file_name().is_some_and(|n| n == "env") {
        let named = words.find(|w| !w.starts_with('-')).ok_or_else(no_interp)?;
        target = resolve(named, std::env::var("PATH").ok().as_deref()).ok_or_else(no_interp)?;
    }
    classify_depth(&target, depth + 1)
}

/// The kind of an ELF image, `None` when `b` is not ELF.
pub fn classify_elf(b: &[u8]) -> Option<ProgramKind> {
    crate::elf::classify(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::elf::test_image as elf;

    #[test]
    fn the_rule() {
        assert_eq!(ProgramKind::Dynamic.mechanism(), Some(Mechanism::Preload));
        assert_eq!(ProgramKind::Foreign.mechanism(), None);
        for k in [ProgramKind::DynamicGo, ProgramKind::StaticGo, ProgramKind::Static] {
            assert_eq!(k.mechanism(), cfg!(target_arch = "x86_64").then_some(Mechanism::Trap));
        }
    }

    #[test]
    fn scripts_are_classified_by_their_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let fake_static = dir.path().join("interp");
        std::fs::write(&fake_static, elf(false, b"")).unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, format!("#!{} -x\nexit 0\n", fake_static.display())).unwrap();
        assert_eq!(classify(&script).unwrap(), ProgramKind::Static);
        let via_env = dir.path().join("e");
        std::fs::write(&via_env, "#!/usr/bin/env interp\n").unwrap();
        // `env` looks the name up in PATH; the test's PATH does not hold it.
        assert!(matches!(classify(&via_env), Err(ProgramError::NoInterpreter { .. })));
        let junk = dir.path().join("j");
        std::fs::write(&junk, "hello").unwrap();
        assert!(matches!(classify(&junk), Err(ProgramError::NotExecutable { .. })));
    }

    #[test]
    fn system_programs() {
        assert_eq!(classify(Path::new("/bin/sh")).unwrap(), ProgramKind::Dynamic);
        assert!(resolve("sh", Some("/nonexistent:/bin")).is_some());
        assert_eq!(resolve("./x", None), Some(PathBuf::from("./x")));
    }

    #[test]
    fn shell_scripts_name_their_programs() {
        assert_eq!(shell_programs("exec etcd --name a"), vec!["etcd"]);
        assert_eq!(
            shell_programs("GOMAXPROCS=1 /usr/bin/etcd --x 1 & sleep 1; wait"),
            vec!["/usr/bin/etcd", "sleep", "wait"]
        );
        assert_eq!(shell_programs("cd /tmp && env A=1 nohup ./srv | tee log"), vec!["cd", "./srv", "tee"]);
    }

    #[test]
    fn a_shell_is_looked_through() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), elf(false, b"")).unwrap();
        let mut foreign = elf(true, b"");
        foreign[4] = 1;
        std::fs::write(dir.path().join("old"), foreign).unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let argv = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
        let c = choose(&argv("echo hi; exec stat -x"), Some(&path));
        assert_eq!((c.mechanism, c.kind), (Some(Mechanism::Trap), Some(ProgramKind::Static)));
        assert!(c.program.ends_with("/stat"), "{c:?}");
        let c = choose(&argv("true && old"), Some(&path));
        assert_eq!(c.mechanism, None);
        assert!(c.reason.contains("another architecture"), "{c:?}");
        let c = choose(&argv("sleep 1"), Some(&path));
        assert_eq!(c.mechanism, Some(Mechanism::Preload));
        let c = choose(&["nonexistent-program".to_owned()], Some(&path));
        assert_eq!(c.mechanism, Some(Mechanism::Preload));
    }
}
