//! The core: owns its components and starts and stops them as one, in a stated order. The store first, then
//! recovery, the queue actor with its consumers, the status publisher, the retention pruner and the team link
//! (its pusher and puller, when `[team]` is set); stopping
//! runs the other way: intake refuses new work, consumers hand back what they hold, the publisher, pruner
//! and team link stop, the store closes. A start that fails half way stops what it had started.
//!
//! Surfaces (the HTTP API, the desktop) get narrow handles: [`Intake`], [`Queue`], [`Queries`], the status
//! watch and the event stream. None of them reaches the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::events::{Event, Events, Updates};
use crate::intake::Intake;
use crate::memory::provider::{self, Provider, ProviderConfigError};
use crate::memory::scribe::{self, Scribe};
use crate::privacy::Privacy;
use crate::queries::Queries;
use crate::queue::Queue;
use crate::redact::Redactor;
use crate::status::{self, Status};
use crate::store::{Store, StoreError, Writer, calls, messages};
use crate::team::link;

/// How often processed messages past retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How many events the bus keeps for a slow subscriber.
const EVENT_BACKLOG: usize = 1024;

/// Errors of the core's layer: what intake, the queue and the queries answer with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The core is stopping and takes no new work.
    #[error("memtray is shutting down")]
    ShuttingDown,
}

/// A result of the core's layer.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Errors starting the core.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured provider does not exist.
    #[error(transparent)]
    Provider(#[from] ProviderConfigError),
}

/// The tunables the core's components read, and the clock they read the time from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// An idle consumer waits this long for new messages before it exits.
    pub linger: Duration,
    /// Attempts before a message is `failed`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// A provider call is abandoned (and retried) after this long.
    pub provider_timeout: Duration,
    /// `processing` longer than this is stuck.
    pub stuck_after: Duration,
    /// Processed messages older than this are pruned.
    pub retention: Duration,
    /// Tools whose events are skipped.
    pub skip_tools: HashSet<String>,
    /// Projects whose events are skipped (`exclude_projects`).
    pub exclude_projects: globset::GlobSet,
    /// The most characters of context a session start gets.
    pub context_chars: usize,
    /// Whether a prompt gets the project's related older memory as context.
    pub prompt_context: bool,
    /// Global cap on concurrent provider calls.
    pub max_concurrent_provider_calls: usize,
    /// Where "now" comes from: the system clock, or tokio's (paused) clock in tests.
    pub clock: Clock,
    /// `<private>` removal and secret redaction, applied by intake before anything is stored.
    pub privacy: Privacy,
    /// The provider's health and budget limits.
    pub provider_limits: scribe::Limits,
    /// `local` makes the memory the configured provider cannot (true unless the provider is `local`).
    pub fallback_to_local: bool,
    /// How a paused provider's probe re-reads the configuration; `None` keeps the provider as built.
    pub provider_reload: Option<scribe::Reload>,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Settings {
            linger: c.linger(),
            max_attempts: c.max_attempts.max(1),
            retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            provider_timeout: Duration::from_secs(c.provider_timeout_secs.max(1)),
            stuck_after: c.stuck_after(),
            retention: Duration::from_secs(u64::from(c.retention_days) * 86_400),
            skip_tools: c.skip_tools.iter().cloned().collect(),
            // Checked when the configuration was loaded; a config built by hand with a bad pattern excludes
            // nothing rather than everything.
            exclude_projects: crate::project::exclusions(&c.exclude_projects)
                .unwrap_or_else(|_| globset::GlobSet::empty()),
            max_concurrent_provider_calls: c.max_concurrent_provider_calls.max(1),
            context_chars: c.context_chars.min(crate::config::CONTEXT_CHARS_MAX),
            prompt_context: c.prompt_context,
            clock: Clock::system(),
            privacy: Privacy::new(redactor(c)),
            provider_limits: scribe::Limits::from(c),
            fallback_to_local: c.provider != "local",
            provider_reload: None,
        }
    }
}

/// The configured redaction. A pattern that does not compile (only a configuration built in code can hold one:
/// [`Config::load`] refuses them) is left out with a warning.
fn redactor(c: &Config) -> Redactor {
    Redactor::new(c.redact, &c.redact_patterns).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an extra redaction pattern does not compile; redacting the built-in shapes only");
        Redactor::new(c.redact, &[]).expect("the built-in patterns compile")
    })
}

/// The running core. Dropping it without [`Core::stop`] leaves its tasks running until the runtime ends.
pub struct Core {
    store: Store,
    intake: Intake,
    queue: Queue,
    queries: Queries,
    events: Events,
    /// The latest status; the publisher task holds the sender.
    status: watch::Receiver<Status>,
    /// Cancelled by `stop`: intake refuses new work, the publisher and the pruner end.
    stopping: CancellationToken,
    /// The publisher, the pruner and the team link's tasks (the queue tracks its own consumers).
    tracker: TaskTracker,
}

impl Core {
    /// Starts the core with the configured provider and the configuration's settings.
    pub async fn start(config: &Config) -> Result<Core, StartError> {
        let provider = provider::from_config(config)?;
        let settings = Settings { provider_reload: Some(|| Config::load().map(|(c, _)| c)), ..Settings::from(config) };
        Core::start_with(config, provider, settings).await
    }

    /// Opens the store, recovers what a previous process left behind, and starts the queue (a consumer for
    /// every session with pending work), the status publisher and the pruner. Ready when it returns.
    pub async fn start_with(
        config: &Config,
        provider: Arc<dyn Provider>,
        settings: Settings,
    ) -> Result<Core, StartError> {
        // On simulated time the writer runs its batches where tokio's clock can see them (see `Writer`).
        let writer = if settings.clock.is_simulated() { Writer::BlockingPool } else { Writer::Thread };
        let store = Store::open_with(config, writer).await?;
        let (max_attempts, now) = (settings.max_attempts, settings.clock.now_ms());
        let recovered = store
            .write(move |c| {
                let (requeued, failed) = messages::recover(c, max_attempts, now)?;
                Ok((requeued, failed, messages::sessions_with_pending(c)?, calls::tokens_on_day_of(c, now)?))
            })
            .await;
        let (requeued, failed, pending_sessions, spent_today) = match recovered {
            Ok(r) => r,
            Err(e) => {
                store.close().await;
                return Err(e.into());
            }
        };
        if requeued + failed > 0 {
            tracing::info!(requeued, failed, "recovered messages left processing by a previous run");
        }
        // Nothing below can fail: from here on every component is started and stopped with the core.
        let settings = Arc::new(settings);
        let stopping = CancellationToken::new();
        let tracker = TaskTracker::new();
        let events = Events::new(EVENT_BACKLOG);
        let (trigger, publisher, status) = status::channel();
        let scribe =
            Scribe::new(provider, &settings, config.data_dir.clone(), spent_today, events.clone(), trigger.clone());
        let provider_status = scribe.status();
        // The team link (its tables kept in step with the config even when it is off, so an opted-out
        // project stops queueing). A store that fails here fails later writes too; the link then stays off.
        let team =
            match link::start(&store, &config.team, settings.clock, &tracker, trigger.clone(), stopping.child_token())
                .await
            {
                Ok(team) => team,
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the team link");
                    tokio::sync::watch::channel(link::LinkState::default()).1
                }
            };
        let queue = Queue::start(store.clone(), scribe, settings.clone(), events.clone(), trigger.clone());
        tracker.spawn(publisher.run(
            store.clone(),
            settings.stuck_after,
            settings.clock,
            status::Live {
                consumers: queue.live_consumers_watch(),
                paused: queue.paused_watch(),
                provider: provider_status,
                team: team.clone(),
            },
            stopping.child_token(),
        ));
        tracker.spawn(prune(store.clone(), settings.clone(), stopping.child_token()));
        let intake =
            Intake::new(store.clone(), queue.waker(), events.clone(), trigger, settings.clone(), stopping.clone());
        let queries = Queries::new(store.clone(), settings, status.clone(), team);
        for session_id in pending_sessions {
            queue.waker().wake(session_id);
        }
        Ok(Core { store, intake, queue, queries, events, status, stopping, tracker })
    }

    /// Where events come in: persisted, then their session's consumer woken.
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Queue administration: retry, abort, pause, delete.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Read-only queries for the API and the inspector.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// The latest processing status, updated as it changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Events from now on, as published (without the status).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Where followers subscribe to everything that happens (status and events as one stream): what
    /// `/stream` sends and what the desktop follows.
    pub fn updates(&self) -> Updates {
        Updates::new(self.status.clone(), self.events.clone())
    }

    /// Stops in order: no new work, consumers cancelled and awaited (each hands its message back to
    /// `pending`), a last sweep for any that did not, then the publisher and the pruner, then the store.
    pub async fn stop(&self) {
        self.stopping.cancel();
        self.queue.shutdown().await;
        self.tracker.close();
        self.tracker.wait().await;
        self.store.close().await;
    }
}

/// Deletes processed messages older than the retention, at start and then hourly, until cancelled.
async fn prune(store: Store, settings: Arc<Settings>, stopping: CancellationToken) {
    let retention_ms = settings.retention.as_millis() as i64;
    loop {
        let before = settings.clock.now_ms() - retention_ms;
        match store.write(move |c| messages::prune(c, before)).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(pruned = n, "pruned processed messages past retention");
                store.wipe_after_delete().await;
            }
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        tokio::select! {
            _ = stopping.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
