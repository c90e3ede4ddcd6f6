//! The replicator's shared state in SQLite: the latest version of every object, the
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
//! Every mutation is one `BEGIN IMMEDIATE` transaction, so several connections (processes)
//! on one database file serialize correctly.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
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
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
  key TEXT PRIMARY KEY, seq INTEGER NOT NULL, etag TEXT, size INTEGER NOT NULL,
  deleted INTEGER NOT NULL, done_seq INTEGER NOT NULL DEFAULT -1,
  lock_owner TEXT, lock_seq INTEGER, lock_etag TEXT, lock_until INTEGER,
  dst_etag TEXT, event_ms INTEGER,
  done_etag TEXT, hold_until INTEGER, fails INTEGER NOT NULL DEFAULT 0);
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
  upload TEXT NOT NULL, number INTEGER NOT NULL, offset INTEGER NOT NULL, len INTEGER NOT NULL,
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
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn =
            Connection::open(path).map_err(|source| StateError::Open { path: path.display().to_string(), source })?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<State, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<State, StateError> {
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
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
            let has: bool =
                conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?.exists(params![table, column])?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        Ok(State { conn })
    }

    /// Records `version` unless a later one is known. Answers whether it was newer.
    pub fn observe(&mut self, v: &Version) -> Result<bool, StateError> {
        self.observe_at(v, None)
    }

    /// [`State::observe`], remembering when the source wrote the version (`event_ms`, the
    /// event's time) to measure its replication delay: the write joins `writes` unless the
    /// destination already holds it or a later version (an old event arriving late).
    pub fn observe_at(&mut self, v: &Version, event_ms: Option<u64>) -> Result<bool, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: Option<(i64, i64)> = tx
            .query_row("SELECT seq, done_seq FROM objects WHERE key = ?1", [&v.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let newer = known.is_none_or(|(seq, _)| seq < to_i64(v.seq));
        if newer {
            tx.execute(
                "INSERT INTO objects (key, seq, etag, size, deleted, event_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(key) DO UPDATE SET seq = ?2, etag = ?3, size = ?4, deleted = ?5, event_ms = ?6",
                params![v.key, to_i64(v.seq), v.etag, to_i64(v.size), v.deleted, event_ms.map(to_i64)],
            )?;
        }
        let held = known.map_or(-1, |(_, done)| done);
        if let Some(at) = event_ms.filter(|_| to_i64(v.seq) > held) {
            tx.execute(
                "INSERT OR IGNORE INTO writes (key, seq, event_ms) VALUES (?1, ?2, ?3)",
                params![v.key, to_i64(v.seq), to_i64(at)],
            )?;
        }
        tx.commit()?;
        Ok(newer)
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
        let mut stmt = self.conn.prepare(
            "SELECT key, seq, etag, size, deleted FROM objects
             WHERE done_seq < seq AND (lock_owner IS NULL OR lock_until < ?1)
               AND (hold_until IS NULL OR hold_until <= ?1)
               AND (batch_until IS NULL OR batch_until <= ?1)
               AND key NOT IN (SELECT s.source FROM hint_sources s JOIN changelogs c ON c.record = s.record
                               JOIN objects t ON t.key = c.key JOIN objects o ON o.key = s.source
                               WHERE c.state = 0 AND c.recorded_ms >= ?3 AND s.source != c.key
                                 AND t.etag = c.etag AND t.done_seq < t.seq AND o.etag IS NOT s.etag)
               AND key NOT IN (SELECT c.key FROM changelogs c JOIN hint_sources s ON s.record = c.record
                               JOIN objects t ON t.key = c.key JOIN objects o ON o.key = s.source
                               WHERE c.state = 0 AND c.recorded_ms >= ?3 AND s.source != c.key
                                 AND t.etag = c.etag AND o.etag = s.etag AND o.done_seq < o.seq)
             ORDER BY seq LIMIT ?2",
        )?;
        let rows =
            stmt.query_map(params![to_i64(now_ms), to_i64(limit as u64), to_i64(hints_since_ms)], row_version)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Holds `key` back until `until_ms` (SLO-bounded batching), or until the hold it already
    /// has if that ends sooner: a newer write never pushes the copy of an older one later.
    /// A hold that ended already counts as none. Answers the hold in force.
    pub fn hold_batch(&mut self, key: &str, now_ms: u64, until_ms: u64) -> Result<Option<u64>, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE objects SET batch_until = CASE WHEN batch_until IS NOT NULL AND batch_until > ?2
               THEN MIN(batch_until, ?3) ELSE ?3 END WHERE key = ?1",
            params![key, to_i64(now_ms), to_i64(until_ms)],
        )?;
        let hold: Option<Option<i64>> =
            tx.query_row("SELECT batch_until FROM objects WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        tx.commit()?;
        Ok(hold.flatten().map(to_u64))
    }

    /// Records a changelog hint read from `record` (its key at the source) at `now_ms`;
    /// a record seen before changes nothing.
    pub fn add_hint(&mut self, record: &str, hint: &crate::changelog::Hint, now_ms: u64) -> Result<bool, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let body = serde_json::to_string(hint).unwrap_or_default();
        let n = tx.execute(
            "INSERT OR IGNORE INTO changelogs (record, key, etag, op, body, recorded_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![record, hint.key, hint.etag, hint.op.via(), body, to_i64(now_ms)],
        )?;
        if n == 1 {
            for s in &hint.sources {
                tx.execute(
                    "INSERT OR IGNORE INTO hint_sources (record, source, etag) VALUES (?1, ?2, ?3)",
                    params![record, s.key, crate::etag::normalize(&s.etag)],
                )?;
            }
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// The newest unresolved hint whose target is `key` at ETag `etag`, with its record key.
    pub fn hint_for(&self, key: &str, etag: &str) -> Result<Option<(String, crate::changelog::Hint)>, StateError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT record, body FROM changelogs WHERE key = ?1 AND etag = ?2 AND state = 0
                 ORDER BY record DESC LIMIT 1",
                params![key, crate::etag::normalize(etag)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(record, body)| serde_json::from_str(&body).ok().map(|h| (record, h))))
    }

    /// Marks the hints of `key` at `etag` resolved: `applied` at the destination, or fallen
    /// back to a copy of the bytes. Answers how many.
    pub fn resolve_hints(&mut self, key: &str, etag: &str, applied: bool) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE changelogs SET state = ?3 WHERE key = ?1 AND etag = ?2 AND state = 0",
            params![key, crate::etag::normalize(etag), if applied { HINT_APPLIED } else { HINT_FELL_BACK }],
        )?)
    }

    /// What the destination holds of `key` by the table: the source ETag of the version last
    /// copied there and the destination ETag the copy got.
    pub fn held(&self, key: &str) -> Result<Option<crate::changelog::Held>, StateError> {
        Ok(self
            .conn
            .query_row("SELECT done_etag, dst_etag FROM objects WHERE key = ?1 AND done_seq >= 0", [key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Whether every known object is replicated at its latest version.
    pub fn converged(&self) -> Result<bool, StateError> {
        let lagging: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM objects WHERE done_seq < seq", [], |r| r.get(0))?;
        Ok(lagging == 0)
    }

    /// Takes the lock of `key` for the latest version, as `owner`, until `until_ms`. Answers the
    /// version to copy, or `None` when a live lease of another owner holds it or nothing lags.
    pub fn lock(&mut self, key: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<Option<Version>, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                "SELECT key, seq, etag, size, deleted FROM objects
                 WHERE key = ?1 AND done_seq < seq AND (lock_owner IS NULL OR lock_owner = ?2 OR lock_until < ?3)",
                params![key, owner, to_i64(now_ms)],
                row_version,
            )
            .optional()?;
        if let Some(v) = &row {
            tx.execute(
                "UPDATE objects SET lock_owner = ?2, lock_seq = ?3, lock_etag = ?4, lock_until = ?5 WHERE key = ?1",
                params![key, owner, to_i64(v.seq), v.etag, to_i64(until_ms)],
            )?;
        }
        tx.commit()?;
        Ok(row)
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let locks =
            tx.execute("UPDATE objects SET lock_until = ?1 WHERE lock_owner IS NOT NULL", [to_i64(until_ms)])?;
        tx.execute("UPDATE parts SET lease_until = ?1 WHERE state = ?2", params![to_i64(until_ms), CLAIMED])?;
        tx.commit()?;
        Ok(locks)
    }

    /// Extends `owner`'s lease on `key`. Answers false if the lock is no longer ours.
    pub fn renew(&mut self, key: &str, owner: &str, until_ms: u64) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "UPDATE objects SET lock_until = ?3 WHERE key = ?1 AND lock_owner = ?2",
            params![key, owner, to_i64(until_ms)],
        )?;
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // (lock owner, latest seq, latest ETag, locked ETag)
        type Row = (Option<String>, i64, Option<String>, Option<String>);
        let row: Option<Row> = tx
            .query_row("SELECT lock_owner, seq, etag, lock_etag FROM objects WHERE key = ?1", [key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let mut writes = Vec::new();
        let outcome = match row {
            Some((Some(holder), latest_seq, latest_etag, lock_etag)) if holder == owner => {
                // The copy counts when the version locked is still the latest (reconciliation
                // may have corrected the latest ETag at the same seq) and the source served it.
                let current =
                    latest_seq == to_i64(seq) && latest_etag.as_deref() == etag && lock_etag.as_deref() == etag;
                if current {
                    tx.execute(
                        "UPDATE objects SET done_seq = seq, dst_etag = ?2, done_etag = lock_etag, fails = 0,
                           hold_until = NULL WHERE key = ?1",
                        params![key, dst_etag],
                    )?;
                    let mut stmt = tx.prepare(
                        "SELECT seq, event_ms, flagged FROM writes WHERE key = ?1 AND seq <= ?2 ORDER BY seq",
                    )?;
                    let rows = stmt.query_map(params![key, to_i64(seq)], |r| {
                        Ok(Write { seq: to_u64(r.get(0)?), event_ms: to_u64(r.get(1)?), flagged: r.get(2)? })
                    })?;
                    writes = rows.collect::<Result<_, _>>()?;
                    drop(stmt);
                    tx.execute("DELETE FROM writes WHERE key = ?1 AND seq <= ?2", params![key, to_i64(seq)])?;
                }
                tx.execute("UPDATE objects SET lock_owner = NULL, lock_until = NULL WHERE key = ?1", [key])?;
                if current {
                    Release::Done
                } else {
                    Release::Stale
                }
            }
            _ => Release::Lost,
        };
        tx.commit()?;
        Ok(Released { outcome, writes })
    }

    /// Releases `owner`'s lock on `key` after its copy failed, and holds the key back until
    /// `retry_at(failures so far)` (a backoff). Answers the failures so far and the retry
    /// time, or `None` when the lock was not `owner`'s.
    pub fn fail(
        &mut self,
        key: &str,
        owner: &str,
        retry_at: impl FnOnce(u32) -> u64,
    ) -> Result<Option<(u32, u64)>, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let fails: Option<i64> = tx
            .query_row("SELECT fails FROM objects WHERE key = ?1 AND lock_owner = ?2", params![key, owner], |r| {
                r.get(0)
            })
            .optional()?;
        let answer = match fails {
            Some(before) => {
                let fails = u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX);
                let at = retry_at(fails);
                tx.execute(
                    "UPDATE objects SET fails = ?2, hold_until = ?3, lock_owner = NULL, lock_until = NULL
                     WHERE key = ?1",
                    params![key, i64::from(fails), to_i64(at)],
                )?;
                Some((fails, at))
            }
            None => None,
        };
        tx.commit()?;
        Ok(answer)
    }

    /// When the oldest write of `key` the destination does not hold yet was made (ms): the
    /// SLO counts from it.
    pub fn oldest_pending(&self, key: &str) -> Result<Option<u64>, StateError> {
        let oldest: Option<i64> =
            self.conn.query_row("SELECT MIN(event_ms) FROM writes WHERE key = ?1", [key], |r| r.get(0))?;
        Ok(oldest.map(to_u64))
    }

    /// Writes whose SLO (`slo_ms` after the write) has passed at `now_ms` and that no copy has
    /// covered, not flagged before; flags them, so each is answered once.
    pub fn overdue(&mut self, now_ms: u64, slo_ms: u64) -> Result<Vec<Overdue>, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cutoff = to_i64(now_ms.saturating_sub(slo_ms));
        let mut stmt =
            tx.prepare("SELECT key, seq, event_ms FROM writes WHERE flagged = 0 AND event_ms < ?1 ORDER BY key, seq")?;
        let rows = stmt.query_map([cutoff], |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?), to_u64(r.get(2)?))))?;
        let mut out: Vec<Overdue> = Vec::new();
        for row in rows {
            let (key, seq, at) = row?;
            match out.last_mut() {
                Some(o) if o.key == key => {
                    o.seqs.push(seq);
                    o.oldest_ms = o.oldest_ms.min(at);
                }
                _ => out.push(Overdue { key, seqs: vec![seq], oldest_ms: at }),
            }
        }
        drop(stmt);
        tx.execute("UPDATE writes SET flagged = 1 WHERE flagged = 0 AND event_ms < ?1", [cutoff])?;
        tx.commit()?;
        Ok(out)
    }

    /// The latest known version of `key` and when the source wrote it (ms), if known.
    pub fn written_at(&self, key: &str) -> Result<Option<(u64, Option<u64>)>, StateError> {
        let row: Option<(i64, Option<i64>)> = self
            .conn
            .query_row("SELECT seq, event_ms FROM objects WHERE key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(seq, at)| (to_u64(seq), at.map(to_u64))))
    }

    /// What the table says of every key, taken before the stores are listed (see
    /// [`State::reconcile`]).
    pub fn snapshot(&self, now_ms: u64) -> Result<HashMap<String, Tracked>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT key, seq, etag, size, deleted, done_seq, dst_etag,
                    lock_owner IS NOT NULL AND lock_until >= ?1, done_etag FROM objects",
        )?;
        let rows = stmt.query_map([to_i64(now_ms)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Tracked {
                    seq: r.get(1)?,
                    etag: r.get(2)?,
                    size: to_u64(r.get(3)?),
                    deleted: r.get(4)?,
                    done_seq: r.get(5)?,
                    dst_etag: r.get(6)?,
                    locked: r.get(7)?,
                    done_etag: r.get(8)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Repairs::default();
        let keys: BTreeSet<&String> = src.keys().chain(dst.keys()).chain(before.keys()).collect();
        for key in keys {
            let (s, d) = (src.get(key), dst.get(key));
            let Some(t) = before.get(key) else {
                if let Some(s) = s {
                    out.unseen += tx.execute(
                        "INSERT INTO objects (key, seq, etag, size, deleted) VALUES (?1, 0, ?2, ?3, 0)
                         ON CONFLICT(key) DO NOTHING",
                        params![key, s.etag, to_i64(s.size)],
                    )?;
                } else {
                    out.orphans += tx.execute(
                        "INSERT INTO objects (key, seq, etag, size, deleted) VALUES (?1, 0, NULL, 0, 1)
                         ON CONFLICT(key) DO NOTHING",
                        [key],
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
                out.corrected += tx.execute(
                    "UPDATE objects SET etag = ?2, size = ?3, deleted = ?4, done_seq = -1
                     WHERE key = ?1 AND seq = ?5 AND etag IS ?6 AND deleted = ?7",
                    params![key, etag, to_i64(size), s.is_none(), t.seq, t.etag, t.deleted],
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
                out.drifted += tx.execute(
                    "UPDATE objects SET done_seq = -1, done_etag = NULL
                     WHERE key = ?1 AND seq = ?2 AND done_seq = ?3 AND dst_etag IS ?4
                       AND (lock_owner IS NULL OR lock_until < ?5)",
                    params![key, t.seq, t.done_seq, t.dst_etag, to_i64(now_ms)],
                )?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Extends `owner`'s claims on parts of `upload` until `until_ms`; answers how many.
    pub fn renew_claims(&mut self, upload: &str, owner: &str, until_ms: u64) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE parts SET lease_until = ?3 WHERE upload = ?1 AND owner = ?2 AND state = ?4",
            params![upload, owner, to_i64(until_ms), CLAIMED],
        )?)
    }

    /// Fills the pool of `upload` with parts of `part_size` covering `size` bytes.
    pub fn fill_pool(&mut self, upload: &str, size: u64, part_size: u64) -> Result<u32, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let part_size = part_size.max(1);
        let mut number = 0u32;
        let mut offset = 0u64;
        while offset < size || (size == 0 && number == 0) {
            let len = part_size.min(size - offset);
            number += 1;
            tx.execute(
                "INSERT OR IGNORE INTO parts (upload, number, offset, len) VALUES (?1, ?2, ?3, ?4)",
                params![upload, number, to_i64(offset), to_i64(len)],
            )?;
            offset += len;
            if len == 0 {
                break;
            }
        }
        tx.commit()?;
        Ok(number)
    }

    /// Claims one part of `upload` for `owner` until `until_ms`: the part `owner` already
    /// holds unfinished if any (an instance works on one part at a time, so such a claim
    /// repeats one whose answer was lost, or comes from a retried attempt of the instance),
    /// else a free or abandoned one.
    pub fn claim(&mut self, upload: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<Option<Part>, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let part = tx
            .query_row(
                "SELECT number, offset, len FROM parts WHERE upload = ?1
                 AND (state = ?2 OR (state = ?3 AND (lease_until < ?4 OR owner = ?5)))
                 ORDER BY state = ?3 AND owner = ?5 DESC, number LIMIT 1",
                params![upload, FREE, CLAIMED, to_i64(now_ms), owner],
                |r| {
                    Ok(Part {
                        upload: upload.to_owned(),
                        number: r.get(0)?,
                        offset: to_u64(r.get(1)?),
                        len: to_u64(r.get(2)?),
                    })
                },
            )
            .optional()?;
        if let Some(p) = &part {
            tx.execute(
                "UPDATE parts SET state = ?3, owner = ?4, lease_until = ?5 WHERE upload = ?1 AND number = ?2",
                params![upload, p.number, CLAIMED, owner, to_i64(until_ms)],
            )?;
        }
        tx.commit()?;
        Ok(part)
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let free: Vec<Part> = {
            let mut stmt =
                tx.prepare("SELECT number, offset, len FROM parts WHERE upload = ?1 AND state = ?2 ORDER BY number")?;
            let rows = stmt.query_map(params![upload, FREE], |r| {
                Ok(Part {
                    upload: upload.to_owned(),
                    number: r.get(0)?,
                    offset: to_u64(r.get(1)?),
                    len: to_u64(r.get(2)?),
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let n = owners.len().max(1);
        let mut runs = Vec::with_capacity(owners.len());
        for (i, owner) in owners.iter().enumerate() {
            let run: Vec<Part> = free[i * free.len() / n..(i + 1) * free.len() / n].to_vec();
            for p in &run {
                tx.execute(
                    "UPDATE parts SET state = ?3, owner = ?4, lease_until = ?5 WHERE upload = ?1 AND number = ?2",
                    params![upload, p.number, CLAIMED, owner, to_i64(until_ms)],
                )?;
            }
            runs.push(run);
        }
        tx.commit()?;
        Ok(runs)
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE parts SET state = ?3, etag = ?5 WHERE upload = ?1 AND number = ?2 AND state = ?4 AND owner = ?6",
            params![upload, number, FINISHED, CLAIMED, etag, owner],
        )?;
        let answer = if n == 1 {
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM parts WHERE upload = ?1 AND state != ?2",
                params![upload, FINISHED],
                |r| r.get(0),
            )?;
            let last = open == 0;
            tx.execute("UPDATE parts SET last = ?3 WHERE upload = ?1 AND number = ?2", params![upload, number, last])?;
            Some(last)
        } else {
            tx.query_row(
                "SELECT last FROM parts WHERE upload = ?1 AND number = ?2 AND state = ?3 AND owner = ?4 AND etag = ?5",
                params![upload, number, FINISHED, owner, etag],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
        };
        tx.commit()?;
        Ok(answer)
    }

    /// The finished parts of `upload` in order: (number, etag).
    pub fn finished_parts(&self, upload: &str) -> Result<Vec<(u32, String)>, StateError> {
        let mut stmt =
            self.conn.prepare("SELECT number, etag FROM parts WHERE upload = ?1 AND state = ?2 ORDER BY number")?;
        let rows = stmt.query_map(params![upload, FINISHED], |r| {
            Ok((r.get(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the pool of `upload`.
    pub fn drop_pool(&mut self, upload: &str) -> Result<(), StateError> {
        self.conn.execute("DELETE FROM parts WHERE upload = ?1", [upload])?;
        Ok(())
    }
}

fn row_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<Version> {
    Ok(Version { key: r.get(0)?, seq: to_u64(r.get(1)?), etag: r.get(2)?, size: to_u64(r.get(3)?), deleted: r.get(4)? })
}

// SQLite integers are i64; sequencers and sizes stay below 2^63 (a sequencer is nanoseconds).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests;
