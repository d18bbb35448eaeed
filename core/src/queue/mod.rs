//! The queue: one consumer per session with work, started the moment a message is committed, and the
//! administration of messages (retry, abort, pause, delete a session).
//!
//! The consumer map belongs to one actor task; everything else talks to it over a command channel. Each
//! consumer is a task over its own context (`consumer::Context`) that tells the actor when it wants to
//! retire. The database is the truth about messages; the map only says who is working on which session.

mod consumer;
pub mod message;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::{Result, Settings};
use crate::events::{Event, Events};
use crate::memory::scribe::Scribe;
use crate::status::StatusTrigger;
use crate::store::{Store, messages, sessions};

/// How long shutdown waits for consumers to hand back their messages before sweeping them itself.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the actor is asked to do.
enum Command {
    /// The session may have new work: tell its consumer, or start one.
    Wake(i64),
    /// A lingering consumer asks to exit; the answer is false when a wake reached it meanwhile.
    Retire { session_id: i64, generation: u64, reply: oneshot::Sender<bool> },
    /// A consumer ended (however it ended).
    Exited { session_id: i64, generation: u64 },
    /// Cancel the session's consumer and hand back its task to await (delete).
    Cancel { session_id: i64, reply: oneshot::Sender<Option<JoinHandle<()>>> },
}

/// What "retry stuck" did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetriedStuck {
    /// Messages sent back to `pending`.
    pub messages: usize,
    /// Sessions they belong to.
    pub sessions: usize,
}

/// Tells the queue a session has new work. What intake holds of the queue.
#[derive(Clone)]
pub struct Waker {
    /// To the actor. Unbounded because a lost wake would strand committed work; each command is tiny and
    /// the actor handles it at once. Closed when the actor ends at shutdown.
    commands: mpsc::UnboundedSender<Command>,
}

impl Waker {
    /// Wakes (or starts) the session's consumer.
    pub fn wake(&self, session_id: i64) {
        let _ = self.commands.send(Command::Wake(session_id));
    }
}

/// The handle to the queue; clone freely.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Arc<Settings>,
    events: Events,
    trigger: StatusTrigger,
    waker: Waker,
    /// True while processing is paused; consumers wait on it before claiming.
    paused: watch::Sender<bool>,
    /// The sessions with a running consumer, kept by the actor for the status and the tests.
    live: watch::Receiver<Vec<i64>>,
    /// Cancelled once, at shutdown: the actor and every consumer (each has a child token).
    shutdown: CancellationToken,
    /// The actor and every consumer, so shutdown can wait for all of them.
    tracker: TaskTracker,
}

impl Queue {
    /// Starts the actor. Consumers start as sessions are woken.
    pub(crate) fn start(
        store: Store,
        scribe: Scribe,
        settings: Arc<Settings>,
        events: Events,
        trigger: StatusTrigger,
    ) -> Queue {
        let (commands, rx) = mpsc::unbounded_channel();
        let (paused, paused_rx) = watch::channel(false);
        let (live_tx, live) = watch::channel(Vec::new());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let waker = Waker { commands };
        let context = Arc::new(consumer::Context {
            store: store.clone(),
            provider_permits: Semaphore::new(settings.max_concurrent_provider_calls),
            scribe,
            settings: settings.clone(),
            paused: paused_rx,
            events: events.clone(),
            trigger: trigger.clone(),
            waker: waker.clone(),
        });
        let actor = Actor {
            context,
            consumers: HashMap::new(),
            next_generation: 0,
            live: live_tx,
            trigger: trigger.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(actor.run(rx));
        Queue { inner: Arc::new(Inner { store, settings, events, trigger, waker, paused, live, shutdown, tracker }) }
    }

    /// What intake needs of the queue.
    pub fn waker(&self) -> Waker {
        self.inner.waker.clone()
    }

    /// Sessions with a running consumer, in id order.
    pub fn live_consumers(&self) -> Vec<i64> {
        self.inner.live.borrow().clone()
    }

    pub(crate) fn live_consumers_watch(&self) -> watch::Receiver<Vec<i64>> {
        self.inner.live.clone()
    }

    pub(crate) fn paused_watch(&self) -> watch::Receiver<bool> {
        self.inner.paused.subscribe()
    }

    /// Pauses or resumes processing. Intake keeps storing while paused; consumers stop claiming.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
        self.inner.trigger.changed();
    }

    /// Sends a message back to `pending` with fresh attempts. False when there is nothing to retry.
    pub async fn retry_message(&self, message_id: i64) -> Result<bool> {
        let now = self.inner.settings.clock.now_ms();
        let touched = self.inner.store.write(move |c| messages::retry(c, message_id, now)).await?;
        let Some(t) = touched else { return Ok(false) };
        self.inner.waker.wake(t.session_id);
        self.inner.trigger.changed();
        self.inner.events.publish(Event::MessageRetried {
            session_id: t.session_id,
            message_id: t.message_id,
            project: t.project,
        });
        Ok(true)
    }

    /// Deletes a message that is not processed yet. False when there is nothing to abort.
    pub async fn abort_message(&self, message_id: i64) -> Result<bool> {
        let session = self.inner.store.write(move |c| messages::abort(c, message_id)).await?;
        let Some(session_id) = session else { return Ok(false) };
        self.inner.store.wipe_after_delete().await;
        self.inner.waker.wake(session_id);
        self.inner.trigger.changed();
        self.inner.events.publish(Event::MessageAborted { session_id, message_id });
        Ok(true)
    }

    /// Sends every failed and every stuck message back to `pending`.
    pub async fn retry_stuck_and_failed(&self) -> Result<RetriedStuck> {
        let (now, stuck_ms) = (self.inner.settings.clock.now_ms(), self.inner.settings.stuck_after.as_millis() as i64);
        let touched = self.inner.store.write(move |c| messages::retry_stuck_and_failed(c, now - stuck_ms, now)).await?;
        let mut woken = Vec::new();
        for t in &touched {
            if !woken.contains(&t.session_id) {
                woken.push(t.session_id);
                self.inner.waker.wake(t.session_id);
            }
        }
        self.inner.trigger.changed();
        for t in &touched {
            self.inner.events.publish(Event::MessageRetried {
                session_id: t.session_id,
                message_id: t.message_id,
                project: t.project.clone(),
            });
        }
        Ok(RetriedStuck { messages: touched.len(), sessions: woken.len() })
    }

    /// Cancels the session's consumer, waits for it to hand back its message, then deletes the session with
    /// everything it owns. False when there was no such session.
    pub async fn delete_session(&self, session_id: i64) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        if self.inner.waker.commands.send(Command::Cancel { session_id, reply }).is_ok()
            && let Ok(Some(handle)) = answer.await
        {
            let _ = handle.await;
        }
        let deleted = self.inner.store.write(move |c| sessions::delete(c, session_id)).await?;
        if deleted {
            self.inner.store.wipe_after_delete().await;
        }
        self.inner.trigger.changed();
        if deleted {
            self.inner.events.publish(Event::SessionDeleted { session_id });
        }
        Ok(deleted)
    }

    /// Stops the actor and every consumer (each hands its in-flight message back to `pending`), waits for
    /// them, then sweeps back any message still `processing`.
    pub(crate) async fn shutdown(&self) {
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
    }
}

/// The actor: owns the consumer map.
struct Actor {
    /// Shared by every consumer it starts.
    context: Arc<consumer::Context>,
    consumers: HashMap<i64, Slot>,
    next_generation: u64,
    /// The running consumers' sessions, for the status publisher and `Queue::live_consumers`.
    live: watch::Sender<Vec<i64>>,
    trigger: StatusTrigger,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// One running consumer.
struct Slot {
    /// Tells the consumer its session may have new work. Capacity 1: one pending wake says all there is to
    /// say, and a full channel is how the actor knows a wake is waiting. Removing the slot closes it.
    wake: mpsc::Sender<()>,
    /// Distinguishes this consumer from a later one of the same session.
    generation: u64,
    /// Cancels this consumer alone (delete); a child of the shutdown token.
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let command = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    // Every consumer is cancelled with the same token and the tracker waits for them; the
                    // map has nothing more to say.
                    self.consumers.clear();
                    self.live.send_replace(Vec::new());
                    self.trigger.changed();
                    return;
                }
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
            };
            let changed = match command {
                Command::Wake(session_id) => self.wake(session_id),
                Command::Retire { session_id, generation, reply } => {
                    let (retire, removed) = self.retire(session_id, generation);
                    let _ = reply.send(retire);
                    removed
                }
                Command::Exited { session_id, generation } => self.remove_if(session_id, generation),
                Command::Cancel { session_id, reply } => {
                    let slot = self.consumers.remove(&session_id);
                    let _ = reply.send(slot.map(|slot| {
                        slot.cancel.cancel();
                        slot.handle
                    }));
                    true
                }
            };
            if changed {
                let mut ids: Vec<i64> = self.consumers.keys().copied().collect();
                ids.sort_unstable();
                self.live.send_replace(ids);
                self.trigger.changed();
            }
        }
    }

    /// Wakes the session's consumer or starts one; true when one was started.
    fn wake(&mut self, session_id: i64) -> bool {
        if let Some(slot) = self.consumers.get(&session_id) {
            // Full means a wake is already waiting: nothing is lost.
            let _ = slot.wake.try_send(());
            return false;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let (wake, wake_rx) = mpsc::channel(1);
        let cancel = self.shutdown.child_token();
        let consumer = consumer::Consumer::new(self.context.clone(), session_id, generation);
        let handle = self.tracker.spawn(consumer.run(wake_rx, cancel.clone()));
        self.consumers.insert(session_id, Slot { wake, generation, cancel, handle });
        true
    }

    /// A lingering consumer may exit unless a wake is waiting for it. Decided here, where every wake passes,
    /// so a concurrent wake either reaches this consumer or starts a new one. Returns (may exit, removed).
    fn retire(&mut self, session_id: i64, generation: u64) -> (bool, bool) {
        match self.consumers.get(&session_id) {
            Some(slot) if slot.generation == generation => {
                if slot.wake.capacity() == 0 {
                    return (false, false);
                }
                self.consumers.remove(&session_id);
                (true, true)
            }
            // Not the current consumer (deleted, or replaced): it has nothing left to do.
            _ => (true, false),
        }
    }

    fn remove_if(&mut self, session_id: i64, generation: u64) -> bool {
        let mine = self.consumers.get(&session_id).is_some_and(|s| s.generation == generation);
        mine && self.consumers.remove(&session_id).is_some()
    }
}
