//! The processing status: one snapshot computed from the database and the live consumers, published as a
//! `watch` of the latest value for the event stream, the tray and notifications.
//!
//! Recomputed when something changed (debounced, so a burst of intake costs a few queries, not thousands)
//! and when the oldest claim is due to turn stuck. Nothing polls; nothing mirrors the queue in memory.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::memory::scribe::ProviderStatus;
use crate::store::{Store, stats};
use crate::team::link::LinkState;

/// How long a change waits for more changes before the status is recomputed.
const DEBOUNCE: Duration = Duration::from_millis(25);

/// The status at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    /// True while any message is pending or being processed.
    pub is_processing: bool,
    /// Messages pending + processing.
    pub queue_depth: i64,
    /// Messages waiting.
    pub pending: i64,
    /// Messages claimed.
    pub processing: i64,
    /// Messages processing longer than the stuck threshold.
    pub stuck: i64,
    /// Messages given up on.
    pub failed: i64,
    /// Sessions not yet completed.
    pub active_sessions: i64,
    /// Sessions with pending or processing messages.
    pub sessions_with_work: i64,
    /// Session consumers running now.
    pub live_consumers: i64,
    /// Queue depth plus live consumers: everything that keeps the core busy.
    pub total_active_work: i64,
    /// True while processing is paused (intake still stores).
    pub paused: bool,
    /// The provider: its health (a bad key, an open circuit, the token ceiling) and today's tokens.
    pub provider: ProviderStatus,
    /// The team link: connected, pushing N, behind by N, unreachable since when (`enabled: false` without
    /// `[team]`). Boxed: it is most of the status's size, and the status travels in every event.
    pub team: Box<LinkState>,
}

/// Marks the status stale; the recompute task does the rest.
#[derive(Clone)]
pub(crate) struct StatusTrigger {
    /// Wakes the recompute task. `notify_one` keeps one permit, so a change is never missed and a burst of
    /// changes costs one recompute.
    dirty: Arc<Notify>,
}

impl StatusTrigger {
    pub(crate) fn changed(&self) {
        self.dirty.notify_one();
    }
}

/// What the status reads from memory rather than the database.
pub(crate) struct Live {
    /// The sessions with a running consumer.
    pub(crate) consumers: watch::Receiver<Vec<i64>>,
    /// Whether processing is paused.
    pub(crate) paused: watch::Receiver<bool>,
    /// The provider's health and today's tokens.
    pub(crate) provider: watch::Receiver<ProviderStatus>,
    /// The team link's state; its pusher and puller mark the status stale when it changes.
    pub(crate) team: watch::Receiver<LinkState>,
}

/// The recompute side: owns the sender of the status watch.
pub(crate) struct StatusPublisher {
    /// Shared with every `StatusTrigger`.
    dirty: Arc<Notify>,
    /// The latest status; receivers are handed out by the core.
    tx: watch::Sender<Status>,
}

/// Creates the trigger, the publisher and the first receiver. The status starts stale, so the publisher's
/// first pass computes it.
pub(crate) fn channel() -> (StatusTrigger, StatusPublisher, watch::Receiver<Status>) {
    let dirty = Arc::new(Notify::new());
    dirty.notify_one();
    let (tx, rx) = watch::channel(Status::default());
    (StatusTrigger { dirty: dirty.clone() }, StatusPublisher { dirty, tx }, rx)
}

impl StatusPublisher {
    /// Recomputes the status whenever it is marked stale or a claim is due to turn stuck, until cancelled.
    pub(crate) async fn run(
        self,
        store: Store,
        stuck_after: Duration,
        clock: Clock,
        live: Live,
        cancel: CancellationToken,
    ) {
        let StatusPublisher { dirty, tx } = self;
        let Live { consumers: live, paused, provider, team } = live;
        let stuck_ms = stuck_after.as_millis() as i64;
        let mut next_stuck_check: Option<tokio::time::Instant> = None;
        loop {
            let stuck_due = async {
                match next_stuck_check {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = dirty.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = stuck_due => {}
            }
            let totals = match store.read(move |c| stats::totals(c, clock.now_ms() - stuck_ms)).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compute the processing status");
                    continue;
                }
            };
            let (live_consumers, paused) = (live.borrow().len() as i64, *paused.borrow());
            let queue_depth = totals.pending + totals.processing;
            let status = Status {
                is_processing: queue_depth > 0 && !paused,
                queue_depth,
                pending: totals.pending,
                processing: totals.processing,
                stuck: totals.stuck,
                failed: totals.failed,
                active_sessions: totals.active_sessions,
                sessions_with_work: totals.sessions_with_work,
                live_consumers,
                total_active_work: queue_depth + live_consumers,
                paused,
                provider: provider.borrow().clone(),
                team: Box::new(team.borrow().clone()),
            };
            // The oldest claim that is not stuck yet turns stuck at claim + threshold: look again then.
            next_stuck_check = totals.oldest_claim.map(|claimed| {
                let due_in = (claimed + stuck_ms - clock.now_ms()).max(0) as u64 + 1;
                tokio::time::Instant::now() + Duration::from_millis(due_in)
            });
            tx.send_if_modified(|current| {
                let changed = *current != status;
                *current = status;
                changed
            });
        }
    }
}
