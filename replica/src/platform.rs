//! A region's function platform: `POST /invoke` starts one instance process per task.
//!
//! Instances are real processes of the platform's node (this executable re-run with
//! `--role instance`), so their S3 traffic leaves from that node and crosses the emulated
//! network. The task goes to the instance as JSON on its standard input.
//!
//! # Limitations
//! No invocation latency or ready delay is injected yet, nor a concurrency limit, execution
//! time limit, retries or cost accounting (issue 15, item 2).

use axum::extract::State as AxState;
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Runs the platform on `listen` until the process ends.
pub async fn serve(listen: std::net::SocketAddr) -> std::io::Result<()> {
    let exe = Arc::new(std::env::current_exe()?);
    let app = Router::new().route("/invoke", post(invoke)).with_state(exe);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "function platform listening");
    axum::serve(listener, app).await
}

async fn invoke(
    AxState(exe): AxState<Arc<std::path::PathBuf>>,
    Json(task): Json<crate::task::Task>,
) -> Result<Json<serde_json::Value>, (axum::http::StatusCode, String)> {
    let fail = |e: std::io::Error| (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut child = tokio::process::Command::new(exe.as_path())
        .args(["--role", "instance"])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(false)
        .spawn()
        .map_err(fail)?;
    let body = serde_json::to_vec(&task).map_err(|e| fail(std::io::Error::other(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(fail)?;
    }
    let pid = child.id();
    tracing::info!(key = %task.key, instance = %task.instance, ?pid, "instance started");
    // Reap it when it ends; its exit status is logged.
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(?pid, %status, "instance failed"),
            Err(err) => tracing::warn!(?pid, %err, "instance wait failed"),
        }
    });
    Ok(Json(serde_json::json!({"pid": pid})))
}
