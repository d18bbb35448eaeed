//! The claude-mem worker's endpoints, with its field names, so its hooks work unchanged. Session ids arrive
//! as `claudeSessionId` or `contentSessionId`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiJson, ApiQuery};
use super::{Detach, Guard, Stopping, idempotency_key};
use crate::intake::{Intake, Queued};
use crate::project;
use crate::queries::Queries;
use crate::queue::message::{SummaryRequest, ToolUse};

fn session_id(id: &str) -> Result<&str, ApiError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 256 {
        Err(ApiError::Invalid("claudeSessionId must be 1 to 256 characters"))
    } else {
        Ok(id)
    }
}

pub(super) async fn health() -> Json<Value> {
    Json(
        json!({ "status": "ok", "service": "memtray", "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id() }),
    )
}

pub(super) async fn readiness(State(Stopping(stopping)): State<Stopping>) -> impl IntoResponse {
    if stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "stopping" })))
    } else {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    }
}

#[derive(Deserialize)]
pub(super) struct Challenge {
    nonce: String,
}

/// `GET /api/whoami?nonce=N`: proves this server knows this user's secret (an HMAC of the nonce) without
/// showing it, so a client can tell its own memtray from another account's on the same port.
pub(super) async fn whoami(
    State(guard): State<Guard>,
    ApiQuery(challenge): ApiQuery<Challenge>,
) -> Result<Json<Value>, ApiError> {
    if !(16..=128).contains(&challenge.nonce.len()) {
        return Err(ApiError::Invalid("nonce must be 16 to 128 characters"));
    }
    Ok(Json(json!({ "service": "memtray", "proof": guard.secret().proof(&challenge.nonce) })))
}

pub(super) async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

pub(super) async fn processing_status(State(queries): State<Queries>) -> Json<Value> {
    let status = queries.status();
    Json(json!({ "isProcessing": status.is_processing, "queueDepth": status.queue_depth }))
}

#[derive(Deserialize)]
pub(super) struct InitBody {
    #[serde(rename = "claudeSessionId", alias = "contentSessionId")]
    session_id: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    prompt: Option<String>,
}

pub(super) async fn init(
    State(intake): State<Intake>,
    State(detach): State<Detach>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InitBody>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&body.session_id)?.to_string();
    let key = idempotency_key(&headers);
    let init = detach
        .run(async move { Ok(intake.init_session(&id, &body.project, body.prompt.as_deref(), key).await?) })
        .await?;
    let mut answer = json!({
        "sessionDbId": init.session_id,
        "promptNumber": init.prompt_number,
        "skipped": init.private,
    });
    if init.private {
        answer["reason"] = "private".into();
    }
    if init.duplicate {
        answer["status"] = "duplicate".into();
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
pub(super) struct ObservationBody {
    #[serde(rename = "claudeSessionId", alias = "contentSessionId")]
    session_id: String,
    tool_name: String,
    #[serde(default)]
    tool_input: Value,
    #[serde(default)]
    tool_response: Value,
    #[serde(default)]
    cwd: String,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

/// Hooks sometimes send JSON as a string; store the structure, not the quoting.
fn unstringify(value: Value) -> Value {
    match value {
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        other => other,
    }
}

pub(super) async fn observation(
    State(intake): State<Intake>,
    State(detach): State<Detach>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ObservationBody>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&body.session_id)?.to_string();
    if body.tool_name.trim().is_empty() {
        return Err(ApiError::Invalid("tool_name must not be empty"));
    }
    let key = idempotency_key(&headers);
    let queued = detach
        .run(async move {
            let project = match body.project {
                Some(project) => project,
                None => project::of_cwd(&body.cwd).await,
            };
            let tool = ToolUse {
                tool_name: body.tool_name,
                tool_input: unstringify(body.tool_input),
                tool_response: unstringify(body.tool_response),
                cwd: body.cwd,
                tool_use_id: body.tool_use_id.filter(|t| !t.is_empty()),
                error: None,
                subagent: None,
            };
            Ok(intake.queue_observation(&id, &project, tool, key).await?)
        })
        .await?;
    Ok(Json(queued_json(queued)))
}

#[derive(Deserialize)]
pub(super) struct SummarizeBody {
    #[serde(rename = "claudeSessionId", alias = "contentSessionId")]
    session_id: String,
    #[serde(default)]
    last_user_message: String,
    #[serde(default)]
    last_assistant_message: String,
    #[serde(default)]
    cwd: String,
}

pub(super) async fn summarize(
    State(intake): State<Intake>,
    State(detach): State<Detach>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SummarizeBody>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&body.session_id)?.to_string();
    let request = SummaryRequest {
        last_user_message: body.last_user_message,
        last_assistant_message: body.last_assistant_message,
    };
    let key = idempotency_key(&headers);
    let queued = detach
        .run(async move {
            let project = project::of_cwd(&body.cwd).await;
            Ok(intake.queue_summarize(&id, &project, request, key).await?)
        })
        .await?;
    Ok(Json(queued_json(queued)))
}

#[derive(Deserialize)]
pub(super) struct CompleteBody {
    #[serde(rename = "claudeSessionId", alias = "contentSessionId")]
    session_id: String,
}

pub(super) async fn complete(
    State(intake): State<Intake>,
    State(detach): State<Detach>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&body.session_id)?.to_string();
    let completed = detach.run(async move { Ok(intake.complete_session(&id).await?) }).await?;
    Ok(Json(json!({ "status": if completed { "completed" } else { "unchanged" } })))
}

fn queued_json(queued: Queued) -> Value {
    match queued {
        Queued::New { session_id, message_id } => {
            json!({ "status": "queued", "sessionDbId": session_id, "messageId": message_id })
        }
        Queued::Duplicate => json!({ "status": "duplicate" }),
        Queued::Skipped(reason) => json!({ "status": "skipped", "reason": reason.as_str() }),
    }
}
