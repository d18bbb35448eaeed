//! Claude Code's hook events and what each means to memtray: a session starts, a prompt is counted, a tool use
//! is observed, a stop is summarized, a session ends. Used by `POST /hooks/claude-code` and by the inbox that
//! `memtray hook` fills while no server answers.
//!
//! On `Stop` and `SessionEnd` (and at server start) the session's transcript is read and every tool use memtray
//! has not stored is queued, in transcript order, so a session is captured completely even across downtime.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::project;
use crate::queue::{SummaryRequest, ToolUse};
use crate::session::{Result, SessionError, SessionManager};
use crate::store::{StoreError, inbox};
use crate::transcript::{self, Transcript};

/// One hook invocation as Claude Code sends it (on a command hook's stdin, or as an http hook's body).
/// Unknown fields are ignored; only `session_id` and `hook_event_name` are required.
#[derive(Debug, Clone, Deserialize)]
pub struct HookEvent {
    /// The agent's session id.
    pub session_id: String,
    /// `SessionStart`, `UserPromptSubmit`, `PostToolUse`, `Stop`, `SessionEnd`, ...
    pub hook_event_name: String,
    /// The session's JSONL transcript.
    #[serde(default)]
    pub transcript_path: Option<String>,
    /// The session's working directory.
    #[serde(default)]
    pub cwd: String,
    /// `SessionStart`: `startup`, `resume`, `clear` or `compact`.
    #[serde(default)]
    pub source: Option<String>,
    /// `UserPromptSubmit`: the prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Newer versions: the prompt's id.
    #[serde(default)]
    pub prompt_id: Option<String>,
    /// `PostToolUse`: the tool.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// `PostToolUse`: its input.
    #[serde(default)]
    pub tool_input: Value,
    /// `PostToolUse`: its response.
    #[serde(default)]
    pub tool_response: Value,
    /// `PostToolUse`: unique per tool call.
    #[serde(default)]
    pub tool_use_id: Option<String>,
}

impl HookEvent {
    /// Parses a hook payload; fails on anything but a JSON object with a non-empty `session_id` and
    /// `hook_event_name`.
    pub fn parse(bytes: &[u8]) -> std::result::Result<HookEvent, serde_json::Error> {
        let event: HookEvent = serde_json::from_slice(bytes)?;
        if event.session_id.trim().is_empty() || event.hook_event_name.trim().is_empty() {
            return Err(serde::de::Error::custom("session_id and hook_event_name must not be empty"));
        }
        Ok(event)
    }
}

/// Acts on one hook event. `replay_key` (inbox replays) makes events without a natural key idempotent.
pub async fn dispatch(manager: &SessionManager, event: HookEvent, replay_key: Option<&str>) -> Result<()> {
    let project = project::from_cwd(&event.cwd);
    let agent = event.session_id.as_str();
    match event.hook_event_name.as_str() {
        "SessionStart" => {
            manager.note_session(agent, &project, event.transcript_path.clone(), event.source.clone()).await?;
        }
        "UserPromptSubmit" => {
            manager.note_session(agent, &project, event.transcript_path.clone(), None).await?;
            let key = natural_key("prompt", agent, event.prompt_id.as_deref()).or(replay_key.map(String::from));
            manager.init_session(agent, &project, Some(event.prompt.as_deref().unwrap_or_default()), key).await?;
        }
        "PostToolUse" => {
            let Some(tool_name) = event.tool_name.filter(|t| !t.is_empty()) else {
                tracing::debug!(session = agent, "PostToolUse without tool_name ignored");
                return Ok(());
            };
            let tool = ToolUse {
                tool_name,
                tool_input: event.tool_input,
                tool_response: event.tool_response,
                cwd: event.cwd,
                tool_use_id: event.tool_use_id.filter(|t| !t.is_empty()),
            };
            let key = if tool.tool_use_id.is_none() { replay_key.map(String::from) } else { None };
            manager.queue_observation(agent, &project, tool, key).await?;
        }
        "Stop" => {
            let transcript = read_transcript(event.transcript_path.clone()).await;
            reconcile(manager, agent, &project, &event.cwd, &transcript).await?;
            let request = SummaryRequest {
                last_user_message: transcript.last_user_message.unwrap_or_default(),
                last_assistant_message: transcript.last_assistant_message.unwrap_or_default(),
            };
            // A Stop delivered twice (retries, inbox and live) is one summary: keyed by the prompt when Claude
            // Code names it, else by what the agent last said.
            let key = natural_key("stop", agent, event.prompt_id.as_deref())
                .or(replay_key.map(String::from))
                .unwrap_or_else(|| format!("stop:{agent}:{:016x}", fnv1a(request.last_assistant_message.as_bytes())));
            manager.queue_summarize(agent, &project, request, Some(key)).await?;
        }
        "SessionEnd" => {
            let transcript = read_transcript(event.transcript_path.clone()).await;
            reconcile(manager, agent, &project, &event.cwd, &transcript).await?;
            manager.complete_session(agent).await?;
        }
        other => tracing::debug!(event = other, "hook event ignored"),
    }
    Ok(())
}

fn natural_key(kind: &str, agent: &str, id: Option<&str>) -> Option<String> {
    id.filter(|id| !id.is_empty()).map(|id| format!("{kind}:{agent}:{id}"))
}

/// Queues every completed tool use of the transcript that memtray has not stored, in transcript order.
/// Returns how many were missing.
pub async fn reconcile(
    manager: &SessionManager,
    agent: &str,
    project: &str,
    cwd: &str,
    transcript: &Transcript,
) -> Result<usize> {
    let tools: Vec<ToolUse> = transcript
        .tool_uses
        .iter()
        // A tool use without a result never fired PostToolUse (interrupted): nothing to observe.
        .filter(|t| t.response.is_some())
        .map(|t| ToolUse {
            tool_name: t.name.clone(),
            tool_input: t.input.clone(),
            tool_response: t.response.clone().unwrap_or_default(),
            cwd: cwd.to_string(),
            tool_use_id: Some(t.id.clone()),
        })
        .collect();
    let queued = manager.queue_observations(agent, project, tools).await?;
    if queued > 0 {
        tracing::info!(session = agent, queued, "reconciled tool uses missing from the transcript");
    }
    Ok(queued)
}

/// Reads a transcript off the async workers. A missing or unreadable one reads as empty: the event still counts.
async fn read_transcript(path: Option<String>) -> Transcript {
    let Some(path) = path.filter(|p| !p.is_empty()) else { return Transcript::default() };
    let path = PathBuf::from(path);
    let read = tokio::task::spawn_blocking(move || transcript::read(&path)).await;
    match read {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "transcript not readable");
            Transcript::default()
        }
        Err(_) => Transcript::default(),
    }
}

/// At server start: reconcile every session that was active when the server stopped.
pub async fn reconcile_active(manager: &SessionManager) -> Result<usize> {
    let sessions = manager.store().read(crate::store::sessions::active_transcripts).await?;
    let mut queued = 0;
    for (agent, project, path) in sessions {
        let transcript = read_transcript(Some(path)).await;
        queued += reconcile(manager, &agent, &project, "", &transcript).await?;
    }
    Ok(queued)
}

/// Dispatches the events `memtray hook` left in the inbox, oldest first, each removed once it is handled.
/// Returns how many were dispatched. A malformed body is dropped with a warning.
pub async fn drain_inbox(manager: &SessionManager) -> Result<usize> {
    let store = manager.store();
    let mut done = 0;
    loop {
        let batch = store.read(|c| inbox::oldest(c, 100)).await?;
        if batch.is_empty() {
            return Ok(done);
        }
        for (id, body) in batch {
            match HookEvent::parse(body.as_bytes()) {
                Ok(event) => dispatch(manager, event, Some(&format!("inbox:{id}"))).await?,
                Err(e) => tracing::warn!(inbox_id = id, error = %e, "dropping a malformed inbox event"),
            }
            store.write(move |c| inbox::remove(c, id)).await.map_err(SessionError::from)?;
            done += 1;
        }
    }
}

/// True when the inbox holds events.
pub async fn inbox_waiting(manager: &SessionManager) -> std::result::Result<bool, StoreError> {
    manager.store().read(|c| inbox::is_empty(c).map(|empty| !empty)).await
}

/// FNV-1a: a stable, dependency-free fingerprint for idempotency keys (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_requires_the_two_fields_and_ignores_the_rest() {
        let ok = HookEvent::parse(br#"{"session_id":"s","hook_event_name":"Stop","effort":"high","x":{"y":1}}"#);
        assert_eq!(ok.unwrap().hook_event_name, "Stop");
        assert!(HookEvent::parse(br#"{"hook_event_name":"Stop"}"#).is_err());
        assert!(HookEvent::parse(br#"{"session_id":"s"}"#).is_err());
        assert!(HookEvent::parse(br#"{"session_id":" ","hook_event_name":"Stop"}"#).is_err());
        assert!(HookEvent::parse(b"[1]").is_err());
        assert!(HookEvent::parse(b"not json").is_err());
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
