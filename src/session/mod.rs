//! The session manager: persists every event before acknowledging it, and keeps one consumer per session
//! with work, woken the moment a message is committed.
//!
//! It owns the consumers' lifecycle (start on demand, linger, retire, cancel on delete and shutdown), crash
//! recovery at start, the queue operations (retry, abort) and the status publisher. It owns no queue state
//! of its own: the database is the truth, the consumer map only says who is working on it.

mod consumer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::{Event, Events};
use crate::privacy;
use crate::provider::Provider;
use crate::queue::{MessageStatus, Payload, SummaryRequest, ToolUse};
use crate::status::{self, Status, StatusTrigger};
use crate::store::{Store, StoreError, messages, now_ms, sessions};

/// How long shutdown waits for consumers to hand back their messages before sweeping them itself.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Errors of the session layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manager is shutting down and takes no new work.
    #[error("memtray is shutting down")]
    ShuttingDown,
}

/// A result of the session layer.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// The tunables the manager and its consumers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// An idle consumer waits this long for new messages before it exits.
    pub linger: Duration,
    /// Attempts before a message is `failed`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// A provider call is abandoned (and retried) after this long.
    pub provider_timeout: Duration,
    /// `processing` longer than this is stuck.
    pub stuck_after: Duration,
    /// Tools whose events are skipped.
    pub skip_tools: HashSet<String>,
    /// Global cap on concurrent provider calls.
    pub max_concurrent_provider_calls: usize,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Settings {
            linger: c.linger(),
            max_attempts: c.max_attempts.max(1),
            retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            provider_timeout: Duration::from_secs(c.provider_timeout_secs.max(1)),
            stuck_after: c.stuck_after(),
            skip_tools: c.skip_tools.iter().cloned().collect(),
            max_concurrent_provider_calls: c.max_concurrent_provider_calls.max(1),
        }
    }
}

/// Why an event was answered `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The tool is on the skip list.
    SkippedTool,
    /// The session's current prompt was entirely private.
    PrivatePrompt,
}

impl SkipReason {
    /// The `reason` field of the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::SkippedTool => "skip_tool",
            SkipReason::PrivatePrompt => "private",
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
}

/// The cheap handle to the session manager.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    provider: Arc<dyn Provider>,
    settings: Settings,
    /// Who is consuming which session. A std mutex: held for a map lookup, insert or remove, never across
    /// an `.await`. Holding it while deciding to retire is what makes "exit on linger" race-free.
    consumers: Mutex<Consumers>,
    /// Caps concurrent provider calls across all sessions; consumers hold a permit for one call.
    provider_permits: Semaphore,
    /// True while processing is paused. Consumers wait on it before claiming; the tray toggles it.
    paused: watch::Sender<bool>,
    /// Parent of every consumer's token; cancelled once, at shutdown.
    shutdown: CancellationToken,
    /// Every task the manager spawns, so shutdown can wait for all of them.
    tracker: TaskTracker,
    events: Events,
    status_trigger: StatusTrigger,
    /// The latest status; the publisher task holds the sender.
    status: watch::Receiver<Status>,
}

#[derive(Default)]
struct Consumers {
    next_generation: u64,
    live: HashMap<i64, Slot>,
}

/// One running consumer.
struct Slot {
    /// Tells a consumer that its session may have new work. Capacity 1: one pending wake says all there is
    /// to say. The consumer holds the receiver; removing the slot (under the map lock) closes the channel.
    wake: mpsc::Sender<()>,
    /// Distinguishes this consumer from a later one of the same session.
    generation: u64,
    /// Cancels this consumer alone (delete); a child of the shutdown token.
    cancel: CancellationToken,
    /// Awaited by `delete_session`.
    handle: JoinHandle<()>,
}

impl SessionManager {
    /// Recovers what a previous process left behind, starts consumers for every session with pending work,
    /// and starts the status publisher. Returns once recovery is committed: the manager is ready.
    pub async fn start(store: Store, provider: Arc<dyn Provider>, settings: Settings) -> Result<SessionManager> {
        let max_attempts = settings.max_attempts;
        let (requeued, failed, pending_sessions) = store
            .write(move |c| {
                let (requeued, failed) = messages::recover(c, max_attempts, now_ms())?;
                Ok((requeued, failed, messages::sessions_with_pending(c)?))
            })
            .await?;
        if requeued + failed > 0 {
            tracing::info!(requeued, failed, "recovered messages left processing by a previous run");
        }
        let (status_trigger, publisher, status) = status::channel();
        let stuck_after = settings.stuck_after;
        let manager = SessionManager {
            inner: Arc::new(Inner {
                store,
                provider_permits: Semaphore::new(settings.max_concurrent_provider_calls),
                provider,
                settings,
                consumers: Mutex::new(Consumers::default()),
                paused: watch::channel(false).0,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                events: Events::new(1024),
                status_trigger,
                status,
            }),
        };
        // The publisher must not keep the manager alive: it sees it through a weak reference.
        let weak = Arc::downgrade(&manager.inner);
        let live = move || {
            weak.upgrade().map_or((0, false), |inner| {
                let live = inner.consumers.lock().expect("consumer map poisoned").live.len() as i64;
                (live, *inner.paused.borrow())
            })
        };
        let inner = &manager.inner;
        inner.tracker.spawn(publisher.run(inner.store.clone(), stuck_after, live, inner.shutdown.child_token()));
        for session_id in pending_sessions {
            manager.wake(session_id);
        }
        Ok(manager)
    }

    /// The store the manager works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The latest status, updated as it changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Sessions with a running consumer.
    pub fn live_consumers(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock_consumers().live.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Pauses or resumes processing. Intake keeps storing while paused; consumers stop claiming.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
        self.inner.status_trigger.changed();
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
        let prompt = prompt.map(privacy::strip_prompt);
        let private = matches!(prompt, Some(None));
        let (session, recorded) = self
            .in_session(agent_session_id, project, move |c, session, now| {
                let record = |text: Option<String>| {
                    sessions::record_prompt(c, session.id, text.as_deref(), idempotency_key.as_deref(), now)
                };
                prompt.map(record).transpose()
            })
            .await?;
        self.inner.status_trigger.changed();
        Ok(Initialized {
            session_id: session.id,
            prompt_number: recorded.map_or(session.prompt_counter, |r| r.prompt_number),
            private,
            duplicate: recorded.is_some_and(|r| r.duplicate),
        })
    }

    /// Persists a tool use as an observation message, then wakes the session's consumer. Returns only after
    /// the commit. Skip-listed tools and tool uses under an entirely private prompt are not stored.
    pub async fn queue_observation(
        &self,
        agent_session_id: &str,
        project: &str,
        mut tool: ToolUse,
        idempotency_key: Option<String>,
    ) -> Result<Queued> {
        self.accepting()?;
        if self.inner.settings.skip_tools.contains(&tool.tool_name) {
            return Ok(Queued::Skipped(SkipReason::SkippedTool));
        }
        privacy::strip_json(&mut tool.tool_input);
        privacy::strip_json(&mut tool.tool_response);
        let key = idempotency_key.or_else(|| tool.tool_use_id.clone());
        let tool_name = tool.tool_name.clone();
        let queued = self.enqueue(agent_session_id, project, Payload::Observation(tool), key, true).await?;
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
        mut request: SummaryRequest,
        idempotency_key: Option<String>,
    ) -> Result<Queued> {
        self.accepting()?;
        request.last_user_message = privacy::strip(&request.last_user_message).into_owned();
        request.last_assistant_message = privacy::strip(&request.last_assistant_message).into_owned();
        let queued =
            self.enqueue(agent_session_id, project, Payload::Summarize(request), idempotency_key, false).await?;
        if let Queued::New { session_id, message_id } = queued {
            self.inner.events.publish(Event::QueueChanged {
                session_id,
                message_id,
                status: Some(MessageStatus::Pending),
                error: None,
            });
        }
        Ok(queued)
    }

    async fn enqueue(
        &self,
        agent_session_id: &str,
        project: &str,
        payload: Payload,
        key: Option<String>,
        skip_if_private: bool,
    ) -> Result<Queued> {
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
            self.wake(session.id);
            self.inner.status_trigger.changed();
        }
        Ok(queued)
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
        let skip = &self.inner.settings.skip_tools;
        let payloads: Vec<(Option<String>, Payload)> = tools
            .into_iter()
            .filter(|t| !skip.contains(&t.tool_name))
            .map(|mut t| {
                privacy::strip_json(&mut t.tool_input);
                privacy::strip_json(&mut t.tool_response);
                (t.tool_use_id.clone(), Payload::Observation(t))
            })
            .collect();
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
            self.wake(session.id);
            self.inner.status_trigger.changed();
        }
        Ok(queued)
    }

    /// Marks the session completed. Returns false when there is no such active session.
    pub async fn complete_session(&self, agent_session_id: &str) -> Result<bool> {
        let agent = agent_session_id.to_string();
        let done = self
            .inner
            .store
            .write(move |c| match sessions::find(c, &agent)? {
                Some(s) if sessions::complete(c, s.id, now_ms())? => Ok(Some(s)),
                _ => Ok(None),
            })
            .await?;
        let Some(session) = done else { return Ok(false) };
        self.inner.events.publish(Event::SessionCompleted { session_id: session.id, project: session.project });
        self.inner.status_trigger.changed();
        Ok(true)
    }

    /// Cancels the session's consumer, waits for it to hand back its message, then deletes the session with
    /// everything it owns. Returns false when there was no such session.
    pub async fn delete_session(&self, session_id: i64) -> Result<bool> {
        let slot = self.lock_consumers().live.remove(&session_id);
        if let Some(slot) = slot {
            slot.cancel.cancel();
            let _ = slot.handle.await;
        }
        let deleted = self.inner.store.write(move |c| sessions::delete(c, session_id)).await?;
        self.inner.status_trigger.changed();
        Ok(deleted)
    }

    /// Sends a message back to `pending` with fresh attempts. False when there is nothing to retry.
    pub async fn retry_message(&self, message_id: i64) -> Result<bool> {
        let session = self.inner.store.write(move |c| messages::retry(c, message_id, now_ms())).await?;
        let Some(session_id) = session else { return Ok(false) };
        self.after_queue_change(session_id, message_id, Some(MessageStatus::Pending));
        self.wake(session_id);
        Ok(true)
    }

    /// Deletes a message that is not processed yet. False when there is nothing to abort.
    pub async fn abort_message(&self, message_id: i64) -> Result<bool> {
        let session = self.inner.store.write(move |c| messages::abort(c, message_id)).await?;
        let Some(session_id) = session else { return Ok(false) };
        self.after_queue_change(session_id, message_id, None);
        self.wake(session_id);
        Ok(true)
    }

    /// Sends every failed and every stuck message back to `pending`. Returns how many sessions were touched.
    pub async fn retry_stuck_and_failed(&self) -> Result<usize> {
        let stuck_ms = self.inner.settings.stuck_after.as_millis() as i64;
        let sessions = self
            .inner
            .store
            .write(move |c| {
                let now = now_ms();
                messages::retry_stuck_and_failed(c, now - stuck_ms, now)
            })
            .await?;
        for &session_id in &sessions {
            self.wake(session_id);
        }
        self.inner.status_trigger.changed();
        Ok(sessions.len())
    }

    /// Stops the manager in order: no new work, consumers cancelled and awaited (each hands its in-flight
    /// message back to `pending`), a last sweep for any that did not, then the status publisher and the store.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!("consumers did not stop within {SHUTDOWN_GRACE:?}; sweeping their messages back");
        }
        match self.inner.store.write(messages::release_all).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(released = n, "messages were still processing at shutdown"),
            Err(e) => tracing::error!(error = %e, "could not release processing messages at shutdown"),
        }
        self.inner.store.close().await;
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
        let (session, created, out) = self
            .inner
            .store
            .write(move |c| {
                let now = now_ms();
                let (session, created) = sessions::ensure(c, &agent, &project, now)?;
                let out = f(c, &session, now)?;
                Ok((session, created, out))
            })
            .await?;
        if created {
            self.publish_started(&session);
            self.inner.status_trigger.changed();
        }
        Ok((session, out))
    }

    fn accepting(&self) -> Result<()> {
        if self.inner.shutdown.is_cancelled() { Err(SessionError::ShuttingDown) } else { Ok(()) }
    }

    fn lock_consumers(&self) -> std::sync::MutexGuard<'_, Consumers> {
        self.inner.consumers.lock().expect("consumer map poisoned")
    }

    fn publish_started(&self, session: &sessions::Session) {
        self.inner.events.publish(Event::SessionStarted {
            session_id: session.id,
            agent_session_id: session.agent_session_id.clone(),
            project: session.project.clone(),
        });
    }

    fn after_queue_change(&self, session_id: i64, message_id: i64, status: Option<MessageStatus>) {
        self.inner.events.publish(Event::QueueChanged { session_id, message_id, status, error: None });
        self.inner.status_trigger.changed();
    }

    /// Tells the session's consumer there is work, starting one if none runs.
    fn wake(&self, session_id: i64) {
        let mut consumers = self.lock_consumers();
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        if let Some(slot) = consumers.live.get(&session_id) {
            // Full means a wake is already pending: nothing is lost.
            let _ = slot.wake.try_send(());
            return;
        }
        let generation = consumers.next_generation;
        consumers.next_generation += 1;
        let (wake, wake_rx) = mpsc::channel(1);
        let cancel = self.inner.shutdown.child_token();
        let handle =
            self.inner.tracker.spawn(consumer::run(self.clone(), session_id, generation, wake_rx, cancel.clone()));
        consumers.live.insert(session_id, Slot { wake, generation, cancel, handle });
        drop(consumers);
        self.inner.status_trigger.changed();
    }

    /// Removes a consumer's slot if it is still that consumer's (not a later one's).
    fn forget(&self, session_id: i64, generation: u64) {
        let removed = {
            let mut consumers = self.lock_consumers();
            let mine = consumers.live.get(&session_id).is_some_and(|s| s.generation == generation);
            mine && consumers.live.remove(&session_id).is_some()
        };
        if removed {
            self.inner.status_trigger.changed();
        }
    }

    /// A lingering consumer asks to exit. It may, unless a wake arrived meanwhile (then it goes on). Decided
    /// under the map lock, so a concurrent `wake` either reaches this consumer or starts a new one.
    fn retire(&self, session_id: i64, generation: u64, wake_rx: &mut mpsc::Receiver<()>) -> bool {
        let mut consumers = self.lock_consumers();
        let mine = consumers.live.get(&session_id).is_some_and(|s| s.generation == generation);
        if !mine {
            return true;
        }
        if wake_rx.try_recv().is_ok() {
            return false;
        }
        consumers.live.remove(&session_id);
        drop(consumers);
        self.inner.status_trigger.changed();
        true
    }
}
