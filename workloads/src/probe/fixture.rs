//! Test fixtures of the probe platform: a server on a temporary SQLite store, and the same
//! server behind its HTTP API on a loopback port, as agents and the CLI reach it in a node.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::client::ApiClient;
use super::server::{Server, ServerConfig};
use super::spec::TaskSpec;
use super::store::{AnyStore, SqliteStore};

/// A server with the locations `eu` and `us` on `dir/probe.sqlite`.
pub(crate) async fn server(dir: &Path, lease_ms: u64) -> Server {
    let store = AnyStore::Sqlite(SqliteStore::open(&dir.join("probe.sqlite")).unwrap());
    Server::open(
        store,
        ServerConfig { locations: vec!["eu".into(), "us".into()], lease: Duration::from_millis(lease_ms) },
    )
    .await
    .unwrap()
}

/// A task spec from its JSON.
pub(crate) fn spec(json: &str) -> TaskSpec {
    serde_json::from_str(json).unwrap()
}

/// A server answering its API on a loopback port until dropped. Its scheduler does not
/// run: tests call [`Server::tick`] themselves.
pub(crate) struct Served {
    pub server: Arc<Server>,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    pub(crate) async fn start(server: Server) -> Self {
        let server = Arc::new(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = super::api::router(Arc::clone(&server));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { server, url, task }
    }

    /// A client of the API, as the CLI and agents make one.
    pub(crate) fn client(&self) -> ApiClient {
        ApiClient::new(&self.url, Duration::from_secs(10))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
