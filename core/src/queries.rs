//! Read-only queries for the API, the inspector and `memtray status`: the full status, sessions and their
//! queues, projects, the unfinished queue, pages of memory, full-text search. Every query runs on a read
//! connection off the async workers; nothing here writes.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::core::{Result, Settings};
use crate::memory::{Observation, Summary};
use crate::queue::message::MessageInfo;
use crate::recall::context;
use crate::status::Status;
use crate::store::messages::MessageFilter;
use crate::store::search::{self, Hit, SearchQuery};
use crate::store::sessions::{KnownTranscript, ProjectCount, Prompt, Session, SessionListItem, SessionQuery};
use crate::store::stats::Totals;
use crate::store::{Store, calls, memories, messages, sessions, stats};
use crate::team::link::LinkState;

/// How many of a session's messages its detail lists.
const SESSION_MESSAGES: u32 = 1000;

/// One session with everything it owns.
#[derive(Debug, Clone, Serialize)]
pub struct SessionDetail {
    /// The session.
    pub session: Session,
    /// Its prompts, oldest first.
    pub prompts: Vec<Prompt>,
    /// Its observations.
    pub observations: Vec<Observation>,
    /// Its summaries.
    pub summaries: Vec<Summary>,
    /// Its messages, processed ones included.
    pub messages: Vec<MessageInfo>,
}

/// A page of items with the total count.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// How many there are in all.
    pub total: i64,
}

/// The handle to the queries; clone freely.
#[derive(Clone)]
pub struct Queries {
    /// Read only: every method here uses `Store::read`.
    store: Store,
    settings: Arc<Settings>,
    status: watch::Receiver<Status>,
    /// The team link's latest state; its pusher and puller hold the sender.
    team: watch::Receiver<LinkState>,
}

impl Queries {
    pub(crate) fn new(
        store: Store,
        settings: Arc<Settings>,
        status: watch::Receiver<Status>,
        team: watch::Receiver<LinkState>,
    ) -> Queries {
        Queries { store, settings, status, team }
    }

    /// The team link's latest state (`enabled: false` without `[team]`).
    pub fn team(&self) -> LinkState {
        self.team.borrow().clone()
    }

    /// The team link's state as it changes.
    pub fn team_watch(&self) -> watch::Receiver<LinkState> {
        self.team.clone()
    }

    /// The latest processing status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Messages processed within the last `window_ms`.
    pub async fn processed_within(&self, window_ms: i64) -> Result<i64> {
        let since = self.settings.clock.now_ms() - window_ms;
        Ok(self.store.read(move |c| stats::processed_since(c, since)).await?)
    }

    /// What providers cost over the last `days` days (UTC, today included): tokens per day, project and
    /// provider.
    pub async fn token_usage(&self, days: i64) -> Result<calls::Usage> {
        let since_day = (self.settings.clock.now_ms()).div_euclid(calls::DAY_MS) - (days - 1).max(0);
        Ok(self.store.read(move |c| calls::usage(c, since_day)).await?)
    }

    /// A page of sessions with their queue counts.
    pub async fn sessions(&self, query: SessionQuery) -> Result<Page<SessionListItem>> {
        let (items, total) = self.store.read(move |c| sessions::list(c, &query)).await?;
        Ok(Page { items, total })
    }

    /// Every project with its session count.
    pub async fn projects(&self) -> Result<Vec<ProjectCount>> {
        Ok(self.store.read(sessions::projects).await?)
    }

    /// A session with its prompts, memory and messages; `None` when there is no such session.
    pub async fn session(&self, id: i64) -> Result<Option<SessionDetail>> {
        let stuck_before = self.stuck_before();
        Ok(self
            .store
            .read(move |c| {
                let Some(session) = sessions::get(c, id)? else { return Ok(None) };
                let filter = MessageFilter { session_id: Some(id), unfinished: false };
                Ok(Some(SessionDetail {
                    session,
                    prompts: sessions::prompts(c, id)?,
                    observations: memories::observations_of(c, id)?,
                    summaries: memories::summaries_of(c, id)?,
                    messages: messages::list(c, filter, stuck_before, SESSION_MESSAGES)?,
                }))
            })
            .await?)
    }

    /// Unfinished messages (failed and stuck first, then processing, then pending), with the counts.
    pub async fn unfinished(&self, limit: u32) -> Result<(Vec<MessageInfo>, Totals)> {
        let stuck_before = self.stuck_before();
        Ok(self
            .store
            .read(move |c| {
                let filter = MessageFilter { session_id: None, unfinished: true };
                Ok((messages::list(c, filter, stuck_before, limit)?, stats::totals(c, stuck_before)?))
            })
            .await?)
    }

    /// Observations, newest first.
    pub async fn observations(&self, project: Option<String>, limit: u32, offset: u32) -> Result<Page<Observation>> {
        let (items, total) =
            self.store.read(move |c| memories::page_observations(c, project.as_deref(), limit, offset)).await?;
        Ok(Page { items, total })
    }

    /// Summaries, newest first.
    pub async fn summaries(&self, project: Option<String>, limit: u32, offset: u32) -> Result<Page<Summary>> {
        let (items, total) =
            self.store.read(move |c| memories::page_summaries(c, project.as_deref(), limit, offset)).await?;
        Ok(Page { items, total })
    }

    /// Memory matching `query`, best first (see [`search::search`]).
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<Hit>> {
        Ok(self.store.read(move |c| search::search(c, &query)).await?)
    }

    /// The configured session-start budget and whether prompts get related memory.
    pub fn recall_settings(&self) -> (usize, bool) {
        (self.settings.context_chars, self.settings.prompt_context)
    }

    /// The context a session of `project` starts with (see `recall::context::session_start`): `source` is
    /// Claude Code's SessionStart `source`, `agent_session_id` the session starting.
    pub async fn session_start_context(
        &self,
        project: String,
        chars: usize,
        source: Option<String>,
        agent_session_id: String,
    ) -> Result<String> {
        Ok(self
            .store
            .read(move |c| {
                let start = context::Start::of(source.as_deref(), &agent_session_id);
                context::session_start(c, &project, chars, start)
            })
            .await?)
    }

    /// What the project's older memory says about a prompt (see `recall::context::prompt_recall`).
    pub async fn prompt_recall(
        &self,
        project: String,
        prompt: String,
        agent_session_id: String,
        chars: usize,
    ) -> Result<String> {
        Ok(self.store.read(move |c| context::prompt_recall(c, &project, &prompt, &agent_session_id, chars)).await?)
    }

    /// Sessions with a known transcript that are active or were active since `since` (ms).
    pub async fn transcripts_since(&self, since: i64) -> Result<Vec<KnownTranscript>> {
        Ok(self.store.read(move |c| sessions::transcripts_since(c, since)).await?)
    }

    /// The core's clock, in ms.
    pub fn now_ms(&self) -> i64 {
        self.settings.clock.now_ms()
    }

    fn stuck_before(&self) -> i64 {
        self.settings.clock.now_ms() - self.settings.stuck_after.as_millis() as i64
    }
}
