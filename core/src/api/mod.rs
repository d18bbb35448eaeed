//! The HTTP API on loopback: the claude-mem worker's intake endpoints (so its hooks work unchanged),
//! memtray's own API for the inspector (search included), the `/stream` of server-sent events, and the
//! inspector web UI.
//!
//! Handlers translate HTTP to calls on the core's handles and back; they hold no state of their own. Each
//! takes only the handle it needs ([`Intake`], [`Queue`], [`Queries`]) out of [`AppState`]. Every body is
//! size-limited and every rejection answers in the API's JSON error format, unknown routes and methods too. What a request changes runs as
//! its own task ([`Detach`]): a client that goes away mid-request cannot leave work half done.

mod claude_mem;
mod context;
pub mod error;
pub mod guard;
mod hooks;
mod inspector;
mod search;
mod stream;
mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::Core;
use crate::events::Updates;
use crate::intake::Intake;
use crate::queries::Queries;
use crate::queue::Queue;

pub use error::ApiError;
pub use guard::Guard;

/// What the handlers can take from; each takes one part.
#[derive(Clone)]
pub struct AppState {
    intake: Intake,
    queue: Queue,
    queries: Queries,
    /// `/stream`'s source: the core's updates.
    updates: Updates,
    /// Cancelled when the server stops, so open event streams end and graceful shutdown can finish.
    stopping: Stopping,
    /// Held while the hook inbox is being dispatched, so two requests never dispatch the same events.
    inbox_drain: InboxDrain,
    /// Where state-changing requests run their work.
    detach: Detach,
    /// The checks in front of every route, and this user's secret.
    guard: Guard,
}

/// The server's stop token.
#[derive(Clone)]
pub(crate) struct Stopping(CancellationToken);

/// One inbox dispatch at a time.
#[derive(Clone)]
pub(crate) struct InboxDrain(Arc<tokio::sync::Mutex<()>>);

/// Runs a request's work as a task of the server's tracker, so that it runs to the end even when the client
/// disconnects and the handler is dropped; the server waits for these tasks before it stops the core.
#[derive(Clone)]
pub(crate) struct Detach(TaskTracker);

impl Detach {
    /// Runs `work` to completion whatever becomes of the caller, and answers with its result.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        self.0.spawn(work).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a request's work panicked");
            Err(ApiError::Crashed)
        })
    }
}

impl AppState {
    /// The handles of `core`, the token that ends open streams when the server stops, and the tracker the
    /// server waits for before it stops the core (requests' detached work runs there).
    pub fn new(core: &Core, stopping: CancellationToken, tracker: TaskTracker, guard: Guard) -> AppState {
        AppState {
            intake: core.intake().clone(),
            queue: core.queue().clone(),
            queries: core.queries().clone(),
            updates: core.updates(),
            stopping: Stopping(stopping),
            inbox_drain: InboxDrain(Arc::default()),
            detach: Detach(tracker),
            guard,
        }
    }
}

impl AppState {
    /// Watches the hook inbox until the server stops (see `hooks::watch_inbox`).
    pub fn watch_inbox(&self, every: std::time::Duration) -> impl Future<Output = ()> + Send + 'static {
        hooks::watch_inbox(self.intake.clone(), self.inbox_drain.clone(), every, self.stopping.0.clone())
    }
}

macro_rules! part {
    ($field:ident: $ty:ty) => {
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> $ty {
                state.$field.clone()
            }
        }
    };
}
part!(intake: Intake);
part!(queue: Queue);
part!(queries: Queries);
part!(updates: Updates);
part!(stopping: Stopping);
part!(inbox_drain: InboxDrain);
part!(detach: Detach);
part!(guard: Guard);

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/hooks/claude-code", post(hooks::claude_code))
        .route("/api/health", get(claude_mem::health))
        .route("/api/readiness", get(claude_mem::readiness))
        .route("/api/version", get(claude_mem::version))
        .route("/api/whoami", get(claude_mem::whoami))
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
        .route("/api/search", get(search::search))
        .route("/api/context", get(context::context))
        .route("/api/context/inject", get(context::inject))
        .route("/api/team", get(inspector::team))
        .route("/stream", get(stream::stream))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.guard.clone(), guard::check))
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
