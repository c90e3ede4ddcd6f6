//! The embedded store: one SQLite file in the server's working directory (WAL journal,
//! `synchronous=FULL`, so a committed write survives a killed process and a power cut).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{decode, encode, to_i64, ResultQuery, Store, StoreError};
use crate::probe::result::RunResult;
use crate::probe::task::Task;

/// Tasks and results in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn op(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Op { op, reason: e.to_string() }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |e: rusqlite::Error| StoreError::Open { what: path.display().to_string(), reason: e.to_string() };
        let conn = Connection::open(path).map_err(open)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS results(
                 task_id INTEGER NOT NULL, location TEXT NOT NULL, seq INTEGER NOT NULL,
                 body TEXT NOT NULL, PRIMARY KEY(task_id, location, seq));",
        )
        .map_err(open)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Op { op: "lock database", reason: "poisoned".into() })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Op { op: "database thread", reason: e.to_string() })?
    }
}

impl Store for SqliteStore {
    async fn save_task(&self, task: &Task) -> Result<(), StoreError> {
        let (id, body) = (to_i64(task.id), encode(task));
        self.with(move |c| {
            c.execute("INSERT OR REPLACE INTO tasks(id, body) VALUES (?1, ?2)", params![id, body])
                .map_err(op("save task"))?;
            Ok(())
        })
        .await
    }

    async fn load_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let bodies = self
            .with(|c| {
                let mut stmt = c.prepare("SELECT body FROM tasks ORDER BY id").map_err(op("load tasks"))?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(op("load tasks"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(op("load tasks"))
            })
            .await?;
        bodies.iter().map(|b| decode("task", b)).collect()
    }

    async fn record(&self, task: &Task, result: &RunResult) -> Result<bool, StoreError> {
        let (tid, tbody) = (to_i64(task.id), encode(task));
        let (loc, seq, rbody) = (result.location.clone(), to_i64(result.seq), encode(result));
        self.with(move |c| {
            let tx = c.transaction().map_err(op("begin"))?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM results WHERE task_id=?1 AND location=?2 AND seq=?3",
                    params![tid, loc, seq],
                    |_| Ok(()),
                )
                .optional()
                .map_err(op("look up result"))?
                .is_some();
            if exists {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO results(task_id, location, seq, body) VALUES (?1, ?2, ?3, ?4)",
                params![tid, loc, seq, rbody],
            )
            .map_err(op("store result"))?;
            tx.execute("INSERT OR REPLACE INTO tasks(id, body) VALUES (?1, ?2)", params![tid, tbody])
                .map_err(op("save task"))?;
            tx.commit().map_err(op("commit"))?;
            Ok(true)
        })
        .await
    }

    async fn results(&self, query: &ResultQuery) -> Result<Vec<RunResult>, StoreError> {
        let q = query.clone();
        let bodies = self
            .with(move |c| {
                let mut stmt = c
                    .prepare(
                        "SELECT body FROM results WHERE (?1 IS NULL OR task_id=?1) AND (?2 IS NULL OR location=?2)
                         AND (?3 IS NULL OR seq=?3) ORDER BY task_id, location, seq",
                    )
                    .map_err(op("query results"))?;
                let rows = stmt
                    .query_map(params![q.task_id.map(to_i64), q.location, q.seq.map(to_i64)], |r| r.get::<_, String>(0))
                    .map_err(op("query results"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(op("query results"))
            })
            .await?;
        bodies.iter().map(|b| decode("result", b)).collect()
    }

    async fn result_keys(&self, task_id: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let tid = to_i64(task_id);
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT location, seq FROM results WHERE task_id=?1").map_err(op("query results"))?;
            let rows = stmt
                .query_map(params![tid], |r| {
                    Ok((r.get::<_, String>(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
                })
                .map_err(op("query results"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(op("query results"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::store::contract;

    #[tokio::test]
    async fn results_are_stored_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.sqlite");
        contract::record_once(&SqliteStore::open(&path).unwrap()).await;
        contract::read_back(&SqliteStore::open(&path).unwrap()).await;
    }
}
