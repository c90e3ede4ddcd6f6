//! The replicator's shared state in a database, SQLite embedded (a file, the default) or
//! PostgreSQL (`--state-db postgres://…`, [`db`]): the latest version of every object, the
//! per-object lock and the part pool.
//!
//! # Design
//! - **Versions.** Each event carries the key's sequencer. `objects` keeps the largest
//!   `seq` seen with its ETag and size; an older event changes nothing, so notifications may
//!   arrive late, twice or out of order.
//! - **Lock {seq, etag}.** A copy takes the lock of a key for the version it copies, with a
//!   lease. On release the copy is done only if no later version arrived meanwhile; otherwise
//!   the release answers [`Release::Stale`] and the key is replicated again from its latest
//!   version. `done_seq` is the version the destination holds.
//! - **Part pool.** A large copy is cut into parts; instances claim one part at a time
//!   (`claim`, one transaction) and report it (`finish_part`, one transaction). The report
//!   that leaves no part unfinished answers `last = true`: exactly that instance completes the
//!   multipart upload. A claim whose lease ran out (a killed instance) is claimable again.
//!   Both calls are idempotent for their caller, because an instance repeats a call whose
//!   answer it did not get (the coordinator was killed after committing, before answering):
//!   a claim by an owner that still holds an unfinished part answers that part again, and a
//!   repeated report of a part the same owner finished with the same ETag answers what the
//!   first report was answered (`last` is kept per part). Otherwise a lost answer would
//!   strand a claimed part, or the one completion of the upload, until the job's lease ran
//!   out and the whole object was copied again.
//!
//! - **Writes.** Every event of a write the destination does not hold yet also goes to
//!   `writes` with its time. The release of a copy takes the writes it covers (its version
//!   and every older one): each is one sample of the replication delay. A write still there
//!   when its SLO has passed is flagged once ([`State::overdue`]), so a version that is never
//!   replicated (lost, stuck, superseded too late) is recorded as a violation.
//! - **Backoff.** A key whose copy failed is held back until a time (`hold_until`) that
//!   grows with its failures in a row ([`State::fail`]); a released copy resets the count.
//!
//! Every mutation is one transaction ([`db::Db::write`]): `BEGIN IMMEDIATE` on SQLite,
//! `SERIALIZABLE` retried on a serialization failure on PostgreSQL, so several connections
//! (processes) on one database serialize correctly on either.

pub mod db;

use db::{args, Db, Row, Sql};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("open state database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("query state database")]
    Query(#[from] rusqlite::Error),
    #[error("connect to the state database {url}")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("query the PostgreSQL state database")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("state database: {0}")]
    Decode(String),
    #[error("state database: {0}")]
    Other(String),
}

/// The latest version of an object as the events told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    pub seq: u64,
    pub etag: Option<String>,
    pub size: u64,
    pub deleted: bool,
}

/// The answer to releasing a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The destination now holds the latest version.
    Done,
    /// A later version arrived during the copy: replicate again.
    Stale,
    /// The lock was not ours (its lease ran out and another copy took it).
    Lost,
}

/// A write the destination did not hold yet when it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub seq: u64,
    /// When the source wrote it (ms, the event's time).
    pub event_ms: u64,
    /// Whether its SLO had passed before a copy covered it (a violation was recorded).
    pub flagged: bool,
}

/// The answer to releasing a lock, with the writes a successful copy covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub outcome: Release,
    /// Empty unless `outcome` is [`Release::Done`].
    pub writes: Vec<Write>,
}

/// Writes of one key whose SLO passed before any copy covered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub key: String,
    pub seqs: Vec<u64>,
    /// The oldest of them (ms).
    pub oldest_ms: u64,
}

/// A claimed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub upload: String,
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

/// A part as sent to an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartView {
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

impl From<Part> for PartView {
    fn from(p: Part) -> PartView {
        PartView { number: p.number, offset: p.offset, len: p.len }
    }
}

/// A key as the table had it before a reconciliation listed the stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub seq: i64,
    pub etag: Option<String>,
    pub size: u64,
    pub deleted: bool,
    pub done_seq: i64,
    /// The source ETag of the version the destination holds (none: nothing, or a delete).
    pub done_etag: Option<String>,
    pub dst_etag: Option<String>,
    /// A live lease held it.
    pub locked: bool,
}

/// An object as a store listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub etag: Option<String>,
    pub size: u64,
}

/// What a reconciliation changed (counts of keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repairs {
    /// Source objects no event had announced.
    pub unseen: usize,
    /// Destination objects known nowhere (deleted there).
    pub orphans: usize,
    /// Keys whose latest version the source contradicted.
    pub corrected: usize,
    /// Keys recorded done whose destination did not hold the copy.
    pub drifted: usize,
}

impl Repairs {
    /// Whether anything was repaired.
    pub fn any(&self) -> bool {
        self.unseen + self.orphans + self.corrected + self.drifted > 0
    }
}

/// The state database.
pub struct State {
    db: Db,
}

// SQL shared by both backends (types are SQLite's names; PostgreSQL gets BIGINT for INTEGER).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
  key TEXT PRIMARY KEY, seq INTEGER NOT NULL, etag TEXT, size INTEGER NOT NULL,
  deleted INTEGER NOT NULL, done_seq INTEGER NOT NULL DEFAULT -1,
  lock_owner TEXT, lock_seq INTEGER, lock_etag TEXT, lock_until INTEGER,
  dst_etag TEXT, event_ms INTEGER,
  done_etag TEXT, hold_until INTEGER, fails INTEGER NOT NULL DEFAULT 0, batch_until INTEGER);
CREATE TABLE IF NOT EXISTS writes (
  key TEXT NOT NULL, seq INTEGER NOT NULL, event_ms INTEGER NOT NULL, flagged INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key, seq));
CREATE TABLE IF NOT EXISTS changelogs (
  record TEXT PRIMARY KEY, key TEXT NOT NULL, etag TEXT NOT NULL, op TEXT NOT NULL, body TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS changelogs_target ON changelogs (key, etag);
CREATE TABLE IF NOT EXISTS hint_sources (
  record TEXT NOT NULL, source TEXT NOT NULL, etag TEXT NOT NULL, PRIMARY KEY (record, source));
CREATE TABLE IF NOT EXISTS parts (
  upload TEXT NOT NULL, number INTEGER NOT NULL, \"offset\" INTEGER NOT NULL, len INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until INTEGER, etag TEXT,
  last INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (upload, number));
";

const HINT_APPLIED: i64 = 1;
const HINT_FELL_BACK: i64 = 2;

const FREE: i64 = 0;
const CLAIMED: i64 = 1;
const FINISHED: i64 = 2;

impl State {
    /// Opens (creating) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn =
            Connection::open(path).map_err(|source| StateError::Open { path: path.display().to_string(), source })?;
        Self::init(conn)
    }

    /// An in-memory SQLite database (tests).
    pub fn in_memory() -> Result<State, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://…`, or libpq's
    /// `host=… user=… dbname=…`) and creates the tables there if needed.
    pub fn connect(url: &str) -> Result<State, StateError> {
        let mut pg = db::Pg::connect(url)?;
        // Connections that start together must not create the tables together (a race on the
        // catalog), hence the lock; it ends with the transaction.
        pg.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(1584); {} COMMIT;",
            SCHEMA.replace("INTEGER", "BIGINT")
        ))?;
        Ok(State { db: Db::Postgres(Box::new(std::cell::RefCell::new(pg))) })
    }

    /// `--state-db`: a `postgres://` or `postgresql://` URL, else the path of a SQLite file;
    /// none: the SQLite file at `default`.
    pub fn open_spec(spec: Option<&str>, default: &Path) -> Result<State, StateError> {
        match spec {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Self::connect(url),
            Some(path) => Self::open(Path::new(path)),
            None => Self::open(default),
        }
    }

    /// Which backend this is (`sqlite`, `postgres`).
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    fn init(conn: Connection) -> Result<State, StateError> {
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        // A database made by an earlier replicator (a coordinator restarted on an old state
        // file) gets the columns added since; its finished parts answer `last = false` when
        // repeated.
        for (table, column, decl) in [
            ("parts", "last", "INTEGER NOT NULL DEFAULT 0"),
            ("objects", "done_etag", "TEXT"),
            ("objects", "hold_until", "INTEGER"),
            ("objects", "fails", "INTEGER NOT NULL DEFAULT 0"),
            ("objects", "batch_until", "INTEGER"),
        ] {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
                .exists(rusqlite::params![table, column])?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        Ok(State { db: Db::Sqlite(conn) })
    }

    /// Runs one statement outside the state's API (tests set up rows with it).
    #[cfg(test)]
    pub(crate) fn exec_raw(&mut self, sql: &str) -> Result<usize, StateError> {
        self.db.write(|tx| tx.exec(sql, &[]))
    }

    /// Records `version` unless a later one is known. Answers whether it was newer.
    pub fn observe(&mut self, v: &Version) -> Result<bool, StateError> {
        self.observe_at(v, None)
    }

    /// [`State::observe`], remembering when the source wrote the version (`event_ms`, the
    /// event's time) to measure its replication delay: the write joins `writes` unless the
    /// destination already holds it or a later version (an old event arriving late).
    pub fn observe_at(&mut self, v: &Version, event_ms: Option<u64>) -> Result<bool, StateError> {
        self.db.write(|tx| {
            let known: Option<(i64, i64)> = tx
                .row("SELECT seq, done_seq FROM objects WHERE key = ?1", args![&v.key])?
                .map(|r| Ok::<_, StateError>((r.int(0)?, r.int(1)?)))
                .transpose()?;
            let newer = known.is_none_or(|(seq, _)| seq < to_i64(v.seq));
            if newer {
                tx.exec(
                    "INSERT INTO objects (key, seq, etag, size, deleted, event_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(key) DO UPDATE SET seq = ?2, etag = ?3, size = ?4, deleted = ?5, event_ms = ?6",
                    args![&v.key, to_i64(v.seq), &v.etag, to_i64(v.size), v.deleted, event_ms.map(to_i64)],
                )?;
            }
            let held = known.map_or(-1, |(_, done)| done);
            if let Some(at) = event_ms.filter(|_| to_i64(v.seq) > held) {
                tx.exec(
                    "INSERT INTO writes (key, seq, event_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    args![&v.key, to_i64(v.seq), to_i64(at)],
                )?;
            }
            Ok(newer)
        })
    }

    /// Keys whose destination lags their latest version, that no live lease holds and that
    /// no backoff holds back ([`State::fail`]).
    pub fn pending(&self, now_ms: u64, limit: usize) -> Result<Vec<Version>, StateError> {
        self.pending_hinted(now_ms, 0, limit)
    }

    /// [`State::pending`], also leaving out keys held by a batch ([`State::hold_batch`]) and,
    /// for each unresolved changelog hint recorded at or after `hints_since_ms` whose target
    /// version is the target's latest and not replicated yet:
    /// - a source whose latest version is not the one the hint names (a MOVE's delete, an
    ///   overwrite): replicating it first would remove what the hint is built from;
    /// - the target while a source's latest version *is* the one named and is not replicated
    ///   yet: copied first, it lets the hint apply (a COPY of an object just written).
    ///
    /// Both end when the hint resolves or ages past the bound, so neither waits forever.
    pub fn pending_hinted(&self, now_ms: u64, hints_since_ms: u64, limit: usize) -> Result<Vec<Version>, StateError> {
        self.db.read(|db| {
            db.rows(
                "SELECT key, seq, etag, size, deleted FROM objects
                 WHERE done_seq < seq AND (lock_owner IS NULL OR lock_until < ?1)
                   AND (hold_until IS NULL OR hold_until <= ?1)
                   AND (batch_until IS NULL OR batch_until <= ?1)
                   AND key NOT IN (SELECT s.source FROM hint_sources s JOIN changelogs c ON c.record = s.record
                                   JOIN objects t ON t.key = c.key JOIN objects o ON o.key = s.source
                                   WHERE c.state = 0 AND c.recorded_ms >= ?3 AND s.source != c.key
                                     AND t.etag = c.etag AND t.done_seq < t.seq AND o.etag IS DISTINCT FROM s.etag)
                   AND key NOT IN (SELECT c.key FROM changelogs c JOIN hint_sources s ON s.record = c.record
                                   JOIN objects t ON t.key = c.key JOIN objects o ON o.key = s.source
                                   WHERE c.state = 0 AND c.recorded_ms >= ?3 AND s.source != c.key
                                     AND t.etag = c.etag AND o.etag = s.etag AND o.done_seq < o.seq)
                 ORDER BY seq LIMIT ?2",
                args![to_i64(now_ms), to_i64(limit as u64), to_i64(hints_since_ms)],
            )?
            .iter()
            .map(row_version)
            .collect()
        })
    }

    /// Holds `key` back until `until_ms` (SLO-bounded batching), or until the hold it already
    /// has if that ends sooner: a newer write never pushes the copy of an older one later.
    /// A hold that ended already counts as none. Answers the hold in force.
    pub fn hold_batch(&mut self, key: &str, now_ms: u64, until_ms: u64) -> Result<Option<u64>, StateError> {
        self.db.write(|tx| {
            tx.exec(
                "UPDATE objects SET batch_until = CASE WHEN batch_until IS NOT NULL AND batch_until > ?2
                   THEN (CASE WHEN batch_until < ?3 THEN batch_until ELSE ?3 END) ELSE ?3 END WHERE key = ?1",
                args![key, to_i64(now_ms), to_i64(until_ms)],
            )?;
            let hold = tx.row("SELECT batch_until FROM objects WHERE key = ?1", args![key])?;
            Ok(hold.map(|r| r.opt_int(0)).transpose()?.flatten().map(to_u64))
        })
    }

    /// Records a changelog hint read from `record` (its key at the source) at `now_ms`;
    /// a record seen before changes nothing.
    pub fn add_hint(&mut self, record: &str, hint: &crate::changelog::Hint, now_ms: u64) -> Result<bool, StateError> {
        let body = serde_json::to_string(hint).unwrap_or_default();
        self.db.write(|tx| {
            let n = tx.exec(
                "INSERT INTO changelogs (record, key, etag, op, body, recorded_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO NOTHING",
                args![record, &hint.key, &hint.etag, hint.op.via(), &body, to_i64(now_ms)],
            )?;
            if n == 1 {
                for s in &hint.sources {
                    tx.exec(
                        "INSERT INTO hint_sources (record, source, etag) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        args![record, &s.key, crate::etag::normalize(&s.etag).as_str()],
                    )?;
                }
            }
            Ok(n == 1)
        })
    }

    /// The newest unresolved hint whose target is `key` at ETag `etag`, with its record key.
    pub fn hint_for(&self, key: &str, etag: &str) -> Result<Option<(String, crate::changelog::Hint)>, StateError> {
        let etag = crate::etag::normalize(etag);
        let row = self.db.read(|db| {
            db.row(
                "SELECT record, body FROM changelogs WHERE key = ?1 AND etag = ?2 AND state = 0
                 ORDER BY record DESC LIMIT 1",
                args![key, etag.as_str()],
            )?
            .map(|r| Ok::<_, StateError>((r.text(0)?, r.text(1)?)))
            .transpose()
        })?;
        Ok(row.and_then(|(record, body)| serde_json::from_str(&body).ok().map(|h| (record, h))))
    }

    /// Marks the hints of `key` at `etag` resolved: `applied` at the destination, or fallen
    /// back to a copy of the bytes. Answers how many.
    pub fn resolve_hints(&mut self, key: &str, etag: &str, applied: bool) -> Result<usize, StateError> {
        let etag = crate::etag::normalize(etag);
        self.db.write(|tx| {
            tx.exec(
                "UPDATE changelogs SET state = ?3 WHERE key = ?1 AND etag = ?2 AND state = 0",
                args![key, etag.as_str(), if applied { HINT_APPLIED } else { HINT_FELL_BACK }],
            )
        })
    }

    /// What the destination holds of `key` by the table: the source ETag of the version last
    /// copied there and the destination ETag the copy got.
    pub fn held(&self, key: &str) -> Result<Option<crate::changelog::Held>, StateError> {
        self.db.read(|db| {
            db.row("SELECT done_etag, dst_etag FROM objects WHERE key = ?1 AND done_seq >= 0", args![key])?
                .map(|r| Ok::<_, StateError>((r.opt_text(0)?, r.opt_text(1)?)))
                .transpose()
        })
    }

    /// Whether every known object is replicated at its latest version.
    pub fn converged(&self) -> Result<bool, StateError> {
        let lagging = self.db.read(|db| match db.row("SELECT COUNT(*) FROM objects WHERE done_seq < seq", &[])? {
            Some(r) => r.int(0),
            None => Ok(0),
        })?;
        Ok(lagging == 0)
    }

    /// Takes the lock of `key` for the latest version, as `owner`, until `until_ms`. Answers the
    /// version to copy, or `None` when a live lease of another owner holds it or nothing lags.
    pub fn lock(&mut self, key: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<Option<Version>, StateError> {
        self.db.write(|tx| {
            let row = tx
                .row(
                    "SELECT key, seq, etag, size, deleted FROM objects
                     WHERE key = ?1 AND done_seq < seq AND (lock_owner IS NULL OR lock_owner = ?2 OR lock_until < ?3)",
                    args![key, owner, to_i64(now_ms)],
                )?
                .map(|r| row_version(&r))
                .transpose()?;
            if let Some(v) = &row {
                tx.exec(
                    "UPDATE objects SET lock_owner = ?2, lock_seq = ?3, lock_etag = ?4, lock_until = ?5 WHERE key = ?1",
                    args![key, owner, to_i64(v.seq), &v.etag, to_i64(until_ms)],
                )?;
            }
            Ok(row)
        })
    }

    /// At a coordinator's start-up: every lock and part claim still held gets a lease until
    /// exactly `until_ms` (one lease from the start). Their copies kept running while the
    /// coordinator was down, unable to renew; without this the restarted coordinator takes
    /// every one over at once, fences all of them and invokes a copy of each key together.
    /// It is exactly one lease, not at least one: a lock taken just before the kill still
    /// carried its start grace (tens of seconds), and if the kill came before its instance was
    /// invoked, nothing would ever renew or release it, and its key would wait out the grace.
    /// A copy that is alive renews within a third of a lease. Answers how many locks were held.
    pub fn resume_leases(&mut self, until_ms: u64) -> Result<usize, StateError> {
        self.db.write(|tx| {
            let locks =
                tx.exec("UPDATE objects SET lock_until = ?1 WHERE lock_owner IS NOT NULL", args![to_i64(until_ms)])?;
            tx.exec("UPDATE parts SET lease_until = ?1 WHERE state = ?2", args![to_i64(until_ms), CLAIMED])?;
            Ok(locks)
        })
    }

    /// Extends `owner`'s lease on `key`. Answers false if the lock is no longer ours.
    pub fn renew(&mut self, key: &str, owner: &str, until_ms: u64) -> Result<bool, StateError> {
        let n = self.db.write(|tx| {
            tx.exec(
                "UPDATE objects SET lock_until = ?3 WHERE key = ?1 AND lock_owner = ?2",
                args![key, owner, to_i64(until_ms)],
            )
        })?;
        Ok(n == 1)
    }

    /// Releases `owner`'s lock on `key` after copying version `seq` with ETag `etag` (the
    /// ETag the source served during the copy). The copy counts only if the latest version
    /// is still `{seq, etag}`.
    pub fn release(&mut self, key: &str, owner: &str, seq: u64, etag: Option<&str>) -> Result<Release, StateError> {
        Ok(self.release_copy(key, owner, seq, etag, None)?.outcome)
    }

    /// [`State::release`] that also records the ETag the destination gave the copy
    /// (`dst_etag`), which reconciliation later expects to find there, and answers the writes
    /// the copy covered (its version's and every older one), which leave `writes`.
    pub fn release_copy(
        &mut self,
        key: &str,
        owner: &str,
        seq: u64,
        etag: Option<&str>,
        dst_etag: Option<&str>,
    ) -> Result<Released, StateError> {
        self.db.write(|tx| {
            // (lock owner, latest seq, latest ETag, locked ETag)
            type Locked = (Option<String>, i64, Option<String>, Option<String>);
            let row: Option<Locked> = tx
                .row("SELECT lock_owner, seq, etag, lock_etag FROM objects WHERE key = ?1", args![key])?
                .map(|r| Ok::<_, StateError>((r.opt_text(0)?, r.int(1)?, r.opt_text(2)?, r.opt_text(3)?)))
                .transpose()?;
            let mut writes = Vec::new();
            let outcome = match row {
                Some((Some(holder), latest_seq, latest_etag, lock_etag)) if holder == owner => {
                    // The copy counts when the version locked is still the latest (reconciliation
                    // may have corrected the latest ETag at the same seq) and the source served it.
                    let current =
                        latest_seq == to_i64(seq) && latest_etag.as_deref() == etag && lock_etag.as_deref() == etag;
                    if current {
                        tx.exec(
                            "UPDATE objects SET done_seq = seq, dst_etag = ?2, done_etag = lock_etag, fails = 0,
                               hold_until = NULL WHERE key = ?1",
                            args![key, dst_etag],
                        )?;
                        writes = tx
                            .rows(
                                "SELECT seq, event_ms, flagged FROM writes WHERE key = ?1 AND seq <= ?2 ORDER BY seq",
                                args![key, to_i64(seq)],
                            )?
                            .iter()
                            .map(|r| {
                                Ok(Write { seq: to_u64(r.int(0)?), event_ms: to_u64(r.int(1)?), flagged: r.flag(2)? })
                            })
                            .collect::<Result<_, StateError>>()?;
                        tx.exec("DELETE FROM writes WHERE key = ?1 AND seq <= ?2", args![key, to_i64(seq)])?;
                    }
                    tx.exec("UPDATE objects SET lock_owner = NULL, lock_until = NULL WHERE key = ?1", args![key])?;
                    if current {
                        Release::Done
                    } else {
                        Release::Stale
                    }
                }
                _ => Release::Lost,
            };
            Ok(Released { outcome, writes })
        })
    }

    /// Releases `owner`'s lock on `key` after its copy failed, and holds the key back until
    /// `retry_at(failures so far)` (a backoff). Answers the failures so far and the retry
    /// time, or `None` when the lock was not `owner`'s.
    pub fn fail(
        &mut self,
        key: &str,
        owner: &str,
        retry_at: impl Fn(u32) -> u64,
    ) -> Result<Option<(u32, u64)>, StateError> {
        self.db.write(|tx| {
            let fails = tx
                .row("SELECT fails FROM objects WHERE key = ?1 AND lock_owner = ?2", args![key, owner])?
                .map(|r| r.int(0))
                .transpose()?;
            Ok(match fails {
                Some(before) => {
                    let fails = u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX);
                    let at = retry_at(fails);
                    tx.exec(
                        "UPDATE objects SET fails = ?2, hold_until = ?3, lock_owner = NULL, lock_until = NULL
                         WHERE key = ?1",
                        args![key, i64::from(fails), to_i64(at)],
                    )?;
                    Some((fails, at))
                }
                None => None,
            })
        })
    }

    /// When the oldest write of `key` the destination does not hold yet was made (ms): the
    /// SLO counts from it.
    pub fn oldest_pending(&self, key: &str) -> Result<Option<u64>, StateError> {
        let oldest = self.db.read(|db| {
            db.row("SELECT MIN(event_ms) FROM writes WHERE key = ?1", args![key])?.map(|r| r.opt_int(0)).transpose()
        })?;
        Ok(oldest.flatten().map(to_u64))
    }

    /// Writes whose SLO (`slo_ms` after the write) has passed at `now_ms` and that no copy has
    /// covered, not flagged before; flags them, so each is answered once.
    pub fn overdue(&mut self, now_ms: u64, slo_ms: u64) -> Result<Vec<Overdue>, StateError> {
        let cutoff = to_i64(now_ms.saturating_sub(slo_ms));
        self.db.write(|tx| {
            let rows = tx.rows(
                "SELECT key, seq, event_ms FROM writes WHERE flagged = 0 AND event_ms < ?1 ORDER BY key, seq",
                args![cutoff],
            )?;
            let mut out: Vec<Overdue> = Vec::new();
            for row in rows {
                let (key, seq, at) = (row.text(0)?, to_u64(row.int(1)?), to_u64(row.int(2)?));
                match out.last_mut() {
                    Some(o) if o.key == key => {
                        o.seqs.push(seq);
                        o.oldest_ms = o.oldest_ms.min(at);
                    }
                    _ => out.push(Overdue { key, seqs: vec![seq], oldest_ms: at }),
                }
            }
            tx.exec("UPDATE writes SET flagged = 1 WHERE flagged = 0 AND event_ms < ?1", args![cutoff])?;
            Ok(out)
        })
    }

    /// The latest known version of `key` and when the source wrote it (ms), if known.
    pub fn written_at(&self, key: &str) -> Result<Option<(u64, Option<u64>)>, StateError> {
        self.db.read(|db| {
            db.row("SELECT seq, event_ms FROM objects WHERE key = ?1", args![key])?
                .map(|r| Ok::<_, StateError>((to_u64(r.int(0)?), r.opt_int(1)?.map(to_u64))))
                .transpose()
        })
    }

    /// What the table says of every key, taken before the stores are listed (see
    /// [`State::reconcile`]).
    pub fn snapshot(&self, now_ms: u64) -> Result<HashMap<String, Tracked>, StateError> {
        self.db.read(|db| {
            db.rows(
                "SELECT key, seq, etag, size, deleted, done_seq, dst_etag,
                        lock_owner IS NOT NULL AND lock_until >= ?1, done_etag FROM objects",
                args![to_i64(now_ms)],
            )?
            .iter()
            .map(|r| {
                Ok::<_, StateError>((
                    r.text(0)?,
                    Tracked {
                        seq: r.int(1)?,
                        etag: r.opt_text(2)?,
                        size: to_u64(r.int(3)?),
                        deleted: r.flag(4)?,
                        done_seq: r.int(5)?,
                        dst_etag: r.opt_text(6)?,
                        locked: r.flag(7)?,
                        done_etag: r.opt_text(8)?,
                    },
                ))
            })
            .collect()
        })
    }

    /// Repairs the table from listings of the source and the destination taken after
    /// `before` (a [`State::snapshot`]), so that a lost event, a copy whose lease was taken
    /// over and that wrote late, or a destination that lost data is replicated again.
    ///
    /// - A source key the table does not know (its event was lost) is recorded at seq 0, below
    ///   any sequencer a late event of it can carry; a destination key known nowhere is
    ///   recorded deleted at seq 0.
    /// - A key whose source ETag (or existence) differs from the table's latest version gets the
    ///   source's state at the same seq and lags again: a later event still wins, and a copy
    ///   locked for the old ETag releases stale.
    /// - A key recorded done whose destination does not hold what the copy left there (the
    ///   recorded destination ETag, or the size when none was recorded; absent for a delete)
    ///   lags again, unless a copy holds it.
    ///
    /// Each change is conditional on the row being as in `before`: an event, a lock or a
    /// release that came in meanwhile wins, and the next scan looks again.
    pub fn reconcile(
        &mut self,
        before: &HashMap<String, Tracked>,
        src: &BTreeMap<String, Listed>,
        dst: &BTreeMap<String, Listed>,
        now_ms: u64,
    ) -> Result<Repairs, StateError> {
        self.db.write(|tx| reconcile_in(tx, before, src, dst, now_ms))
    }

    /// Extends `owner`'s claims on parts of `upload` until `until_ms`; answers how many.
    pub fn renew_claims(&mut self, upload: &str, owner: &str, until_ms: u64) -> Result<usize, StateError> {
        self.db.write(|tx| {
            tx.exec(
                "UPDATE parts SET lease_until = ?3 WHERE upload = ?1 AND owner = ?2 AND state = ?4",
                args![upload, owner, to_i64(until_ms), CLAIMED],
            )
        })
    }

    /// Fills the pool of `upload` with parts of `part_size` covering `size` bytes.
    pub fn fill_pool(&mut self, upload: &str, size: u64, part_size: u64) -> Result<u32, StateError> {
        let part_size = part_size.max(1);
        self.db.write(|tx| {
            let mut number = 0u32;
            let mut offset = 0u64;
            while offset < size || (size == 0 && number == 0) {
                let len = part_size.min(size - offset);
                number += 1;
                tx.exec(
                    "INSERT INTO parts (upload, number, \"offset\", len) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    args![upload, number, to_i64(offset), to_i64(len)],
                )?;
                offset += len;
                if len == 0 {
                    break;
                }
            }
            Ok(number)
        })
    }

    /// Claims one part of `upload` for `owner` until `until_ms`: the part `owner` already
    /// holds unfinished if any (an instance works on one part at a time, so such a claim
    /// repeats one whose answer was lost, or comes from a retried attempt of the instance),
    /// else a free or abandoned one.
    pub fn claim(&mut self, upload: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<Option<Part>, StateError> {
        self.db.write(|tx| {
            let part = tx
                .row(
                    "SELECT number, \"offset\", len FROM parts WHERE upload = ?1
                     AND (state = ?2 OR (state = ?3 AND (lease_until < ?4 OR owner = ?5)))
                     ORDER BY state = ?3 AND owner = ?5 DESC, number LIMIT 1",
                    args![upload, FREE, CLAIMED, to_i64(now_ms), owner],
                )?
                .map(|r| row_part(upload, &r))
                .transpose()?;
            if let Some(p) = &part {
                tx.exec(
                    "UPDATE parts SET state = ?3, owner = ?4, lease_until = ?5 WHERE upload = ?1 AND number = ?2",
                    args![upload, p.number, CLAIMED, owner, to_i64(until_ms)],
                )?;
            }
            Ok(part)
        })
    }

    /// Static assignment (the ablation of the pool): divides the free parts of `upload`
    /// into `owners.len()` runs of consecutive parts, as even as they go (sizes differ by at
    /// most one), and claims each run for its owner until `until_ms`. Answers the runs in the
    /// order of `owners` (empty for an owner left without a part). Nobody claims from such an
    /// upload, so a part of an owner that stops is copied only when the key is copied again.
    pub fn assign_parts(
        &mut self,
        upload: &str,
        owners: &[String],
        until_ms: u64,
    ) -> Result<Vec<Vec<Part>>, StateError> {
        self.db.write(|tx| {
            let free = tx
                .rows(
                    "SELECT number, \"offset\", len FROM parts WHERE upload = ?1 AND state = ?2 ORDER BY number",
                    args![upload, FREE],
                )?
                .into_iter()
                .map(|r| row_part(upload, &r))
                .collect::<Result<Vec<Part>, _>>()?;
            let n = owners.len().max(1);
            let mut runs = Vec::with_capacity(owners.len());
            for (i, owner) in owners.iter().enumerate() {
                let run: Vec<Part> = free[i * free.len() / n..(i + 1) * free.len() / n].to_vec();
                for p in &run {
                    tx.exec(
                        "UPDATE parts SET state = ?3, owner = ?4, lease_until = ?5 WHERE upload = ?1 AND number = ?2",
                        args![upload, p.number, CLAIMED, owner.as_str(), to_i64(until_ms)],
                    )?;
                }
                runs.push(run);
            }
            Ok(runs)
        })
    }

    /// Records part `number` of `upload` as uploaded with `etag` by `owner`. Answers
    /// `Some(true)` to the one report that finishes the last part, `Some(false)` otherwise,
    /// `None` if the claim was not `owner`'s any more (its lease ran out and it was reclaimed).
    /// A repeat of a report already recorded (same owner, same ETag) gets the same answer.
    pub fn finish_part(
        &mut self,
        upload: &str,
        number: u32,
        owner: &str,
        etag: &str,
    ) -> Result<Option<bool>, StateError> {
        self.db.write(|tx| {
            let n = tx.exec(
                "UPDATE parts SET state = ?3, etag = ?5 WHERE upload = ?1 AND number = ?2 AND state = ?4 AND owner = ?6",
                args![upload, number, FINISHED, CLAIMED, etag, owner],
            )?;
            if n == 1 {
                let open = match tx
                    .row("SELECT COUNT(*) FROM parts WHERE upload = ?1 AND state != ?2", args![upload, FINISHED])?
                {
                    Some(r) => r.int(0)?,
                    None => 0,
                };
                let last = open == 0;
                tx.exec("UPDATE parts SET last = ?3 WHERE upload = ?1 AND number = ?2", args![upload, number, last])?;
                Ok(Some(last))
            } else {
                tx.row(
                    "SELECT last FROM parts WHERE upload = ?1 AND number = ?2 AND state = ?3 AND owner = ?4 AND etag = ?5",
                    args![upload, number, FINISHED, owner, etag],
                )?
                .map(|r| r.flag(0))
                .transpose()
            }
        })
    }

    /// The finished parts of `upload` in order: (number, etag).
    pub fn finished_parts(&self, upload: &str) -> Result<Vec<(u32, String)>, StateError> {
        self.db.read(|db| {
            db.rows(
                "SELECT number, etag FROM parts WHERE upload = ?1 AND state = ?2 ORDER BY number",
                args![upload, FINISHED],
            )?
            .iter()
            .map(|r| Ok::<_, StateError>((r.u32(0)?, r.opt_text(1)?.unwrap_or_default())))
            .collect()
        })
    }

    /// Forgets the pool of `upload`.
    pub fn drop_pool(&mut self, upload: &str) -> Result<(), StateError> {
        self.db.write(|tx| tx.exec("DELETE FROM parts WHERE upload = ?1", args![upload]))?;
        Ok(())
    }
}

/// The body of [`State::reconcile`], one transaction.
fn reconcile_in(
    tx: &mut dyn Sql,
    before: &HashMap<String, Tracked>,
    src: &BTreeMap<String, Listed>,
    dst: &BTreeMap<String, Listed>,
    now_ms: u64,
) -> Result<Repairs, StateError> {
    let mut out = Repairs::default();
    let keys: BTreeSet<&String> = src.keys().chain(dst.keys()).chain(before.keys()).collect();
    for key in keys {
        let (s, d) = (src.get(key), dst.get(key));
        let Some(t) = before.get(key) else {
            if let Some(s) = s {
                out.unseen += tx.exec(
                    "INSERT INTO objects (key, seq, etag, size, deleted) VALUES (?1, 0, ?2, ?3, 0)
                     ON CONFLICT(key) DO NOTHING",
                    args![key, &s.etag, to_i64(s.size)],
                )?;
            } else {
                out.orphans += tx.exec(
                    "INSERT INTO objects (key, seq, etag, size, deleted) VALUES (?1, 0, NULL, 0, 1)
                     ON CONFLICT(key) DO NOTHING",
                    args![key],
                )?;
            }
            continue;
        };
        let source_differs = match s {
            None => !t.deleted,
            Some(s) => t.deleted || t.etag != s.etag,
        };
        if source_differs {
            let (etag, size) = s.map_or((None, 0), |s| (s.etag.clone(), s.size));
            out.corrected += tx.exec(
                "UPDATE objects SET etag = ?2, size = ?3, deleted = ?4, done_seq = -1
                 WHERE key = ?1 AND seq = ?5 AND etag IS NOT DISTINCT FROM ?6 AND deleted = ?7",
                args![key, &etag, to_i64(size), s.is_none(), t.seq, &t.etag, t.deleted],
            )?;
            continue;
        }
        if t.done_seq != t.seq || t.locked {
            continue;
        }
        let holds = match (t.deleted, d) {
            (true, d) => d.is_none(),
            (false, None) => false,
            (false, Some(d)) => match &t.dst_etag {
                Some(want) => d.etag.as_ref() == Some(want),
                None => d.size == t.size,
            },
        };
        if !holds {
            out.drifted += tx.exec(
                "UPDATE objects SET done_seq = -1, done_etag = NULL
                 WHERE key = ?1 AND seq = ?2 AND done_seq = ?3 AND dst_etag IS NOT DISTINCT FROM ?4
                   AND (lock_owner IS NULL OR lock_until < ?5)",
                args![key, t.seq, t.done_seq, &t.dst_etag, to_i64(now_ms)],
            )?;
        }
    }
    Ok(out)
}

/// A part of `upload` from a row of `SELECT number, "offset", len FROM parts`.
fn row_part(upload: &str, r: &Row) -> Result<Part, StateError> {
    Ok(Part { upload: upload.to_owned(), number: r.u32(0)?, offset: to_u64(r.int(1)?), len: to_u64(r.int(2)?) })
}

fn row_version(r: &Row) -> Result<Version, StateError> {
    Ok(Version {
        key: r.text(0)?,
        seq: to_u64(r.int(1)?),
        etag: r.opt_text(2)?,
        size: to_u64(r.int(3)?),
        deleted: r.flag(4)?,
    })
}

// Both databases' integers are i64; sequencers and sizes stay below 2^63 (a sequencer is
// nanoseconds).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod pgtest;
#[cfg(test)]
mod tests;
