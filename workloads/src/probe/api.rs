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
    use crate::probe::client::ApiClient;
    use crate::probe::fixture::{server, Served};
    use crate::probe::task::Task;
    use chrono::{DurationRound, TimeDelta};
    use hyper::Method;

    /// The ids and total of `GET /v1/tasks?{query}`.
    async fn listed(c: &ApiClient, query: &str) -> (Vec<u64>, usize) {
        let page: TaskPage = c.call(Method::GET, &format!("/v1/tasks?{query}"), None).await.unwrap();
        (page.tasks.iter().map(|t| t.id).collect(), page.total)
    }

    /// The fields a 400 answer names.
    async fn refused(c: &ApiClient, method: Method, path: &str, body: Option<&serde_json::Value>) -> Vec<String> {
        let err = c.call::<serde_json::Value>(method, path, body).await.unwrap_err();
        let (status, body) = err.status().unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let errors: Vec<FieldError> = serde_json::from_value(body["errors"].clone()).unwrap();
        assert!(errors.iter().all(|e| !e.message.is_empty()), "{body}");
        errors.into_iter().map(|e| e.field).collect()
    }

    #[tokio::test]
    async fn tasks_are_listed_by_state_type_and_location_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let c = served.client();
        let now = crate::probe::server::now();
        // A 20 s window that holds no second 30 of any minute: the cron task ends at once.
        let minute = (now + TimeDelta::hours(1)).duration_trunc(TimeDelta::minutes(1)).unwrap();
        let (from, to) = (minute + TimeDelta::seconds(35), minute + TimeDelta::seconds(55));
        let later = (now + TimeDelta::hours(1)).to_rfc3339();
        let dns = r#""measurement":{"kind":"dns"},"endpoints":["x"]"#;
        let specs = [
            format!(r#"{{"type":"ONE-OFF",{dns},"locations":["eu"]}}"#),
            format!(r#"{{"type":"RECURRING","interval":"1h",{dns},"locations":["us"]}}"#),
            format!(r#"{{"type":"ONE-OFF-SCHEDULED","start_time":"{later}",{dns},"locations":["eu","us"]}}"#),
            format!(
                r#"{{"type":"RECURRING-SCHEDULED","cron":"30 * * * * *","start_time":"{}","stop_time":"{}",{dns},"locations":["us"]}}"#,
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
            format!(r#"{{"type":"ONE-OFF",{dns},"locations":["eu"]}}"#),
        ];
        for (i, text) in specs.iter().enumerate() {
            let body: serde_json::Value = serde_json::from_str(text).unwrap();
            let task: Task = c.call(Method::POST, "/v1/tasks", Some(&body)).await.unwrap();
            assert_eq!(task.id, i as u64 + 1);
        }
        c.call::<Task>(Method::POST, "/v1/tasks/5/cancel", None).await.unwrap();
        // The one-off and the recurring task fire; the scheduled one is an hour away.
        served.server.tick(crate::probe::server::now()).await.unwrap();

        // Every filter alone, values case-insensitive like the CLI's.
        assert_eq!(listed(&c, "").await, (vec![1, 2, 3, 4, 5], 5));
        assert_eq!(listed(&c, "state=RUNNING").await, (vec![1, 2], 2));
        assert_eq!(listed(&c, "state=scheduled").await, (vec![3], 1));
        assert_eq!(listed(&c, "state=FINISHED").await, (vec![4], 1));
        assert_eq!(listed(&c, "state=CANCELED").await, (vec![5], 1));
        assert_eq!(listed(&c, "state=FAILED").await, (vec![], 0));
        assert_eq!(listed(&c, "type=ONE-OFF").await, (vec![1, 5], 2));
        assert_eq!(listed(&c, "type=recurring-scheduled").await, (vec![4], 1));
        assert_eq!(listed(&c, "location=eu").await, (vec![1, 3, 5], 3));
        assert_eq!(listed(&c, "location=us").await, (vec![2, 3, 4], 3));
        assert_eq!(listed(&c, "location=mars").await, (vec![], 0), "a filter, not a check");
        // Together.
        assert_eq!(listed(&c, "state=RUNNING&location=us").await, (vec![2], 1));
        assert_eq!(listed(&c, "type=ONE-OFF&state=CANCELED&location=eu").await, (vec![5], 1));
        // Pages, with and without a filter; `total` counts every match.
        assert_eq!(listed(&c, "per_page=2").await, (vec![1, 2], 5));
        assert_eq!(listed(&c, "per_page=2&page=2").await, (vec![3, 4], 5));
        assert_eq!(listed(&c, "per_page=2&page=3").await, (vec![5], 5));
        assert_eq!(listed(&c, "per_page=2&page=4").await, (vec![], 5));
        assert_eq!(listed(&c, "location=us&per_page=2&page=2").await, (vec![4], 3));
        let page: TaskPage = c.call(Method::GET, "/v1/tasks?page=2&per_page=1", None).await.unwrap();
        assert_eq!((page.page, page.per_page, page.total), (2, 1, 5));

        // Bad queries: a 400 naming each field.
        let get = |q: &str| format!("/v1/tasks?{q}");
        assert_eq!(refused(&c, Method::GET, &get("state=SLEEPING"), None).await, ["state"]);
        assert_eq!(refused(&c, Method::GET, &get("type=WEEKLY"), None).await, ["type"]);
        assert_eq!(
            refused(&c, Method::GET, &get("state=x&type=y&page=0&per_page=1001"), None).await,
            ["state", "type", "page", "per_page"]
        );
        assert_eq!(refused(&c, Method::GET, &get("page=two"), None).await, ["page"]);
        assert_eq!(refused(&c, Method::GET, &get("per_page=0"), None).await, ["per_page"]);
    }

    #[tokio::test]
    async fn bad_requests_over_http_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let c = served.client();
        let post = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let task = |extra: &str| {
            post(&format!(
                r#"{{"type":"RECURRING-SCHEDULED","measurement":{{"kind":"ping"}},"start_time":"2030-01-01T01:00:00Z",{extra}}}"#
            ))
        };
        let ok = r#""endpoints":["ep"],"locations":["eu"]"#;
        for (body, fields) in [
            (task(&format!(r#""stop_time":"2030-01-01T02:00:00Z","cron":"61 * * * *",{ok}"#)), vec!["cron"]),
            (task(&format!(r#""stop_time":"2030-01-01T00:30:00Z","cron":"* * * * *",{ok}"#)), vec!["stop_time"]),
            (
                task(
                    r#""stop_time":"2030-01-01T02:00:00Z","cron":"* * * * *","endpoints":["ep"],"locations":["eu","mars"]"#,
                ),
                vec!["locations[1]"],
            ),
            (
                task(r#""stop_time":"2030-01-01T02:00:00Z","cron":"* * * * *","endpoints":[],"locations":["eu"]"#),
                vec!["endpoints"],
            ),
            (post(r#"{"type":"ONE-OFF","measurement":{"kind":"ping","count":"x"}}"#), vec!["measurement"]),
        ] {
            assert_eq!(refused(&c, Method::POST, "/v1/tasks", Some(&body)).await, fields, "{body}");
        }
        // An unknown field; bad path and query values.
        let colour =
            post(r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["ep"],"locations":["eu"],"colour":1}"#);
        assert_eq!(refused(&c, Method::POST, "/v1/tasks", Some(&colour)).await, ["colour"]);
        assert_eq!(listed(&c, "").await, (vec![], 0), "nothing bad was created");
        assert_eq!(refused(&c, Method::GET, "/v1/tasks/abc", None).await, ["id"]);
        assert_eq!(refused(&c, Method::GET, "/v1/results?seq=first", None).await, ["seq"]);
    }

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
