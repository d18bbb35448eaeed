//! memtray's core: catches a coding agent's hook events, never loses one, and turns them into memory.
//!
//! # Layout
//! The folders read as the architecture: an engine, the surfaces over it, and the adapters for agents.
//!
//! - [`core`]: the [`Core`] that owns the components below and starts and stops them as one; its
//!   [`Settings`] and its [`clock`].
//! - Engine
//!   - [`store`]: the SQLite database; one writer with group commit, reads off the async workers, a
//!     read-only reader for other processes, per-table SQL in `store::{sessions, messages, memories,
//!     calls, stats, inbox}` and full-text search over memory in `store::search` (FTS5, kept by triggers).
//!   - [`intake`]: persist, then wake: every event's way in.
//!   - [`queue`]: the queue actor (one in-order consumer per session, retry, abort, pause, delete) and the
//!     message vocabulary (`queue::message`).
//!   - [`memory`]: what is remembered, and the providers that make it (`memory::provider`, the embedded
//!     `local`, the model-backed ones in `memory::llm` over one prompt and one reply parser, `faults`), asked
//!     through `memory::scribe` (the provider's health, circuit breaker, token budget, `local` fallback).
//!   - [`queries`]: read-only views for the API and the inspector, search included.
//!   - [`status`]: the processing status (the team link's state included) as a `watch` of the latest value;
//!     [`events`]: what happened.
//!   - [`privacy`]: `<private>` removal and, through [`redact`], secret redaction before anything is stored;
//!     [`project`]: a project name from a folder.
//! - Surfaces
//!   - [`api`]: the HTTP routes (claude-mem compatible intake, Claude Code's hooks, the inspector API, the
//!     event stream, the embedded web UI from the top-level `ui/` folder) and how errors become answers.
//!   - [`server`]: binds loopback and serves a [`Core`] over the API; [`secret`]: this user's secret, which
//!     reading memory and administering need (the API's guard is `api::guard`).
//!   - [`client`]: the async client of a running memtray (requests and the event stream).
//!   - [`recall`]: memory read back for an agent: the MCP server of `memtray mcp` (`recall::mcp`), a
//!     project's recent-context text (`recall::context`), and UTC dates as text (`recall::dates`).
//! - Team memory
//!   - [`team`]: shared memory of opted-in projects: the team server on PostgreSQL (`team::server`, its
//!     members and keys in `team::members`), and this machine's side: the outbox filled by triggers
//!     (`team::outbox`), pulled memory written locally (`team::pull`), the HTTP client (`team::client`) and
//!     the push and pull tasks with the link state (`team::link`).
//! - Adapters
//!   - [`agents::claude_code`]: Claude Code's hook events, transcripts and reconciliation, the hook inbox,
//!     the `memtray hook` command, and editing Claude Code's settings (hooks, and the MCP server's entry).
//! - [`config`]: defaults, the TOML file, `MEMTRAY_*` overrides, and where things live.

pub mod agents;
pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod core;
pub mod events;
pub mod intake;
pub mod memory;
pub mod privacy;
pub mod project;
pub mod queries;
pub mod queue;
pub mod recall;
pub mod redact;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod team;

pub use crate::core::{Core, CoreError, Settings};
