//! A throwaway PostgreSQL server for the state's tests: `initdb` in a temporary directory as
//! the unprivileged user `nobody` (postgres refuses root; only root can switch users), one
//! unix socket in that directory and no TCP, durability off. Stopped (SIGINT, then SIGKILL)
//! and removed when dropped, also when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, geteuid, Pid, User};

/// The database user the tests connect as.
const USER: &str = "replica";

/// A running server.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Why the server was not started: the test is skipped with this reason.
pub struct Skip(pub String);

fn find(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        dirs.extend(v.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file())
}

impl Server {
    /// Starts a server, or answers why this host cannot (not root, PostgreSQL not installed).
    /// Any other failure panics: it is a failure of the test.
    pub fn start() -> Result<Server, Skip> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        if !geteuid().is_root() {
            return Err(Skip("not root (postgres runs as the user nobody, which only root can switch to)".into()));
        }
        let (Some(initdb), Some(postgres)) = (find("initdb"), find("postgres")) else {
            return Err(Skip("PostgreSQL is not installed (scripts/setup installs postgresql)".into()));
        };
        let nobody = match User::from_name("nobody") {
            Ok(Some(u)) => u,
            _ => return Err(Skip("no user nobody on this host".into())),
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        // nobody must traverse to its data directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let data = dir.path().join("pgdata");
        std::fs::create_dir(&data).expect("data directory");
        chown(&data, Some(nobody.uid), Some(nobody.gid)).expect("chown the data directory");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let out = Command::new(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8"])
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .current_dir("/")
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let child = Command::new(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()))
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let server = Server { child: Some(child), dir };
        server.wait_ready(Duration::from_secs(60));
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    /// The connection string of the database `postgres` with `schema` first on the search path.
    pub fn url(&self, schema: Option<&str>) -> String {
        let base = format!("host={} port=5432 user={USER} dbname=postgres", self.data().display());
        match schema {
            Some(s) => format!("{base} options='-c search_path={s}'"),
            None => base,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn wait_ready(&self, wait: Duration) {
        let start = Instant::now();
        loop {
            match super::State::connect(&self.url(None)) {
                Ok(_) => return,
                Err(_) if start.elapsed() < wait => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("postgres not ready after {wait:?}: {e}\n{}", self.log()),
            }
        }
    }

    /// A new, empty schema for one test.
    pub fn schema(&self, name: &str) -> String {
        let mut admin = super::State::connect(&self.url(None)).expect("connect to postgres");
        admin.exec_raw(&format!("CREATE SCHEMA {name}")).expect("create schema");
        self.url(Some(name))
    }

    /// The directory of the server (its log is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        // SIGINT: postgres's fast shutdown (its backends end, shared memory is released).
        let _ = kill(pid, Signal::SIGINT);
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
