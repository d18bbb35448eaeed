//! `POST /hooks/claude-code`: the raw hook JSON Claude Code sends for any event. Answers `{}` with 200 once
//! the event is stored: a 2xx with text would be injected into Claude's context, and a `decision` field
//! would block Claude, so the answer carries nothing.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiJson};
use super::{Detach, InboxDrain};
use crate::agents::claude_code::{self, HookEvent, inbox};
use crate::intake::Intake;

pub(super) async fn claude_code(
    State(intake): State<Intake>,
    State(drain): State<InboxDrain>,
    State(detach): State<Detach>,
    ApiJson(event): ApiJson<HookEvent>,
) -> Result<Json<Value>, ApiError> {
    if event.session_id.trim().is_empty() || event.hook_event_name.trim().is_empty() {
        return Err(ApiError::Invalid("session_id and hook_event_name must not be empty"));
    }
    // PostToolUse is the hot path; the turn-level events (a prompt, a stop) are where leftovers are looked for.
    let turn_level = !event.hook_event_name.starts_with("PostToolUse");
    detach
        .run(async move {
            claude_code::dispatch(&intake, event, None).await?;
            if turn_level {
                drain_inbox_if_waiting(&intake, &drain).await;
            }
            Ok(())
        })
        .await?;
    Ok(Json(json!({})))
}

/// Events `memtray hook` stored while this server did not answer (it timed out, say) are dispatched when the
/// next turn-level hook reaches it; the server also drains the inbox at start. One drain at a time; a request
/// that finds one running goes on.
async fn drain_inbox_if_waiting(intake: &Intake, drain: &InboxDrain) {
    let Ok(_draining) = drain.0.try_lock() else { return };
    match intake.inbox_waiting().await {
        Ok(false) => {}
        Ok(true) => {
            if let Err(e) = inbox::drain(intake).await {
                tracing::warn!(error = %e, "could not dispatch the hook inbox; it stays for the next try");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look at the hook inbox"),
    }
}

/// Looks at the hook inbox every `every` until cancelled: an event `memtray hook` stored while this server
/// was slow to answer (the last event of a session, say) does not wait for the session's next turn.
pub(super) async fn watch_inbox(
    intake: Intake,
    drain: InboxDrain,
    every: std::time::Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => drain_inbox_if_waiting(&intake, &drain).await,
        }
    }
}
