//! What memtray remembers: observations (one tool use, understood) and summaries (one session, told).
//!
//! Providers (`provider`: the embedded `local` one, the LLM ones in `llm`, the `faults` wrapper for tests)
//! produce the `New*` forms; the `scribe` asks them within the provider's health and the day's token budget;
//! the store adds ids, session, time and who made it. Both travel to the HTTP API and the event stream.

pub mod faults;
pub mod llm;
pub mod local;
pub mod provider;
pub mod scribe;

use serde::{Deserialize, Serialize};

/// An observation as a provider produces it (claude-mem's observation schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// What was learned or decided, in a few sentences (an LLM provider's; empty from `local`).
    pub narrative: String,
    /// Concepts the observation is about (`how-it-works`, `gotcha`, `pattern`, ...).
    pub concepts: Vec<String>,
    /// Files the tool read.
    pub files_read: Vec<String>,
    /// Files the tool changed.
    pub files_modified: Vec<String>,
}

/// A session summary as a provider produces it (claude-mem's summary schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewSummary {
    /// What the user asked for.
    pub request: String,
    /// What was looked at.
    pub investigated: String,
    /// What was learned (an LLM provider's; empty from `local`).
    pub learned: String,
    /// What was done.
    pub completed: String,
    /// What is left, when the agent said so.
    pub next_steps: String,
    /// Anything else worth keeping.
    pub notes: String,
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
    /// Which provider made it, and why `local` stood in when it did.
    #[serde(flatten)]
    pub made_by: MadeBy,
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
    /// Which provider made it, and why `local` stood in when it did.
    #[serde(flatten)]
    pub made_by: MadeBy,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// Who made a piece of memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MadeBy {
    /// The provider's name (`local`, `anthropic`, `openai`, `claude-cli`).
    pub provider: String,
    /// The model that answered, when a model did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Set when the `local` provider stood in for the configured one: why (out of attempts, a refused
    /// request, the day's token ceiling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl MadeBy {
    /// Made by `provider` with `model` as configured.
    pub fn provider(provider: &str, model: Option<String>) -> MadeBy {
        MadeBy { provider: provider.to_string(), model, fallback: None }
    }

    /// Made by the `local` provider standing in for the configured one.
    pub fn fallback(reason: impl Into<String>) -> MadeBy {
        MadeBy { provider: "local".to_string(), model: None, fallback: Some(reason.into()) }
    }
}
