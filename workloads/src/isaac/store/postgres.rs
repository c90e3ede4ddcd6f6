//! The PostgreSQL option: the DB tier starts a real PostgreSQL server inside the node
//! (`initdb` + `postgres` in the node's directory, as an unprivileged user since postgres
//! refuses root) and the app servers talk to it directly with `tokio-postgres`.
//!
//! # Design
//! The server keeps table `kv(key BIGINT PRIMARY KEY, value BYTEA)`, pre-filled like the
//! SQLite store. Clients are trusted (`pg_hba.conf` gets `host all all 0.0.0.0/0 trust`): the
//! emulated network is private to the run. Each app server keeps one connection per DB
//! server (tokio-postgres pipelines concurrent queries on it) and opens a new one when it
//! has closed, so a restarted DB is reached again by itself.
//!
//! # Limitations
//! If the DB tier is killed with SIGKILL outside the harness, its postgres keeps running
//! (inside a node, the node's PID namespace ends with it). The DB time an app server reports
//! is its own round trip of each statement (postgres sends no timing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::Sync;

/// The database user and database every client uses.
pub const USER: &str = "isaac";

/// A failure of the PostgreSQL option.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("find {program}: not on PATH nor in /usr/lib/postgresql/*/bin (install postgresql)")]
    NotFound { program: &'static str },
    #[error("look up user {user}: {reason}")]
    User { user: String, reason: String },
    #[error("prepare {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("run {program}: {reason}")]
    Run { program: String, reason: String },
    #[error("postgres on port {port} did not accept connections within {waited:?} (see postgres.log)")]
    NotReady { port: u16, waited: Duration },
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Settings of the server a DB tier starts.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Data directory (made absolute).
    pub data: PathBuf,
    pub port: u16,
    /// The OS user postgres runs as.
    pub os_user: String,
    /// Directory of `initdb` and `postgres`; searched when `None`.
    pub bin: Option<PathBuf>,
    pub sync: Sync,
    /// Where postgres's output goes.
    pub log: PathBuf,
}

/// A running postgres.
#[derive(Debug)]
pub struct PgServer {
    child: Child,
    pub port: u16,
}

fn find(program: &'static str, bin: Option<&Path>) -> Result<PathBuf, PgError> {
    if let Some(dir) = bin {
        return Ok(dir.join(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        dirs.extend(v.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file()).ok_or(PgError::NotFound { program })
}

fn run_as(cmd: &mut Command, uid: u32, gid: u32, what: &str) -> Result<(), PgError> {
    use std::os::unix::process::CommandExt;
    let out = cmd
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .map_err(|e| PgError::Run { program: what.to_owned(), reason: e.to_string() })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(PgError::Run { program: what.to_owned(), reason: format!("{}: {}", out.status, err.trim()) });
    }
    Ok(())
}

impl PgServer {
    /// Initializes the data directory if needed and starts postgres (blocking).
    pub fn start(cfg: &PgConfig) -> Result<Self, PgError> {
        use std::os::unix::process::CommandExt;
        let user = nix::unistd::User::from_name(&cfg.os_user)
            .map_err(|e| PgError::User { user: cfg.os_user.clone(), reason: e.to_string() })?
            .ok_or_else(|| PgError::User { user: cfg.os_user.clone(), reason: "no such user".into() })?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let data = std::path::absolute(&cfg.data).map_err(|source| PgError::Dir { path: cfg.data.clone(), source })?;
        let dir_err = |source| PgError::Dir { path: data.clone(), source };
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data).map_err(dir_err)?;
            nix::unistd::chown(&data, Some(user.uid), Some(user.gid)).map_err(|e| dir_err(e.into()))?;
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(dir_err)?;
            let initdb = find("initdb", cfg.bin.as_deref())?;
            run_as(
                Command::new(&initdb).args(["-D"]).arg(&data).args([
                    "-U",
                    USER,
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]),
                uid,
                gid,
                &initdb.display().to_string(),
            )?;
            let hba = data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).map_err(dir_err)?;
            text.push_str("\n# diorama: the emulated network is private to the run\nhost all all 0.0.0.0/0 trust\n");
            std::fs::write(&hba, text).map_err(dir_err)?;
        }
        let postgres = find("postgres", cfg.bin.as_deref())?;
        let log = std::fs::File::create(&cfg.log).map_err(|source| PgError::Dir { path: cfg.log.clone(), source })?;
        let log2 = log.try_clone().map_err(|source| PgError::Dir { path: cfg.log.clone(), source })?;
        let durability: &[&str] = match cfg.sync {
            Sync::Off => &["-c", "fsync=off", "-c", "synchronous_commit=off"],
            Sync::Normal => &["-c", "synchronous_commit=off"],
            Sync::Full => &[],
        };
        let child = Command::new(&postgres)
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &cfg.port.to_string(),
                "-c",
                "listen_addresses=*",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=200",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()))
            .args(durability)
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| PgError::Run { program: postgres.display().to_string(), reason: e.to_string() })?;
        Ok(PgServer { child, port: cfg.port })
    }

    /// Fast shutdown (SIGINT), then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let end = std::time::Instant::now() + grace;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether postgres has exited (it died).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Connects to `host:port` as [`USER`]; the connection's task runs on the runtime.
pub async fn connect(addr: &str) -> Result<Client, PgError> {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "5432"));
    let conf = format!("host={host} port={port} user={USER} dbname=postgres connect_timeout=5");
    let (client, conn) = tokio_postgres::connect(&conf, NoTls)
        .await
        .map_err(|source| PgError::Sql { what: format!("connect to {addr}"), source })?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%err, "postgres connection ended");
        }
    });
    Ok(client)
}

/// Waits until the local server accepts connections, then creates and fills the table.
pub async fn prepare(server: &mut PgServer, keys: u64, size: usize, wait: Duration) -> Result<Client, PgError> {
    let addr = format!("127.0.0.1:{}", server.port);
    let start = tokio::time::Instant::now();
    let client = loop {
        match connect(&addr).await {
            Ok(c) => break c,
            Err(_) if start.elapsed() < wait && !server.exited() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(_) => return Err(PgError::NotReady { port: server.port, waited: start.elapsed() }),
        }
    };
    let sql = |what: &str| {
        let what = what.to_owned();
        move |source| PgError::Sql { what, source }
    };
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS kv (key BIGINT PRIMARY KEY, value BYTEA NOT NULL)")
        .await
        .map_err(sql("create table kv"))?;
    let values: Vec<Vec<u8>> = (0..keys).map(|k| super::fill_value(k, size)).collect();
    let keys_i: Vec<i64> = (0..keys).map(|k| k as i64).collect();
    client
        .execute(
            "INSERT INTO kv (key, value) SELECT * FROM unnest($1::bigint[], $2::bytea[]) ON CONFLICT (key) DO NOTHING",
            &[&keys_i, &values],
        )
        .await
        .map_err(sql("populate kv"))?;
    Ok(client)
}

/// Committed and rolled-back transactions of the server so far (`pg_stat_database`).
pub async fn transactions(client: &Client) -> Result<(u64, u64), PgError> {
    let row = client
        .query_one("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()", &[])
        .await
        .map_err(|source| PgError::Sql { what: "read pg_stat_database".into(), source })?;
    let (c, r): (i64, i64) = (row.get(0), row.get(1));
    Ok((c.max(0) as u64, r.max(0) as u64))
}

/// An app server's connections, one per DB server, reopened when closed.
#[derive(Debug)]
pub struct PgPool {
    conns: Vec<tokio::sync::Mutex<Option<Arc<Client>>>>,
}

impl PgPool {
    pub fn new(n: usize) -> Self {
        PgPool { conns: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect() }
    }

    async fn client(&self, i: usize, addr: &str) -> Result<Arc<Client>, String> {
        let slot = self.conns.get(i).ok_or("no such DB")?;
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(connect(addr).await.map_err(|e| crate::isaac::http::error_chain(&e))?);
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Reads `key` from DB `i` at `addr` (empty when absent).
    pub async fn read(&self, i: usize, addr: &str, key: u64) -> Result<Vec<u8>, String> {
        let c = self.client(i, addr).await?;
        let row = c
            .query_opt("SELECT value FROM kv WHERE key = $1", &[&(key as i64)])
            .await
            .map_err(|e| crate::isaac::http::error_chain(&e))?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)).unwrap_or_default())
    }

    /// Writes `value` under `key` in DB `i` at `addr`.
    pub async fn write(&self, i: usize, addr: &str, key: u64, value: &[u8]) -> Result<(), String> {
        let c = self.client(i, addr).await?;
        c.execute(
            "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&(key as i64), &value],
        )
        .await
        .map_err(|e| crate::isaac::http::error_chain(&e))?;
        Ok(())
    }
}
