//! What memtray remembers: observations (one tool use, understood) and summaries (one session, told).
//!
//! Providers (`provider`, with the embedded `local` one and the `faults` wrapper for tests) produce the
//! `New*` forms; the store adds ids, session and time. Both travel to the HTTP API and the event stream as
//! they are.

pub mod faults;
pub mod local;
pub mod provider;

use serde::{Deserialize, Serialize};

/// An observation as a provider produces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewObservation {
    /// `discovery`, `change`, `bugfix`, `feature`, `refactor`, `decision`, `test`, `command`, `research`,
    /// `failure` (a tool use that failed).
    #[serde(rename = "type")]
    pub kind: String,
    /// One line: what happened.
    pub title: String,
    /// A second line of context.
    pub subtitle: String,
    /// Short facts: the command run and its outcome, the pattern searched, what changed.
    pub facts: Vec<String>,
    /// Files the tool read.
    pub files_read: Vec<String>,
    /// Files the tool changed.
    pub files_modified: Vec<String>,
}

/// A session summary as a provider produces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewSummary {
    /// What the user asked for.
    pub request: String,
    /// What was looked at.
    pub investigated: String,
    /// What was done.
    pub completed: String,
    /// What is left, when the agent said so.
    pub next_steps: String,
    /// Files read during the session.
    pub files_read: Vec<String>,
    /// Files changed during the session.
    pub files_edited: Vec<String>,
}

/// A stored observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Row id.
    pub id: i64,
    /// The session's row id.
    pub session_id: i64,
    /// The session's project.
    pub project: String,
    /// The message it was made from (`None` once that message was pruned).
    pub message_id: Option<i64>,
    /// The prompt it belongs to.
    pub prompt_number: i64,
    /// The tool observed.
    pub tool_name: String,
    /// The subagent that used the tool (its type), when not the main agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subagent: Option<String>,
    /// What the provider made of it.
    #[serde(flatten)]
    pub memory: NewObservation,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// A stored summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Row id.
    pub id: i64,
    /// The session's row id.
    pub session_id: i64,
    /// The session's project.
    pub project: String,
    /// The message it was made from.
    pub message_id: Option<i64>,
    /// The prompt it closes.
    pub prompt_number: i64,
    /// What the provider made of it.
    #[serde(flatten)]
    pub memory: NewSummary,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}
