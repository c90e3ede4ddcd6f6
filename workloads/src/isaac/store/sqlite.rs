//! The embedded SQLite store: one file per DB node, table `kv(key INTEGER PRIMARY KEY,
//! value BLOB)`, pre-filled with `keys` rows of `size` bytes so reads hit real pages.
//!
//! # Design
//! WAL journal; `--sync` picks SQLite's `synchronous` level (`full` fsyncs every commit,
//! `normal` at checkpoints, `off` never), so the cost of durability is a flag. Each write
//! is its own transaction, as a web application's would be.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    Off,
    Normal,
    Full,
}

/// A SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating) `path` and fills keys `0..keys` that are missing with `size` bytes.
    pub fn open(path: &Path, sync: Sync, keys: u64, size: usize) -> Result<Self, StoreError> {
        let open = |source| StoreError::Open { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(open)?;
        let level = match sync {
            Sync::Off => "OFF",
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open)?;
        conn.pragma_update(None, "synchronous", level).map_err(open)?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (key INTEGER PRIMARY KEY, value BLOB NOT NULL)")
            .map_err(open)?;
        let mut store = SqliteStore { conn };
        store.populate(keys, size)?;
        Ok(store)
    }

    fn populate(&mut self, keys: u64, size: usize) -> Result<(), StoreError> {
        let err = |source| StoreError::Populate { keys, source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare("INSERT OR IGNORE INTO kv (key, value) VALUES (?1, ?2)").map_err(err)?;
            for key in 0..keys {
                stmt.execute(params![key as i64, fill(key, size)]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

/// Deterministic, incompressible-enough content for `key`.
pub fn fill(key: u64, size: usize) -> Vec<u8> {
    let mut x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Store for SqliteStore {
    fn read(&mut self, key: u64) -> Result<Vec<u8>, StoreError> {
        let err = |source| StoreError::Op { op: "read", key, source };
        let mut stmt = self.conn.prepare_cached("SELECT value FROM kv WHERE key = ?1").map_err(err)?;
        let v: Option<Vec<u8>> = stmt.query_row(params![key as i64], |r| r.get(0)).optional().map_err(err)?;
        Ok(v.unwrap_or_default())
    }

    fn write(&mut self, key: u64, value: &[u8]) -> Result<(), StoreError> {
        let err = |source| StoreError::Op { op: "write", key, source };
        let mut stmt =
            self.conn.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)").map_err(err)?;
        stmt.execute(params![key as i64, value]).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut s = SqliteStore::open(&path, Sync::Full, 10, 64).unwrap();
        assert_eq!(s.read(3).unwrap(), fill(3, 64));
        assert!(s.read(99).unwrap().is_empty(), "absent keys read empty");
        s.write(3, b"new").unwrap();
        drop(s);
        let mut s = SqliteStore::open(&path, Sync::Normal, 10, 64).unwrap();
        assert_eq!(s.read(3).unwrap(), b"new", "populate keeps existing rows");
        assert!(std::fs::metadata(&path).unwrap().len() > 640);
    }
}
