//! The two backends of the state behind one small interface: SQLite embedded (a file, the
//! default) and PostgreSQL (a server, `--state-db postgres://…`).
//!
//! # Design
//! - [`State`](super::State) writes its SQL once, with `?N` placeholders, in the dialect both
//!   accept (`ON CONFLICT … DO NOTHING`, `IS [NOT] DISTINCT FROM`, `CASE` rather than the
//!   two-argument `MIN`, the column `"offset"` quoted); PostgreSQL gets `$N` for `?N`. Values
//!   cross as [`Arg`] and [`Val`]: integers, text, NULL (booleans are integers 0/1 in both).
//! - Every mutation is one transaction run by [`Db::write`]: on SQLite `BEGIN IMMEDIATE` (its
//!   single writer serializes them); on PostgreSQL `SERIALIZABLE`, retried from the start on a
//!   serialization failure or a deadlock (SQLSTATE 40001, 40P01) after a short random pause,
//!   so several connections (processes) behave as if the transactions ran one at a time, as
//!   on SQLite. Reads ([`Db::read`]) are single statements (one snapshot each) on both.
//! - The PostgreSQL client is `tokio-postgres`; its connection runs on a thread of its own
//!   with a small runtime, and the calls block the caller (as SQLite's do), driven by
//!   `futures::executor::block_on`: they work from plain threads and from inside the
//!   coordinator's runtime alike, without `block_in_place`. A closed connection (a restarted
//!   server) is opened again at the next call; statements are prepared once per connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::TransactionBehavior;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};

use super::StateError;

/// A parameter of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::Null, Arg::Text)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Arg::Null, Arg::Text)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::Null, Arg::Int)
    }
}

/// The parameters of a statement: `args![a, b]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => { &[$($crate::state::db::Arg::from($x)),*][..] };
}
pub(crate) use args;

/// A value of a result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

/// A result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(Vec<Val>);

impl Row {
    fn get(&self, i: usize) -> Result<&Val, StateError> {
        self.0.get(i).ok_or_else(|| StateError::Decode(format!("no column {i}")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(t) => Err(StateError::Decode(format!("column {i}: text {t:?} where an integer was expected"))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StateError> {
        self.opt_int(i)?.ok_or_else(|| StateError::Decode(format!("column {i}: NULL where an integer was expected")))
    }

    pub fn u32(&self, i: usize) -> Result<u32, StateError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| StateError::Decode(format!("column {i}: {v} is not a u32")))
    }

    /// An integer or boolean as a flag (NULL: false, as a condition on NULL is).
    pub fn flag(&self, i: usize) -> Result<bool, StateError> {
        Ok(self.opt_int(i)?.unwrap_or(0) != 0)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StateError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Int(v) => Err(StateError::Decode(format!("column {i}: integer {v} where text was expected"))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StateError> {
        self.opt_text(i)?.ok_or_else(|| StateError::Decode(format!("column {i}: NULL where text was expected")))
    }
}

/// Statements of one transaction (or one read).
pub trait Sql {
    /// Runs a statement; answers the rows it changed.
    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<usize, StateError>;
    /// Runs a query; answers its rows.
    fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StateError>;
    /// The first row of a query, if any.
    fn row(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, StateError> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }
}

/// An open state database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    // Reads take `&self` (the state's read methods do); the client needs `&mut` for its
    // statement cache. `State` is used from one thread at a time (behind a mutex).
    Postgres(Box<RefCell<Pg>>),
}

impl Db {
    /// Runs `f` as one transaction that may write (see the module's design).
    pub fn write<T>(&mut self, mut f: impl FnMut(&mut dyn Sql) -> Result<T, StateError>) -> Result<T, StateError> {
        match self {
            Db::Sqlite(conn) => {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&mut Lite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Db::Postgres(pg) => pg.get_mut().serializable(f),
        }
    }

    /// Runs `f`, whose statements only read.
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T, StateError>) -> Result<T, StateError> {
        match self {
            Db::Sqlite(conn) => f(&mut Lite(conn)),
            Db::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.reconnect_if_closed()?;
                let Pg { client, statements, .. } = &mut *pg;
                f(&mut PgSql { client, statements })
            }
        }
    }
}

// ---- SQLite ----

struct Lite<'c>(&'c rusqlite::Connection);

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(Value::Null),
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

impl Sql for Lite<'_> {
    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<usize, StateError> {
        Ok(self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args))?)
    }

    fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StateError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(columns);
            for i in 0..columns {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    other => return Err(StateError::Decode(format!("column {i}: unexpected {:?}", other.data_type()))),
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

// ---- PostgreSQL ----

/// A connection to a PostgreSQL state database.
pub struct Pg {
    url: String,
    client: tokio_postgres::Client,
    /// Prepared statements by their `?N` text.
    statements: HashMap<String, tokio_postgres::Statement>,
}

/// Attempts of one transaction before a serialization failure is reported.
const ATTEMPTS: u32 = 200;

impl Pg {
    /// Connects to `url` (a `postgres://` URL or a libpq `key=value` string).
    pub fn connect(url: &str) -> Result<Pg, StateError> {
        Ok(Pg { url: url.to_owned(), client: spawn_connection(url)?, statements: HashMap::new() })
    }

    fn reconnect_if_closed(&mut self) -> Result<(), StateError> {
        if self.client.is_closed() {
            tracing::warn!(url = %redact(&self.url), "the state database connection closed; connecting again");
            self.client = spawn_connection(&self.url)?;
            self.statements.clear();
        }
        Ok(())
    }

    /// Runs `statements` as one simple query (several statements, no parameters).
    pub fn batch(&mut self, statements: &str) -> Result<(), StateError> {
        self.reconnect_if_closed()?;
        Ok(futures::executor::block_on(self.client.batch_execute(statements))?)
    }

    fn serializable<T>(&mut self, mut f: impl FnMut(&mut dyn Sql) -> Result<T, StateError>) -> Result<T, StateError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.reconnect_if_closed()?;
            match self.attempt(&mut f) {
                Err(StateError::Postgres(e)) if retryable(&e) && attempt < ATTEMPTS => {
                    // Random, growing up to 20 ms: racing transactions spread out.
                    let cap = 20u64.min(1 << attempt.min(5));
                    let ms = rand::Rng::random_range(&mut rand::rng(), 0..=cap * 1000);
                    std::thread::sleep(Duration::from_micros(ms));
                }
                other => return other,
            }
        }
    }

    fn attempt<T>(&mut self, f: &mut impl FnMut(&mut dyn Sql) -> Result<T, StateError>) -> Result<T, StateError> {
        let block = futures::executor::block_on;
        block(self.client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE"))?;
        let out = f(&mut PgSql { client: &self.client, statements: &mut self.statements });
        let end = match &out {
            Ok(_) => "COMMIT",
            Err(_) => "ROLLBACK",
        };
        match (out, block(self.client.batch_execute(end))) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => {
                // A failed COMMIT has ended the transaction already; nothing to roll back.
                Err(e.into())
            }
            (Err(e), _) => Err(e),
        }
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Connects, running the connection on a thread of its own (see the module's design).
fn spawn_connection(url: &str) -> Result<tokio_postgres::Client, StateError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = url.to_owned();
    let shown = redact(url);
    std::thread::Builder::new()
        .name("state-postgres".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(StateError::Other(format!("start the runtime of the connection: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                match tokio_postgres::connect(&target, tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        if tx.send(Ok(client)).is_ok() {
                            if let Err(err) = connection.await {
                                tracing::warn!(%err, "the state database connection ended");
                            }
                        }
                    }
                    Err(source) => {
                        let _ = tx.send(Err(StateError::Connect { url: redact(&target), source }));
                    }
                }
            });
        })
        .map_err(|e| StateError::Other(format!("start the connection thread: {e}")))?;
    rx.recv().map_err(|_| StateError::Other(format!("the connection thread to {shown} ended")))?
}

/// `url` without its password (for messages).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `?N` placeholders as PostgreSQL's `$N`.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

struct PgSql<'a> {
    client: &'a tokio_postgres::Client,
    statements: &'a mut HashMap<String, tokio_postgres::Statement>,
}

impl PgSql<'_> {
    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, StateError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = futures::executor::block_on(self.client.prepare(&dollars(sql)))?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Sql for PgSql<'_> {
    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<usize, StateError> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let n = futures::executor::block_on(self.client.execute(&stmt, &params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StateError> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = futures::executor::block_on(self.client.query(&stmt, &params))?;
        rows.iter().map(pg_row).collect()
    }
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, StateError> {
    let mut row = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map_or(Val::Null, |v| Val::Int(i64::from(v)))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map_or(Val::Null, |v| Val::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map_or(Val::Null, |v| Val::Int(i64::from(v)))
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text)
        } else {
            return Err(StateError::Decode(format!("column {}: unexpected type {ty}", c.name())));
        };
        row.push(v);
    }
    Ok(Row(row))
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::BOOL => (v != 0).to_sql(ty, out),
            Arg::Int(_) => Err(format!("an integer for a parameter of type {ty}").into()),
            Arg::Text(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        // `to_sql` checks the type of each variant itself.
        self.to_sql(ty, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_and_passwords_are_hidden() {
        assert_eq!(
            dollars("a = ?1 AND b IS NOT DISTINCT FROM ?12 OR c = '?'"),
            "a = $1 AND b IS NOT DISTINCT FROM $12 OR c = '?'"
        );
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("host=/tmp user=u password=x"), "host=/tmp user=u password=***");
    }
}
