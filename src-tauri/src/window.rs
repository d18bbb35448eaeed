//! The inspector process (`memtray-desktop --inspector URL`): a Tauri app with the one inspector window and
//! nothing else (no tray, no core, no single-instance). It exits when its window closes or its stdin does.
//!
//! It reads [`Command`]s on stdin and answers [`Reply`]s on stdout; [`inspector`](crate::inspector) is the other end.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindow, WebviewWindowBuilder, WindowEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::inspector::{Command, Reply};

const LABEL: &str = "inspector";

/// Runs the inspector window at `address` until it closes.
pub fn run(address: &str) -> anyhow::Result<()> {
    crate::init_logging();
    let mut url = address.parse::<tauri::Url>().with_context(|| format!("not an inspector address: {address}"))?;
    // The first load signs the page in: the server turns `?token=` into its cookie and sends it on to `/`,
    // keeping the fragment. Later navigations carry the cookie.
    if let Ok(token) = std::env::var(crate::inspector::TOKEN_ENV) {
        url.query_pairs_mut().append_pair("token", &token);
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (stop, tasks) = (cancel.clone(), tracker.clone());
    let app = tauri::Builder::default()
        .setup(move |app| {
            let window = WebviewWindowBuilder::new(app, LABEL, WebviewUrl::External(url))
                .title("memtray")
                .inner_size(1100.0, 760.0)
                .min_inner_size(560.0, 400.0)
                .build()?;
            // Set by the window's close, read before each reply: a closing window takes no more commands.
            let closing = Arc::new(AtomicBool::new(false));
            let on_close = closing.clone();
            window.on_window_event(move |event| {
                if matches!(event, WindowEvent::CloseRequested { .. }) && !on_close.swap(true, Ordering::SeqCst) {
                    reply(Reply::Closing);
                }
            });
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(tasks.track_future(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    () = follow_stdin(&handle, &closing) => handle.exit(0),
                }
            }));
            Ok(())
        })
        .build(crate::context())
        .context("cannot start the inspector window")?;
    app.run(move |_app, event| {
        if let RunEvent::Exit = event {
            cancel.cancel();
            tracker.close();
        }
    });
    Ok(())
}

/// Reads commands until stdin ends (the tray closed it, or died).
async fn follow_stdin(app: &AppHandle, closing: &Arc<AtomicBool>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the tray's commands");
                return;
            }
        };
        let Some(command) = Command::parse(&line) else {
            tracing::warn!(%line, "not a command");
            continue;
        };
        // On the main thread, where the window's close is handled: a command is done before the close or not at
        // all, never answered after the tray was told the window is closing.
        let (handle, closing) = (app.clone(), closing.clone());
        if let Err(e) = app.run_on_main_thread(move || carry_out(&handle, &closing, command)) {
            tracing::warn!(error = %e, "the window's event loop is gone");
            return;
        }
    }
}

fn carry_out(app: &AppHandle, closing: &AtomicBool, command: Command) {
    let Some(window) = app.get_webview_window(LABEL) else { return };
    if closing.load(Ordering::SeqCst) {
        return;
    }
    if let Command::Navigate(address) = command {
        tracing::info!(%address, "the inspector goes to");
        match address.parse::<tauri::Url>() {
            Ok(url) => {
                if let Err(e) = window.navigate(url) {
                    tracing::warn!(error = %e, "could not show the session");
                }
            }
            Err(e) => tracing::warn!(error = %e, %address, "not an inspector address"),
        }
    }
    raise(&window);
    reply(Reply::Done);
}

fn raise(window: &WebviewWindow) {
    let _ = window.unminimize();
    let _ = window.show();
    let _ = window.set_focus();
}

/// One line to the tray; a tray that stopped reading is no reason to stop.
fn reply(reply: Reply) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", reply.line());
    let _ = out.flush();
}
