//! `memtray hook`: the command Claude Code runs for each hook event. Reads one event from stdin, hands it to
//! the running server through the [`Client`] (only once the server proved it is this user's memtray), and
//! is done within a hard budget whatever happens. It prints nothing, except on SessionStart (and a prompt,
//! with `prompt_context`): the memory the session starts with, as Claude Code's hook output, from the server
//! or, with none, from the database read-only; on any failure, nothing.
//!
//! When no server answers, the event goes straight into the database's hook inbox (safe beside a running
//! server: SQLite orders the writers), and the server dispatches it on its next start. What goes into the
//! inbox has its `<private>` parts removed and its secrets redacted first, its metadata kept: the raw text
//! never reaches the disk.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::HookEvent;
use crate::client::{Client, ClientError};
use crate::clock::Clock;
use crate::config::{CONTEXT_CHARS_MAX, Config, Paths};
use crate::privacy::Privacy;
use crate::project;
use crate::recall::context;
use crate::redact::Redactor;
use crate::secret::Secret;
use crate::store::ReadOnly;
use crate::store::{self, inbox};

/// The share of the budget the server gets; the rest is kept for the inbox fallback.
const SERVER_SHARE: f64 = 0.6;

/// What became of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server took it.
    Delivered,
    /// No server answered; it waits in the inbox.
    Stored,
    /// Not a hook event; logged and dropped.
    Malformed,
    /// The server refused it or the database could not store it; logged.
    Failed,
    /// `MEMTRAY_DISABLED` is set in Claude Code's environment: nothing was read or sent.
    Disabled,
}

/// Set (to anything but `0` or empty) in Claude Code's environment, it makes `memtray hook` a no-op.
pub const DISABLED_ENV: &str = "MEMTRAY_DISABLED";

/// Whether [`DISABLED_ENV`] says so.
fn disabled() -> bool {
    std::env::var(DISABLED_ENV).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// What `memtray hook` did, and the one line it prints for Claude Code, if any: the hook output that
/// adds memtray's context (`{"hookSpecificOutput": {"hookEventName", "additionalContext"}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// What became of the event.
    pub outcome: Outcome,
    /// What to print on stdout; `None` prints nothing.
    pub output: Option<String>,
}

/// Handles one event from `input`. Never panics on bad input; every outcome but `Delivered` leaves one line
/// in `hook.log` in the state folder. Runs on the caller's runtime (the command builds a small one).
pub async fn run(config: &Config, paths: &Paths, input: impl Read) -> Ran {
    if disabled() {
        return Ran { outcome: Outcome::Disabled, output: None };
    }
    let mut output = None;
    let outcome = deliver(config, paths, input, &mut output).await;
    Ran { outcome, output }
}

async fn deliver(config: &Config, paths: &Paths, input: impl Read, output: &mut Option<String>) -> Outcome {
    let deadline = Instant::now() + Duration::from_millis(config.hook_budget_ms.max(50));
    let mut body = Vec::new();
    let limit = config.max_body_bytes as u64;
    if let Err(e) = input.take(limit + 1).read_to_end(&mut body) {
        log(&paths.state_dir, &format!("could not read the hook event from stdin: {e}"));
        return Outcome::Malformed;
    }
    if body.len() as u64 > limit {
        log(&paths.state_dir, &format!("hook event larger than max_body_bytes ({limit}); dropped"));
        return Outcome::Malformed;
    }
    let event = match HookEvent::parse(&body) {
        Ok(event) => event,
        Err(e) => {
            log(&paths.state_dir, &format!("malformed hook event dropped: {e}"));
            return Outcome::Malformed;
        }
    };
    let budget = deadline.saturating_duration_since(Instant::now()).mul_f64(SERVER_SHARE);
    let client = Client::with_timeout(config.port, budget.max(Duration::from_millis(10)));
    // The event goes only to a server that proves it is this user's memtray; without a secret to check
    // with (the state folder is not writable), it is kept in the inbox.
    let delivered = match Secret::load_or_create(&paths.state_dir) {
        Ok(secret) => {
            let client = client.with_secret(secret);
            match client.verify().await {
                Ok(()) => client.claude_code_hook(body.clone()).await,
                Err(e) => Err(e),
            }
        }
        Err(e) => {
            log(&paths.state_dir, &format!("{e}; the event is kept in the inbox"));
            Err(ClientError::NotRunning { port: config.port })
        }
    };
    match delivered {
        Ok(answer) => {
            *output = hook_output(&event, &answer);
            return Outcome::Delivered;
        }
        Err(ClientError::Refused { status, code, .. }) => {
            log(&paths.state_dir, &format!("server refused {} event ({status} {code})", event.hook_event_name));
            return Outcome::Failed;
        }
        Err(e @ ClientError::Foreign { .. }) => log(&paths.state_dir, &format!("{e}; the event is kept in the inbox")),
        // Storage unavailable, shutting down, or no answer: keep it ourselves.
        Err(_) => {}
    }
    // No server of this user's: the session still starts with its context, read from the database itself
    // while the event is kept (the two run side by side).
    let reading = (event.hook_event_name == "SessionStart").then(|| {
        let (config, event) = (config.clone(), event.clone());
        tokio::task::spawn_blocking(move || context_from_database(&config, &event))
    });
    let stored = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || store_in_inbox(&config, &body, deadline)).await
    };
    if let Some(read) = reading {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read).await {
            Ok(Ok(Ok(Some(context)))) => *output = Some(output_line("SessionStart", &context)),
            Ok(Ok(Ok(None))) => {}
            Ok(Ok(Err(e))) => log(&paths.state_dir, &format!("no context from the database: {e}")),
            Ok(Err(_)) | Err(_) => log(&paths.state_dir, "no context from the database within the budget"),
        }
    }
    match stored.unwrap_or(Err(store::StoreError::Closed)) {
        Ok(()) => {
            log(
                &paths.state_dir,
                &format!("server not reachable; {} event kept for its next start", event.hook_event_name),
            );
            Outcome::Stored
        }
        Err(e) => {
            log(&paths.state_dir, &format!("server not reachable and the database refused the event: {e}"));
            Outcome::Failed
        }
    }
}

/// The hook output for `event` from the server's `answer`: only a context for the same event, within Claude
/// Code's cap; anything else prints nothing.
fn hook_output(event: &HookEvent, answer: &serde_json::Value) -> Option<String> {
    let out = answer.get("hookSpecificOutput")?;
    let context = out.get("additionalContext")?.as_str()?;
    let same_event = out.get("hookEventName").and_then(|n| n.as_str()) == Some(event.hook_event_name.as_str());
    (same_event && !context.is_empty() && context.chars().count() <= CONTEXT_CHARS_MAX)
        .then(|| output_line(&event.hook_event_name, context))
}

fn output_line(event_name: &str, context: &str) -> String {
    serde_json::json!({"hookSpecificOutput": {"hookEventName": event_name, "additionalContext": context}}).to_string()
}

/// The session-start context read from the database read-only (no server of this user's answered).
fn context_from_database(config: &Config, event: &HookEvent) -> Result<Option<String>, store::StoreError> {
    let project = project::from_cwd(&event.cwd);
    let excluded = project::exclusions(&config.exclude_projects).is_ok_and(|set| set.is_match(&project));
    if excluded {
        return Ok(None);
    }
    let start = context::Start::of(event.source.as_deref(), &event.session_id);
    let chars = config.context_chars.min(CONTEXT_CHARS_MAX);
    let text = match ReadOnly::new(config).read_blocking(|c| context::session_start(c, &project, chars, start)) {
        // No database yet: nothing to remember.
        Err(store::StoreError::NoDatabase { .. }) => return Ok(None),
        other => other?,
    };
    Ok((!text.is_empty()).then_some(text))
}

fn store_in_inbox(config: &Config, body: &[u8], deadline: Instant) -> Result<(), store::StoreError> {
    let body = scrubbed(config, body)?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    let conn = store::open_direct(config, left)?;
    inbox::push(&conn, &body, Clock::system().now_ms())?;
    Ok(())
}

/// The event as it may be stored: content fields stripped and redacted as intake would, metadata as sent.
fn scrubbed(config: &Config, body: &[u8]) -> Result<String, store::StoreError> {
    // Compiled here, not up front: only the fallback needs the patterns, and the server path stays quick.
    let redactor = Redactor::new(config.redact, &config.redact_patterns).unwrap_or_default();
    let mut event: serde_json::Value = serde_json::from_slice(body)?;
    Privacy::new(redactor).hook_event(&mut event);
    Ok(serde_json::to_string(&event)?)
}

/// Appends one line to `hook.log`. Logging must not fail the hook: errors are ignored.
fn log(state_dir: &Path, message: &str) {
    let _ = std::fs::create_dir_all(state_dir);
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(state_dir.join("hook.log")) {
        let _ = writeln!(file, "{} memtray hook: {message}", Clock::system().now_ms());
    }
}
