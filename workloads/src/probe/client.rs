//! The JSON-over-HTTP client of agents and the CLI (hyper, pooled keep-alive connections).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: {reason}")]
    Transport { method: Method, url: String, reason: String },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status { method: Method, url: String, status: StatusCode, body: serde_json::Value },
    #[error("{method} {url}: decode the answer: {reason}")]
    Decode { method: Method, url: String, reason: String },
}

impl ClientError {
    /// The server's answer, for a non-2xx status.
    pub fn status(&self) -> Option<(StatusCode, &serde_json::Value)> {
        match self {
            ClientError::Status { status, body, .. } => Some((*status, body)),
            _ => None,
        }
    }
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the server at `base` (`http://host:port`), each call bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Self { base: base.trim_end_matches('/').to_owned(), http, timeout }
    }

    /// Calls `method path` with an optional JSON body and decodes the JSON answer.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let transport = |reason: String| ClientError::Transport { method: method.clone(), url: url.clone(), reason };
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| transport(e.to_string()))?;
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| transport(format!("{e:?}")))?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| transport(format!("no answer within {:?}", self.timeout)))??;
        if !status.is_success() {
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
            return Err(ClientError::Status { method, url, status, body });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode { method, url, reason: e.to_string() })
    }
}
