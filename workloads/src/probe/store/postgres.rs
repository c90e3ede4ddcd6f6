//! The PostgreSQL option: the same tables in a database the server connects to
//! (`--store postgres --pg-url 'host=… user=… dbname=…'`), e.g. a PostgreSQL node of the
//! topology. Commits use the server's default `synchronous_commit=on`, so an acknowledged
//! write is durable there.

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{decode, encode, to_i64, ResultQuery, Store, StoreError};
use crate::probe::result::RunResult;
use crate::probe::task::Task;

/// Tasks and results in PostgreSQL.
pub struct PgStore {
    client: Mutex<Client>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

fn op(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Op { op, reason: e.to_string() }
}

impl PgStore {
    /// Connects with a libpq-style `config` and creates the tables if needed.
    pub async fn connect(config: &str) -> Result<Self, StoreError> {
        let open =
            |e: tokio_postgres::Error| StoreError::Open { what: format!("postgres {config:?}"), reason: e.to_string() };
        let (client, connection) = tokio_postgres::connect(config, NoTls).await.map_err(open)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::error!(%err, "postgres connection ended");
            }
        });
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS tasks(id BIGINT PRIMARY KEY, body TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS results(
                     task_id BIGINT NOT NULL, location TEXT NOT NULL, seq BIGINT NOT NULL,
                     body TEXT NOT NULL, PRIMARY KEY(task_id, location, seq));",
            )
            .await
            .map_err(open)?;
        Ok(Self { client: Mutex::new(client) })
    }
}

const UPSERT_TASK: &str =
    "INSERT INTO tasks(id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body";

impl Store for PgStore {
    async fn save_task(&self, task: &Task) -> Result<(), StoreError> {
        let client = self.client.lock().await;
        client.execute(UPSERT_TASK, &[&to_i64(task.id), &encode(task)]).await.map_err(op("save task"))?;
        Ok(())
    }

    async fn load_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let client = self.client.lock().await;
        let rows = client.query("SELECT body FROM tasks ORDER BY id", &[]).await.map_err(op("load tasks"))?;
        rows.iter().map(|r| decode("task", &r.get::<_, String>(0))).collect()
    }

    async fn record(&self, task: &Task, result: &RunResult) -> Result<bool, StoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(op("begin"))?;
        let inserted = tx
            .execute(
                "INSERT INTO results(task_id, location, seq, body) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&to_i64(task.id), &result.location, &to_i64(result.seq), &encode(result)],
            )
            .await
            .map_err(op("store result"))?;
        if inserted == 0 {
            return Ok(false);
        }
        tx.execute(UPSERT_TASK, &[&to_i64(task.id), &encode(task)]).await.map_err(op("save task"))?;
        tx.commit().await.map_err(op("commit"))?;
        Ok(true)
    }

    async fn results(&self, query: &ResultQuery) -> Result<Vec<RunResult>, StoreError> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT body FROM results WHERE ($1::BIGINT IS NULL OR task_id=$1) AND ($2::TEXT IS NULL OR location=$2)
                 AND ($3::BIGINT IS NULL OR seq=$3) ORDER BY task_id, location, seq",
                &[&query.task_id.map(to_i64), &query.location, &query.seq.map(to_i64)],
            )
            .await
            .map_err(op("query results"))?;
        rows.iter().map(|r| decode("result", &r.get::<_, String>(0))).collect()
    }

    async fn result_keys(&self, task_id: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client.lock().await;
        let rows = client
            .query("SELECT location, seq FROM results WHERE task_id=$1", &[&to_i64(task_id)])
            .await
            .map_err(op("query results"))?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::isaac::store::postgres::{self as pg, PgConfig, PgError, PgServer};
    use crate::isaac::store::Sync;
    use crate::probe::store::contract;

    /// A PostgreSQL server started as the Isaac DB tier starts one, stopped when dropped
    /// (also when the test fails).
    struct Running(Option<PgServer>);

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(server) = self.0.take() {
                server.stop(Duration::from_secs(10));
            }
        }
    }

    /// postgres refuses to run as root: as root it runs as `nobody`, else as this user.
    fn os_user() -> String {
        if nix::unistd::geteuid().is_root() {
            return "nobody".into();
        }
        nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().name
    }

    #[tokio::test]
    async fn postgres_keeps_the_store_contract() {
        let test = "postgres_keeps_the_store_contract";
        let dir = tempfile::tempdir().unwrap();
        // postgres's user must traverse to its data directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = PgConfig {
            data: dir.path().join("pgdata"),
            port,
            os_user: os_user(),
            bin: None,
            sync: Sync::Full,
            log: dir.path().join("postgres.log"),
        };
        let mut running = match tokio::task::spawn_blocking(move || PgServer::start(&cfg)).await.unwrap() {
            Ok(server) => Running(Some(server)),
            Err(PgError::NotFound { .. }) => {
                println!("SKIPPED: {test}: PostgreSQL is not installed (scripts/setup installs postgresql)");
                return;
            }
            Err(err) => panic!("start postgres: {err}"),
        };
        // Waits until it accepts connections (the helper also creates Isaac's empty table).
        let server = running.0.as_mut().unwrap();
        if let Err(err) = pg::prepare(server, 0, 0, Duration::from_secs(60)).await {
            let log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
            panic!("postgres not ready: {err}\n{log}");
        }
        let config = format!("host=127.0.0.1 port={port} user={} dbname=postgres", pg::USER);
        contract::record_once(&PgStore::connect(&config).await.unwrap()).await;
        // A new connection (as a restarted server makes) finds the tables and their rows.
        contract::read_back(&PgStore::connect(&config).await.unwrap()).await;
        drop(running);
    }
}
