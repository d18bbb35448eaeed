//! Claude Code's hook events and what each means to memtray: a session starts, a prompt is counted, a tool
//! use is observed, a stop is summarized, a session ends. Used by `POST /hooks/claude-code`, by the inbox
//! that `memtray hook` fills while no server answers, and by reconciliation against the transcript.
//!
//! Also here: the `memtray hook` command ([`hook`]) and editing Claude Code's settings ([`settings`]).

mod event;
pub mod hook;
pub mod inbox;
pub mod reconcile;
pub mod settings;
pub mod transcript;

use crate::core::Result;
use crate::intake::Intake;
use crate::project;
use crate::queue::message::{SummaryRequest, ToolUse};

pub use event::HookEvent;
use reconcile::{Reader, read_transcript, reconcile};

/// Acts on one hook event. `replay_key` (inbox replays) makes events without a natural key idempotent.
pub async fn dispatch(intake: &Intake, event: HookEvent, replay_key: Option<&str>) -> Result<()> {
    let project = project::of_cwd(&event.cwd).await;
    if intake.excluded(&project) {
        tracing::debug!(project, "event of an excluded project ignored");
        return Ok(());
    }
    let agent = event.session_id.as_str();
    match event.hook_event_name.as_str() {
        "SessionStart" => {
            intake.note_session(agent, &project, event.transcript_path.clone(), event.source.clone()).await?;
        }
        "UserPromptSubmit" => {
            intake.note_session(agent, &project, event.transcript_path.clone(), None).await?;
            let key = natural_key("prompt", agent, event.prompt_id.as_deref()).or(replay_key.map(String::from));
            intake.init_session(agent, &project, Some(event.prompt.as_deref().unwrap_or_default()), key).await?;
        }
        "PostToolUse" | "PostToolUseFailure" => {
            let failed = event.hook_event_name == "PostToolUseFailure";
            let Some(tool_name) = event.tool_name.filter(|t| !t.is_empty()) else {
                tracing::debug!(session = agent, "tool event without tool_name ignored");
                return Ok(());
            };
            let error = failed.then(|| match (event.error, event.is_interrupt) {
                (Some(error), _) if !error.trim().is_empty() => error,
                (_, Some(true)) => "interrupted by the user".to_string(),
                _ => "the tool failed".to_string(),
            });
            let tool = ToolUse {
                tool_name,
                tool_input: event.tool_input,
                tool_response: if failed { serde_json::Value::Null } else { event.tool_response },
                cwd: event.cwd,
                tool_use_id: event.tool_use_id.filter(|t| !t.is_empty()),
                error,
                subagent: event.agent_type.or(event.agent_id).filter(|a| !a.is_empty()),
            };
            let key = if tool.tool_use_id.is_none() { replay_key.map(String::from) } else { None };
            intake.queue_observation(agent, &project, tool, key).await?;
        }
        "Stop" => {
            let transcript = read_transcript(event.transcript_path.clone()).await;
            reconcile(intake, agent, &project, &event.cwd, &transcript, Reader::Session).await?;
            let request = SummaryRequest {
                last_user_message: transcript.last_user_message.unwrap_or_default(),
                last_assistant_message: event
                    .last_assistant_message
                    .filter(|m| !m.trim().is_empty())
                    .or(transcript.last_assistant_message)
                    .unwrap_or_default(),
            };
            // A Stop delivered twice (retries, inbox and live) is one summary: keyed by the prompt when Claude
            // Code names it, else by what the agent last said (the same on both paths), else by the replay.
            let said = &request.last_assistant_message;
            let by_words = |said: &str| format!("stop:{agent}:{:016x}", fnv1a(said.as_bytes()));
            let key = natural_key("stop", agent, event.prompt_id.as_deref())
                .or_else(|| (!said.is_empty()).then(|| by_words(said)))
                .or(replay_key.map(String::from))
                .unwrap_or_else(|| by_words(""));
            intake.queue_summarize(agent, &project, request, Some(key)).await?;
        }
        "SubagentStop" => {
            let kind = event.agent_type.or(event.agent_id).filter(|a| !a.is_empty());
            let kind = kind.as_deref().unwrap_or("subagent");
            let transcript = read_transcript(event.agent_transcript_path.clone()).await;
            reconcile(intake, agent, &project, &event.cwd, &transcript, Reader::Subagent(kind)).await?;
        }
        "SessionEnd" => {
            let transcript = read_transcript(event.transcript_path.clone()).await;
            reconcile(intake, agent, &project, &event.cwd, &transcript, Reader::Session).await?;
            intake.complete_session(agent).await?;
        }
        other => tracing::debug!(event = other, "hook event ignored"),
    }
    Ok(())
}

fn natural_key(kind: &str, agent: &str, id: Option<&str>) -> Option<String> {
    id.filter(|id| !id.is_empty()).map(|id| format!("{kind}:{agent}:{id}"))
}

/// FNV-1a: a stable, dependency-free fingerprint for idempotency keys (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
