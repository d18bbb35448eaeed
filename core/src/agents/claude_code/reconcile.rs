//! Reconciliation: the session's transcript is the record of every tool use Claude Code ran. On `Stop`,
//! `SessionEnd` and at server start, every completed tool use memtray has not stored is queued, in
//! transcript order, so a session is captured completely even across downtime.

use std::path::PathBuf;

use super::transcript::{self, Transcript};
use crate::core::Result;
use crate::intake::Intake;
use crate::queries::Queries;
use crate::queue::message::ToolUse;

/// Queues every completed tool use of the transcript that memtray has not stored, in transcript order.
/// Returns how many were missing.
pub async fn reconcile(
    intake: &Intake,
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
    let queued = intake.queue_observations(agent, project, tools).await?;
    if queued > 0 {
        tracing::info!(session = agent, queued, "reconciled tool uses missing from the transcript");
    }
    Ok(queued)
}

/// Reads a transcript off the async workers. A missing or unreadable one reads as empty: the event still counts.
pub(super) async fn read_transcript(path: Option<String>) -> Transcript {
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
pub async fn reconcile_active(intake: &Intake, queries: &Queries) -> Result<usize> {
    let mut queued = 0;
    for (agent, project, path) in queries.active_transcripts().await? {
        let transcript = read_transcript(Some(path)).await;
        queued += reconcile(intake, &agent, &project, "", &transcript).await?;
    }
    Ok(queued)
}
