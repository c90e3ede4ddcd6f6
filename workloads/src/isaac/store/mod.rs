//! Storage backends of the DB tier behind one trait.
//!
//! The DB tier serves `GET`/`PUT /kv/<key>` over HTTP (docs/workloads.md) and keeps the
//! rows in a [`Store`]. SQLite (embedded, one database file per DB node, real disk I/O in
//! the node's working directory) is the default. With `--store postgres` the DB tier
//! instead runs a real PostgreSQL server in the node and the app servers query it
//! directly ([`postgres`]); the HTTP protocol and this trait are then not used.

pub mod postgres;
mod sqlite;

pub use sqlite::{fill as fill_value, SqliteStore, Sync};

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open database {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op} key {key}: {source}")]
    Op {
        op: &'static str,
        key: u64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("populate {keys} keys: {source}")]
    Populate {
        keys: u64,
        #[source]
        source: rusqlite::Error,
    },
}

/// A key-value table of byte strings. Blocking: callers run it off the async threads.
pub trait Store: Send {
    /// The value of `key`; an absent key reads as empty.
    fn read(&mut self, key: u64) -> Result<Vec<u8>, StoreError>;
    /// Stores `value` under `key`, durably as the backend's sync setting says.
    fn write(&mut self, key: u64, value: &[u8]) -> Result<(), StoreError>;
}

/// The available stores, selected by `--store`.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
}

impl Store for AnyStore {
    fn read(&mut self, key: u64) -> Result<Vec<u8>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.read(key),
        }
    }
    fn write(&mut self, key: u64, value: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.write(key, value),
        }
    }
}
