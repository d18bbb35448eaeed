//! memtray's own API, for the inspector and `memtray status`: sessions with their queues, the queue with
//! its stuck and failed messages, retry and abort, and pages of observations and summaries.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Detach;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::queries::Queries;
use crate::queue::Queue;
use crate::store::sessions::{SessionQuery, SessionSort, SortOrder};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Deserialize, Default)]
pub(super) struct Page {
    limit: Option<u32>,
    offset: Option<u32>,
    project: Option<String>,
    status: Option<String>,
}

/// How `/api/sessions` orders its page; read from the same query string as the `Page`. Unknown values are
/// refused by the extractor (400), never written into SQL.
#[derive(Deserialize, Default)]
pub(super) struct Ordering {
    #[serde(default)]
    sort: SessionSort,
    #[serde(default)]
    order: SortOrder,
}

impl Page {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }
    fn offset(&self) -> u32 {
        self.offset.unwrap_or(0)
    }
    fn project(&self) -> Option<String> {
        self.project.clone().filter(|p| !p.is_empty())
    }
}

/// How many days of token figures `/api/stats` gives.
const TOKEN_DAYS: i64 = 30;

pub(super) async fn stats(State(queries): State<Queries>) -> Result<Json<Value>, ApiError> {
    let processed = queries.processed_within(3_600_000).await?;
    let tokens = queries.token_usage(TOKEN_DAYS).await?;
    let mut answer = serde_json::to_value(queries.status()).expect("status serializes");
    answer["processedLastHour"] = processed.into();
    answer["tokens"] = serde_json::to_value(tokens).expect("token figures serialize");
    Ok(Json(answer))
}

pub(super) async fn sessions(
    State(queries): State<Queries>,
    ApiQuery(page): ApiQuery<Page>,
    ApiQuery(ordering): ApiQuery<Ordering>,
) -> Result<Json<Value>, ApiError> {
    if page.status.as_deref().is_some_and(|s| s != "active" && s != "completed") {
        return Err(ApiError::Invalid("status must be active or completed"));
    }
    let query = SessionQuery {
        project: page.project(),
        status: page.status.clone(),
        sort: ordering.sort,
        order: ordering.order,
        limit: page.limit(),
        offset: page.offset(),
    };
    let found = queries.sessions(query).await?;
    Ok(Json(json!({ "sessions": found.items, "total": found.total, "limit": page.limit(), "offset": page.offset() })))
}

pub(super) async fn projects(State(queries): State<Queries>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "projects": queries.projects().await? })))
}

pub(super) async fn session(
    State(queries): State<Queries>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let detail = queries.session(id).await?.ok_or(ApiError::NotFound("session"))?;
    Ok(Json(serde_json::to_value(detail).expect("a session serializes")))
}

pub(super) async fn delete_session(
    State(queue): State<Queue>,
    State(detach): State<Detach>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    if detach.run(async move { Ok(queue.delete_session(id).await?) }).await? {
        Ok(Json(json!({ "status": "deleted" })))
    } else {
        Err(ApiError::NotFound("session"))
    }
}

pub(super) async fn queue(
    State(queries): State<Queries>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (list, totals) = queries.unfinished(page.limit()).await?;
    Ok(Json(json!({
        "messages": list,
        "counts": {
            "pending": totals.pending,
            "processing": totals.processing,
            "stuck": totals.stuck,
            "failed": totals.failed,
        },
    })))
}

pub(super) async fn retry(
    State(queue): State<Queue>,
    State(detach): State<Detach>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    if detach.run(async move { Ok(queue.retry_message(id).await?) }).await? {
        Ok(Json(json!({ "status": "retried", "messageId": id })))
    } else {
        Err(ApiError::NotFound("unfinished message"))
    }
}

pub(super) async fn abort(
    State(queue): State<Queue>,
    State(detach): State<Detach>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    if detach.run(async move { Ok(queue.abort_message(id).await?) }).await? {
        Ok(Json(json!({ "status": "aborted", "messageId": id })))
    } else {
        Err(ApiError::NotFound("unfinished message"))
    }
}

pub(super) async fn retry_stuck(
    State(queue): State<Queue>,
    State(detach): State<Detach>,
) -> Result<Json<Value>, ApiError> {
    let retried = detach.run(async move { Ok(queue.retry_stuck_and_failed().await?) }).await?;
    Ok(Json(json!({ "status": "retried", "sessions": retried.sessions, "messages": retried.messages })))
}

#[derive(Deserialize)]
pub(super) struct Processing {
    paused: bool,
}

pub(super) async fn set_processing(State(queue): State<Queue>, ApiJson(body): ApiJson<Processing>) -> Json<Value> {
    queue.set_paused(body.paused);
    Json(json!({ "paused": body.paused }))
}

pub(super) async fn observations(
    State(queries): State<Queries>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = (page.limit(), page.offset());
    let found = queries.observations(page.project(), limit, offset).await?;
    Ok(Json(json!({ "items": found.items, "total": found.total, "limit": limit, "offset": offset })))
}

pub(super) async fn summaries(
    State(queries): State<Queries>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = (page.limit(), page.offset());
    let found = queries.summaries(page.project(), limit, offset).await?;
    Ok(Json(json!({ "items": found.items, "total": found.total, "limit": limit, "offset": offset })))
}

/// `GET /api/team`: the team link's state (connected, pushing, behind, unreachable since).
pub(super) async fn team(State(queries): State<Queries>) -> Json<crate::team::link::LinkState> {
    Json(queries.team())
}
