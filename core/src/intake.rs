//! Intake: where events come in. Each is persisted in one write transaction, acknowledged only after the
//! commit, and then its session's consumer is woken. Privacy stripping, the skip list and `exclude_projects`
//! apply here, before anything is stored. The hook inbox (events `memtray hook` stored itself while no server
//! answered) is read and emptied through here too.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::core::{CoreError, Result, Settings};
use crate::events::{Event, Events};
use crate::privacy::Privacy;
use crate::queue::Waker;
use crate::queue::message::{Payload, SummaryRequest, ToolUse};
use crate::status::StatusTrigger;
use crate::store::{Store, inbox, messages, sessions};

/// Why an event was answered `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The tool is on the skip list.
    SkippedTool,
    /// The session's current prompt was entirely private.
    PrivatePrompt,
    /// The project matches `exclude_projects`.
    ExcludedProject,
}

impl SkipReason {
    /// The `reason` field of the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::SkippedTool => "skip_tool",
            SkipReason::PrivatePrompt => "private",
            SkipReason::ExcludedProject => "excluded_project",
        }
    }
}

/// What became of a queued event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Stored (and committed) as this message.
    New {
        /// The session's row id.
        session_id: i64,
        /// The message's row id.
        message_id: i64,
    },
    /// Seen before; nothing stored.
    Duplicate,
    /// Not stored, on purpose.
    Skipped(SkipReason),
}

/// What `init_session` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initialized {
    /// The session's row id.
    pub session_id: i64,
    /// The prompt's number (0 when no prompt was given).
    pub prompt_number: i64,
    /// The prompt was entirely private: nothing of it stored.
    pub private: bool,
    /// The same idempotency key was seen before.
    pub duplicate: bool,
    /// The project is excluded: nothing was stored (and `session_id` is 0).
    pub excluded: bool,
}

/// What a transcript shows that memtray may lack, for [`Intake::backfill`].
#[derive(Debug, Clone, Default)]
pub struct Backfill {
    /// The session's prompts in order (prompt `i` is number `i + 1`), each with its idempotency key. Empty
    /// when the transcript does not identify its prompts: then nothing is renumbered.
    pub prompts: Vec<BackfillPrompt>,
    /// Tool uses and turn summaries, in transcript order.
    pub items: Vec<BackfillItem>,
    /// How many bytes of the transcript were read.
    pub transcript_bytes: Option<u64>,
}

/// One prompt of a [`Backfill`].
#[derive(Debug, Clone)]
pub struct BackfillPrompt {
    /// The key the prompt is (or would have been) stored under.
    pub key: String,
    /// Its text as written (privacy stripping happens here).
    pub text: String,
}

/// One tool use or turn summary of a [`Backfill`]; `prompt` indexes [`Backfill::prompts`].
#[derive(Debug, Clone)]
pub enum BackfillItem {
    /// A tool use; its idempotency key is its `tool_use_id`, which it must have.
    Tool { tool: ToolUse, prompt: Option<usize> },
    /// A turn that ended, to summarize under this key.
    Summary { request: SummaryRequest, prompt: usize, key: String },
}

/// What [`Intake::backfill`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// Prompts stored that memtray had not seen.
    pub prompts: usize,
    /// Prompts that got another number.
    pub renumbered: usize,
    /// Tool uses queued.
    pub observations: usize,
    /// Turn summaries queued.
    pub summaries: usize,
    /// Stored tool uses moved to the prompt they followed.
    pub refiled: usize,
}

/// The transaction of [`Intake::backfill`].
fn fill(
    c: &rusqlite::Connection,
    session: &sessions::Session,
    backfill: Backfill,
    skip_tools: &std::collections::HashSet<String>,
    privacy: &Privacy,
    now: i64,
) -> crate::store::Result<Backfilled> {
    let mut done = Backfilled::default();
    // Prompt `i` of the transcript is number `i + 1`, unless memtray holds prompts the transcript does not
    // name (other clients, older versions): then its own numbers stand.
    let (keyed, unkeyed) = sessions::keyed_prompts(c, session.id)?;
    let position: std::collections::HashMap<&str, i64> =
        backfill.prompts.iter().enumerate().map(|(i, p)| (p.key.as_str(), i as i64 + 1)).collect();
    let trusted =
        !backfill.prompts.is_empty() && unkeyed == 0 && keyed.iter().all(|(k, _)| position.contains_key(k.as_str()));
    let mut private = vec![false; backfill.prompts.len()];
    let mut counter = session.prompt_counter;
    if trusted {
        let moves: Vec<(i64, i64)> =
            keyed.iter().map(|(k, old)| (*old, position[k.as_str()])).filter(|(old, new)| old != new).collect();
        if !moves.is_empty() {
            sessions::renumber_prompts(c, session.id, &moves)?;
            done.renumbered = moves.len();
        }
        for (i, prompt) in backfill.prompts.iter().enumerate() {
            let text = privacy.prompt(&prompt.text);
            private[i] = text.is_none();
            let number = i as i64 + 1;
            if sessions::restore_prompt(c, session.id, number, text.as_deref(), &prompt.key, now)? {
                done.prompts += 1;
            }
            counter = counter.max(number);
        }
    }
    let number_of = |prompt: Option<usize>| match prompt {
        Some(i) if trusted => i as i64 + 1,
        _ => counter,
    };
    for item in backfill.items {
        match item {
            BackfillItem::Tool { tool, prompt } => {
                let Some(key) = tool.tool_use_id.clone() else { continue };
                let number = number_of(prompt);
                if trusted && messages::refile(c, session.id, &key, number)? {
                    done.refiled += 1;
                }
                let is_private = match prompt {
                    Some(i) if trusted => private[i],
                    _ => session.prompt_private,
                };
                if is_private || skip_tools.contains(&tool.tool_name) {
                    continue;
                }
                let payload = Payload::Observation(Box::new(tool));
                if let messages::Enqueued::New(_) = messages::enqueue(c, session.id, &payload, number, Some(&key), now)?
                {
                    done.observations += 1;
                }
            }
            BackfillItem::Summary { request, prompt, key } => {
                if !trusted {
                    continue;
                }
                let number = prompt as i64 + 1;
                if messages::refile(c, session.id, &key, number)? {
                    done.refiled += 1;
                }
                let payload = Payload::Summarize(request);
                if let messages::Enqueued::New(_) = messages::enqueue(c, session.id, &payload, number, Some(&key), now)?
                {
                    done.summaries += 1;
                }
            }
        }
    }
    if let Some(bytes) = backfill.transcript_bytes {
        sessions::set_transcript_seen(c, session.id, bytes)?;
    }
    Ok(done)
}

/// A tool use as it may be stored: private parts removed and secrets redacted from what the tool was given,
/// what it answered and its error. Its name, folder and ids are metadata and stay as sent.
fn scrub_tool(privacy: &Privacy, tool: &mut ToolUse) {
    privacy.json(&mut tool.tool_input);
    privacy.json(&mut tool.tool_response);
    if let Some(error) = &mut tool.error {
        privacy.text_in_place(error);
    }
}

/// Above this much text an event is scrubbed on the blocking pool: redacting 1 MiB takes a few milliseconds,
/// too long for an async worker; below it the hop would cost more than the work.
const SCRUB_INLINE_BYTES: usize = 64 * 1024;

/// The text in a JSON value (strings and keys), counted without copying.
fn text_len(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(items) => items.iter().map(text_len).sum(),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() + text_len(v)).sum(),
        _ => 0,
    }
}

/// Runs `scrub` on `item` here when it is small, else on the blocking pool.
async fn scrubbed<T: Send + 'static>(
    privacy: &Privacy,
    mut item: T,
    len: usize,
    scrub: fn(&Privacy, &mut T),
) -> Result<T> {
    if len <= SCRUB_INLINE_BYTES {
        scrub(privacy, &mut item);
        return Ok(item);
    }
    let privacy = privacy.clone();
    tokio::task::spawn_blocking(move || {
        scrub(&privacy, &mut item);
        item
    })
    .await
    .map_err(|_| CoreError::ShuttingDown)
}

fn backfill_item_len(item: &BackfillItem) -> usize {
    match item {
        BackfillItem::Tool { tool, .. } => tool_len(tool),
        BackfillItem::Summary { request, .. } => request.last_user_message.len() + request.last_assistant_message.len(),
    }
}

fn scrub_backfill_item(privacy: &Privacy, item: &mut BackfillItem) {
    match item {
        BackfillItem::Tool { tool, .. } => scrub_tool(privacy, tool),
        BackfillItem::Summary { request, .. } => scrub_summary(privacy, request),
    }
}

fn tool_len(tool: &ToolUse) -> usize {
    text_len(&tool.tool_input) + text_len(&tool.tool_response) + tool.error.as_ref().map_or(0, String::len)
}

/// A summarize request as it may be stored.
fn scrub_summary(privacy: &Privacy, request: &mut SummaryRequest) {
    privacy.text_in_place(&mut request.last_user_message);
    privacy.text_in_place(&mut request.last_assistant_message);
}

/// The handle to intake; clone freely.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Wakes a session's consumer once its message is committed.
    waker: Waker,
    events: Events,
    trigger: StatusTrigger,
    settings: Arc<Settings>,
    /// The core's stop token: once cancelled, intake refuses new work.
    stopping: CancellationToken,
}

impl Intake {
    pub(crate) fn new(
        store: Store,
        waker: Waker,
        events: Events,
        trigger: StatusTrigger,
        settings: Arc<Settings>,
        stopping: CancellationToken,
    ) -> Intake {
        Intake { inner: Arc::new(Inner { store, waker, events, trigger, settings, stopping }) }
    }

    /// Creates the session if new (idempotent) and, with a prompt, counts it as the session's current one.
    /// An entirely private prompt is counted but nothing of it is stored.
    pub async fn init_session(
        &self,
        agent_session_id: &str,
        project: &str,
        prompt: Option<&str>,
        idempotency_key: Option<String>,
    ) -> Result<Initialized> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(Initialized {
                session_id: 0,
                prompt_number: 0,
                private: false,
                duplicate: false,
                excluded: true,
            });
        }
        let privacy = &self.inner.settings.privacy;
        let prompt = match prompt {
            Some(p) if p.len() > SCRUB_INLINE_BYTES => {
                let (privacy, p) = (privacy.clone(), p.to_string());
                Some(
                    tokio::task::spawn_blocking(move || privacy.prompt(&p))
                        .await
                        .map_err(|_| CoreError::ShuttingDown)?,
                )
            }
            p => p.map(|p| privacy.prompt(p)),
        };
        let private = matches!(prompt, Some(None));
        let (session, recorded) = self
            .in_session(agent_session_id, project, move |c, session, now| {
                let record = |text: Option<String>| {
                    sessions::record_prompt(c, session.id, text.as_deref(), idempotency_key.as_deref(), now)
                };
                prompt.map(record).transpose()
            })
            .await?;
        self.inner.trigger.changed();
        Ok(Initialized {
            session_id: session.id,
            prompt_number: recorded.map_or(session.prompt_counter, |r| r.prompt_number),
            private,
            duplicate: recorded.is_some_and(|r| r.duplicate),
            excluded: false,
        })
    }

    /// Persists a tool use as an observation message, then wakes the session's consumer. Returns only after
    /// the commit. Skip-listed tools and tool uses under an entirely private prompt are not stored.
    pub async fn queue_observation(
        &self,
        agent_session_id: &str,
        project: &str,
        tool: ToolUse,
        idempotency_key: Option<String>,
    ) -> Result<Queued> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(Queued::Skipped(SkipReason::ExcludedProject));
        }
        if self.inner.settings.skip_tools.contains(&tool.tool_name) {
            return Ok(Queued::Skipped(SkipReason::SkippedTool));
        }
        let len = tool_len(&tool);
        let tool = scrubbed(&self.inner.settings.privacy, tool, len, scrub_tool).await?;
        let key = idempotency_key.or_else(|| tool.tool_use_id.clone());
        let tool_name = tool.tool_name.clone();
        let (queued, _) =
            self.enqueue(agent_session_id, project, Payload::Observation(Box::new(tool)), key, true).await?;
        if let Queued::New { session_id, message_id } = queued {
            self.inner.events.publish(Event::ObservationQueued { session_id, message_id, tool_name });
        }
        Ok(queued)
    }

    /// Persists a summarize request, then wakes the session's consumer.
    pub async fn queue_summarize(
        &self,
        agent_session_id: &str,
        project: &str,
        request: SummaryRequest,
        idempotency_key: Option<String>,
    ) -> Result<Queued> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(Queued::Skipped(SkipReason::ExcludedProject));
        }
        let len = request.last_user_message.len() + request.last_assistant_message.len();
        let request = scrubbed(&self.inner.settings.privacy, request, len, scrub_summary).await?;
        let (queued, project) =
            self.enqueue(agent_session_id, project, Payload::Summarize(request), idempotency_key, false).await?;
        if let Queued::New { session_id, message_id } = queued {
            self.inner.events.publish(Event::SummaryQueued { session_id, message_id, project });
        }
        Ok(queued)
    }

    /// Stores one message; returns what became of it and the session's project.
    async fn enqueue(
        &self,
        agent_session_id: &str,
        project: &str,
        payload: Payload,
        key: Option<String>,
        skip_if_private: bool,
    ) -> Result<(Queued, String)> {
        let (session, queued) = self
            .in_session(agent_session_id, project, move |c, session, now| {
                if skip_if_private && session.prompt_private {
                    return Ok(Queued::Skipped(SkipReason::PrivatePrompt));
                }
                Ok(match messages::enqueue(c, session.id, &payload, session.prompt_counter, key.as_deref(), now)? {
                    messages::Enqueued::New(message_id) => Queued::New { session_id: session.id, message_id },
                    messages::Enqueued::Duplicate => Queued::Duplicate,
                })
            })
            .await?;
        if let Queued::New { .. } = queued {
            self.inner.waker.wake(session.id);
            self.inner.trigger.changed();
        }
        Ok((queued, session.project))
    }

    /// Creates the session if new and records its transcript path and start source when given.
    pub async fn note_session(
        &self,
        agent_session_id: &str,
        project: &str,
        transcript_path: Option<String>,
        source: Option<String>,
    ) -> Result<i64> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(0);
        }
        let (session, ()) = self
            .in_session(agent_session_id, project, move |c, session, _| {
                sessions::set_origin(c, session.id, transcript_path.as_deref(), source.as_deref())
            })
            .await?;
        Ok(session.id)
    }

    /// Queues tool uses in one transaction, in the order given, skipping skip-listed tools and those already
    /// stored (same `tool_use_id`). Tool uses without an id are not deduplicated, so callers pass ids. Returns
    /// how many were queued.
    pub async fn queue_observations(
        &self,
        agent_session_id: &str,
        project: &str,
        tools: Vec<ToolUse>,
    ) -> Result<usize> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(0);
        }
        let skip = &self.inner.settings.skip_tools;
        let tools: Vec<ToolUse> = tools.into_iter().filter(|t| !skip.contains(&t.tool_name)).collect();
        let len = tools.iter().map(tool_len).sum();
        let tools = scrubbed(&self.inner.settings.privacy, tools, len, |p, tools| {
            tools.iter_mut().for_each(|t| scrub_tool(p, t))
        })
        .await?;
        let payloads: Vec<(Option<String>, Payload)> =
            tools.into_iter().map(|t| (t.tool_use_id.clone(), Payload::Observation(Box::new(t)))).collect();
        if payloads.is_empty() {
            return Ok(0);
        }
        let (session, queued) = self
            .in_session(agent_session_id, project, move |c, session, now| {
                let mut queued = 0;
                if !session.prompt_private {
                    for (key, payload) in &payloads {
                        let enqueued =
                            messages::enqueue(c, session.id, payload, session.prompt_counter, key.as_deref(), now)?;
                        queued += usize::from(matches!(enqueued, messages::Enqueued::New(_)));
                    }
                }
                Ok(queued)
            })
            .await?;
        if queued > 0 {
            self.inner.waker.wake(session.id);
            self.inner.trigger.changed();
        }
        Ok(queued)
    }

    /// Fills the gaps a transcript shows in one transaction: prompts memtray never saw are stored under their
    /// own numbers (and those it numbered wrong are renumbered, with what was filed under them); tool uses and
    /// turn summaries it lacks are queued in transcript order under their prompt; tool uses filed under the
    /// wrong prompt move. A session is created if new but never reopened: filling in history is not activity.
    pub async fn backfill(&self, agent_session_id: &str, project: &str, mut backfill: Backfill) -> Result<Backfilled> {
        self.accepting()?;
        if self.excluded(project) {
            return Ok(Backfilled::default());
        }
        let agent = agent_session_id.to_string();
        let project = project.to_string();
        let clock = self.inner.settings.clock;
        let skip = self.inner.settings.skip_tools.clone();
        // Tool uses and turns are scrubbed before the write: not inside the writer's transaction, where every
        // other write would wait for it. Prompts are scrubbed inside: whether one is entirely private decides
        // how its tool uses are filed.
        let len = backfill.items.iter().map(backfill_item_len).sum();
        backfill.items = scrubbed(&self.inner.settings.privacy, backfill.items, len, |p, items| {
            items.iter_mut().for_each(|item| scrub_backfill_item(p, item))
        })
        .await?;
        let privacy = self.inner.settings.privacy.clone();
        let (session, created, done) = self
            .inner
            .store
            .write(move |c| {
                let now = clock.now_ms();
                let (session, created) = match sessions::find(c, &agent)? {
                    Some(session) => (session, false),
                    None => sessions::ensure(c, &agent, &project, now)?,
                };
                let done = fill(c, &session, backfill, &skip, &privacy, now)?;
                Ok((session, created, done))
            })
            .await?;
        if created {
            self.announce(&session);
        }
        if done.observations + done.summaries > 0 {
            self.inner.waker.wake(session.id);
        }
        if created || done != Backfilled::default() {
            self.inner.trigger.changed();
        }
        Ok(done)
    }

    /// Marks the session completed. Returns false when there is no such active session.
    pub async fn complete_session(&self, agent_session_id: &str) -> Result<bool> {
        let agent = agent_session_id.to_string();
        let now = self.inner.settings.clock.now_ms();
        let done = self
            .inner
            .store
            .write(move |c| match sessions::find(c, &agent)? {
                Some(s) if sessions::complete(c, s.id, now)? => Ok(Some(s)),
                _ => Ok(None),
            })
            .await?;
        let Some(session) = done else { return Ok(false) };
        self.inner.events.publish(Event::SessionCompleted { session_id: session.id, project: session.project });
        self.inner.trigger.changed();
        Ok(true)
    }

    /// Up to `limit` events from the hook inbox, oldest first, as (row id, raw body).
    pub async fn inbox_oldest(&self, limit: u32) -> Result<Vec<(i64, String)>> {
        Ok(self.inner.store.read(move |c| inbox::oldest(c, limit)).await?)
    }

    /// Removes an inbox event once it was taken in.
    pub async fn inbox_remove(&self, id: i64) -> Result<()> {
        Ok(self.inner.store.write(move |c| inbox::remove(c, id)).await?)
    }

    /// After inbox events were removed: the WAL is checkpointed and truncated so their raw text leaves no copy.
    pub async fn inbox_wipe(&self) {
        self.inner.store.wipe_after_delete().await;
    }

    /// True when the hook inbox holds events.
    pub async fn inbox_waiting(&self) -> Result<bool> {
        Ok(self.inner.store.read(|c| inbox::is_empty(c).map(|empty| !empty)).await?)
    }

    /// Runs `f` in one write transaction with the session (created on first sight), then announces the
    /// session if it is new. Every path that takes an event in goes through here.
    async fn in_session<T, F>(&self, agent_session_id: &str, project: &str, f: F) -> Result<(sessions::Session, T)>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &sessions::Session, i64) -> crate::store::Result<T> + Send + 'static,
    {
        let agent = agent_session_id.to_string();
        let project = project.to_string();
        let clock = self.inner.settings.clock;
        let (session, created, out) = self
            .inner
            .store
            .write(move |c| {
                let now = clock.now_ms();
                let (session, created) = sessions::ensure(c, &agent, &project, now)?;
                let out = f(c, &session, now)?;
                Ok((session, created, out))
            })
            .await?;
        if created {
            self.announce(&session);
            self.inner.trigger.changed();
        }
        Ok((session, out))
    }

    /// Tells the event stream a session was seen for the first time.
    fn announce(&self, session: &sessions::Session) {
        self.inner.events.publish(Event::SessionStarted {
            session_id: session.id,
            agent_session_id: session.agent_session_id.clone(),
            project: session.project.clone(),
        });
    }

    /// Whether `project` is one memtray must not capture.
    pub fn excluded(&self, project: &str) -> bool {
        self.inner.settings.exclude_projects.is_match(project)
    }

    fn accepting(&self) -> Result<()> {
        if self.inner.stopping.is_cancelled() { Err(CoreError::ShuttingDown) } else { Ok(()) }
    }
}
