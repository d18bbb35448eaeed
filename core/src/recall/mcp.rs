//! `memtray mcp`: an MCP server on stdio (the official `rmcp` SDK) that lets an agent search and read its
//! memory: `search` (a compact index of hits), `timeline` (observations around one, or around a time),
//! `get_observations` (full records) and `recent_context` (a project's recent memory as text).
//!
//! It reads the database read-only, so it works beside a running memtray server or without one. Every
//! failure a call can meet is answered as a tool error (`isError: true`) with words a model can act on; the
//! server keeps serving.

use std::fmt::Write as _;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{context, dates};
use crate::config::Config;
use crate::store::memories::{self, Anchor};
use crate::store::search::{self, Kind, SearchQuery};
use crate::store::{ReadOnly, StoreError};

/// Observations a timeline shows on each side when the caller does not say.
const TIMELINE_SIDE: u32 = 5;
/// The most a timeline shows on each side.
const TIMELINE_MAX_SIDE: u32 = 50;
/// The most observations one `get_observations` call returns.
const MAX_IDS: usize = 50;
/// The recent-context budget when the caller does not say, and its ceiling.
const CONTEXT_CHARS: usize = 4_000;
const CONTEXT_MAX_CHARS: usize = 50_000;
/// Search hits when the caller does not say.
const SEARCH_LIMIT: u32 = 10;

/// Errors of the MCP layer: the session could not start or ended abnormally. A failing tool call is not
/// one of these; it is answered as a tool error.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The client did not complete the MCP handshake.
    #[error("the MCP session could not start: {0}")]
    Start(#[from] Box<rmcp::service::ServerInitializeError>),
    /// The session's task ended abnormally.
    #[error("the MCP server stopped abnormally: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Serves MCP on this process's stdin and stdout until the client closes them.
///
/// # Errors
/// [`McpError`] when the handshake fails or the session ends abnormally.
pub async fn serve_stdio(config: &Config) -> Result<(), McpError> {
    let server = Recall::new(ReadOnly::new(config));
    let running = server.serve(rmcp::transport::stdio()).await.map_err(Box::new)?;
    let reason = running.waiting().await?;
    tracing::debug!(?reason, "MCP session ended");
    Ok(())
}

/// The MCP server: memory read through a read-only connection.
#[derive(Clone)]
pub struct Recall {
    /// Read-only: no tool writes.
    reader: ReadOnly,
    /// The tools below, routed by name (built by `#[tool_router]`).
    tool_router: ToolRouter<Recall>,
}

/// `search`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Words to look for (all must appear; the last may be the start of a word). Plain words, no operators.
    pub query: String,
    /// Only this project's memory (the project is the name of the folder the agent worked in).
    #[serde(default)]
    pub project: Option<String>,
    /// Only observations of this type: discovery, change, bugfix, feature, refactor, decision, test, command
    /// or research. Leaves out summaries and prompts.
    #[serde(default, rename = "type")]
    pub observation_type: Option<String>,
    /// Only these kinds: observation, summary, prompt. All when left out.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// How many hits (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only this teammate's memory (shared through the team server), or `me` for this machine's own.
    #[serde(default)]
    pub author: Option<String>,
}

/// `timeline`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TimelineArgs {
    /// Centre on this observation id (from `search`). Give this or `at`.
    #[serde(default)]
    pub observation_id: Option<i64>,
    /// Centre on this time: ms since the epoch, `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS]Z` (UTC). Give this or
    /// `observation_id`.
    #[serde(default)]
    pub at: Option<String>,
    /// Only this project (for an observation id, its own project by default).
    #[serde(default)]
    pub project: Option<String>,
    /// Observations before the centre (default 5, at most 50).
    #[serde(default)]
    pub before: Option<u32>,
    /// Observations after the centre (default 5, at most 50).
    #[serde(default)]
    pub after: Option<u32>,
}

/// `get_observations`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetObservationsArgs {
    /// Observation ids (from `search` or `timeline`), at most 50.
    pub ids: Vec<i64>,
}

/// `recent_context`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RecentContextArgs {
    /// The project (the name of the folder the agent works in).
    pub project: String,
    /// The most characters to return (default 4000, at most 50000).
    #[serde(default)]
    pub chars: Option<usize>,
}

#[tool_router]
impl Recall {
    /// A server reading through `reader`.
    pub fn new(reader: ReadOnly) -> Recall {
        Recall { reader, tool_router: Recall::tool_router() }
    }

    #[tool(description = "Search memtray's memory of past coding sessions (observations of tool uses, session \
                       summaries, user prompts) by words. Returns a compact index, best match first: kind, id, \
                       date, observation type, project and title. Call this when past work may matter (how \
                       something was fixed, why a decision was made, where a file was changed), then \
                       get_observations for the full records or timeline for what happened around one.")]
    async fn search(&self, Parameters(args): Parameters<SearchArgs>) -> CallToolResult {
        let mut kinds = Vec::new();
        for name in args.kinds.iter().flatten() {
            match Kind::parse(name) {
                Some(kind) => kinds.push(kind),
                None => return failure_text(format!("unknown kind {name:?}: use observation, summary or prompt")),
            }
        }
        let query = SearchQuery {
            text: args.query.clone(),
            project: args.project.filter(|p| !p.is_empty()),
            observation_type: args.observation_type.filter(|t| !t.is_empty()),
            kinds,
            limit: args.limit.unwrap_or(SEARCH_LIMIT),
            author: args.author.filter(|a| !a.is_empty()).map(|a| if a == "me" { String::new() } else { a }),
            ..Default::default()
        };
        let hits = match self.reader.read(move |c| search::search(c, &query)).await {
            Ok(hits) => hits,
            Err(e) => return failure(&e),
        };
        if hits.is_empty() {
            return success(format!("No memory matches \"{}\".", args.query));
        }
        let mut out = format!("{} hits for \"{}\", best first:\n", hits.len(), args.query);
        for h in &hits {
            let _ = writeln!(
                out,
                "{} #{} | {} | {} | {} | {}{}",
                h.kind.as_str(),
                h.id,
                dates::format_utc(h.created_at),
                h.observation_type.as_deref().unwrap_or("-"),
                h.project,
                h.title.split_whitespace().collect::<Vec<_>>().join(" "),
                h.author.as_deref().map(|a| format!(" (by {a}, a teammate)")).unwrap_or_default()
            );
        }
        out.push_str("Full observation records: get_observations with their ids; around one: timeline.");
        success(out)
    }

    #[tool(description = "Observations in time order around one observation (by its id from search) or around a \
                       moment (at), within a project: what was done just before and after. Use it to understand \
                       the context of a search hit.")]
    async fn timeline(&self, Parameters(args): Parameters<TimelineArgs>) -> CallToolResult {
        let anchor = match (args.observation_id, args.at.as_deref()) {
            (Some(id), None) => Anchor::Observation(id),
            (None, Some(at)) => match dates::parse_time(at) {
                Some(ms) => Anchor::Time(ms),
                None => {
                    return failure_text(format!(
                        "`at` must be ms since the epoch, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z, not {at:?}"
                    ));
                }
            },
            _ => return failure_text("give exactly one of `observation_id` and `at`".into()),
        };
        let before = args.before.unwrap_or(TIMELINE_SIDE).min(TIMELINE_MAX_SIDE);
        let after = args.after.unwrap_or(TIMELINE_SIDE).min(TIMELINE_MAX_SIDE);
        let project = args.project.filter(|p| !p.is_empty());
        let found = self.reader.read(move |c| memories::timeline(c, project.as_deref(), anchor, before, after)).await;
        let list = match found {
            Ok(Some(list)) => list,
            Ok(None) => return failure_text(format!("there is no observation #{}", args.observation_id.unwrap_or(0))),
            Err(e) => return failure(&e),
        };
        if list.is_empty() {
            return success("No observations around that time.".into());
        }
        let mut out = String::new();
        for o in &list {
            let centre = if Some(o.id) == args.observation_id { "> " } else { "  " };
            let _ = writeln!(
                out,
                "{centre}#{} | {} | {} | {} | {} | {}",
                o.id,
                dates::format_utc(o.created_at),
                o.memory.kind,
                o.project,
                o.tool_name,
                o.memory.title.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        success(out)
    }

    #[tool(description = "Full observation records by id (from search or timeline): title, subtitle, facts, files \
                       read and modified, tool, session, project and time, as JSON.")]
    async fn get_observations(&self, Parameters(args): Parameters<GetObservationsArgs>) -> CallToolResult {
        if args.ids.is_empty() || args.ids.len() > MAX_IDS {
            return failure_text(format!("give between 1 and {MAX_IDS} observation ids"));
        }
        let ids = args.ids.clone();
        let found = match self.reader.read(move |c| memories::observations_by_ids(c, &ids)).await {
            Ok(found) => found,
            Err(e) => return failure(&e),
        };
        if found.is_empty() {
            return failure_text(format!("no observation has any of the ids {:?}", args.ids));
        }
        let missing: Vec<i64> = args.ids.iter().copied().filter(|id| !found.iter().any(|o| o.id == *id)).collect();
        let mut out = serde_json::to_string_pretty(&found).expect("observations serialize");
        if !missing.is_empty() {
            let _ = write!(out, "\nNot found: {missing:?}");
        }
        success(out)
    }

    #[tool(description = "The recent memory of a project as text: its latest session summaries and observations, \
                       newest first, grouped by session, within a character budget. Call it when starting work \
                       on a project to learn what was done there lately.")]
    async fn recent_context(&self, Parameters(args): Parameters<RecentContextArgs>) -> CallToolResult {
        let chars = args.chars.unwrap_or(CONTEXT_CHARS).min(CONTEXT_MAX_CHARS);
        let project = args.project.clone();
        match self.reader.read(move |c| context::build(c, &project, chars)).await {
            Ok(text) if text.is_empty() => success(format!("memtray has no memory of project {:?} yet.", args.project)),
            Ok(text) => success(text),
            Err(e) => failure(&e),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Recall {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("memtray", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "memtray remembers past coding sessions: what each tool use did (observations), what each \
                 session achieved (summaries) and what the user asked (prompts). Search it before redoing \
                 past work; read recent_context when starting on a project.",
            )
    }
}

fn success(text: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn failure_text(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// A store error as a tool error. A failure of memtray's (not of the call's input) goes to the log (stderr).
fn failure(e: &StoreError) -> CallToolResult {
    if e.is_unavailable() || matches!(e, StoreError::Sqlite(_) | StoreError::Corrupt | StoreError::Json(_)) {
        tracing::warn!(error = %e, "MCP tool call failed");
    } else {
        tracing::debug!(error = %e, "MCP tool call refused");
    }
    failure_text(e.to_string())
}
