//! Team memory: observations and summaries of opted-in projects shared through a team server on PostgreSQL.
//!
//! The wire vocabulary lives here; `server` is `memtray serve --team` (PostgreSQL, members and keys, the
//! HTTP API), `members` the administration behind `memtray team …`, `client` this machine's HTTP client of
//! a team server, `outbox` and `pull` the local store's side (SQL only), `link` the push and pull tasks and
//! the link state they publish. Raw events never travel: only memory, scrubbed at intake.

pub mod client;
pub mod link;
pub mod members;
mod migrations;
pub mod outbox;
pub mod pull;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Errors of the team layer: the team server's database, its members, and this machine's link to it.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// PostgreSQL refused or failed a statement.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had from the pool.
    #[error("no connection to PostgreSQL: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// `database_url` is not a PostgreSQL connection string.
    #[error("invalid [team] database_url: {0}")]
    DatabaseUrl(#[source] tokio_postgres::Error),
    /// `memtray serve --team` without `[team] database_url`.
    #[error("the team server needs [team] database_url (or MEMTRAY_TEAM_DATABASE_URL)")]
    NoDatabase,
    /// The team server's listening address is unusable or taken.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database was migrated by a newer memtray.
    #[error("the team database's schema version {found} is newer than this memtray knows ({supported}); upgrade")]
    TooNew {
        /// Its version.
        found: i32,
        /// The newest this code knows.
        supported: i32,
    },
    /// An administration command named a member that does not exist (or is revoked).
    #[error("no member named {0:?}")]
    NoSuchMember(String),
    /// `add-member` for a name that is taken.
    #[error("a member named {0:?} exists already (revoke it first, or pick another name)")]
    MemberExists(String),
    /// The system has no randomness for a key or a machine id.
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The team server could not be reached, or its answer not read.
    #[error("team server unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The team server answered with an error.
    #[error("the team server refused ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// What it said.
        message: String,
    },
}

/// What kind of memory travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// One tool use, understood.
    Observation,
    /// A session's summary.
    Summary,
}

impl MemoryKind {
    /// The name on the wire and in both databases.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Observation => "observation",
            MemoryKind::Summary => "summary",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<MemoryKind> {
        match name {
            "observation" => Some(MemoryKind::Observation),
            "summary" => Some(MemoryKind::Summary),
            _ => None,
        }
    }
}

/// One memory as a machine pushes it: its origin id on that machine, where it belongs, and its content
/// (`body`: the observation's type, title, subtitle, facts, files and tool name, or the summary's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedMemory {
    /// Observation or summary.
    pub kind: MemoryKind,
    /// Its row id on the machine that made it: with the machine id, unique on the server.
    pub origin_id: i64,
    /// The project.
    pub project: String,
    /// The agent's session id.
    pub session: String,
    /// The prompt it belongs to.
    pub prompt_number: i64,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// The content.
    pub body: serde_json::Value,
}

/// `POST /team/push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    /// The pushing machine's id (made once per local store).
    pub machine: String,
    /// The batch.
    pub memories: Vec<SharedMemory>,
}

/// What `POST /team/push` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAnswer {
    /// Rows new to the server.
    pub stored: u64,
    /// Rows it had already (a retried push).
    pub duplicates: u64,
}

/// One memory as the server hands it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledMemory {
    /// Its place in the server's order: the cursor to pull after.
    pub seq: i64,
    /// The machine that made it.
    pub machine: String,
    /// The member who pushed it.
    pub author: String,
    /// What the machine pushed.
    #[serde(flatten)]
    pub memory: SharedMemory,
}

/// What `GET /team/pull` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullAnswer {
    /// The next memories of the project after the cursor, in order.
    pub memories: Vec<PulledMemory>,
    /// The cursor to ask with next (the last `seq`, or the one asked with).
    pub next: i64,
    /// How many more there are after `next` (at most [`BEHIND_CAP`]).
    pub behind: i64,
}

/// What `GET /team/whoami` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// The member's name.
    pub member: String,
    /// May pull and search.
    pub read: bool,
    /// May push.
    pub write: bool,
    /// The projects the member is in.
    pub projects: Vec<String>,
}

/// The most a pull's `behind` counts.
pub const BEHIND_CAP: i64 = 100_000;
/// The most memories one push takes.
pub const MAX_PUSH: usize = 1_000;
/// The most memories one pull answers.
pub const MAX_PULL: i64 = 2_000;
