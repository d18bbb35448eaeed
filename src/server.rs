//! Runs the whole core behind the HTTP API: binds loopback, opens the store, starts the session manager,
//! serves, and prunes old processed messages.
//!
//! Shutdown is ordered: stop accepting and end the event streams, let in-flight requests finish their
//! commits, then stop the consumers (their messages go back to `pending`) and close the store.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::claude_code;
use crate::config::Config;
use crate::intake::{self, AppState};
use crate::provider::{self, ProviderConfigError};
use crate::session::{SessionError, SessionManager, Settings};
use crate::store::{Store, StoreError, messages, now_ms};

/// How long in-flight requests get to finish at shutdown.
const REQUEST_GRACE: Duration = Duration::from_secs(10);
/// How often processed messages past retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another memtray already serves the port.
    #[error("memtray {version} (pid {pid}) is already running on 127.0.0.1:{port}; see `memtray status`")]
    AlreadyRunning {
        /// The port.
        port: u16,
        /// The other server's version.
        version: String,
        /// Its process id.
        pid: u64,
    },
    /// Something else holds the port.
    #[error("port {port} on 127.0.0.1 is in use by another program; set MEMTRAY_PORT or `port` in the config file")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// Binding failed otherwise.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured provider does not exist.
    #[error(transparent)]
    Provider(#[from] ProviderConfigError),
    /// Recovery failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A running core with its HTTP API.
pub struct Server {
    manager: SessionManager,
    local_addr: SocketAddr,
    /// Cancelled by `shutdown`: stops accepting, ends event streams, stops the pruner.
    stopping: CancellationToken,
    /// The serve loop and the pruner.
    tracker: TaskTracker,
}

impl Server {
    /// Binds `127.0.0.1:config.port` (0 picks a free port), recovers the queue and starts serving. The API
    /// is ready when this returns.
    pub async fn start(config: &Config) -> Result<Server, ServerError> {
        let listener = bind(config.port).await?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { port: config.port, source })?;
        let store = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || Store::open(&config)).await.map_err(|_| StoreError::Closed)??
        };
        let provider = provider::from_config(config)?;
        let manager = SessionManager::start(store, provider, Settings::from(config)).await?;
        // Events `memtray hook` stored while no server ran come first, before anything newer can arrive.
        let replayed = claude_code::drain_inbox(&manager).await?;
        if replayed > 0 {
            tracing::info!(replayed, "dispatched hook events stored while memtray was not running");
        }
        let stopping = CancellationToken::new();
        let tracker = TaskTracker::new();
        let state = AppState {
            manager: manager.clone(),
            stopping: stopping.clone(),
            inbox_drain: Arc::new(tokio::sync::Mutex::new(())),
        };
        let app = intake::router(state, config.max_body_bytes);
        let serve = axum::serve(listener, app).with_graceful_shutdown(stopping.clone().cancelled_owned());
        tracker.spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        tracker.spawn(prune(manager.clone(), config.retention_days, stopping.clone()));
        // Sessions that were active when memtray stopped may have used tools meanwhile: their transcripts tell.
        let reconciling = manager.clone();
        tracker.spawn(async move {
            if let Err(e) = claude_code::reconcile_active(&reconciling).await {
                tracing::warn!(error = %e, "could not reconcile active sessions at start");
            }
        });
        Ok(Server { manager, local_addr, stopping, tracker })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The core.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// Stops in order; see the module docs.
    pub async fn shutdown(self) {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(REQUEST_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("requests still running after {REQUEST_GRACE:?}; stopping anyway");
        }
        self.manager.shutdown().await;
    }
}

async fn bind(port: u16) -> Result<TcpListener, ServerError> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(match occupant(port).await {
            Some((version, pid)) => ServerError::AlreadyRunning { port, version, pid },
            None => ServerError::PortInUse { port },
        }),
        Err(source) => Err(ServerError::Bind { port, source }),
    }
}

/// Asks whoever holds the port whether it is memtray; returns its version and pid if so.
async fn occupant(port: u16) -> Option<(String, u64)> {
    let ask = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        stream.write_all(b"GET /api/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.ok()?;
        let mut answer = Vec::new();
        stream.take(16 * 1024).read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        let body: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
        (body["service"] == "memtray")
            .then(|| (body["version"].as_str().unwrap_or("?").to_string(), body["pid"].as_u64().unwrap_or(0)))
    };
    tokio::time::timeout(Duration::from_secs(1), ask).await.ok().flatten()
}

/// Deletes processed messages older than the retention, at start and then hourly.
async fn prune(manager: SessionManager, retention_days: u32, stopping: CancellationToken) {
    let retention_ms = i64::from(retention_days) * 86_400_000;
    loop {
        let before = now_ms() - retention_ms;
        match manager.store().write(move |c| messages::prune(c, before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned processed messages past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        tokio::select! {
            _ = stopping.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
