//! The shell's link to the core: the core running in this process (the usual case), or, when another
//! memtray already serves the port (say `memtray serve`), that server followed as a client through `/stream`.
//!
//! Either way the rest of the shell sees the same three things: a `watch` of the processing status, a
//! `watch` of how the core is reached, and a broadcast of [`Notice`]s. Actions go through the HTTP API.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use memtray::config::Config;
use memtray::events::Event;
use memtray::queue::MessageStatus;
use memtray::server::{Server, ServerError};
use memtray::status::Status;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
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

/// What the notifier cares about, from either kind of link.
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
    },
    /// A message was sent back to `pending` (a retry), so a later failure is news again.
    Retried {
        /// Session row id.
        session_id: i64,
    },
}

/// Errors of actions sent to the core.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The HTTP API answered with an error or could not be reached.
    #[error("the memtray API: {0}")]
    Http(#[from] ureq::Error),
    /// The blocking request task was lost.
    #[error("the request task stopped")]
    Task,
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
    /// Latest status, copied from the core's own watch or read off the attached server's stream. The tray
    /// holds receivers; this side lives as long as the link.
    status: watch::Sender<Status>,
    /// How the core is reached; the tray shows it.
    reach: watch::Sender<Reach>,
    /// Summaries and failures for the notifier. A broadcast: a notice missed by a lagging notifier is a
    /// notification not shown, which is harmless.
    notices: broadcast::Sender<Notice>,
    /// Cancelled by `shutdown`: the supervisor stops the embedded core or stops following.
    cancel: CancellationToken,
    /// The supervisor and the blocking API calls.
    tracker: TaskTracker,
    /// Keep-alive connections to the API for actions.
    http: ureq::Agent,
}

impl Link {
    /// Starts the core in this process, or follows the memtray that already serves the port, and keeps at it
    /// (a lost attached server is retried, and replaced by an embedded core once the port is free).
    pub fn start(config: Config) -> Link {
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(true)
            .build()
            .new_agent();
        let link = Link {
            inner: Arc::new(Inner {
                base_url: format!("http://127.0.0.1:{}", config.port),
                config,
                status: watch::Sender::new(Status::default()),
                reach: watch::Sender::new(Reach::Starting),
                notices: broadcast::Sender::new(64),
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
                http,
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

    /// `POST /api/queue/retry-stuck`.
    pub async fn retry_stuck(&self) -> Result<(), LinkError> {
        self.post("/api/queue/retry-stuck", serde_json::json!({})).await.map(drop)
    }

    /// `POST /api/processing`: consumers stop (or resume) claiming; intake keeps storing.
    pub async fn set_paused(&self, paused: bool) -> Result<(), LinkError> {
        self.post("/api/processing", serde_json::json!({ "paused": paused })).await.map(drop)
    }

    /// The project of a session, asked of the API.
    pub async fn project_of(&self, session_id: i64) -> Result<String, LinkError> {
        let session = self.get(&format!("/api/sessions/{session_id}")).await?;
        Ok(session["session"]["project"].as_str().unwrap_or("a session").to_string())
    }

    /// Stops following, or stops the embedded core (its claimed messages go back to `pending`), and waits.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!("the core did not stop within {SHUTDOWN_GRACE:?}");
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, LinkError> {
        let (http, url) = (self.inner.http.clone(), format!("{}{path}", self.inner.base_url));
        self.blocking(move || Ok(http.post(&url).send_json(body)?.body_mut().read_json::<Value>()?)).await
    }

    async fn get(&self, path: &str) -> Result<Value, LinkError> {
        let (http, url) = (self.inner.http.clone(), format!("{}{path}", self.inner.base_url));
        self.blocking(move || Ok(http.get(&url).call()?.body_mut().read_json::<Value>()?)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, LinkError> + Send + 'static,
    ) -> Result<T, LinkError> {
        let task = tauri::async_runtime::spawn_blocking(call);
        self.inner.tracker.track_future(task).await.map_err(|_| LinkError::Task)?
    }

    /// Runs until cancelled: embedded when the port is free, attached when memtray already holds it, and
    /// unavailable (retrying) otherwise.
    async fn supervise(&self) {
        let cancel = &self.inner.cancel;
        loop {
            // Not raced against the cancel: a start dropped half way would leave consumers running unstopped.
            // It takes milliseconds; a cancel that came meanwhile stops the started core at once.
            match Server::start(&self.inner.config).await {
                Ok(server) if cancel.is_cancelled() => {
                    server.shutdown().await;
                    return;
                }
                Ok(server) => {
                    self.inner.reach.send_replace(Reach::Embedded);
                    tracing::info!(addr = %server.local_addr(), "the core runs in this process");
                    self.run_embedded(&server).await;
                    server.shutdown().await;
                    return;
                }
                Err(ServerError::AlreadyRunning { port, version, pid }) => {
                    self.inner.reach.send_replace(Reach::Attached);
                    tracing::info!(port, %version, pid, "another memtray serves the port; following it");
                    match self.follow(port).await {
                        Ok(()) if cancel.is_cancelled() => return,
                        Ok(()) => tracing::warn!("the memtray server went away"),
                        Err(e) => tracing::warn!(error = %e, "lost the memtray server"),
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

    /// Copies the in-process core's status and events until cancelled.
    async fn run_embedded(&self, server: &Server) {
        let mut status = server.manager().status();
        let mut events = server.manager().events().subscribe();
        self.inner.status.send_replace(status.borrow_and_update().clone());
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.inner.status.send_replace(status.borrow_and_update().clone());
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        if let Some(notice) = notice_of_event(&event) {
                            let _ = self.inner.notices.send(notice);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(missed = n, "events lagged"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Follows another server's `/stream` until it ends, fails or the link is cancelled. HTTP/1.0, so the
    /// body is the raw event stream up to the close (no chunked framing to undo).
    async fn follow(&self, port: u16) -> std::io::Result<()> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(b"GET /stream HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        let mut in_headers = true;
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let line = tokio::select! {
                _ = self.inner.cancel.cancelled() => return Ok(()),
                line = lines.next_line() => line?,
            };
            let Some(line) = line else { return Ok(()) };
            if in_headers {
                if line.starts_with("HTTP/") && !line.contains(" 200 ") {
                    return Err(std::io::Error::other(format!("/stream answered {line}")));
                }
                in_headers = !line.is_empty();
                continue;
            }
            if line.is_empty() {
                self.dispatch(&name, &data);
                name.clear();
                data.clear();
            } else if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_string();
            } else if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
    }

    /// One server-sent event from an attached server.
    fn dispatch(&self, name: &str, data: &str) {
        if name == "processing_status" {
            match serde_json::from_str::<Status>(data) {
                Ok(status) => {
                    self.inner.status.send_replace(status);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable status from the server"),
            }
        } else if let Ok(value) = serde_json::from_str::<Value>(data)
            && let Some(notice) = notice_of_json(name, &value)
        {
            let _ = self.inner.notices.send(notice);
        }
    }
}

/// The notice an in-process core event makes, if any.
fn notice_of_event(event: &Event) -> Option<Notice> {
    match event {
        Event::NewSummary { summary } => Some(Notice::Summary {
            session_id: summary.session_id,
            project: summary.project.clone(),
            request: summary.memory.request.clone(),
            completed: summary.memory.completed.clone(),
        }),
        Event::QueueChanged { session_id, status: Some(MessageStatus::Failed), .. } => {
            Some(Notice::Failed { session_id: *session_id })
        }
        Event::QueueChanged { session_id, status: Some(MessageStatus::Pending), .. } => {
            Some(Notice::Retried { session_id: *session_id })
        }
        _ => None,
    }
}

/// The notice an event read off `/stream` makes, if any: the same mapping as [`notice_of_event`], on the
/// event's JSON form.
fn notice_of_json(name: &str, event: &Value) -> Option<Notice> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match name {
        "new_summary" => {
            let summary = &event["summary"];
            Some(Notice::Summary {
                session_id: summary["session_id"].as_i64()?,
                project: text(&summary["project"]),
                request: text(&summary["request"]),
                completed: text(&summary["completed"]),
            })
        }
        "queue_changed" => {
            let session_id = event["session_id"].as_i64()?;
            match event["status"].as_str()? {
                "failed" => Some(Notice::Failed { session_id }),
                "pending" => Some(Notice::Retried { session_id }),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON mapping must agree with the in-process one for every event the core sends.
    #[test]
    fn notices_agree_between_event_and_json() {
        let summary = memtray::memory::Summary {
            id: 7,
            session_id: 3,
            project: "ledger".into(),
            message_id: Some(9),
            prompt_number: 1,
            memory: memtray::memory::NewSummary {
                request: "Fix the totals".into(),
                completed: "Totals add up".into(),
                ..Default::default()
            },
            created_at: 1,
        };
        let events = [
            Event::NewSummary { summary: Box::new(summary) },
            Event::QueueChanged { session_id: 3, message_id: 1, status: Some(MessageStatus::Failed), error: None },
            Event::QueueChanged { session_id: 3, message_id: 1, status: Some(MessageStatus::Pending), error: None },
            Event::QueueChanged { session_id: 3, message_id: 1, status: None, error: None },
            Event::SessionCompleted { session_id: 3, project: "ledger".into() },
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(notice_of_json(event.name(), &json), notice_of_event(&event), "{json}");
        }
        let summary = notice_of_event(&Event::NewSummary {
            summary: Box::new(memtray::memory::Summary {
                id: 1,
                session_id: 2,
                project: "p".into(),
                message_id: None,
                prompt_number: 1,
                memory: Default::default(),
                created_at: 0,
            }),
        });
        assert!(matches!(summary, Some(Notice::Summary { session_id: 2, .. })));
    }
}
