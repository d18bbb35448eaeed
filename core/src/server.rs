//! Serves a [`Core`] over the HTTP API on loopback: binds the port (telling another memtray from a foreign
//! program on it), starts the core, takes in the hook inbox (and keeps watching it), serves, and reconciles
//! the sessions that were active, or continued, while memtray was away.
//!
//! Shutdown is ordered: stop accepting and end the event streams, let in-flight requests and their detached
//! work finish, then stop the core. A start that fails after the core started stops the core before it returns.
//!
//! The accept loop guards against held connections (slowloris): a connection that has not sent a whole
//! request head within `header_read_timeout_ms` is closed (an idle keep-alive one too), and at most
//! `max_connections` are open at once (fewer when the open-files limit is low). At the cap the loop stops
//! accepting until one closes: a newcomer waits in the kernel's backlog, never longer than the header-read
//! timeout that frees every held slot, where a refusal would lose the hook's event.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
/// Open files kept for everything but connections: the database (its file, WAL and shared memory per
/// connection), transcripts, the inbox, logs.
const RESERVED_FILES: u64 = 256;
/// The fewest connections served whatever the open-files limit says.
const MIN_CONNECTIONS: usize = 16;
/// The accept queue's length (the kernel caps it at `net.core.somaxconn`, 4096 on current Linux).
const BACKLOG: u32 = 4096;
/// How long the accept loop pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
        let limits = Limits {
            header_read_timeout: config.header_read_timeout(),
            max_connections: connection_cap(config.max_connections),
        };
        tracing::debug!(?limits, "serving");
        tracker.spawn(serve(listener, app, limits, stopping.clone(), tracker.clone()));
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

/// What the accept loop allows.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    max_connections: usize,
}

/// The accept loop: one task per connection on `tracker`, each holding a permit of the connection cap; when
/// `stopping` is cancelled it stops accepting, tells every connection to finish its request and close, and
/// returns once they have.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stopping: CancellationToken,
    tracker: TaskTracker,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    // One permit per open connection; a connection's task holds its permit until the connection closes.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut at_cap = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !std::mem::replace(&mut at_cap, true) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                }
            }
        };
        let stream = tokio::select! {
            _ = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or a connection gone before it was taken: pause a
                    // little rather than spin, and go on.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if at_cap && permits.available_permits() > limits.max_connections / 2 {
            at_cap = false;
        }
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tracker.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The connection cap: the configured one, lowered to fit the open-files limit.
fn connection_cap(configured: usize) -> usize {
    let fit = open_files_limit().map_or(u64::MAX, |soft| soft.saturating_sub(RESERVED_FILES));
    configured.min(usize::try_from(fit).unwrap_or(usize::MAX)).max(MIN_CONNECTIONS)
}

/// The soft open-files limit (`None`: unlimited or unknown).
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft open-files limit to the hard limit, as Syncthing and Ollama do: the common soft limit of
/// 1024 is too few for a server that holds a connection per hook beside its database. Call it once at start,
/// before serving. Returns the soft limit before and after (equal when nothing changed).
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (before, hard) = (limit.current, limit.maximum);
    let below = |soft: Option<u64>, hard: Option<u64>| match (soft, hard) {
        (Some(soft), Some(hard)) => soft < hard,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !below(before, hard) {
        return Ok((before, before));
    }
    match setrlimit(Resource::Nofile, Rlimit { current: hard, maximum: hard }) {
        Ok(()) => Ok((before, hard)),
        // macOS refuses a soft limit above OPEN_MAX (10240) even when the hard limit is unlimited.
        Err(_) if below(before, Some(10_240)) => {
            let soft = Some(hard.map_or(10_240, |h| h.min(10_240)));
            setrlimit(Resource::Nofile, Rlimit { current: soft, maximum: hard })?;
            Ok((before, soft))
        }
        Err(e) => Err(e.into()),
    }
}

/// Raises the soft open-files limit (nothing to do where there is none).
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    Ok((None, None))
}

/// Binds loopback with a long accept queue: connections that arrive faster than they are taken (a burst, or
/// the connection cap reached) wait there rather than have their SYN dropped and retried a second later.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(BACKLOG)
}

async fn bind(port: u16, secret: &Secret) -> Result<TcpListener, ServerError> {
    match listen(port) {
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
