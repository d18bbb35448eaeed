//! What happened in the core, as one type: published on the in-process bus, sent on `/stream` as
//! server-sent events (the variant's name is the SSE event name, the JSON carries it in `type`), and read
//! back by the client on the other side. The processing status travels in the same type.
//!
//! The bus is a `broadcast`: a subscriber that falls behind misses events (it is told how many), which is
//! harmless for what listens here (the event stream, the tray, notifications); the core never waits on it.

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use crate::memory::{Observation, Summary};
use crate::status::Status;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The processing status changed (and, on `/stream`, the status at the moment of subscribing).
    ProcessingStatus(Status),
    /// A session was seen for the first time.
    SessionStarted {
        /// Row id.
        session_id: i64,
        /// The agent's id.
        agent_session_id: String,
        /// Project.
        project: String,
    },
    /// A tool use was stored as an observation message.
    ObservationQueued {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// The tool.
        tool_name: String,
    },
    /// A stop was stored as a summarize message.
    SummaryQueued {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// Project.
        project: String,
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
    /// A message used up its attempts (or cannot succeed) and is `failed`.
    MessageFailed {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// Project.
        project: String,
        /// Why.
        error: String,
    },
    /// A message was sent back to `pending` with fresh attempts (one retry, or "retry stuck").
    MessageRetried {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
        /// Project.
        project: String,
    },
    /// An unfinished message was deleted.
    MessageAborted {
        /// Row id of the session.
        session_id: i64,
        /// Row id of the message.
        message_id: i64,
    },
    /// A session ended.
    SessionCompleted {
        /// Row id.
        session_id: i64,
        /// Project.
        project: String,
    },
    /// A session was deleted with everything it owned.
    SessionDeleted {
        /// Row id.
        session_id: i64,
    },
    /// Today's tokens reached `max_tokens_per_day`: `local` makes memory until the next day (UTC). Sent
    /// once a day.
    TokenCeilingReached {
        /// The configured provider.
        provider: String,
        /// Tokens spent today.
        spent: u64,
        /// The ceiling.
        ceiling: u64,
    },
}

impl Event {
    /// The event's name on the wire (the SSE event name and the JSON `type`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ProcessingStatus(_) => "processing_status",
            Event::SessionStarted { .. } => "session_started",
            Event::ObservationQueued { .. } => "observation_queued",
            Event::SummaryQueued { .. } => "summary_queued",
            Event::NewObservation { .. } => "new_observation",
            Event::NewSummary { .. } => "new_summary",
            Event::MessageFailed { .. } => "message_failed",
            Event::MessageRetried { .. } => "message_retried",
            Event::MessageAborted { .. } => "message_aborted",
            Event::SessionCompleted { .. } => "session_completed",
            Event::SessionDeleted { .. } => "session_deleted",
            Event::TokenCeilingReached { .. } => "token_ceiling_reached",
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

/// Where a follower of the core subscribes: the status watch and the event bus, as one stream per
/// subscriber. Holds no sender a follower could publish on.
#[derive(Clone)]
pub struct Updates {
    status: watch::Receiver<Status>,
    events: Events,
}

impl Updates {
    pub(crate) fn new(status: watch::Receiver<Status>, events: Events) -> Updates {
        Updates { status, events }
    }

    /// Everything that happens from now on: the current status first, then every event and every status
    /// change. A subscriber that falls behind skips what it missed.
    pub fn stream(&self) -> impl Stream<Item = Event> + Send + use<> {
        let status = WatchStream::new(self.status.clone()).map(Event::ProcessingStatus);
        let events = BroadcastStream::new(self.events.subscribe()).filter_map(Result::ok);
        status.merge(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{NewObservation, NewSummary};

    fn every_event() -> Vec<Event> {
        let status = Status { is_processing: true, queue_depth: 3, pending: 2, processing: 1, ..Status::default() };
        vec![
            Event::ProcessingStatus(status),
            Event::SessionStarted { session_id: 1, agent_session_id: "a".into(), project: "ledger".into() },
            Event::ObservationQueued { session_id: 1, message_id: 2, tool_name: "Bash".into() },
            Event::SummaryQueued { session_id: 1, message_id: 3, project: "ledger".into() },
            Event::NewObservation {
                observation: Box::new(Observation {
                    id: 4,
                    session_id: 1,
                    project: "ledger".into(),
                    message_id: Some(2),
                    prompt_number: 1,
                    tool_name: "Bash".into(),
                    subagent: Some("Explore".into()),
                    memory: NewObservation {
                        kind: "command".into(),
                        title: "Ran cargo test".into(),
                        facts: vec!["12 passed".into()],
                        ..NewObservation::default()
                    },
                    made_by: crate::memory::MadeBy::provider("anthropic", Some("claude-haiku-4-5".into())),
                    created_at: 1_700_000_000_000,
                }),
            },
            Event::NewSummary {
                summary: Box::new(Summary {
                    id: 5,
                    session_id: 1,
                    project: "ledger".into(),
                    message_id: None,
                    prompt_number: 1,
                    memory: NewSummary {
                        request: "Fix the totals".into(),
                        files_edited: vec!["src/lib.rs".into()],
                        ..NewSummary::default()
                    },
                    made_by: crate::memory::MadeBy::fallback("the daily token ceiling (10) is reached"),
                    created_at: 1_700_000_000_001,
                }),
            },
            Event::MessageFailed { session_id: 1, message_id: 2, project: "ledger".into(), error: "boom".into() },
            Event::MessageRetried { session_id: 1, message_id: 2, project: "ledger".into() },
            Event::MessageAborted { session_id: 1, message_id: 2 },
            Event::SessionCompleted { session_id: 1, project: "ledger".into() },
            Event::SessionDeleted { session_id: 1 },
        ]
    }

    #[test]
    fn every_event_survives_the_round_trip_through_json() {
        for event in every_event() {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.name(), "the JSON names the event as the wire does");
            let back: Event = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, event);
        }
    }

    #[test]
    fn the_status_travels_flat_with_the_field_names_the_inspector_reads() {
        let json = serde_json::to_value(&every_event()[0]).unwrap();
        assert_eq!(json["isProcessing"], true);
        assert_eq!(json["queueDepth"], 3);
    }
}
