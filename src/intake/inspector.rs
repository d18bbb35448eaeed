//! memtray's own API, for the inspector and `memtray status`: sessions with their queues, the queue with
//! its stuck and failed messages, retry and abort, and pages of observations and summaries.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::store::messages::MessageFilter;
use crate::store::sessions::{SessionQuery, SessionSort, SortOrder};
use crate::store::{memories, messages, now_ms, sessions, stats};

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

fn stuck_before(state: &AppState) -> i64 {
    now_ms() - state.manager.settings().stuck_after.as_millis() as i64
}

pub(super) async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let hour_ago = now_ms() - 3_600_000;
    let processed = state.manager.store().read(move |c| stats::processed_since(c, hour_ago)).await?;
    let status = state.manager.status().borrow().clone();
    let mut answer = serde_json::to_value(status).expect("status serializes");
    answer["processedLastHour"] = processed.into();
    Ok(Json(answer))
}

pub(super) async fn sessions(
    State(state): State<AppState>,
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
    let (items, total) = state.manager.store().read(move |c| sessions::list(c, &query)).await?;
    Ok(Json(json!({ "sessions": items, "total": total, "limit": page.limit(), "offset": page.offset() })))
}

pub(super) async fn projects(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let projects = state.manager.store().read(sessions::projects).await?;
    Ok(Json(json!({ "projects": projects })))
}

pub(super) async fn session(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let stuck_before = stuck_before(&state);
    let detail = state
        .manager
        .store()
        .read(move |c| {
            let Some(session) = sessions::get(c, id)? else { return Ok(None) };
            let filter = MessageFilter { session_id: Some(id), unfinished: false };
            Ok(Some(json!({
                "session": session,
                "prompts": sessions::prompts(c, id)?,
                "observations": memories::observations_of(c, id)?,
                "summaries": memories::summaries_of(c, id)?,
                "messages": messages::list(c, filter, stuck_before, 1000)?,
            })))
        })
        .await?;
    detail.map(Json).ok_or(ApiError::NotFound("session"))
}

pub(super) async fn delete_session(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if state.manager.delete_session(id).await? {
        Ok(Json(json!({ "status": "deleted" })))
    } else {
        Err(ApiError::NotFound("session"))
    }
}

pub(super) async fn queue(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let stuck_before = stuck_before(&state);
    let limit = page.limit();
    let (list, totals) = state
        .manager
        .store()
        .read(move |c| {
            let filter = MessageFilter { session_id: None, unfinished: true };
            Ok((messages::list(c, filter, stuck_before, limit)?, stats::totals(c, stuck_before)?))
        })
        .await?;
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

pub(super) async fn retry(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    if state.manager.retry_message(id).await? {
        Ok(Json(json!({ "status": "retried", "messageId": id })))
    } else {
        Err(ApiError::NotFound("unfinished message"))
    }
}

pub(super) async fn abort(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    if state.manager.abort_message(id).await? {
        Ok(Json(json!({ "status": "aborted", "messageId": id })))
    } else {
        Err(ApiError::NotFound("unfinished message"))
    }
}

pub(super) async fn retry_stuck(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let sessions = state.manager.retry_stuck_and_failed().await?;
    Ok(Json(json!({ "status": "retried", "sessions": sessions })))
}

#[derive(Deserialize)]
pub(super) struct Processing {
    paused: bool,
}

pub(super) async fn set_processing(State(state): State<AppState>, ApiJson(body): ApiJson<Processing>) -> Json<Value> {
    state.manager.set_paused(body.paused);
    Json(json!({ "paused": body.paused }))
}

pub(super) async fn observations(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (project, limit, offset) = (page.project(), page.limit(), page.offset());
    let (items, total) =
        state.manager.store().read(move |c| memories::page_observations(c, project.as_deref(), limit, offset)).await?;
    Ok(Json(json!({ "items": items, "total": total, "limit": limit, "offset": offset })))
}

pub(super) async fn summaries(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let (project, limit, offset) = (page.project(), page.limit(), page.offset());
    let (items, total) =
        state.manager.store().read(move |c| memories::page_summaries(c, project.as_deref(), limit, offset)).await?;
    Ok(Json(json!({ "items": items, "total": total, "limit": limit, "offset": offset })))
}
