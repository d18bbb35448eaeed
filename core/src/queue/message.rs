//! The message queue's vocabulary: what a queued message is, what it carries, and where it stands.
//!
//! Messages are rows in the store (`store::messages` holds their SQL); this module holds only the types that
//! travel between intake, the store, the session consumers and the HTTP API.

use serde::{Deserialize, Serialize};

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Turn one tool use into observations.
    Observation,
    /// Summarize the session so far; ends the consumer's batch.
    Summarize,
}

impl MessageKind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Observation => "observation",
            MessageKind::Summarize => "summarize",
        }
    }
}

/// Where a message stands. `pending → processing → processed | failed`; a retry goes back to `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Waiting for its session's consumer.
    Pending,
    /// Claimed by a consumer.
    Processing,
    /// Done; a summarize's payload is dropped, an observation's kept for its summary until retention.
    Processed,
    /// Gave up after the last attempt; `last_error` says why.
    Failed,
}

impl MessageStatus {
    /// Parses the `status` column.
    pub fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "pending" => MessageStatus::Pending,
            "processing" => MessageStatus::Processing,
            "processed" => MessageStatus::Processed,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }
}

/// A tool use to observe, after privacy stripping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    /// The tool's name (`Bash`, `Read`, `mcp__server__tool`, ...).
    pub tool_name: String,
    /// The tool's input, as the agent sent it.
    #[serde(default)]
    pub tool_input: serde_json::Value,
    /// The tool's response.
    #[serde(default)]
    pub tool_response: serde_json::Value,
    /// The working directory of the session.
    #[serde(default)]
    pub cwd: String,
    /// The agent's id for this tool call, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The tool failed with this error (Claude Code's `PostToolUseFailure`, or an `is_error` result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The subagent that used the tool (its type, `Explore` say), when not the main agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subagent: Option<String>,
}

/// A request to summarize, after privacy stripping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRequest {
    /// The user's last message in the session.
    #[serde(default)]
    pub last_user_message: String,
    /// The agent's last message in the session.
    #[serde(default)]
    pub last_assistant_message: String,
}

/// A message's payload, as stored (JSON in the `payload` column, the kind in `kind`).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "most payloads are observations; boxing them would buy nothing")]
pub enum Payload {
    /// For `MessageKind::Observation`.
    Observation(ToolUse),
    /// For `MessageKind::Summarize`.
    Summarize(SummaryRequest),
}

impl Payload {
    /// The kind this payload belongs to.
    pub fn kind(&self) -> MessageKind {
        match self {
            Payload::Observation(_) => MessageKind::Observation,
            Payload::Summarize(_) => MessageKind::Summarize,
        }
    }

    /// The JSON stored in the `payload` column.
    pub fn to_json(&self) -> String {
        match self {
            Payload::Observation(t) => serde_json::to_string(t),
            Payload::Summarize(s) => serde_json::to_string(s),
        }
        .expect("payloads are plain data and always serialize")
    }

    /// Reads a stored payload back.
    pub fn from_json(kind: MessageKind, json: &str) -> Result<Payload, serde_json::Error> {
        Ok(match kind {
            MessageKind::Observation => Payload::Observation(serde_json::from_str(json)?),
            MessageKind::Summarize => Payload::Summarize(serde_json::from_str(json)?),
        })
    }
}

/// A message a consumer has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id; also the queue order within a session.
    pub id: i64,
    /// The session's row id.
    pub session_id: i64,
    /// What to do.
    pub payload: Payload,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The prompt the message belongs to.
    pub prompt_number: i64,
}

/// A queue row as the inspector sees it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageInfo {
    /// Row id.
    pub id: i64,
    /// The session's row id.
    pub session_id: i64,
    /// The agent's session id.
    pub agent_session_id: String,
    /// The session's project.
    pub project: String,
    /// What it asks for.
    pub kind: MessageKind,
    /// Where it stands.
    pub status: MessageStatus,
    /// True when `processing` for longer than the stuck threshold.
    pub stuck: bool,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// For observations: the tool.
    pub tool_name: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// When it was last claimed.
    pub claimed_at: Option<i64>,
    /// When it ended.
    pub completed_at: Option<i64>,
}
