//! The HTTP API on loopback: the claude-mem worker's intake endpoints (so its hooks work unchanged),
//! memtray's own API for the inspector, the `/stream` of server-sent events, and the inspector web UI.
//!
//! Handlers translate HTTP to session-manager calls and back; they hold no state of their own. Every body is
//! size-limited and every rejection answers in the API's JSON error format.

mod claude_code;
mod claude_mem;
pub mod error;
mod inspector;
mod stream;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::session::SessionManager;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The core.
    pub manager: SessionManager,
    /// Cancelled when the server stops, so open event streams end and graceful shutdown can finish.
    pub stopping: CancellationToken,
    /// Held while the hook inbox is being dispatched, so two requests never dispatch the same events.
    pub inbox_drain: Arc<tokio::sync::Mutex<()>>,
}

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/hooks/claude-code", post(claude_code::hook))
        .route("/api/health", get(claude_mem::health))
        .route("/api/readiness", get(claude_mem::readiness))
        .route("/api/version", get(claude_mem::version))
        .route("/api/processing-status", get(claude_mem::processing_status))
        .route("/api/sessions/init", post(claude_mem::init))
        .route("/api/sessions/observations", post(claude_mem::observation))
        .route("/api/sessions/summarize", post(claude_mem::summarize))
        .route("/api/sessions/complete", post(claude_mem::complete))
        .route("/api/stats", get(inspector::stats))
        .route("/api/sessions", get(inspector::sessions))
        .route("/api/projects", get(inspector::projects))
        .route("/api/sessions/{id}", get(inspector::session).delete(inspector::delete_session))
        .route("/api/queue", get(inspector::queue))
        .route("/api/queue/retry-stuck", post(inspector::retry_stuck))
        .route("/api/queue/{id}/retry", post(inspector::retry))
        .route("/api/queue/{id}/abort", post(inspector::abort))
        .route("/api/processing", post(inspector::set_processing))
        .route("/api/observations", get(inspector::observations))
        .route("/api/summaries", get(inspector::summaries))
        .route("/stream", get(stream::stream))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The `Idempotency-Key` header, when present and usable.
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(String::from)
}
