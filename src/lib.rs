//! memtray: catches a coding agent's hook events, never loses one, and turns them into memory.
//!
//! # Layout
//! - [`config`]: defaults, the TOML file, `MEMTRAY_*` overrides, and where things live.
//! - [`store`]: the SQLite database; one writer thread with group commit, readers off the async workers,
//!   per-table SQL in `store::{sessions, messages, memories, stats}`.
//! - [`queue`]: what a queued message is (kinds, payloads, states).
//! - [`memory`]: what is remembered (observations, summaries).
//! - [`privacy`]: `<private>` removal before anything is stored.
//! - [`session`]: the session manager: persist, wake, one in-order consumer per session, recovery.
//! - [`provider`]: the `Provider` trait; `local` (offline default) and `faults` (test injection).
//! - [`status`]: the processing status, published as a `watch` of the latest value.
//! - [`events`]: what happened, published on a broadcast bus for the event stream.
//! - [`intake`]: the HTTP API (claude-mem compatible intake, inspector API, event stream) and the inspector
//!   web UI (the top-level `ui/` folder, embedded).
//! - [`server`]: binds, serves and shuts down the whole core in order.
//! - [`client`]: a small blocking client of a running server (`memtray status`).
//! - [`claude_code`]: Claude Code's hook events, transcript reconciliation and the hook inbox.
//! - [`transcript`]: a streaming reader of Claude Code's JSONL transcripts.
//! - [`hook`]: `memtray hook`, the fast command hook that never makes Claude Code wait.
//! - [`claude_settings`]: installing and removing memtray's hooks in Claude Code's settings.
//! - [`project`]: a session's project name from its working directory.

pub mod claude_code;
pub mod claude_settings;
pub mod client;
pub mod config;
pub mod events;
pub mod hook;
pub mod intake;
pub mod memory;
pub mod privacy;
pub mod project;
pub mod provider;
pub mod queue;
pub mod server;
pub mod session;
pub mod status;
pub mod store;
pub mod transcript;
