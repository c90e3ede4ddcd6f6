//! The results store: tasks and run results, SQLite embedded (default) or PostgreSQL,
//! behind one trait.
//!
//! # Invariants
//! - Every write is durable when its future resolves: the server acknowledges a task or a
//!   result only after that, so an acknowledged result survives a killed server.
//! - A run result is stored once per (task, location, sequence number); recording it again
//!   (an agent retrying a delivery whose acknowledgement was lost) changes nothing and
//!   reports `false`.
//! - A result and its task's updated tally are written in one transaction.
//!
//! # Design
//! Rows hold the API's JSON (`body`) beside the columns that queries filter on, so the
//! store returns exactly what was accepted and the schema need not track every field.

mod postgres;
mod sqlite;

use std::future::Future;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use super::result::RunResult;
use super::task::Task;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open {what}: {reason}")]
    Open { what: String, reason: String },
    #[error("{op}: {reason}")]
    Op { op: &'static str, reason: String },
    #[error("decode stored {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Which results to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultQuery {
    pub task_id: Option<u64>,
    pub location: Option<String>,
    pub seq: Option<u64>,
}

/// Persistent tasks and results.
pub trait Store: Send + Sync {
    /// Inserts or replaces `task`.
    fn save_task(&self, task: &Task) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every stored task, by id.
    fn load_tasks(&self) -> impl Future<Output = Result<Vec<Task>, StoreError>> + Send;
    /// Stores `result` and `task` (its updated tally) in one transaction, unless a result
    /// of that run is stored already: then nothing changes and it returns `false`.
    fn record(&self, task: &Task, result: &RunResult) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Results matching `query`, by task, location and sequence number.
    fn results(&self, query: &ResultQuery) -> impl Future<Output = Result<Vec<RunResult>, StoreError>> + Send;
    /// The (location, sequence number) of every stored result of `task_id`.
    fn result_keys(&self, task_id: u64) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
}

/// The available stores, selected by `--store`.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store for AnyStore {
    async fn save_task(&self, task: &Task) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.save_task(task).await,
            AnyStore::Postgres(s) => s.save_task(task).await,
        }
    }
    async fn load_tasks(&self) -> Result<Vec<Task>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.load_tasks().await,
            AnyStore::Postgres(s) => s.load_tasks().await,
        }
    }
    async fn record(&self, task: &Task, result: &RunResult) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.record(task, result).await,
            AnyStore::Postgres(s) => s.record(task, result).await,
        }
    }
    async fn results(&self, query: &ResultQuery) -> Result<Vec<RunResult>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.results(query).await,
            AnyStore::Postgres(s) => s.results(query).await,
        }
    }
    async fn result_keys(&self, task_id: u64) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.result_keys(task_id).await,
            AnyStore::Postgres(s) => s.result_keys(task_id).await,
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    // Serializing these plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Decode { what, source })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The contract of [`Store`], run against every backend by its own tests: results are
/// stored once per run, a repeat changes nothing, and everything survives reopening.
#[cfg(test)]
pub(crate) mod contract {
    use super::{ResultQuery, Store};
    use crate::probe::result::{RunResult, RunTiming};
    use crate::probe::spec::{validate, TaskSpec};
    use crate::probe::task::Task;

    fn task() -> Task {
        let spec: TaskSpec = serde_json::from_str(
            r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu","us"]}"#,
        )
        .unwrap();
        validate(&spec, 3, &["eu".into(), "us".into()], "2026-01-01T00:00:00Z".parse().unwrap()).unwrap()
    }

    fn result(location: &str, seq: u64) -> RunResult {
        let t = "2026-01-01T00:00:00Z".parse().unwrap();
        RunResult {
            task_id: 3,
            location: location.into(),
            seq,
            agent: Some("agent0".into()),
            agent_kind: None,
            fire_time: t,
            ok: true,
            error: None,
            timing: RunTiming::default(),
            endpoints: Vec::new(),
            finished_at: t,
            received_at: None,
            response_ms: None,
        }
    }

    /// Stores task 3 and a result at each of its locations, and a repeated delivery of one
    /// of them (with a tally that must not be stored).
    pub(crate) async fn record_once(store: &impl Store) {
        let mut t = task();
        store.save_task(&t).await.unwrap();
        t.tally.get_mut("eu").unwrap().ok_runs = 1;
        assert!(store.record(&t, &result("eu", 1)).await.unwrap());
        // A retried delivery changes nothing.
        let mut again = t.clone();
        again.tally.get_mut("eu").unwrap().ok_runs = 2;
        assert!(!store.record(&again, &result("eu", 1)).await.unwrap());
        assert!(store.record(&t, &result("us", 1)).await.unwrap());
    }

    /// What [`record_once`] left, as a reopened store returns it.
    pub(crate) async fn read_back(store: &impl Store) {
        let tasks = store.load_tasks().await.unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].tally["eu"].ok_runs, 1);
        let all = store.results(&ResultQuery { task_id: Some(3), ..ResultQuery::default() }).await.unwrap();
        assert_eq!(all, [result("eu", 1), result("us", 1)], "ordered by task, location and seq");
        let eu =
            store.results(&ResultQuery { task_id: Some(3), location: Some("eu".into()), seq: Some(1) }).await.unwrap();
        assert_eq!(eu, [result("eu", 1)]);
        let none = store.results(&ResultQuery { task_id: Some(4), ..ResultQuery::default() }).await.unwrap();
        assert!(none.is_empty());
        let mut keys = store.result_keys(3).await.unwrap();
        keys.sort();
        assert_eq!(keys, [("eu".to_owned(), 1), ("us".to_owned(), 1)]);
    }
}
