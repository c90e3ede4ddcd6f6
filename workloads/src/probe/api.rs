//! The REST API (JSON over HTTP/1.1, axum), documented in docs/probes.md.
//!
//! # Invariants
//! - Bad input is a 400 whose body lists every problem as `{field, message}`; a malformed
//!   body names the JSON path of the first problem (`serde_path_to_error`).
//! - An illegal state transition is a 409 with the task's state and the reason.
//! - A write is answered only after the store has it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::result::{AgentKind, Job, RunResult};
use super::server::{Server, ServerError};
use super::spec::{FieldError, TaskSpec};
use super::store::ResultQuery;
use super::task::{State, TaskType};

/// The longest an agent's poll is held open.
const MAX_POLL_WAIT: Duration = Duration::from_secs(5);

/// An API error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn invalid(errors: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({"error": "invalid request", "errors": errors}),
        }
    }
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Invalid(errors) => Self::invalid(errors),
            ServerError::NoTask(id) => {
                Self { status: StatusCode::NOT_FOUND, body: serde_json::json!({"error": format!("no task {id}")}) }
            }
            ServerError::Conflict(t) => Self {
                status: StatusCode::CONFLICT,
                body: serde_json::json!({"error": t.to_string(), "state": t.from, "reason": t.reason}),
            },
            ServerError::BadResult { .. } => {
                Self { status: StatusCode::UNPROCESSABLE_ENTITY, body: serde_json::json!({"error": e.to_string()}) }
            }
            ServerError::Store(_) => {
                tracing::error!(err = %e, "store failed");
                Self { status: StatusCode::SERVICE_UNAVAILABLE, body: serde_json::json!({"error": e.to_string()}) }
            }
        }
    }
}

/// Parses a JSON body, naming the path of the first problem.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::field(&field, e.inner().to_string())
    })
}

type Shared = Arc<Server>;

/// The API's routes over `server`.
pub fn router(server: Shared) -> Router {
    Router::new()
        .route("/v1/health", get(|| async { Json(serde_json::json!({"ok": true})) }))
        .route("/v1/tasks", post(create).get(list))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/results", get(task_results))
        .route("/v1/results", get(results).post(deliver))
        .route("/v1/summary", get(summary))
        .route("/v1/locations", get(locations))
        .route("/v1/agents", get(agents))
        .route("/v1/poll", post(poll))
        .route("/v1/stats", get(stats))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&server), count))
        .with_state(server)
}

/// Counts requests and records their latency (virtual µs inside a node). Long polls are
/// left out of the latency: they wait on purpose.
async fn count(AxState(server): AxState<Shared>, req: Request, next: Next) -> Response {
    let is_poll = req.uri().path() == "/v1/poll";
    let t0 = Instant::now();
    let response = next.run(req).await;
    server.stats.requests.fetch_add(1, Ordering::Relaxed);
    if !is_poll {
        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = server.stats.latency_us.lock() {
            let high = h.high();
            let _ = h.record(us.min(high));
        }
    }
    response
}

async fn create(AxState(server): AxState<Shared>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let spec: TaskSpec = parse_body(&body)?;
    let task = server.create(&spec).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// A page of tasks.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskPage {
    pub tasks: Vec<super::task::Task>,
    pub page: usize,
    pub per_page: usize,
    pub total: usize,
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, key: &str) -> Result<Option<T>, ApiError> {
    q.get(key)
        .map(|v| v.parse::<T>().map_err(|_| ApiError::field(key, format!("{v:?} is not a valid number"))))
        .transpose()
}

async fn list(
    AxState(server): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<TaskPage>, ApiError> {
    let mut errors = Vec::new();
    let state = match q.get("state") {
        Some(s) => State::parse(s).map(Some).unwrap_or_else(|| {
            errors.push(FieldError::new("state", format!("unknown state {s:?}")));
            None
        }),
        None => None,
    };
    let kind = match q.get("type") {
        Some(s) => TaskType::parse(s).map(Some).unwrap_or_else(|| {
            errors.push(FieldError::new("type", format!("unknown type {s:?}")));
            None
        }),
        None => None,
    };
    let page: usize = number(&q, "page")?.unwrap_or(1);
    let per_page: usize = number(&q, "per_page")?.unwrap_or(50);
    if page == 0 {
        errors.push(FieldError::new("page", "pages count from 1"));
    }
    if per_page == 0 || per_page > 1000 {
        errors.push(FieldError::new("per_page", "must be 1 to 1000"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let all = server.list(state, kind, q.get("location").map(String::as_str)).await;
    let total = all.len();
    let tasks = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    Ok(Json(TaskPage { tasks, page, per_page, total }))
}

fn task_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::field("id", format!("{text:?} is not a task id")))
}

async fn get_task(AxState(server): AxState<Shared>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(server.get(task_id(&id)?).await?))
}

async fn cancel(AxState(server): AxState<Shared>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(server.cancel(task_id(&id)?).await?))
}

/// Results of one or every task.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResultPage {
    pub results: Vec<RunResult>,
}

async fn task_results(
    AxState(server): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ResultPage>, ApiError> {
    let id = task_id(&id)?;
    server.get(id).await?;
    let query = ResultQuery { task_id: Some(id), location: q.get("location").cloned(), seq: number(&q, "seq")? };
    Ok(Json(ResultPage { results: server.results(&query).await? }))
}

async fn results(
    AxState(server): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ResultPage>, ApiError> {
    let query =
        ResultQuery { task_id: number(&q, "task")?, location: q.get("location").cloned(), seq: number(&q, "seq")? };
    Ok(Json(ResultPage { results: server.results(&query).await? }))
}

async fn summary(
    AxState(server): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let query = ResultQuery { task_id: number(&q, "task")?, ..ResultQuery::default() };
    Ok(Json(super::summary::summarize(&server.results(&query).await?)))
}

async fn locations(AxState(server): AxState<Shared>) -> impl IntoResponse {
    Json(serde_json::json!({"locations": server.locations().await}))
}

async fn agents(AxState(server): AxState<Shared>) -> impl IntoResponse {
    Json(serde_json::json!({"agents": server.agents().await}))
}

/// An agent's request for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    pub agent: String,
    pub location: String,
    pub kind: AgentKind,
    /// Runs the agent can take now.
    pub max: usize,
    /// How long the server may hold the request when there is no work (ms).
    #[serde(default)]
    pub wait_ms: u64,
}

/// The answer to a poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollResponse {
    pub jobs: Vec<Job>,
}

async fn poll(AxState(server): AxState<Shared>, body: Bytes) -> Result<Json<PollResponse>, ApiError> {
    let req: PollRequest = parse_body(&body)?;
    if req.agent.trim().is_empty() {
        return Err(ApiError::field("agent", "must not be empty"));
    }
    if req.location.trim().is_empty() {
        return Err(ApiError::field("location", "must not be empty"));
    }
    let wait = Duration::from_millis(req.wait_ms).min(MAX_POLL_WAIT);
    let jobs = server.poll(&req.agent, &req.location, req.kind, req.max, wait).await;
    Ok(Json(PollResponse { jobs }))
}

async fn deliver(AxState(server): AxState<Shared>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let result: RunResult = parse_body(&body)?;
    let recorded = server.deliver(result).await?;
    Ok(Json(serde_json::json!({"recorded": recorded})))
}

async fn stats(AxState(server): AxState<Shared>) -> impl IntoResponse {
    Json(server.stats_json().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_name_the_field() {
        let e = parse_body::<TaskSpec>(br#"{"type":"ONE-OFF","measurement":{"kind":"ping","count":"x"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body["errors"][0]["field"], "measurement");
        let e = parse_body::<TaskSpec>(br#"{"type":"SOMETIMES"}"#).unwrap_err();
        assert_eq!(e.body["errors"][0]["field"], "type");
        let e = parse_body::<TaskSpec>(b"not json").unwrap_err();
        assert_eq!(e.body["errors"][0]["field"], "body");
    }
}
