//! Serves a [`Core`] over the HTTP API on loopback: binds the port (telling another memtray from a foreign
//! program on it), starts the core, takes in the hook inbox (and keeps watching it), serves, and reconciles
//! the sessions that were active, or continued, while memtray was away.
//!
//! Shutdown is ordered: stop accepting and end the event streams, let in-flight requests and their detached
//! work finish, then stop the core. A start that fails after the core started stops the core before it returns.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::claude_code::{inbox, reconcile};
use crate::api::{self, AppState, Guard};
use crate::client::Client;
use crate::config::Config;
use crate::core::{Core, CoreError, StartError};
use crate::secret::Secret;

/// How long in-flight requests get to finish at shutdown.
const REQUEST_GRACE: Duration = Duration::from_secs(10);
/// How often the hook inbox is looked at while serving.
const INBOX_WATCH: Duration = Duration::from_secs(2);
/// How long the port's holder gets to say whether it is memtray.
const OCCUPANT_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Another account's memtray (one that cannot prove it knows this user's secret) holds the port.
    #[error(
        "port {port} on 127.0.0.1 is held by a memtray that is not this user's (another account's?); set \
         MEMTRAY_PORT or `port` in the config file"
    )]
    Foreign {
        /// The port.
        port: u16,
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
    /// The core did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The hook inbox could not be taken in; the started core was stopped again.
    #[error("cannot take in the hook inbox: {0}")]
    Inbox(#[source] CoreError),
}

/// A running core with its HTTP API.
pub struct Server {
    core: Core,
    local_addr: SocketAddr,
    /// Cancelled by `shutdown`: stops accepting, ends event streams, stops reconciliation.
    stopping: CancellationToken,
    /// The serve loop and the start-up reconciliation.
    tracker: TaskTracker,
}

impl Server {
    /// Binds `127.0.0.1:config.port` (0 picks a free port), starts the core and starts serving. The API
    /// is ready when this returns.
    pub async fn start(config: &Config, secret: Secret) -> Result<Server, ServerError> {
        let listener = bind(config.port, &secret).await?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { port: config.port, source })?;
        let core = Core::start(config).await?;
        // Events `memtray hook` stored while no server ran come first, before anything newer can arrive.
        match inbox::drain(core.intake()).await {
            Ok(0) => {}
            Ok(replayed) => tracing::info!(replayed, "dispatched hook events stored while memtray was not running"),
            Err(e) => {
                core.stop().await;
                return Err(ServerError::Inbox(e));
            }
        }
        let stopping = CancellationToken::new();
        let tracker = TaskTracker::new();
        let guard = Guard::new(local_addr.port(), secret, config.intake_requires_secret);
        let state = AppState::new(&core, stopping.clone(), tracker.clone(), guard);
        tracker.spawn(state.watch_inbox(INBOX_WATCH));
        let app = api::router(state, config.max_body_bytes);
        let serve = axum::serve(listener, app).with_graceful_shutdown(stopping.clone().cancelled_owned());
        tracker.spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        // Sessions active when memtray stopped, or continued while it was away: their transcripts tell.
        let (intake, queries, cancel) = (core.intake().clone(), core.queries().clone(), stopping.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                reconciled = reconcile::reconcile_at_start(&intake, &queries) => if let Err(e) = reconciled {
                    tracing::warn!(error = %e, "could not reconcile active sessions at start");
                },
            }
        });
        Ok(Server { core, local_addr, stopping, tracker })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The core behind the API.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Stops in order; see the module docs.
    pub async fn shutdown(self) {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(REQUEST_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("requests still running after {REQUEST_GRACE:?}; stopping anyway");
        }
        self.core.stop().await;
    }
}

async fn bind(port: u16, secret: &Secret) -> Result<TcpListener, ServerError> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let occupant = Client::with_timeout(port, OCCUPANT_TIMEOUT).with_secret(secret.clone());
            Err(match occupant.health().await {
                Ok(health) if health.service == "memtray" => match occupant.verify().await {
                    Ok(()) => ServerError::AlreadyRunning { port, version: health.version, pid: health.pid },
                    Err(_) => ServerError::Foreign { port },
                },
                _ => ServerError::PortInUse { port },
            })
        }
        Err(source) => Err(ServerError::Bind { port, source }),
    }
}
