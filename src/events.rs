//! Events the core publishes as things happen: a session starts, a message is queued, memory is made.
//!
//! A `broadcast` channel: a subscriber that falls behind misses events (it is told how many), which is
//! harmless for what listens here (the event stream, tray, notifications), and the core never waits on it.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::memory::{Observation, Summary};
use crate::queue::MessageStatus;

/// One thing that happened. Serialized with its name in `type`, which is also the SSE event name.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A session was seen for the first time.
    SessionStarted {
        /// Row id.
        session_id: i64,
        /// The agent's id.
        agent_session_id: String,
        /// Project.
        project: String,
    },
    /// An observation message was stored.
    ObservationQueued {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// The tool.
        tool_name: String,
    },
    /// An observation was made.
    NewObservation {
        /// It.
        observation: Box<Observation>,
    },
    /// A summary was made.
    NewSummary {
        /// It.
        summary: Box<Summary>,
    },
    /// A session ended.
    SessionCompleted {
        /// Row id.
        session_id: i64,
        /// Project.
        project: String,
    },
    /// A message changed state other than by normal processing (failed, retried, aborted, summarize queued).
    QueueChanged {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// Its new state (`None`: deleted).
        status: Option<MessageStatus>,
        /// The error, for `failed`.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SessionStarted { .. } => "session_started",
            Event::ObservationQueued { .. } => "observation_queued",
            Event::NewObservation { .. } => "new_observation",
            Event::NewSummary { .. } => "new_summary",
            Event::SessionCompleted { .. } => "session_completed",
            Event::QueueChanged { .. } => "queue_changed",
        }
    }
}

/// The sending side of the event bus; clone freely.
#[derive(Clone)]
pub struct Events {
    /// Fan-out to every subscriber. Lives as long as the core; publishing with no subscriber is a no-op.
    tx: broadcast::Sender<Event>,
}

impl Events {
    /// A bus that keeps up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Events {
        Events { tx: broadcast::channel(capacity).0 }
    }

    /// Publishes an event.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Subscribes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
