//! Reconciliation: the session's transcript is the record of every prompt and tool use Claude Code ran. On
//! `Stop`, `SubagentStop`, `SessionEnd` and at server start, whatever memtray lacks is filled in through
//! [`Intake::backfill`]: missed prompts under their own numbers, missed tool uses under the prompt they
//! followed, and a summary for every turn that ended without one, so a session is complete even across
//! downtime.

use std::path::PathBuf;
use std::time::Duration;

use super::natural_key;
use super::transcript::{self, Transcript};
use crate::core::Result;
use crate::intake::{Backfill, BackfillItem, BackfillPrompt, Backfilled, Intake};
use crate::queries::Queries;
use crate::queue::message::{SummaryRequest, ToolUse};

/// How far back start-up looks for sessions continued while memtray was away.
const CONTINUED_WITHIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whose transcript it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader<'a> {
    /// The session's own: its prompts and turns count.
    Session,
    /// A subagent's (`SubagentStop`): only its tool uses, labelled with the subagent's type.
    Subagent(&'a str),
}

/// Fills in what `transcript` shows and memtray lacks; returns what changed.
pub async fn reconcile(
    intake: &Intake,
    agent: &str,
    project: &str,
    cwd: &str,
    transcript: &Transcript,
    reader: Reader<'_>,
) -> Result<Backfilled> {
    let cwd = if cwd.is_empty() { transcript.cwd.as_deref().unwrap_or_default() } else { cwd };
    let backfill = plan(agent, cwd, transcript, reader);
    let done = intake.backfill(agent, project, backfill).await?;
    if done.prompts + done.renumbered + done.observations + done.summaries + done.refiled > 0 {
        tracing::info!(session = agent, ?done, "filled in what the transcript shows and memtray lacked");
    }
    Ok(done)
}

/// What the transcript shows, as a [`Backfill`] in transcript order.
fn plan(agent: &str, cwd: &str, transcript: &Transcript, reader: Reader<'_>) -> Backfill {
    let subagent = match reader {
        Reader::Session => None,
        Reader::Subagent(kind) => Some(kind.to_string()),
    };
    let prompts: Vec<BackfillPrompt> = match reader {
        Reader::Subagent(_) => Vec::new(),
        Reader::Session => transcript
            .prompts
            .iter()
            .map(|p| BackfillPrompt {
                key: natural_key("prompt", agent, Some(&p.id)).unwrap_or_default(),
                text: p.text.clone().unwrap_or_default(),
            })
            .collect(),
    };
    let mut items = Vec::new();
    let summary = |prompt: usize| {
        let p = &transcript.prompts[prompt];
        let key = natural_key("stop", agent, Some(&p.id))?;
        p.ended.then(|| BackfillItem::Summary {
            request: SummaryRequest {
                last_user_message: p.text.clone().unwrap_or_default(),
                last_assistant_message: p.last_assistant_message.clone().unwrap_or_default(),
            },
            prompt,
            key,
        })
    };
    // Each turn's summary goes after its last tool use, before the next turn's first.
    let mut next_turn = 0;
    for t in &transcript.tool_uses {
        // A tool use without a result never fired a hook (interrupted): nothing to observe.
        let Some(response) = &t.response else { continue };
        if t.id.is_empty() {
            continue;
        }
        let prompt = t.prompt.filter(|_| !prompts.is_empty());
        if let Some(p) = prompt {
            items.extend((next_turn..p).filter_map(summary));
            next_turn = next_turn.max(p);
        }
        let error = t.is_error.then(|| error_text(response));
        items.push(BackfillItem::Tool {
            tool: ToolUse {
                tool_name: t.name.clone(),
                tool_input: t.input.clone(),
                tool_response: if error.is_some() { serde_json::Value::Null } else { response.clone() },
                cwd: cwd.to_string(),
                tool_use_id: Some(t.id.clone()),
                error,
                subagent: subagent.clone(),
            },
            prompt,
        });
    }
    items.extend((next_turn..prompts.len()).filter_map(summary));
    Backfill { prompts, items, transcript_bytes: (reader == Reader::Session).then_some(transcript.bytes) }
}

/// The text of a failed tool use's result (`"Error: Exit code 3"` is written as `"Exit code 3"`).
fn error_text(response: &serde_json::Value) -> String {
    let text = match response {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.strip_prefix("Error: ").map(str::to_string).unwrap_or(text)
}

/// Reads a transcript off the async workers. A missing or unreadable one reads as empty: the event still counts.
pub(super) async fn read_transcript(path: Option<String>) -> Transcript {
    let Some(path) = path.filter(|p| !p.is_empty()) else { return Transcript::default() };
    let path = PathBuf::from(path);
    let read = tokio::task::spawn_blocking(move || transcript::read(&path)).await;
    match read {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // A transcript that is gone is common (a cleaned-up session); anything else deserves a look.
            let gone = matches!(&e, transcript::TranscriptError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
            if gone {
                tracing::debug!(error = %e, "transcript not found; nothing to reconcile");
            } else {
                tracing::warn!(error = %e, "transcript not readable; nothing reconciled, the event still counts");
            }
            Transcript::default()
        }
        Err(_) => Transcript::default(),
    }
}

/// At server start: reconcile every session that was active when the server stopped, and every recent one
/// whose transcript grew since reconciliation last read it (continued with `--continue` or `--resume` while
/// memtray was away).
pub async fn reconcile_at_start(intake: &Intake, queries: &Queries) -> Result<usize> {
    let since = queries.now_ms() - CONTINUED_WITHIN.as_millis() as i64;
    let known = queries.transcripts_since(since).await?;
    let changed = tokio::task::spawn_blocking(move || {
        known
            .into_iter()
            .filter(|t| {
                // Past the reading limit a transcript is never read further: it counts as seen up to it.
                let size =
                    std::fs::metadata(&t.path).ok().filter(|m| m.is_file()).map(|m| m.len().min(transcript::MAX_BYTES));
                match (size, t.seen) {
                    (None, _) => false,
                    (Some(size), Some(seen)) => size != seen,
                    (Some(_), None) => t.active,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut queued = 0;
    for t in changed {
        let transcript = read_transcript(Some(t.path)).await;
        let done = reconcile(intake, &t.agent_session_id, &t.project, "", &transcript, Reader::Session).await?;
        queued += done.observations + done.summaries;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::agents::claude_code::transcript::{TranscriptPrompt, TranscriptToolUse};

    fn prompt(id: &str, text: &str, ended: bool) -> TranscriptPrompt {
        TranscriptPrompt {
            id: id.into(),
            text: Some(text.into()),
            last_assistant_message: Some(format!("answered {text}")),
            ended,
        }
    }

    fn used(id: &str, prompt: usize, response: Option<serde_json::Value>, is_error: bool) -> TranscriptToolUse {
        TranscriptToolUse {
            id: id.into(),
            name: "Bash".into(),
            input: json!({}),
            response,
            is_error,
            prompt: Some(prompt),
        }
    }

    /// What the plan holds, in order: `tool:<id>@<prompt>` and `summary@<prompt>`.
    fn shape(backfill: &Backfill) -> Vec<String> {
        backfill
            .items
            .iter()
            .map(|item| match item {
                BackfillItem::Tool { tool, prompt } => {
                    format!("tool:{}@{prompt:?}", tool.tool_use_id.as_deref().unwrap())
                }
                BackfillItem::Summary { prompt, .. } => format!("summary@{prompt}"),
            })
            .collect()
    }

    #[test]
    fn each_ended_turn_is_summarized_after_its_tool_uses_in_transcript_order() {
        let transcript = Transcript {
            prompts: vec![prompt("p1", "one", true), prompt("p2", "two", true), prompt("p3", "three", false)],
            tool_uses: vec![
                used("t1", 0, Some(json!("ok")), false),
                used("t2", 0, Some(json!("Error: Exit code 2")), true),
                // Turn 2 used no tool; turn 3 is still running, its last tool use has no result yet.
                used("t3", 2, Some(json!("ok")), false),
                used("t4", 2, None, false),
            ],
            bytes: 42,
            ..Transcript::default()
        };
        let plan = plan("s", "/work", &transcript, Reader::Session);
        assert_eq!(shape(&plan), ["tool:t1@Some(0)", "tool:t2@Some(0)", "summary@0", "summary@1", "tool:t3@Some(2)"]);
        let keys: Vec<&str> = plan.prompts.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["prompt:s:p1", "prompt:s:p2", "prompt:s:p3"]);
        let BackfillItem::Tool { tool, .. } = &plan.items[1] else { unreachable!() };
        assert_eq!(tool.error.as_deref(), Some("Exit code 2"));
        assert_eq!(tool.tool_response, json!(null));
        let BackfillItem::Summary { request, key, .. } = &plan.items[3] else { unreachable!() };
        assert_eq!((request.last_user_message.as_str(), key.as_str()), ("two", "stop:s:p2"));
        assert_eq!(plan.transcript_bytes, Some(42));
    }

    #[test]
    fn a_subagent_transcript_gives_only_labelled_tool_uses() {
        let transcript = Transcript {
            prompts: vec![prompt("p1", "look around", true)],
            tool_uses: vec![used("t1", 0, Some(json!("ok")), false)],
            ..Transcript::default()
        };
        let plan = plan("s", "/work", &transcript, Reader::Subagent("Explore"));
        assert!(plan.prompts.is_empty() && plan.transcript_bytes.is_none());
        assert_eq!(shape(&plan), ["tool:t1@None"]);
        let BackfillItem::Tool { tool, .. } = &plan.items[0] else { unreachable!() };
        assert_eq!(tool.subagent.as_deref(), Some("Explore"));
    }
}
