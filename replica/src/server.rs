//! Serving the store over HTTP (hyper, through `s3s`'s service).

use crate::notify::Notifier;
use crate::store::NotifyingStore;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;

/// The store's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Buckets created at start.
    pub buckets: Vec<String>,
    /// Where event notifications go (each endpoint gets every event).
    pub notify: Vec<String>,
}

/// Binds `listener` and serves until the process ends.
pub async fn serve(cfg: Config, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    for bucket in &cfg.buckets {
        std::fs::create_dir_all(cfg.root.join(bucket))?;
    }
    let notifier = (!cfg.notify.is_empty()).then(|| Notifier::start_all(cfg.notify.clone()));
    let store = NotifyingStore::new(cfg.root.clone(), cfg.region.clone(), notifier)?;
    let service = {
        let mut b = S3ServiceBuilder::new(store);
        b.set_auth(SimpleAuth::from_single(cfg.access_key.clone(), cfg.secret_key.clone()));
        b.build()
    };
    let http = ConnBuilder::new(TokioExecutor::new());
    tracing::info!(addr = ?listener.local_addr().ok(), region = %cfg.region, "store listening");
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                continue;
            }
        };
        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
}
