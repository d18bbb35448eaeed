//! memtray's desktop shell: a Tauri v2 tray app over the core, which runs in this process on Tauri's tokio
//! runtime (or, when a memtray server already holds the port, is followed as a client).
//!
//! # Layout
//! - [`link`]: reaches the core (embedded or attached) and publishes its status and notices.
//! - [`tray`]: the icon (idle, spinning, attention, error) and the menu.
//! - [`notifications`]: summary and failure notifications through notify-rust, coalesced.
//! - [`inspector`]: the inspector, the server's web UI, in a process of its own started on demand.
//! - [`window`]: that process (`memtray-desktop --inspector URL`): the one inspector window.
//! - [`autostart`]: start at login through the autostart plugin.
//! - [`prefs`]: the tray's own choices.
//!
//! Shutdown (Quit, SIGTERM, SIGINT) is ordered: the tray and the notifier stop following, then the core
//! stops (its claimed messages go back to `pending`), then the process exits. The inspector process is a
//! follower: it is ended with the tray.

pub mod autostart;
pub mod inspector;
pub mod link;
pub mod notifications;
pub mod prefs;
pub mod tray;
pub mod window;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use memtray_core::config::Config;
use memtray_core::secret::Secret;
use tauri::{AppHandle, Manager, RunEvent};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::link::{Link, LinkError};
use crate::prefs::Prefs;

/// How long the tray and the notifier get to stop before the core is stopped anyway.
const FOLLOWERS_GRACE: Duration = Duration::from_secs(2);

/// What the shell's parts share: managed state, a cheap clone.
#[derive(Clone)]
pub struct Shell {
    /// The core.
    pub link: Link,
    /// The tray's choices.
    pub prefs: Prefs,
    /// Cancelled first at shutdown: the tray and the notifier stop following.
    pub cancel: CancellationToken,
    /// The tray follower, the notifier and menu actions.
    pub tracker: TaskTracker,
}

impl Shell {
    /// Runs a menu action against the core in the background, logging a failure.
    pub fn act<F, Fut>(&self, action: F)
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<(), LinkError>> + Send + 'static,
    {
        let work = action(self.link.clone());
        tauri::async_runtime::spawn(self.tracker.track_future(async move {
            if let Err(e) = work.await {
                tracing::error!(error = %e, "the action failed");
            }
        }));
    }

    /// Stops everything in order and exits the process.
    pub fn quit(&self, app: AppHandle) {
        let shell = self.clone();
        // Not tracked: this task waits for the tracker.
        tauri::async_runtime::spawn(async move {
            tracing::info!("quitting");
            shell.cancel.cancel();
            shell.tracker.close();
            if tokio::time::timeout(FOLLOWERS_GRACE, shell.tracker.wait()).await.is_err() {
                tracing::warn!("the tray or the notifier did not stop in time");
            }
            shell.link.shutdown().await;
            app.exit(0);
        });
    }
}

/// Starts the desktop app and runs it until Quit.
pub fn run() -> anyhow::Result<()> {
    init_logging();
    memtray_core::config::private_files();
    // The embedded server holds a connection per hook beside its database: the soft open-files limit goes to
    // the hard one, as for `memtray serve`.
    match memtray_core::server::raise_open_files_limit() {
        Ok((before, after)) if before != after => tracing::debug!(?before, ?after, "raised the open-files limit"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    let (config, paths) = Config::load().context("cannot read the configuration")?;
    paths.restrict_existing().context("cannot make memtray's files private")?;
    let secret = Secret::load_or_create(&paths.state_dir)?;
    let at_login = std::env::args().any(|a| a == autostart::ARG);
    let app = tauri::Builder::default()
        // First, so a second launch hands over before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(shell) = app.try_state::<Shell>() {
                tracing::info!("a second launch asked for the inspector");
                inspector::open(app, shell.link.base_url(), None);
            }
        }))
        .plugin(tauri_plugin_autostart::Builder::new().arg(autostart::ARG).build())
        .setup(move |app| {
            let shell = Shell {
                link: Link::start(config.clone(), secret.clone()),
                prefs: Prefs::load(paths.state_dir.clone(), config.notifications),
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
            };
            app.manage(shell.clone());
            app.manage(inspector::Inspector::start(&shell.cancel, &shell.tracker, secret.clone()));
            tray::create(app.handle(), &shell)?;
            let notifier =
                notifications::run(app.handle().clone(), shell.link.clone(), shell.prefs.clone(), shell.link.notices());
            let cancel = shell.cancel.clone();
            tauri::async_runtime::spawn(shell.tracker.track_future(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    () = notifier => {}
                }
            }));
            let (handle, on_signal) = (app.handle().clone(), shell.clone());
            tauri::async_runtime::spawn(shell.tracker.track_future(async move {
                tokio::select! {
                    _ = on_signal.cancel.cancelled() => {}
                    () = stop_signal() => on_signal.quit(handle),
                }
            }));
            if !at_login {
                // Once the core answers (or is known not to), so the page has something to load.
                let (handle, link, mut reach) = (app.handle().clone(), shell.link.clone(), shell.link.reach());
                let cancel = shell.cancel.clone();
                tauri::async_runtime::spawn(shell.tracker.track_future(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        known = reach.wait_for(|r| *r != link::Reach::Starting) => if known.is_ok() {
                            inspector::open(&handle, link.base_url(), None);
                        }
                    }
                }));
            }
            Ok(())
        })
        .build(context())
        .context("cannot start the desktop app")?;
    app.run(|_app, event| {
        // Closing the inspector must not end a tray app; only Quit (an explicit exit code) does.
        if let RunEvent::ExitRequested { api, code: None, .. } = event {
            api.prevent_exit();
        }
    });
    Ok(())
}

/// Logs to stderr, filtered by `MEMTRAY_LOG`; the tray and the inspector process alike.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMTRAY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The app's configuration and icons, for the tray and the inspector process alike.
fn context() -> tauri::Context {
    tauri::generate_context!("../tauri.conf.json")
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
