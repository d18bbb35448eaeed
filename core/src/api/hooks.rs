//! `POST /hooks/claude-code`: the raw hook JSON Claude Code sends for any event. Answers `{}` with 200 once
//! the event is stored: a 2xx with text would be injected into Claude's context, and a `decision` field
//! would block Claude, so the answer carries nothing, with one exception made on purpose: a SessionStart (and,
//! with `prompt_context`, a UserPromptSubmit) from a caller holding this user's secret gets the memory it
//! should start with as `hookSpecificOutput.additionalContext`, which `memtray hook` prints for Claude Code.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiJson};
use super::{Detach, Guard, InboxDrain};
use crate::agents::claude_code::{self, HookEvent, inbox};
use crate::intake::Intake;
use crate::project;
use crate::queries::Queries;

pub(super) async fn claude_code(
    State(intake): State<Intake>,
    State(queries): State<Queries>,
    State(drain): State<InboxDrain>,
    State(detach): State<Detach>,
    State(guard): State<Guard>,
    headers: HeaderMap,
    ApiJson(event): ApiJson<HookEvent>,
) -> Result<Json<Value>, ApiError> {
    if event.session_id.trim().is_empty() || event.hook_event_name.trim().is_empty() {
        return Err(ApiError::Invalid("session_id and hook_event_name must not be empty"));
    }
    // Memory goes back only to this user: the secret is what says so.
    let context = if guard.has_secret(&headers) { context_for(&intake, &queries, &event).await } else { None };
    // PostToolUse is the hot path; the turn-level events (a prompt, a stop) are where leftovers are looked for.
    let turn_level = !event.hook_event_name.starts_with("PostToolUse");
    let name = event.hook_event_name.clone();
    detach
        .run(async move {
            claude_code::dispatch(&intake, event, None).await?;
            if turn_level {
                drain_inbox_if_waiting(&intake, &drain).await;
            }
            Ok(())
        })
        .await?;
    Ok(Json(match context {
        Some(text) => json!({"hookSpecificOutput": {"hookEventName": name, "additionalContext": text}}),
        None => json!({}),
    }))
}

/// The most characters of related memory a prompt gets.
const PROMPT_CONTEXT_CHARS: usize = 1_500;

/// The memory `event` should bring back, if any. Read before the event is taken in, so a resumed session's
/// "since" is its last activity before this start. Fails open: a failure to read is logged and brings nothing.
async fn context_for(intake: &Intake, queries: &Queries, event: &HookEvent) -> Option<String> {
    let (chars, prompt_context) = queries.recall_settings();
    let wanted = match event.hook_event_name.as_str() {
        "SessionStart" => true,
        "UserPromptSubmit" => prompt_context && event.prompt.as_deref().is_some_and(|p| !p.trim().is_empty()),
        _ => false,
    };
    if !wanted {
        return None;
    }
    let project = project::of_cwd(&event.cwd).await;
    if intake.excluded(&project) {
        return None;
    }
    let agent = event.session_id.clone();
    let text = if event.hook_event_name == "SessionStart" {
        queries.session_start_context(project, chars, event.source.clone(), agent).await
    } else {
        let prompt = event.prompt.clone().unwrap_or_default();
        queries.prompt_recall(project, prompt, agent, PROMPT_CONTEXT_CHARS).await
    };
    match text {
        Ok(text) if !text.is_empty() => Some(text),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the context for a hook; it goes without");
            None
        }
    }
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
