//! What must never reach the disk: `<private>…</private>` parts (removed) and secrets (redacted, see
//! [`crate::redact`]), applied before anything is stored, on every path: intake, backfill and the hook inbox.
//!
//! Tags match ASCII case-insensitively, with whitespace or attributes in the opening tag (`<private >`,
//! `<private reason="x">`) and whitespace in the closing one; an opening tag with no closing tag removes
//! everything after it in that text. JSON is stripped string by string and key by key, so its shape survives.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::redact::Redactor;

const OPEN: &str = "<private";
const CLOSE: &str = "</private";

/// The fields of a hook event that are metadata: never stripped nor redacted (memtray keys on them).
/// Every other field is content.
pub const HOOK_METADATA: &[&str] = &[
    "session_id",
    "hook_event_name",
    "transcript_path",
    "agent_transcript_path",
    "cwd",
    "tool_name",
    "tool_use_id",
    "prompt_id",
    "agent_id",
    "agent_type",
    "source",
    "permission_mode",
    "duration_ms",
    "is_interrupt",
    "stop_hook_active",
];

/// Returns `text` without its private parts.
pub fn strip(text: &str) -> Cow<'_, str> {
    let Some(first) = open_tag(text, 0) else { return Cow::Borrowed(text) };
    let mut out = String::with_capacity(text.len());
    let mut rest_start = 0;
    let mut open = Some(first);
    while let Some((start, body)) = open {
        out.push_str(&text[rest_start..start]);
        match close_tag(text, body) {
            Some(end) => rest_start = end,
            None => return Cow::Owned(out),
        }
        open = open_tag(text, rest_start);
    }
    out.push_str(&text[rest_start..]);
    Cow::Owned(out)
}

/// Strips a prompt. `None` when nothing of it is left: an entirely private prompt.
pub fn strip_prompt(prompt: &str) -> Option<String> {
    let stripped = strip(prompt);
    if stripped.trim().is_empty() && !prompt.trim().is_empty() { None } else { Some(stripped.into_owned()) }
}

/// Strips every string inside a JSON value, in place, object keys included. A key that is entirely private
/// takes its value with it.
pub fn strip_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = strip(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_json),
        Value::Object(map) => {
            if map.keys().any(|k| open_tag(k, 0).is_some()) {
                let old = std::mem::take(map);
                for (key, value) in old {
                    match strip(&key) {
                        Cow::Owned(clean) if clean.trim().is_empty() => {}
                        clean => {
                            map.insert(clean.into_owned(), value);
                        }
                    }
                }
            }
            map.values_mut().for_each(strip_json);
        }
        _ => {}
    }
}

/// Runs `f` on an object holding the event's content fields (not its metadata), then puts them back.
fn with_hook_content(event: &mut Value, f: impl FnOnce(&mut Value)) {
    let Value::Object(map) = event else { return f(event) };
    let content_keys: Vec<String> = map.keys().filter(|k| !HOOK_METADATA.contains(&k.as_str())).cloned().collect();
    let mut content = Map::new();
    for key in content_keys {
        if let Some(value) = map.remove(&key) {
            content.insert(key, value);
        }
    }
    let mut content = Value::Object(content);
    f(&mut content);
    if let Value::Object(content) = content {
        map.extend(content);
    }
}

/// The privacy rules in effect: `<private>` removal, then the configured redaction. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Privacy {
    redactor: Redactor,
}

impl Privacy {
    /// Private parts removed, then secrets redacted by `redactor`.
    pub fn new(redactor: Redactor) -> Privacy {
        Privacy { redactor }
    }

    /// A text to store.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match strip(text) {
            Cow::Borrowed(text) => self.redactor.text(text),
            Cow::Owned(stripped) => Cow::Owned(self.redactor.text(&stripped).into_owned()),
        }
    }

    /// A text to store, in place.
    pub fn text_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.text(text) {
            *text = clean;
        }
    }

    /// A prompt to store; `None` when it is entirely private.
    pub fn prompt(&self, prompt: &str) -> Option<String> {
        strip_prompt(prompt).map(|p| match self.redactor.text(&p) {
            Cow::Borrowed(_) => p,
            Cow::Owned(clean) => clean,
        })
    }

    /// A JSON value to store, in place.
    pub fn json(&self, value: &mut Value) {
        strip_json(value);
        self.redactor.json(value);
    }

    /// A raw hook event to store as sent, in place: its content fields stripped and redacted, its metadata
    /// ([`HOOK_METADATA`]) kept.
    pub fn hook_event(&self, event: &mut Value) {
        with_hook_content(event, |content| self.json(content));
    }
}

/// The next opening tag at or after byte `from`: (where it starts, where its body starts). An opening tag
/// cut off by the end of the text opens a body that runs to the end.
fn open_tag(text: &str, mut from: usize) -> Option<(usize, usize)> {
    loop {
        let start = find_ci(text, OPEN, from)?;
        let after = start + OPEN.len();
        match text.as_bytes().get(after) {
            Some(b'>') => return Some((start, after + 1)),
            Some(c) if c.is_ascii_whitespace() => {
                return Some((start, text[after..].find('>').map_or(text.len(), |i| after + i + 1)));
            }
            None => return Some((start, text.len())),
            // `<privateer>`, `<private-ish>`: not the tag.
            Some(_) => from = after,
        }
    }
}

/// The end of the next closing tag at or after byte `from`.
fn close_tag(text: &str, mut from: usize) -> Option<usize> {
    loop {
        let start = find_ci(text, CLOSE, from)?;
        let after = start + CLOSE.len();
        let rest = &text.as_bytes()[after..];
        let spaces = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        if rest.get(spaces) == Some(&b'>') {
            return Some(after + spaces + 1);
        }
        from = after;
    }
}

/// Finds `needle` (ASCII) in `haystack` from byte `from`, ignoring ASCII case.
fn find_ci(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let hay = haystack.as_bytes();
    let needle = needle.as_bytes();
    if from >= hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_closed_blocks_and_keeps_the_rest() {
        assert_eq!(strip("a <private>secret</private> b"), "a  b");
        assert_eq!(strip("x<PRIVATE>1</Private>y<private>2</private>z"), "xyz");
        assert_eq!(strip("nothing to hide"), "nothing to hide");
    }

    #[test]
    fn tag_variants_are_tags() {
        assert_eq!(strip("a <private >s</private> b"), "a  b");
        assert_eq!(strip("a <private reason=\"x\">s</private> b"), "a  b");
        assert_eq!(strip("a <Private\treason='tok'>s</PRIVATE > b"), "a  b");
        assert_eq!(strip("a <private>s</private\n> b"), "a  b");
        assert_eq!(strip("a <private>s</ private> b"), "a ", "not a closing tag: the block runs to the end");
    }

    #[test]
    fn look_alikes_are_not_tags() {
        assert_eq!(strip("a <privateer>b</privateer> c"), "a <privateer>b</privateer> c");
        assert_eq!(strip("a <private-ish>b"), "a <private-ish>b");
        assert_eq!(strip("<private>x</privately> y</private>z"), "z");
    }

    #[test]
    fn an_unclosed_tag_removes_everything_after_it() {
        assert_eq!(strip("keep <private>gone </private-ish and more"), "keep ");
        assert_eq!(strip("keep<private>"), "keep");
        assert_eq!(strip("keep<private"), "keep");
        assert_eq!(strip("keep<private reason=\"cut off"), "keep");
    }

    #[test]
    fn multibyte_text_is_safe() {
        assert_eq!(strip("é<private>ü</private>ß"), "éß");
        assert_eq!(strip("é<private ü='ß'>ü</private >ß"), "éß");
    }

    #[test]
    fn entirely_private_prompts_are_none() {
        assert_eq!(strip_prompt(" <private>all of it</private>\n"), None);
        assert_eq!(strip_prompt("<private>unclosed"), None);
        assert_eq!(strip_prompt("fix <private>x</private> it").as_deref(), Some("fix  it"));
    }

    #[test]
    fn json_strings_and_keys_are_stripped_in_place() {
        let mut v = json!({
            "command": "echo <private>token</private>ok",
            "list": ["<private>a</private>b", 3],
            "<private>key name</private>": "its value",
            "env_<private reason=\"x\">NAME</private>": "v",
        });
        strip_json(&mut v);
        assert_eq!(v, json!({"command": "echo ok", "list": ["b", 3], "env_": "v"}));
    }

    #[test]
    fn a_hook_event_keeps_its_metadata() {
        let mut event = json!({
            "session_id": "s-<private>1</private>",
            "hook_event_name": "PostToolUse",
            "cwd": "/home/<private>dev</private>",
            "tool_name": "Bash",
            "tool_use_id": "toolu_1",
            "transcript_path": "/t/<private>x</private>.jsonl",
            "tool_input": {"command": "echo <private >hidden</private> shown"},
            "tool_response": {"<private>k</private>": "v", "stdout": "ok"},
            "prompt": "<private reason=\"x\">all</private>",
        });
        let before = event.clone();
        Privacy::new(Redactor::off()).hook_event(&mut event);
        for key in ["session_id", "hook_event_name", "cwd", "tool_name", "tool_use_id", "transcript_path"] {
            assert_eq!(event[key], before[key], "{key}");
        }
        assert_eq!(event["tool_input"], json!({"command": "echo  shown"}));
        assert_eq!(event["tool_response"], json!({"stdout": "ok"}));
        assert_eq!(event["prompt"], "");
    }

    #[test]
    fn privacy_strips_then_redacts() {
        let key = format!("AKIA{}", "ABCD".repeat(4));
        let privacy = Privacy::default();
        assert_eq!(privacy.text(&format!("<private>x</private>id {key}")), "id [REDACTED:aws_access_key]");
        assert_eq!(privacy.prompt(&format!("use {key}")).as_deref(), Some("use [REDACTED:aws_access_key]"));
        assert_eq!(privacy.prompt("<private>all</private>"), None);
        let mut event = json!({"session_id": key.clone(), "tool_input": {"k": key.clone()}});
        privacy.hook_event(&mut event);
        assert_eq!(event, json!({"session_id": key, "tool_input": {"k": "[REDACTED:aws_access_key]"}}));
        let off = Privacy::new(Redactor::off());
        assert_eq!(off.text("a <private>b</private>"), "a ");
    }
}
