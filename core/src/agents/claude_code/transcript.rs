//! Reader for Claude Code transcripts, the JSONL file named by a hook event's `transcript_path`.
//!
//! The file is streamed line by line and only what memtray needs is kept: the last words of the user, the last
//! text of the assistant, the prompts (by `promptId`, each with its words and how its turn ended), and every
//! tool use paired with its result and the prompt it followed. Malformed lines are counted and skipped; entry
//! types other than `user` and `assistant` (`queue-operation`, `attachment`, `last-prompt`, `mode`, …) are
//! ignored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// What a transcript says, as far as memtray cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// The last text the user wrote: the text blocks of the last user entry that has any, joined with `"\n"`
    /// and trimmed. Tool results, `isMeta` / `isSidechain` / `isCompactSummary` entries, system reminders and the
    /// text Claude Code writes for slash commands, local command output and interruptions are not the user's words.
    pub last_user_message: Option<String>,
    /// The text of the last assistant entry that has a non-blank text block, blocks joined with `"\n"`.
    pub last_assistant_message: Option<String>,
    /// Every tool use, in transcript order, each with its result when one was found.
    pub tool_uses: Vec<TranscriptToolUse>,
    /// The prompts, in the order they were first written; empty for transcripts without `promptId` (older
    /// versions of Claude Code).
    pub prompts: Vec<TranscriptPrompt>,
    /// Lines that could not be read: not valid UTF-8, not JSON, or a `user` / `assistant` entry of the wrong shape.
    /// A read error ends the reading and counts as one more.
    pub skipped_lines: usize,
    /// The session's working directory, as its latest entry says.
    pub cwd: Option<String>,
    /// Bytes read.
    pub bytes: u64,
}

/// One `tool_use` block of an assistant entry and the `tool_result` that answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptToolUse {
    /// The tool use id (`toolu_…`), the same as a `PostToolUse` hook's `tool_use_id`.
    pub id: String,
    /// The tool name (`Read`, `Bash`, `mcp__server__tool`, …).
    pub name: String,
    /// The tool input, as the model wrote it.
    pub input: Value,
    /// The result: the entry's structured `toolUseResult` when present, else the block's `content` (a string stays
    /// a JSON string, an array of text blocks becomes their joined text). `None` when no result was found.
    pub response: Option<Value>,
    /// Whether the result was flagged `is_error`.
    pub is_error: bool,
    /// The prompt it followed: an index into [`Transcript::prompts`].
    pub prompt: Option<usize>,
}

/// One prompt of the user and its turn, as the transcript tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptPrompt {
    /// Claude Code's `promptId`, the same as the hook events' `prompt_id`.
    pub id: String,
    /// The user's words (`None` when the entries of this prompt hold none, say a slash command).
    pub text: Option<String>,
    /// The assistant's last text in this turn.
    pub last_assistant_message: Option<String>,
    /// The turn ended: an assistant message of it stopped for another reason than a tool use.
    pub ended: bool,
}

/// Why a transcript could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file could not be opened (missing, unreadable, or a directory).
    #[error("cannot open transcript {}", path.display())]
    Open {
        /// The path that was given.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// The most of a transcript that is read: a session's file past this is read up to here.
pub const MAX_BYTES: u64 = 256 << 20;
/// The longest line kept; a longer one (a tool result of a huge file, or no line breaks at all) is skipped.
pub const MAX_LINE: usize = 32 << 20;

/// Reads the transcript at `path`, streaming it line by line. Only a regular file is read (not a FIFO, a
/// device such as `/dev/zero`, or a directory), opened without blocking, at most [`MAX_BYTES`] of it, each
/// line at most [`MAX_LINE`] long.
///
/// # Errors
/// [`TranscriptError::Open`] when the file cannot be opened or is not a regular file; once it is open, bad
/// lines are only counted.
pub fn read(path: &Path) -> Result<Transcript, TranscriptError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let open_error = |source| TranscriptError::Open { path: path.to_path_buf(), source };
    // Without O_NONBLOCK, opening a FIFO nobody writes to waits forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(open_error)?;
    if !file.metadata().map_err(open_error)?.is_file() {
        return Err(open_error(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    Ok(read_from(BufReader::new(file.take(MAX_BYTES))))
}

/// Reads a transcript from any buffered reader, one line at a time into a reused buffer.
pub fn read_from(mut reader: impl BufRead) -> Transcript {
    let mut builder = Builder::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line) {
            Ok((0, _)) => break,
            Ok((n, fits)) => {
                builder.transcript.bytes += n as u64;
                if fits {
                    builder.line(&line);
                } else {
                    builder.transcript.skipped_lines += 1;
                }
            }
            Err(_) => {
                // `fill_buf` already retries `Interrupted`; anything else would likely repeat forever.
                builder.transcript.skipped_lines += 1;
                break;
            }
        }
    }
    builder.transcript
}

/// Reads up to and including the next `\n` into `line`, keeping at most [`MAX_LINE`] bytes: returns the
/// bytes consumed and whether the line fit (a line that did not is consumed and left out).
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let (mut consumed, mut fits) = (0, true);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((consumed, fits));
        }
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if fits && line.len() + chunk.len() > MAX_LINE {
            fits = false;
            line.clear();
        }
        if fits {
            line.extend_from_slice(chunk);
        }
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if ends {
            return Ok((consumed, fits));
        }
    }
}

/// Text that Claude Code puts in user entries on its own: a user text starting with one of these is not the user's.
const NOT_USER_WORDS: &[&str] = &[
    REMINDER_OPEN,
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<local-command-stdout>",
    "<local-command-stderr>",
    "<local-command-caveat>",
    "<task-notification>",
    "Caveat:",
    "[Request interrupted by user",
];
const REMINDER_OPEN: &str = "<system-reminder>";
const REMINDER_CLOSE: &str = "</system-reminder>";

/// One transcript line. Unknown fields are ignored.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "isMeta", default)]
    is_meta: bool,
    /// Written by subagents (older versions put them in the parent's transcript).
    #[serde(rename = "isSidechain", default)]
    is_sidechain: bool,
    /// The "This session is being continued…" entry written by `/compact`.
    #[serde(rename = "isCompactSummary", default)]
    is_compact_summary: bool,
    #[serde(default)]
    cwd: Option<String>,
    /// User entries of newer versions: the prompt this entry belongs to.
    #[serde(rename = "promptId", default)]
    prompt_id: Option<String>,
    message: Option<Message>,
    #[serde(rename = "toolUseResult")]
    tool_use_result: Option<Value>,
}

/// Just the type of a line, to tell an odd entry of a skipped type from a broken one.
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct Message {
    /// Assistant messages: one API message is written as one line per content block, all with this id.
    #[serde(default)]
    id: Option<String>,
    content: Option<Content>,
    /// Assistant messages: `tool_use`, `end_turn`, `max_tokens`, … (the same on every line of a message).
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
    /// Any other shape (or a block array we cannot read) carries nothing for us.
    Other(IgnoredAny),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: String,
        content: Option<Value>,
        is_error: Option<bool>,
    },
    /// `thinking`, `image`, `document`, … and whatever comes next.
    #[serde(other)]
    Unknown,
}

/// Where a tool use sits in `tool_uses`, and whether its result came.
struct Slot {
    index: usize,
    answered: bool,
}

#[derive(Default)]
struct Builder {
    transcript: Transcript,
    by_id: HashMap<String, Slot>,
    /// Where each `promptId` sits in `prompts`.
    prompt_index: HashMap<String, usize>,
    /// The prompt the latest user entry belonged to.
    current_prompt: Option<usize>,
    /// The API message the last assistant text came from, so that its later blocks add to that text.
    last_text_message: Option<String>,
}

impl Builder {
    fn line(&mut self, bytes: &[u8]) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        // Checked up front so that invalid bytes are refused even inside fields that are never looked at.
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.transcript.skipped_lines += 1;
            return;
        };
        match serde_json::from_str::<Entry>(text) {
            Ok(entry) => self.entry(entry),
            Err(_) => {
                // An entry of a type we skip anyway may have any shape.
                let skipped_type = serde_json::from_str::<Kind>(text)
                    .is_ok_and(|line| line.kind != "user" && line.kind != "assistant");
                if !skipped_type {
                    self.transcript.skipped_lines += 1;
                }
            }
        }
    }

    fn entry(&mut self, entry: Entry) {
        let is_user = match entry.kind.as_str() {
            "user" => true,
            "assistant" => false,
            _ => return,
        };
        if let Some(cwd) = entry.cwd.filter(|cwd| !cwd.is_empty()) {
            self.transcript.cwd = Some(cwd);
        }
        let own = !(entry.is_meta || entry.is_sidechain || entry.is_compact_summary);
        if is_user
            && own
            && let Some(id) = entry.prompt_id.filter(|id| !id.is_empty())
        {
            self.enter_prompt(id);
        }
        let Some(message) = entry.message else { return };
        let Some(content) = message.content else { return };
        let texts = match content {
            Content::Text(text) => vec![text],
            Content::Blocks(blocks) => self.blocks(blocks, entry.tool_use_result),
            Content::Other(_) => return,
        };
        if !own {
            return;
        }
        let prompt = self.current_prompt.map(|i| &mut self.transcript.prompts[i]);
        if is_user {
            let words: Vec<String> = texts.iter().filter_map(|text| user_words(text)).collect();
            if !words.is_empty() {
                let words = words.join("\n");
                if let Some(prompt) = prompt.filter(|p| p.text.is_none()) {
                    prompt.text = Some(words.clone());
                }
                self.transcript.last_user_message = Some(words);
            }
        } else {
            let said: Vec<&str> = texts.iter().map(String::as_str).filter(|text| !text.trim().is_empty()).collect();
            let mut said = (!said.is_empty()).then(|| said.join("\n"));
            if let Some(text) = &mut said {
                let same_message = message.id.is_some() && message.id == self.last_text_message;
                if same_message && let Some(earlier) = &self.transcript.last_assistant_message {
                    *text = format!("{earlier}\n{text}");
                }
                self.last_text_message = message.id.clone();
            }
            if let Some(prompt) = prompt {
                if said.is_some() {
                    prompt.last_assistant_message.clone_from(&said);
                }
                prompt.ended |= message.stop_reason.as_deref().is_some_and(|reason| reason != "tool_use");
            }
            if said.is_some() {
                self.transcript.last_assistant_message = said;
            }
        }
    }

    /// A user entry of prompt `id`: a new prompt on its first sight, else back to it (a resumed session
    /// repeats its history).
    fn enter_prompt(&mut self, id: String) {
        let next = self.transcript.prompts.len();
        let index = *self.prompt_index.entry(id.clone()).or_insert(next);
        if index == next {
            self.transcript.prompts.push(TranscriptPrompt {
                id,
                text: None,
                last_assistant_message: None,
                ended: false,
            });
        }
        self.current_prompt = Some(index);
    }

    /// Records the tool blocks and returns the texts.
    fn blocks(&mut self, blocks: Vec<Block>, tool_use_result: Option<Value>) -> Vec<String> {
        // `toolUseResult` belongs to the entry: it only says which result it is when the entry has a single one.
        let results = blocks.iter().filter(|block| matches!(block, Block::ToolResult { .. })).count();
        let mut structured = if results == 1 { tool_use_result } else { None };
        let mut texts = Vec::new();
        for block in blocks {
            match block {
                Block::Text { text } => texts.push(text),
                Block::ToolUse { id, name, input } => self.tool_use(id, name, input),
                Block::ToolResult { tool_use_id, content, is_error } => {
                    let response = structured.take().or_else(|| content.map(result_content));
                    self.tool_result(&tool_use_id, response, is_error.unwrap_or(false));
                }
                Block::Unknown => {}
            }
        }
        texts
    }

    fn tool_use(&mut self, id: String, name: String, input: Value) {
        let index = self.transcript.tool_uses.len();
        if !id.is_empty() {
            match self.by_id.entry(id.clone()) {
                // The same tool use written twice (a resumed session repeats its history).
                MapEntry::Occupied(_) => return,
                MapEntry::Vacant(slot) => {
                    slot.insert(Slot { index, answered: false });
                }
            }
        }
        let prompt = self.current_prompt;
        self.transcript.tool_uses.push(TranscriptToolUse { id, name, input, response: None, is_error: false, prompt });
    }

    /// Pairs a result with its tool use; the first result of a tool use wins, results of unknown uses are dropped.
    fn tool_result(&mut self, id: &str, response: Option<Value>, is_error: bool) {
        let Some(slot) = self.by_id.get_mut(id) else { return };
        if slot.answered {
            return;
        }
        slot.answered = true;
        let tool_use = &mut self.transcript.tool_uses[slot.index];
        tool_use.response = response;
        tool_use.is_error = is_error;
    }
}

/// A `tool_result` block's content as a response: an array of blocks becomes the text of its text blocks (an
/// array with no text block, say only images, is kept as it is); anything else stays as it is.
fn result_content(content: Value) -> Value {
    let Value::Array(items) = content else { return content };
    let texts: Vec<&str> = items
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|item| item.get("text").and_then(Value::as_str))
        .collect();
    if texts.is_empty() && !items.is_empty() {
        return Value::Array(items);
    }
    Value::String(texts.join("\n"))
}

/// The user's own words in a user text, if there are any.
fn user_words(text: &str) -> Option<String> {
    let stripped = strip_reminders(text);
    let words = stripped.trim();
    if words.is_empty() || NOT_USER_WORDS.iter().any(|prefix| words.starts_with(prefix)) {
        return None;
    }
    Some(words.to_owned())
}

/// Removes every complete `<system-reminder>…</system-reminder>` segment; an unclosed tag is left alone.
fn strip_reminders(text: &str) -> Cow<'_, str> {
    if !text.contains(REMINDER_OPEN) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(REMINDER_OPEN) {
        let after_open = start + REMINDER_OPEN.len();
        let Some(len) = rest[after_open..].find(REMINDER_CLOSE) else { break };
        out.push_str(&rest[..start]);
        rest = &rest[after_open + len + REMINDER_CLOSE.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{Cursor, Read, Write};

    /// `fixtures/claude-code/session-basic/transcript.jsonl`.
    const SAMPLE: &str = r#"{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "u1", "parentUuid": null, "timestamp": "2026-11-19T14:02:01.000Z", "message": {"role": "user", "content": "The balance report double-counts refunds. Find the cause and fix it, then run the tests."}}
{"type": "assistant", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "a2", "parentUuid": "u1", "timestamp": "2026-11-19T14:02:02.000Z", "message": {"role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_01Gx7Qm2rP4s", "name": "Grep", "input": {"pattern": "refund", "path": "src", "output_mode": "files_with_matches"}}]}}
{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "r2", "parentUuid": "a2", "timestamp": "2026-11-19T14:02:03.000Z", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Gx7Qm2rP4s", "content": "{\"mode\": \"files_with_matches\", \"filenames\": [\"src/report.rs\", \"src/txn.rs\"], \"numFiles\": 2}"}]}, "toolUseResult": {"mode": "files_with_matches", "filenames": ["src/report.rs", "src/txn.rs"], "numFiles": 2}}
{"type": "assistant", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "a4", "parentUuid": "r2", "timestamp": "2026-11-19T14:02:04.000Z", "message": {"role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_01Rd9Lk3vT8w", "name": "Read", "input": {"file_path": "/home/dev/projects/ledger/src/report.rs"}}]}}
{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "r4", "parentUuid": "a4", "timestamp": "2026-11-19T14:02:05.000Z", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Rd9Lk3vT8w", "content": "{\"type\": \"text\", \"file\": {\"filePath\": \"/home/dev/projects/ledger/src/report.rs\", \"content\": \"pub fn balance(txns: &[Txn]) -> i64 {\\n    let mut total = 0;\\n    for t in txns {\\n        total += t.amount;\\n        if t.kind == Kind::Refund { total += t.amount; }\\n    }\\n    total\\n}\\n\", \"numLines\": 8, \"startLine\": 1, \"totalLines\": 8}}"}]}, "toolUseResult": {"type": "text", "file": {"filePath": "/home/dev/projects/ledger/src/report.rs", "content": "pub fn balance(txns: &[Txn]) -> i64 {\n    let mut total = 0;\n    for t in txns {\n        total += t.amount;\n        if t.kind == Kind::Refund { total += t.amount; }\n    }\n    total\n}\n", "numLines": 8, "startLine": 1, "totalLines": 8}}}
{"type": "assistant", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "a6", "parentUuid": "r4", "timestamp": "2026-11-19T14:02:06.000Z", "message": {"role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_01Ed4Zp8nB2c", "name": "Edit", "input": {"file_path": "/home/dev/projects/ledger/src/report.rs", "old_string": "        total += t.amount;\n        if t.kind == Kind::Refund { total += t.amount; }", "new_string": "        total += t.amount;", "replace_all": false}}]}}
{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "r6", "parentUuid": "a6", "timestamp": "2026-11-19T14:02:07.000Z", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Ed4Zp8nB2c", "content": "{\"filePath\": \"/home/dev/projects/ledger/src/report.rs\", \"oldString\": \"        total += t.amount;\\n        if t.kind == Kind::Refund { total += t.amount; }\", \"newString\": \"        total += t.amount;\", \"originalFile\": null, \"structuredPatch\": [{\"oldStart\": 3, \"oldLines\": 4, \"newStart\": 3, \"newLines\": 3, \"lines\": [\"     for t in txns {\", \"         total += t.amount;\", \"-        if t.kind == Kind::Ref"}]}, "toolUseResult": {"filePath": "/home/dev/projects/ledger/src/report.rs", "oldString": "        total += t.amount;\n        if t.kind == Kind::Refund { total += t.amount; }", "newString": "        total += t.amount;", "originalFile": null, "structuredPatch": [{"oldStart": 3, "oldLines": 4, "newStart": 3, "newLines": 3, "lines": ["     for t in txns {", "         total += t.amount;", "-        if t.kind == Kind::Refund { total += t.amount; }", "     }"]}], "userModified": false, "replaceAll": false}}
{"type": "assistant", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "a8", "parentUuid": "r6", "timestamp": "2026-11-19T14:02:08.000Z", "message": {"role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_01Bs6Hn1qW5y", "name": "Bash", "input": {"command": "cargo test -q", "description": "Run the test suite"}}]}}
{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "r8", "parentUuid": "a8", "timestamp": "2026-11-19T14:02:09.000Z", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Bs6Hn1qW5y", "content": "{\"stdout\": \"running 14 tests\\n..............\\ntest result: ok. 14 passed; 0 failed; 0 ignored\\n\", \"stderr\": \"\", \"interrupted\": false, \"isImage\": false}"}]}, "toolUseResult": {"stdout": "running 14 tests\n..............\ntest result: ok. 14 passed; 0 failed; 0 ignored\n", "stderr": "", "interrupted": false, "isImage": false}}
{"type": "user", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "sr", "parentUuid": "r8", "timestamp": "2026-11-19T14:02:10.000Z", "isMeta": true, "message": {"role": "user", "content": "<system-reminder>Remember to keep edits minimal.</system-reminder>"}}
{"type": "assistant", "sessionId": "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810", "cwd": "/home/dev/projects/ledger", "uuid": "afinal", "parentUuid": "sr", "timestamp": "2026-11-19T14:02:11.000Z", "message": {"role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "Fixed: `balance` in src/report.rs added refund amounts twice. I removed the extra branch; all 14 tests pass."}]}}
"#;

    fn parse(text: &str) -> Transcript {
        read_from(text.as_bytes())
    }

    fn user(content: Value) -> String {
        json!({"type": "user", "message": {"role": "user", "content": content}}).to_string()
    }

    fn assistant(content: Value) -> String {
        json!({"type": "assistant", "message": {"role": "assistant", "content": content}}).to_string()
    }

    fn tool_use(id: &str, name: &str) -> String {
        assistant(json!([{"type": "tool_use", "id": id, "name": name, "input": {"arg": id}}]))
    }

    fn tool_result(id: &str, content: Value) -> String {
        user(json!([{"type": "tool_result", "tool_use_id": id, "content": content}]))
    }

    fn lines(lines: &[String]) -> String {
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    #[test]
    fn reads_the_sample_session() {
        let transcript = parse(SAMPLE);
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(
            transcript.last_user_message.as_deref(),
            Some("The balance report double-counts refunds. Find the cause and fix it, then run the tests.")
        );
        assert_eq!(
            transcript.last_assistant_message.as_deref(),
            Some(
                "Fixed: `balance` in src/report.rs added refund amounts twice. I removed the extra branch; \
                 all 14 tests pass."
            )
        );
        let uses: Vec<(&str, &str)> =
            transcript.tool_uses.iter().map(|tool| (tool.id.as_str(), tool.name.as_str())).collect();
        assert_eq!(
            uses,
            [
                ("toolu_01Gx7Qm2rP4s", "Grep"),
                ("toolu_01Rd9Lk3vT8w", "Read"),
                ("toolu_01Ed4Zp8nB2c", "Edit"),
                ("toolu_01Bs6Hn1qW5y", "Bash")
            ]
        );
        assert!(transcript.tool_uses.iter().all(|tool| !tool.is_error));
        let [grep, read, edit, bash] = &transcript.tool_uses[..] else { unreachable!() };

        assert_eq!(grep.input["pattern"], "refund");
        let grep_response = grep.response.as_ref().unwrap();
        assert_eq!(grep_response["numFiles"], 2);
        assert_eq!(grep_response["filenames"], json!(["src/report.rs", "src/txn.rs"]));

        assert_eq!(read.input["file_path"], "/home/dev/projects/ledger/src/report.rs");
        let read_response = read.response.as_ref().unwrap();
        assert_eq!(read_response["file"]["numLines"], 8);
        assert!(read_response["file"]["content"].as_str().unwrap().starts_with("pub fn balance("));

        // The block content of this result is cut short; the structured `toolUseResult` is whole.
        assert_eq!(edit.input["replace_all"], false);
        let edit_response = edit.response.as_ref().unwrap();
        assert_eq!(edit_response["userModified"], false);
        assert_eq!(
            edit_response["structuredPatch"][0]["lines"][2],
            "-        if t.kind == Kind::Refund { total += t.amount; }"
        );

        assert_eq!(bash.input["command"], "cargo test -q");
        let bash_response = bash.response.as_ref().unwrap();
        assert!(bash_response["stdout"].as_str().unwrap().contains("14 passed"));
        assert_eq!(bash_response["interrupted"], false);
    }

    #[test]
    fn read_streams_a_file_like_read_from() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(SAMPLE.as_bytes()).unwrap();
        assert_eq!(read(file.path()).unwrap(), parse(SAMPLE));
    }

    #[test]
    fn a_missing_file_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-session.jsonl");
        let err = read(&path).unwrap_err();
        let TranscriptError::Open { path: reported, source } = &err;
        assert_eq!(reported, &path);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&*dir.path().to_string_lossy()), "{err}");
    }

    #[test]
    fn an_empty_transcript_has_nothing() {
        assert_eq!(parse(""), Transcript::default());
        assert_eq!(parse("\n\n  \r\n"), Transcript { bytes: 6, ..Transcript::default() });
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let text = [
            user(json!("first")),
            "this is not json".to_owned(),
            "{\"type\": \"user\", \"message\": {".to_owned(),
            "42".to_owned(),
            "[{\"type\": \"user\"}]".to_owned(),
            // A user entry of the wrong shape.
            json!({"type": "user", "isMeta": "yes", "message": {"content": "x"}}).to_string(),
            json!({"type": "user", "message": "just a string"}).to_string(),
            user(json!("second")),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 6);
        assert_eq!(transcript.last_user_message.as_deref(), Some("second"));
    }

    #[test]
    fn invalid_utf8_lines_are_skipped() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(user(json!("good")).as_bytes());
        bytes.push(b'\n');
        // Invalid bytes in a field that is read...
        bytes.extend_from_slice(b"{\"type\": \"user\", \"message\": {\"content\": \"bad \xff\xfe\"}}\n");
        // ...and in one that is not.
        bytes
            .extend_from_slice(b"{\"type\": \"user\", \"extra\": \"\xc3\x28\", \"message\": {\"content\": \"bad\"}}\n");
        bytes.extend_from_slice(assistant(json!([{"type": "text", "text": "still here"}])).as_bytes());
        bytes.push(b'\n');
        let transcript = read_from(&bytes[..]);
        assert_eq!(transcript.skipped_lines, 2);
        assert_eq!(transcript.last_user_message.as_deref(), Some("good"));
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("still here"));
    }

    #[test]
    fn a_truncated_last_line_is_skipped() {
        let whole = lines(&[user(json!("done?")), tool_use("toolu_a", "Read")]);
        let partial = tool_result("toolu_a", json!("file contents"));
        let text = format!("{whole}{}", &partial[..partial.len() / 2]);
        let transcript = parse(&text);
        assert_eq!(transcript.skipped_lines, 1);
        assert_eq!(transcript.last_user_message.as_deref(), Some("done?"));
        assert_eq!(transcript.tool_uses.len(), 1);
        assert_eq!(transcript.tool_uses[0].response, None);

        // A complete last line without its newline is fine.
        let transcript = parse(&format!("{whole}{partial}"));
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.tool_uses[0].response, Some(json!("file contents")));
    }

    #[test]
    fn crlf_line_endings_are_fine() {
        let text = format!("{}\r\n{}\r\n", user(json!("hello")), assistant(json!("hi")));
        let transcript = parse(&text);
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.last_user_message.as_deref(), Some("hello"));
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("hi"));
    }

    #[test]
    fn other_entry_types_are_tolerated() {
        let text = [
            user(json!("the question")),
            json!({"type": "summary", "summary": "Fixing refunds", "leafUuid": "u1"}).to_string(),
            json!({"type": "system", "subtype": "compact_boundary", "content": "Conversation compacted"}).to_string(),
            json!({"type": "file-history-snapshot", "messageId": "m", "snapshot": {"trackedFileBackups": {}}})
                .to_string(),
            // Unknown types, even with a `message` we would not understand.
            json!({"type": "progress", "message": "a string, not an object"}).to_string(),
            json!({"type": "attachment", "message": {"content": [1, 2, 3]}, "toolUseResult": 7}).to_string(),
            json!({"type": "user-ish", "message": {"role": "user", "content": "not a user entry"}}).to_string(),
            json!({"no type": true}).to_string(),
            assistant(json!([{"type": "text", "text": "the answer"}])),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.last_user_message.as_deref(), Some("the question"));
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("the answer"));
    }

    #[test]
    fn meta_user_text_is_not_the_users_words() {
        let mut text = vec![user(json!("the real request"))];
        text.push(json!({"type": "user", "isMeta": true, "message": {"content": "meta text"}}).to_string());
        text.push(
            json!({"type": "user", "isMeta": true, "message": {"content": [{"type": "text", "text": "meta block"}]}})
                .to_string(),
        );
        text.push(user(json!("  <system-reminder>Remember things.</system-reminder>\n")));
        text.push(user(json!([{"type": "text", "text": "<system-reminder>in a block</system-reminder>"}])));
        text.push(user(json!(
            "<command-message>init is analyzing…</command-message>\n<command-name>/init</command-name>"
        )));
        text.push(user(json!("<command-name>/clear</command-name>")));
        text.push(user(json!("<local-command-stdout>Cleared</local-command-stdout>")));
        text.push(user(json!("Caveat: The messages below were generated by the user while running local commands.")));
        text.push(user(json!([{"type": "text", "text": "[Request interrupted by user for tool use]"}])));
        text.push(user(json!("<system-reminder>never closed")));
        text.push(
            json!({"type": "user", "isCompactSummary": true, "message": {"content": "This session is being continued"}})
                .to_string(),
        );
        text.push(
            json!({"type": "user", "isSidechain": true, "message": {"content": "a subagent's prompt"}}).to_string(),
        );
        text.push(user(json!([])));
        text.push(user(json!("   ")));
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.last_user_message.as_deref(), Some("the real request"));
    }

    #[test]
    fn embedded_system_reminders_are_removed() {
        let text = user(json!(
            "<system-reminder>a</system-reminder>Fix the bug.\n<system-reminder>b\nc</system-reminder>\nThanks."
        ));
        assert_eq!(parse(&text).last_user_message.as_deref(), Some("Fix the bug.\n\nThanks."));

        let text = user(json!([
            {"type": "text", "text": "Look at this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "<system-reminder>The user opened report.rs.</system-reminder>"},
            {"type": "text", "text": "and this <system-reminder>x</system-reminder>too"},
        ]));
        assert_eq!(parse(&text).last_user_message.as_deref(), Some("Look at this\nand this too"));

        // An opening tag the user typed in the middle of the text is kept.
        let text = user(json!("Why does <system-reminder> show up in the log?"));
        assert_eq!(parse(&text).last_user_message.as_deref(), Some("Why does <system-reminder> show up in the log?"));
    }

    #[test]
    fn tool_results_are_not_user_messages() {
        let text = [
            user(json!("please read it")),
            tool_use("toolu_a", "Read"),
            tool_result("toolu_a", json!("contents")),
            tool_use("toolu_b", "Read"),
            tool_result("toolu_b", json!([{"type": "text", "text": "more"}])),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.last_user_message.as_deref(), Some("please read it"));

        // Text next to a tool result is the user's, though.
        let mixed = user(json!([
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "x"},
            {"type": "text", "text": "and also check the tests"}
        ]));
        let transcript = parse(&lines(&[text.to_vec(), vec![mixed]].concat()));
        assert_eq!(transcript.last_user_message.as_deref(), Some("and also check the tests"));
    }

    #[test]
    fn tool_result_content_shapes() {
        let text = [
            tool_use("toolu_str", "Bash"),
            tool_use("toolu_arr", "mcp__docs__search"),
            tool_use("toolu_img", "Read"),
            tool_use("toolu_obj", "Odd"),
            tool_use("toolu_none", "Task"),
            tool_use("toolu_empty", "Glob"),
            tool_result("toolu_str", json!("plain output")),
            tool_result(
                "toolu_arr",
                json!([{"type": "text", "text": "first"}, {"type": "image", "source": {}}, {"type": "text", "text": "second"}]),
            ),
            tool_result("toolu_img", json!([{"type": "image", "source": {"type": "base64", "data": "AAAA"}}])),
            tool_result("toolu_obj", json!({"some": "object"})),
            user(json!([{"type": "tool_result", "tool_use_id": "toolu_none"}])),
            tool_result("toolu_empty", json!([])),
        ];
        let transcript = parse(&lines(&text));
        let responses: Vec<Option<Value>> = transcript.tool_uses.iter().map(|tool| tool.response.clone()).collect();
        assert_eq!(
            responses,
            [
                Some(json!("plain output")),
                Some(json!("first\nsecond")),
                Some(json!([{"type": "image", "source": {"type": "base64", "data": "AAAA"}}])),
                Some(json!({"some": "object"})),
                None,
                Some(json!("")),
            ]
        );
    }

    #[test]
    fn tool_use_result_is_preferred_over_block_content() {
        let entry = json!({
            "type": "user",
            "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "Error: no such file", "is_error": true}]},
            "toolUseResult": "Error: File does not exist."
        });
        let transcript = parse(&lines(&[tool_use("toolu_a", "Read"), entry.to_string()]));
        let read = &transcript.tool_uses[0];
        assert_eq!(read.response, Some(json!("Error: File does not exist.")));
        assert!(read.is_error);

        // With several results in one entry, `toolUseResult` cannot be told apart: the block contents are used.
        let entry = json!({
            "type": "user",
            "message": {"content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "a out"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "b out"}], "is_error": false}
            ]},
            "toolUseResult": {"stdout": "ambiguous"}
        });
        let transcript = parse(&lines(&[tool_use("toolu_a", "Bash"), tool_use("toolu_b", "Bash"), entry.to_string()]));
        assert_eq!(transcript.tool_uses[0].response, Some(json!("a out")));
        assert_eq!(transcript.tool_uses[1].response, Some(json!("b out")));
    }

    #[test]
    fn results_pair_by_id() {
        let text = [
            tool_use("toolu_a", "Read"),
            tool_use("toolu_b", "Grep"),
            tool_use("toolu_c", "Bash"),
            // Out of order, one unknown, one never answered.
            tool_result("toolu_c", json!("c")),
            tool_result("toolu_zzz", json!("orphan")),
            tool_result("toolu_a", json!("a")),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 0);
        let pairs: Vec<(&str, Option<&Value>)> =
            transcript.tool_uses.iter().map(|tool| (tool.id.as_str(), tool.response.as_ref())).collect();
        assert_eq!(pairs, [("toolu_a", Some(&json!("a"))), ("toolu_b", None), ("toolu_c", Some(&json!("c")))]);
        assert_eq!(transcript.tool_uses[0].input, json!({"arg": "toolu_a"}));
    }

    #[test]
    fn repeated_tool_uses_and_results_count_once() {
        let text = [
            tool_use("toolu_a", "Read"),
            tool_result("toolu_a", json!("first")),
            tool_use("toolu_a", "Read"),
            tool_result("toolu_a", json!("second")),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.tool_uses.len(), 1);
        assert_eq!(transcript.tool_uses[0].response, Some(json!("first")));
    }

    /// A run of Claude Code 2.1 as it writes it: queue operations and attachments around the entries, user
    /// entries with their `promptId`, one line per content block of an API message, `last-prompt` and `mode`
    /// at the end, and a second run (`--continue`) appended to the same file.
    fn two_runs() -> String {
        let user = |prompt: &str, content: Value| {
            json!({"type": "user", "promptId": prompt, "cwd": "/work/repo", "message": {"role": "user", "content": content}})
                .to_string()
        };
        let block = |id: &str, stop: &str, content: Value| {
            json!({"type": "assistant", "message": {"id": id, "role": "assistant", "stop_reason": stop, "content": [content]}})
                .to_string()
        };
        let result = |prompt: &str, id: &str, content: &str, error: bool| {
            json!({"type": "user", "promptId": prompt, "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id, "content": content, "is_error": error}]},
                "toolUseResult": if error { json!(format!("Error: {content}")) } else { json!({"stdout": content}) }})
            .to_string()
        };
        lines(&[
            json!({"type": "queue-operation", "operation": "enqueue", "content": "Fix it"}).to_string(),
            user("p1", json!("Fix it")),
            json!({"type": "attachment", "attachment": {"type": "skill_listing"}}).to_string(),
            block("msg_1", "tool_use", json!({"type": "text", "text": "Looking."})),
            block(
                "msg_1",
                "tool_use",
                json!({"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}),
            ),
            block(
                "msg_1",
                "tool_use",
                json!({"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "false"}}),
            ),
            result("p1", "t1", "a b", false),
            result("p1", "t2", "Exit code 1", true),
            block("msg_2", "end_turn", json!({"type": "text", "text": "Part one."})),
            block("msg_2", "end_turn", json!({"type": "text", "text": "Part two."})),
            json!({"type": "last-prompt", "lastPrompt": "Fix it"}).to_string(),
            user("p2", json!([{"type": "text", "text": "And now?"}])),
            block("msg_3", "tool_use", json!({"type": "tool_use", "id": "t3", "name": "Read", "input": {}})),
            json!({"type": "mode", "mode": "default"}).to_string(),
        ])
    }

    #[test]
    fn prompts_turns_and_split_messages_of_claude_code_2_1() {
        let transcript = parse(&two_runs());
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.cwd.as_deref(), Some("/work/repo"));
        let prompts: Vec<(&str, Option<&str>, Option<&str>, bool)> = transcript
            .prompts
            .iter()
            .map(|p| (p.id.as_str(), p.text.as_deref(), p.last_assistant_message.as_deref(), p.ended))
            .collect();
        assert_eq!(
            prompts,
            [("p1", Some("Fix it"), Some("Part one.\nPart two."), true), ("p2", Some("And now?"), None, false)]
        );
        let uses: Vec<(&str, Option<usize>, bool)> =
            transcript.tool_uses.iter().map(|t| (t.id.as_str(), t.prompt, t.is_error)).collect();
        assert_eq!(uses, [("t1", Some(0), false), ("t2", Some(0), true), ("t3", Some(1), false)]);
        assert_eq!(transcript.tool_uses[1].response, Some(json!("Error: Exit code 1")));
        assert_eq!(transcript.tool_uses[2].response, None, "a PostToolUse can fire before its result is written");
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("Part one.\nPart two."));
        assert_eq!(transcript.last_user_message.as_deref(), Some("And now?"));
        assert_eq!(transcript.bytes, two_runs().len() as u64);
    }

    #[test]
    fn tool_blocks_in_meta_and_sidechain_entries_still_count() {
        let text = [
            json!({"type": "assistant", "isSidechain": true, "message": {"content": [
                {"type": "tool_use", "id": "toolu_s", "name": "Glob", "input": {"pattern": "*.rs"}}
            ]}})
            .to_string(),
            json!({"type": "user", "isSidechain": true, "message": {"content": [
                {"type": "tool_result", "tool_use_id": "toolu_s", "content": "src/lib.rs"}
            ]}})
            .to_string(),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.tool_uses.len(), 1);
        assert_eq!(transcript.tool_uses[0].response, Some(json!("src/lib.rs")));
        assert_eq!(transcript.last_user_message, None);
    }

    #[test]
    fn assistant_entries_split_per_block() {
        let block = |id: &str, content: Value| {
            json!({"type": "assistant", "message": {"id": id, "role": "assistant", "content": [content]}}).to_string()
        };
        let text = [
            block("msg_1", json!({"type": "thinking", "thinking": "hmm", "signature": "sig"})),
            block("msg_1", json!({"type": "text", "text": "Let me look at the report."})),
            block("msg_1", json!({"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}})),
            tool_result("toolu_a", json!("contents")),
            block("msg_2", json!({"type": "text", "text": "Found it."})),
            block("msg_2", json!({"type": "tool_use", "id": "toolu_b", "name": "Edit", "input": {}})),
            tool_result("toolu_b", json!("edited")),
            // Entries with no text, or only blank text, leave the last message alone.
            block("msg_3", json!({"type": "thinking", "thinking": "done", "signature": "sig"})),
            block("msg_3", json!({"type": "text", "text": "\n\n"})),
            assistant(json!([])),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("Found it."));
        let names: Vec<&str> = transcript.tool_uses.iter().map(|tool| tool.name.as_str()).collect();
        assert_eq!(names, ["Read", "Edit"]);
        assert!(transcript.tool_uses.iter().all(|tool| tool.response.is_some()));
    }

    #[test]
    fn assistant_text_blocks_of_one_entry_are_joined() {
        let text = [
            assistant(json!("A plain string answer.")),
            assistant(json!([
                {"type": "text", "text": "Part one."},
                {"type": "tool_use", "id": "toolu_a", "name": "Bash", "input": {"command": "ls"}},
                {"type": "text", "text": "  "},
                {"type": "text", "text": "Part two."}
            ])),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("Part one.\nPart two."));
        assert_eq!(parse(&text[0]).last_assistant_message.as_deref(), Some("A plain string answer."));
    }

    #[test]
    fn unknown_blocks_and_fields_are_ignored() {
        let text = [
            json!({"type": "user", "newField": {"x": 1}, "message": {"role": "user", "content": [
                {"type": "document", "source": {}},
                {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}
            ]}})
            .to_string(),
            json!({"type": "assistant", "message": {"content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "redacted_thinking", "data": "…"},
                {"type": "text", "text": "hi"}
            ]}})
            .to_string(),
            // Content of a shape we do not know.
            json!({"type": "assistant", "message": {"content": {"unexpected": true}}}).to_string(),
            json!({"type": "assistant", "message": {"content": null}}).to_string(),
            json!({"type": "assistant"}).to_string(),
        ];
        let transcript = parse(&lines(&text));
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.last_user_message.as_deref(), Some("hello"));
        assert_eq!(transcript.last_assistant_message.as_deref(), Some("hi"));
        assert!(transcript.tool_uses.is_empty());
    }

    /// Gives `good` and then fails.
    struct FailingReader {
        good: Cursor<Vec<u8>>,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.good.read(buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_read_error_ends_the_reading() {
        let good = lines(&[user(json!("before the error"))]).into_bytes();
        let transcript = read_from(BufReader::new(FailingReader { good: Cursor::new(good) }));
        assert_eq!(transcript.skipped_lines, 1);
        assert_eq!(transcript.last_user_message.as_deref(), Some("before the error"));
    }

    #[test]
    fn a_large_transcript() {
        let output: String = "0123456789abcdef".repeat(64);
        let mut file = io::BufWriter::new(tempfile::NamedTempFile::new().unwrap());
        for i in 0..5_000 {
            let id = format!("toolu_{i:05}");
            writeln!(file, "{}", tool_use(&id, if i % 2 == 0 { "Read" } else { "Bash" })).unwrap();
            let entry = json!({
                "type": "user",
                "message": {"content": [{"type": "tool_result", "tool_use_id": id, "content": output}]},
                "toolUseResult": {"stdout": output, "n": i}
            });
            writeln!(file, "{entry}").unwrap();
        }
        let file = file.into_inner().unwrap();
        assert!(file.as_file().metadata().unwrap().len() > 10_000_000);

        let transcript = read(file.path()).unwrap();
        assert_eq!(transcript.skipped_lines, 0);
        assert_eq!(transcript.tool_uses.len(), 5_000);
        for (i, tool) in transcript.tool_uses.iter().enumerate() {
            assert_eq!(tool.id, format!("toolu_{i:05}"));
            let response = tool.response.as_ref().unwrap();
            assert_eq!(response["n"], i);
            assert_eq!(response["stdout"].as_str().map(str::len), Some(1024));
        }
        assert_eq!(transcript.last_user_message, None);
    }

    #[test]
    fn only_a_regular_file_is_read_and_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // No writer: a blocking open would never return.
        let err = read(&fifo).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
        assert!(read(Path::new("/dev/zero")).is_err(), "a device is not a transcript");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read(&link).is_err(), "nor a link to one");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_and_reading_goes_on() {
        let long = "x".repeat(MAX_LINE + 1);
        let text = lines(&[tool_use("toolu_a", "Read"), long, tool_result("toolu_a", json!("ok"))]);
        let transcript = parse(&text);
        assert_eq!(transcript.skipped_lines, 1);
        assert_eq!(transcript.tool_uses[0].response, Some(json!("ok")));
        assert_eq!(transcript.bytes, text.len() as u64);
    }

    #[test]
    fn a_line_of_several_megabytes() {
        let contents = "x".repeat(4 * 1024 * 1024);
        let entry = json!({
            "type": "user",
            "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_big", "content": contents}]},
            "toolUseResult": {"type": "text", "file": {"content": contents}}
        });
        let text = lines(&[tool_use("toolu_big", "Read"), entry.to_string(), user(json!("after"))]);
        let transcript = parse(&text);
        assert_eq!(transcript.skipped_lines, 0);
        let response = transcript.tool_uses[0].response.as_ref().unwrap();
        assert_eq!(response["file"]["content"].as_str().map(str::len), Some(contents.len()));
        assert_eq!(transcript.last_user_message.as_deref(), Some("after"));
    }
}
