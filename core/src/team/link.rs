//! This machine's link to a team server: a pusher that drains the outbox in batches and a puller that
//! brings teammates' memory of the shared projects into the local store, both tasks of the core's tracker
//! under its cancellation token, and the link's state they publish as a `watch` of the latest value.
//!
//! Neither ever holds up capture: the outbox is filled by triggers in the memory's own transaction, and the
//! tasks only read it and delete acknowledged rows. While the server is away each retries with backoff.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::TeamClient;
use super::{MAX_PULL, Push, TeamError, outbox, pull};
use crate::clock::Clock;
use crate::config::TeamConfig;
use crate::status::StatusTrigger;
use crate::store::{Store, StoreError};

/// Memories per push.
const PUSH_BATCH: usize = 500;
/// The longest wait between two tries while the server is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The team link's state at one instant, for the status API, the inspector and the tray.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinkState {
    /// False when this machine has no `[team] url` and `key`: nothing else here applies.
    pub enabled: bool,
    /// The team server.
    pub url: String,
    /// The last exchange with the team server succeeded.
    pub connected: bool,
    /// The member the key belongs to, once the server said.
    pub member: Option<String>,
    /// Memories in the outbox, waiting to be pushed.
    pub pushing: i64,
    /// Teammates' memories on the server not yet pulled (as of the last pull).
    pub behind: i64,
    /// Memories pushed since start.
    pub pushed: u64,
    /// Memories pulled since start.
    pub pulled: u64,
    /// Since when (ms since the epoch) the server has not answered; `None` while it does.
    pub unreachable_since: Option<i64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// The shared projects pulled last time.
    pub projects: Vec<String>,
}

/// Starts the pusher and the puller on `tracker` when `team` is linked, and returns the link state
/// (always `enabled: false` when it is not).
pub(crate) async fn start(
    store: &Store,
    team: &TeamConfig,
    clock: Clock,
    tracker: &TaskTracker,
    trigger: StatusTrigger,
    stopping: CancellationToken,
) -> Result<watch::Receiver<LinkState>, StoreError> {
    // The patterns as configured even while unlinked: the outbox keeps what a later link will push, and
    // drops what a project taken out of `share` had queued.
    let share = team.share.clone();
    let (machine, dropped) = store
        .write(move |c| {
            let dropped = outbox::set_share(c, &share)?;
            Ok((outbox::machine_id(c)?, dropped))
        })
        .await?;
    if dropped > 0 {
        tracing::info!(dropped, "dropped queued team memory of projects no longer shared");
    }
    let (state, receiver) =
        watch::channel(LinkState { enabled: team.linked(), url: team.url.clone(), ..Default::default() });
    if !team.linked() {
        return Ok(receiver);
    }
    let link = Link {
        store: store.clone(),
        client: TeamClient::new(&team.url, &team.key),
        machine,
        every: team.sync_every(),
        clock,
        state: Arc::new(state),
        trigger,
        stopping,
    };
    tracker.spawn(link.clone().push_loop());
    tracker.spawn(link.pull_loop());
    Ok(receiver)
}

/// What both tasks share.
#[derive(Clone)]
struct Link {
    store: Store,
    client: TeamClient,
    /// This machine's id, the origin of what it pushes.
    machine: String,
    every: Duration,
    clock: Clock,
    /// The published state; both tasks modify it (through `publish`), the core's queries and the status
    /// publisher hold the receivers.
    state: Arc<watch::Sender<LinkState>>,
    /// Marks the processing status stale, so the status (and the tray, and `/stream`) carries the change.
    trigger: StatusTrigger,
    /// The core's token: cancelled at stop, which ends both loops.
    stopping: CancellationToken,
}

impl Link {
    /// Changes the state with `modify` (which says whether it changed anything) and tells the status.
    fn publish(&self, modify: impl FnOnce(&mut LinkState) -> bool) {
        if self.state.send_if_modified(modify) {
            self.trigger.changed();
        }
    }

    /// Waits `d`, or returns false when the core is stopping.
    async fn wait(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stopping.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    fn succeeded(&self) {
        self.publish(|s| {
            let changed = !s.connected || s.unreachable_since.is_some() || s.last_error.is_some();
            s.connected = true;
            s.unreachable_since = None;
            s.last_error = None;
            changed
        });
    }

    fn failed(&self, e: &TeamError) {
        let now = self.clock.now_ms();
        let away = match e {
            TeamError::Unreachable(_) => true,
            TeamError::Refused { status, .. } => *status >= 500,
            _ => false,
        };
        // A 403 is about one project: the server is there and the key works.
        let refused_project = matches!(e, TeamError::Refused { status: 403, .. });
        self.publish(|s| {
            s.connected &= refused_project;
            if away {
                s.unreachable_since.get_or_insert(now);
            }
            s.last_error = Some(e.to_string());
            true
        });
    }

    async fn outbox_len(&self) {
        if let Ok(n) = self.store.read(outbox::len).await {
            self.publish(|s| std::mem::replace(&mut s.pushing, n) != n);
        }
    }

    /// Pushes a batch of each project in the outbox: `Ok(true)` when a batch was full (more waits). A project
    /// the server refuses (403: the member is not in it, or may not push) stays queued and the others go on;
    /// the refusal is returned once every project had its turn.
    async fn push_once(&self) -> Result<bool, TeamError> {
        let mut full = false;
        let mut refused = None;
        for project in self.store.read(outbox::projects).await? {
            let batch = self.store.read(move |c| outbox::next_batch(c, &project, PUSH_BATCH)).await?;
            let (ids, memories): (Vec<i64>, Vec<_>) = batch.into_iter().unzip();
            let n = ids.len();
            match self.client.push(&Push { machine: self.machine.clone(), memories }).await {
                Ok(_) => {}
                Err(e @ TeamError::Refused { status: 403, .. }) => {
                    refused = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            self.store.write(move |c| outbox::acknowledge(c, &ids)).await?;
            self.publish(|s| {
                s.pushed += n as u64;
                true
            });
            self.succeeded();
            full |= n == PUSH_BATCH;
        }
        refused.map_or(Ok(full), Err)
    }

    async fn push_loop(self) {
        let mut backoff = self.every;
        loop {
            // Stopping does not wait for a slow team server: a push cut short is sent again next time (the
            // server keeps one row per origin), and a store write already sent commits whole or not at all.
            let outcome = tokio::select! {
                _ = self.stopping.cancelled() => return,
                outcome = self.push_once() => outcome,
            };
            self.outbox_len().await;
            let pause = match outcome {
                Ok(full) => {
                    backoff = self.every;
                    if full { Duration::ZERO } else { self.every }
                }
                Err(e @ TeamError::Refused { status: 403, .. }) => {
                    // The other projects went; the refused one is tried again at the usual pace.
                    self.failed(&e);
                    backoff = self.every;
                    self.every
                }
                Err(e) => {
                    tracing::debug!(error = %e, "team push failed; retrying");
                    self.failed(&e);
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            if !self.wait(pause).await {
                return;
            }
        }
    }

    /// Pulls every shared project the member is in until nothing is behind; returns the projects.
    async fn pull_round(&self) -> Result<(), TeamError> {
        let me = self.client.whoami().await?;
        let mut projects = Vec::new();
        for project in me.projects {
            let name = project.clone();
            if self.store.read(move |c| outbox::is_shared(c, &name)).await? {
                projects.push(project);
            }
        }
        self.publish(|s| {
            let changed = s.member.as_deref() != Some(me.member.as_str()) || s.projects != projects;
            s.member = Some(me.member.clone());
            s.projects = projects.clone();
            changed
        });
        let mut behind_total = 0;
        for project in projects {
            loop {
                if self.stopping.is_cancelled() {
                    return Ok(());
                }
                let name = project.clone();
                let after = self.store.read(move |c| pull::cursor(c, &name)).await?;
                let page = self.client.pull(&project, after, MAX_PULL, &self.machine).await?;
                let (name, next, behind) = (project.clone(), page.next, page.behind);
                let memories = page.memories;
                let added = if memories.is_empty() && next == after {
                    0
                } else {
                    self.store.write(move |c| pull::apply(c, &name, &memories, next)).await?
                };
                self.publish(|s| {
                    let before = (s.pulled, s.behind);
                    s.pulled += added as u64;
                    s.behind = behind_total + behind;
                    (s.pulled, s.behind) != before
                });
                if behind == 0 || next == after {
                    behind_total += behind;
                    break;
                }
            }
        }
        self.publish(|s| std::mem::replace(&mut s.behind, behind_total) != behind_total);
        Ok(())
    }

    async fn pull_loop(self) {
        let mut backoff = self.every;
        loop {
            let round = tokio::select! {
                _ = self.stopping.cancelled() => return,
                round = self.pull_round() => round,
            };
            let pause = match round {
                Ok(()) => {
                    self.succeeded();
                    backoff = self.every;
                    self.every
                }
                Err(e) => {
                    tracing::debug!(error = %e, "team pull failed; retrying");
                    self.failed(&e);
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            if !self.wait(pause).await {
                return;
            }
        }
    }
}
