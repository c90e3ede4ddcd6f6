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
