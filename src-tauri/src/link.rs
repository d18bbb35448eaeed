//! The shell's link to the core: the core running in this process (the usual case), or, when another
//! memtray already serves the port (say `memtray serve`), that server followed through the core's client.
//!
//! Either way the rest of the shell sees the same things: a `watch` of the processing status, a `watch` of
//! how the core is reached, a broadcast of [`Notice`]s made from the core's events by one mapping, and the
//! same actions: direct calls on the embedded core's queue, or requests to the other server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use memtray_core::CoreError;
use memtray_core::client::{Client, ClientError};
use memtray_core::config::Config;
use memtray_core::events::Event;
use memtray_core::queue::Queue;
use memtray_core::secret::Secret;
use memtray_core::server::{Server, ServerError};
use memtray_core::status::Status;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long to wait before trying again after the core could not be reached.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// How long `shutdown` waits for the core to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the shell reaches the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Not yet known.
    Starting,
    /// The core runs in this process.
    Embedded,
    /// Another memtray serves the port; this app follows it.
    Attached,
    /// Neither: the reason, for the tray.
    Unavailable(String),
}

/// What the notifier cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A summary was stored.
    Summary {
        /// Session row id.
        session_id: i64,
        /// Its project.
        project: String,
        /// What was asked.
        request: String,
        /// What was done.
        completed: String,
    },
    /// A message ended `failed`.
    Failed {
        /// Session row id.
        session_id: i64,
        /// Its project.
        project: String,
    },
    /// A message was sent back to `pending` (a retry), so a later failure is news again.
    Retried {
        /// Session row id.
        session_id: i64,
    },
    /// The day's token ceiling is reached (the core says so once a day).
    TokenCeiling {
        /// The configured provider.
        provider: String,
        /// The ceiling.
        ceiling: u64,
    },
}

impl Notice {
    /// The notice an event makes, if any: the one mapping for both kinds of link.
    pub fn of(event: &Event) -> Option<Notice> {
        match event {
            Event::NewSummary { summary } => Some(Notice::Summary {
                session_id: summary.session_id,
                project: summary.project.clone(),
                request: summary.memory.request.clone(),
                completed: summary.memory.completed.clone(),
            }),
            Event::MessageFailed { session_id, project, .. } => {
                Some(Notice::Failed { session_id: *session_id, project: project.clone() })
            }
            Event::MessageRetried { session_id, .. } => Some(Notice::Retried { session_id: *session_id }),
            Event::TokenCeilingReached { provider, ceiling, .. } => {
                Some(Notice::TokenCeiling { provider: provider.clone(), ceiling: *ceiling })
            }
            _ => None,
        }
    }
}

/// Errors of actions sent to the core.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The embedded core refused or failed.
    #[error("the core: {0}")]
    Core(#[from] CoreError),
    /// The other memtray server refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Neither is there right now.
    #[error("memtray is not running")]
    NotConnected,
}

/// Where actions go: the embedded core's queue, or the other server.
#[derive(Clone)]
enum Backend {
    Embedded(Queue),
    Remote(Client),
}

/// A cheap handle; clone freely.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    /// `http://127.0.0.1:<port>`, the API and the inspector.
    base_url: String,
    /// The configuration the embedded core runs with.
    config: Config,
    /// This user's secret: the embedded server's, and what another server must prove it knows.
    secret: Secret,
    /// Latest status, read off the core's updates. The tray holds receivers; this side lives as long as
    /// the link.
    status: watch::Sender<Status>,
    /// How the core is reached; the tray shows it.
    reach: watch::Sender<Reach>,
    /// Summaries and failures for the notifier. A broadcast: a notice missed by a lagging notifier is a
    /// notification not shown, which is harmless.
    notices: broadcast::Sender<Notice>,
    /// Where actions go now; set by the supervisor. A std mutex: held to clone or replace, never across an
    /// `.await`.
    backend: Mutex<Option<Backend>>,
    /// Cancelled by `shutdown`: the supervisor stops the embedded core or stops following.
    cancel: CancellationToken,
    /// The supervisor.
    tracker: TaskTracker,
}

impl Link {
    /// Starts the core in this process, or follows the memtray that already serves the port, and keeps at it
    /// (a lost attached server is retried, and replaced by an embedded core once the port is free).
    pub fn start(config: Config, secret: Secret) -> Link {
        let link = Link {
            inner: Arc::new(Inner {
                base_url: format!("http://127.0.0.1:{}", config.port),
                config,
                secret,
                status: watch::Sender::new(Status::default()),
                reach: watch::Sender::new(Reach::Starting),
                notices: broadcast::Sender::new(64),
                backend: Mutex::new(None),
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        };
        let supervisor = link.clone();
        tauri::async_runtime::spawn(link.inner.tracker.track_future(async move { supervisor.supervise().await }));
        link
    }

    /// Where the API and the inspector are served.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Follows the processing status.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Follows how the core is reached.
    pub fn reach(&self) -> watch::Receiver<Reach> {
        self.inner.reach.subscribe()
    }

    /// Notices from now on.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// Retries every stuck and failed message.
    pub async fn retry_stuck(&self) -> Result<(), LinkError> {
        match self.backend()? {
            Backend::Embedded(queue) => queue.retry_stuck_and_failed().await.map(drop).map_err(Into::into),
            Backend::Remote(client) => client.retry_stuck().await.map_err(Into::into),
        }
    }

    /// Pauses or resumes processing; intake keeps storing.
    pub async fn set_paused(&self, paused: bool) -> Result<(), LinkError> {
        match self.backend()? {
            Backend::Embedded(queue) => {
                queue.set_paused(paused);
                Ok(())
            }
            Backend::Remote(client) => client.set_paused(paused).await.map_err(Into::into),
        }
    }

    /// Stops following, or stops the embedded core (its claimed messages go back to `pending`), and waits.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!("the core did not stop within {SHUTDOWN_GRACE:?}");
        }
    }

    fn backend(&self) -> Result<Backend, LinkError> {
        self.inner.backend.lock().expect("backend poisoned").clone().ok_or(LinkError::NotConnected)
    }

    fn set_backend(&self, backend: Option<Backend>) {
        *self.inner.backend.lock().expect("backend poisoned") = backend;
    }

    /// Runs until cancelled: embedded when the port is free, attached when memtray already holds it, and
    /// unavailable (retrying) otherwise.
    async fn supervise(&self) {
        let cancel = &self.inner.cancel;
        loop {
            // Not raced against the cancel: a start dropped half way would leave consumers running unstopped.
            // It takes milliseconds; a cancel that came meanwhile stops the started core at once.
            match Server::start(&self.inner.config, self.inner.secret.clone()).await {
                Ok(server) if cancel.is_cancelled() => {
                    server.shutdown().await;
                    return;
                }
                Ok(server) => {
                    tracing::info!(addr = %server.local_addr(), "the core runs in this process");
                    self.set_backend(Some(Backend::Embedded(server.core().queue().clone())));
                    self.inner.reach.send_replace(Reach::Embedded);
                    self.follow(server.core().updates().stream().map(Ok::<_, ClientError>)).await;
                    self.set_backend(None);
                    server.shutdown().await;
                    return;
                }
                Err(ServerError::AlreadyRunning { port, version, pid }) => {
                    tracing::info!(port, %version, pid, "another memtray serves the port; following it");
                    let client = Client::new(port).with_secret(self.inner.secret.clone());
                    let followed = match client.verify().await {
                        Ok(()) => client.updates().await,
                        Err(e) => Err(e),
                    };
                    match followed {
                        Ok(updates) => {
                            self.set_backend(Some(Backend::Remote(client)));
                            self.inner.reach.send_replace(Reach::Attached);
                            self.follow(updates).await;
                            self.set_backend(None);
                            if cancel.is_cancelled() {
                                return;
                            }
                            tracing::warn!("the memtray server went away");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot follow the memtray server"),
                    }
                    self.inner
                        .reach
                        .send_replace(Reach::Unavailable(format!("the memtray server on port {port} went away")));
                }
                Err(e) => {
                    let reason = e.to_string();
                    // Said once per reason, not at every retry.
                    if *self.inner.reach.borrow() != Reach::Unavailable(reason.clone()) {
                        tracing::error!(error = %reason, "the core cannot start; retrying every {RECONNECT_AFTER:?}");
                    }
                    self.inner.reach.send_replace(Reach::Unavailable(reason));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
    }

    /// Copies the status and the notices off a stream of the core's updates until it ends, breaks or the
    /// link is cancelled.
    async fn follow(&self, updates: impl Stream<Item = Result<Event, ClientError>>) {
        let mut updates = std::pin::pin!(updates);
        loop {
            let next = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                next = updates.next() => next,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lost the core's updates");
                    return;
                }
                Some(Ok(Event::ProcessingStatus(status))) => {
                    self.inner.status.send_replace(status);
                }
                Some(Ok(event)) => {
                    if let Some(notice) = Notice::of(&event) {
                        let _ = self.inner.notices.send(notice);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtray_core::memory::{NewSummary, Summary};

    #[test]
    fn only_summaries_failures_and_retries_make_notices() {
        let summary = Summary {
            id: 7,
            session_id: 3,
            project: "ledger".into(),
            message_id: Some(9),
            prompt_number: 1,
            memory: NewSummary {
                request: "Fix the totals".into(),
                completed: "Totals add up".into(),
                ..Default::default()
            },
            made_by: Default::default(),
            created_at: 1,
        };
        assert_eq!(
            Notice::of(&Event::NewSummary { summary: Box::new(summary) }),
            Some(Notice::Summary {
                session_id: 3,
                project: "ledger".into(),
                request: "Fix the totals".into(),
                completed: "Totals add up".into(),
            })
        );
        let failed = Event::MessageFailed { session_id: 3, message_id: 1, project: "ledger".into(), error: "x".into() };
        assert_eq!(Notice::of(&failed), Some(Notice::Failed { session_id: 3, project: "ledger".into() }));
        let retried = Event::MessageRetried { session_id: 3, message_id: 1, project: "ledger".into() };
        assert_eq!(Notice::of(&retried), Some(Notice::Retried { session_id: 3 }));
        // A Stop queues a summarize: that is not a retry, so failures already told stay told.
        let stop = Event::SummaryQueued { session_id: 3, message_id: 2, project: "ledger".into() };
        assert_eq!(Notice::of(&stop), None);
        assert_eq!(Notice::of(&Event::SessionCompleted { session_id: 3, project: "ledger".into() }), None);
    }

    /// The same events read back off the wire make the same notices: the attached link and the embedded
    /// one cannot disagree.
    #[test]
    fn notices_survive_the_wire() {
        let events = [
            Event::MessageFailed { session_id: 3, message_id: 1, project: "ledger".into(), error: "x".into() },
            Event::MessageRetried { session_id: 3, message_id: 1, project: "ledger".into() },
            Event::SummaryQueued { session_id: 3, message_id: 2, project: "ledger".into() },
        ];
        for event in events {
            let wire: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
            assert_eq!(Notice::of(&wire), Notice::of(&event));
        }
    }
}
