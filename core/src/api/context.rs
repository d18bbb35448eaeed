//! The context a session starts with, outside a hook: `GET /api/context?project=&chars=&source=&session=`
//! (JSON, for `memtray context` and other tools) and claude-mem's `GET /api/context/inject?project=` (the
//! text itself, as its hooks print it). Both read memory, so both need this user's secret.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiQuery};
use crate::config::CONTEXT_CHARS_MAX;
use crate::queries::Queries;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    project: String,
    chars: Option<usize>,
    /// Claude Code's SessionStart `source`; `resume` with `session` tells only what happened since.
    source: Option<String>,
    /// The agent's session id.
    #[serde(default)]
    session: String,
}

async fn text(queries: &Queries, params: Params) -> Result<(String, String), ApiError> {
    if params.project.trim().is_empty() {
        return Err(ApiError::Invalid("project must not be empty"));
    }
    let chars = params.chars.unwrap_or(queries.recall_settings().0).min(CONTEXT_CHARS_MAX);
    let project = params.project.clone();
    let context = queries.session_start_context(params.project, chars, params.source, params.session).await?;
    Ok((project, context))
}

pub(super) async fn context(
    State(queries): State<Queries>,
    ApiQuery(params): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let (project, context) = text(&queries, params).await?;
    Ok(Json(json!({ "project": project, "context": context })))
}

pub(super) async fn inject(
    State(queries): State<Queries>,
    ApiQuery(params): ApiQuery<Params>,
) -> Result<Response, ApiError> {
    let (_, context) = text(&queries, params).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], context).into_response())
}
