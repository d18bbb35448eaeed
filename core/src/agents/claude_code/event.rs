//! One hook invocation as Claude Code sends it: on a command hook's stdin, or as an http hook's body.
//! Unknown fields are ignored; only `session_id` and `hook_event_name` are required.

use serde::Deserialize;
use serde_json::Value;

/// One hook invocation as Claude Code sends it (on a command hook's stdin, or as an http hook's body).
/// Unknown fields are ignored; only `session_id` and `hook_event_name` are required.
#[derive(Debug, Clone, Deserialize)]
pub struct HookEvent {
    /// The agent's session id.
    pub session_id: String,
    /// `SessionStart`, `UserPromptSubmit`, `PostToolUse`, `PostToolUseFailure`, `Stop`, `SubagentStop`,
    /// `SessionEnd`, ...
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
    /// Tool events: the tool.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// Tool events: its input.
    #[serde(default)]
    pub tool_input: Value,
    /// `PostToolUse`: its response (a failure has none).
    #[serde(default)]
    pub tool_response: Value,
    /// `PostToolUse`: unique per tool call.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// `PostToolUseFailure`: what went wrong.
    #[serde(default)]
    pub error: Option<String>,
    /// `PostToolUseFailure`: the user interrupted the tool.
    #[serde(default)]
    pub is_interrupt: Option<bool>,
    /// Tool events: how long the tool ran.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Events from inside a subagent: its id and type (`Explore`, `general-purpose`, …).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// See `agent_id`.
    #[serde(default)]
    pub agent_type: Option<String>,
    /// `SubagentStop`: the subagent's own transcript.
    #[serde(default)]
    pub agent_transcript_path: Option<String>,
    /// `Stop`, `SubagentStop`: the assistant's last text, which spares reading the transcript for it.
    #[serde(default)]
    pub last_assistant_message: Option<String>,
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
}
