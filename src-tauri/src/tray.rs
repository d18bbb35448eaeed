//! The tray icon and its menu. The icon spins while the core is processing, shows attention when messages
//! are stuck or failed, and an error when the core cannot be reached or the provider refuses its
//! configuration; the menu's status line (with the provider's trouble and why) and items follow.
//!
//! Driven by the link's status and reach watches: nothing polls, and the frame timer exists only while spinning.

use std::time::Duration;

use memtray_core::memory::scribe::Health;
use memtray_core::status::Status;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager};
use tokio::sync::watch;

use crate::link::{Link, Reach};
use crate::{Shell, autostart, inspector};

/// Time per spinner frame (ten frames a second).
const FRAME: Duration = Duration::from_millis(100);

const SPIN: [&[u8]; 10] = [
    include_bytes!("../../icons/tray-spin-00.png"),
    include_bytes!("../../icons/tray-spin-01.png"),
    include_bytes!("../../icons/tray-spin-02.png"),
    include_bytes!("../../icons/tray-spin-03.png"),
    include_bytes!("../../icons/tray-spin-04.png"),
    include_bytes!("../../icons/tray-spin-05.png"),
    include_bytes!("../../icons/tray-spin-06.png"),
    include_bytes!("../../icons/tray-spin-07.png"),
    include_bytes!("../../icons/tray-spin-08.png"),
    include_bytes!("../../icons/tray-spin-09.png"),
];
const IDLE: &[u8] = include_bytes!("../../icons/tray-idle.png");
const ATTENTION: &[u8] = include_bytes!("../../icons/tray-attention.png");
const ERROR: &[u8] = include_bytes!("../../icons/tray-error.png");

/// Which picture the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Idle,
    Spinning,
    Attention,
    Error,
}

impl Look {
    fn of(status: &Status, reach: &Reach) -> Look {
        match reach {
            Reach::Unavailable(_) => Look::Error,
            _ if status.provider.health == Health::Misconfigured => Look::Error,
            _ if status.is_processing && !status.paused => Look::Spinning,
            _ if status.stuck + status.failed > 0 => Look::Attention,
            _ => Look::Idle,
        }
    }
}

/// The status line at the top of the menu.
fn status_line(status: &Status, reach: &Reach) -> String {
    fn count(n: i64, one: &str, many: &str) -> String {
        if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
    }
    let mut line = match reach {
        Reach::Starting => return "Starting…".into(),
        Reach::Unavailable(reason) => return format!("Not running: {reason}"),
        _ if status.paused && status.queue_depth > 0 => {
            format!("Paused, {} waiting", count(status.queue_depth, "message", "messages"))
        }
        _ if status.paused => "Paused".into(),
        _ if status.is_processing => format!(
            "Processing {} in {}",
            count(status.queue_depth, "message", "messages"),
            count(status.sessions_with_work.max(1), "session", "sessions")
        ),
        _ => "Idle".into(),
    };
    if status.stuck > 0 {
        line.push_str(&format!(", {} stuck", status.stuck));
    }
    if status.failed > 0 {
        line.push_str(&format!(", {} failed", status.failed));
    }
    if let Some(trouble) = provider_trouble(status) {
        line.push_str("; ");
        line.push_str(&trouble);
    }
    let team = &status.team;
    if team.enabled {
        if let Some(since) = team.unreachable_since {
            line.push_str(&format!("; team unreachable since {}", memtray_core::recall::dates::format_utc(since)));
        } else if !team.connected {
            line.push_str("; team not connected");
        } else if team.pushing + team.behind > 0 {
            line.push_str(&format!("; team: pushing {}, behind by {}", team.pushing, team.behind));
        } else {
            line.push_str("; team connected");
        }
    }
    if *reach == Reach::Attached {
        line.push_str(" (memtray serve)");
    }
    line
}

/// Menu text shown as written: the menu library reads `&` as its mnemonic marker, so it is doubled (it
/// escapes GTK's `_` itself).
fn literal(text: &str) -> String {
    text.replace('&', "&&")
}

/// What is wrong with the provider, in a few words and its reason, when anything is.
fn provider_trouble(status: &Status) -> Option<String> {
    let p = &status.provider;
    let what = match p.health {
        Health::Ok => return None,
        Health::Misconfigured => "refuses its configuration",
        Health::CircuitOpen => "is failing; resting",
        Health::RateLimited => "is rate limited",
        Health::OverBudget => {
            return Some(format!("token ceiling reached ({}): local memory until tomorrow", p.max_tokens_per_day));
        }
    };
    let reason = p.reason.as_deref().map(|r| format!(": {}", one_line(r, 120))).unwrap_or_default();
    Some(format!("{} {what}{reason}", p.name))
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// What the changing menu items say, so they are touched only when it changes (each change is a D-Bus
/// signal to the panel).
#[derive(Debug, PartialEq, Eq)]
struct MenuState {
    line: String,
    retryable: i64,
    can_retry: bool,
    paused: bool,
    can_pause: bool,
}

impl MenuState {
    fn of(status: &Status, reach: &Reach) -> MenuState {
        let reachable = matches!(reach, Reach::Embedded | Reach::Attached);
        let retryable = status.stuck + status.failed;
        MenuState {
            line: status_line(status, reach),
            retryable,
            can_retry: reachable && retryable > 0,
            paused: status.paused,
            can_pause: reachable,
        }
    }

    fn apply(&self, items: &Items) {
        let _ = items.status.set_text(literal(&self.line));
        let _ = items.retry.set_text(format!("Retry stuck ({})", self.retryable));
        let _ = items.retry.set_enabled(self.can_retry);
        let _ = items.pause.set_checked(self.paused);
        let _ = items.pause.set_enabled(self.can_pause);
    }
}

/// The menu items that change; managed state, so menu clicks can put check boxes right.
#[derive(Clone)]
struct Items {
    status: MenuItem<tauri::Wry>,
    retry: MenuItem<tauri::Wry>,
    pause: CheckMenuItem<tauri::Wry>,
    autostart: CheckMenuItem<tauri::Wry>,
    notifications: CheckMenuItem<tauri::Wry>,
}

/// Builds the tray and starts following the link. Call once, from setup.
pub fn create(app: &AppHandle, shell: &Shell) -> tauri::Result<()> {
    let items = Items {
        status: MenuItem::with_id(app, "status", "Starting…", false, None::<&str>)?,
        retry: MenuItem::with_id(app, "retry", "Retry stuck (0)", false, None::<&str>)?,
        pause: CheckMenuItem::with_id(app, "pause", "Pause processing", true, false, None::<&str>)?,
        autostart: CheckMenuItem::with_id(
            app,
            "autostart",
            "Start at login",
            true,
            autostart::is_enabled(app),
            None::<&str>,
        )?,
        notifications: CheckMenuItem::with_id(
            app,
            "notifications",
            "Notifications",
            true,
            shell.prefs.notifications(),
            None::<&str>,
        )?,
    };
    let menu = Menu::with_items(
        app,
        &[
            &items.status,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, "inspector", "Open Inspector", true, None::<&str>)?,
            &items.retry,
            &items.pause,
            &PredefinedMenuItem::separator(app)?,
            &items.autostart,
            &items.notifications,
            &MenuItem::with_id(app, "data", "Open data folder", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?,
        ],
    )?;
    app.manage(items.clone());
    let tray = TrayIconBuilder::with_id("memtray")
        .icon(Image::from_bytes(IDLE)?)
        .tooltip("memtray")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(on_menu_event)
        .build(app)?;
    let (status, reach) = (shell.link.status(), shell.link.reach());
    let cancel = shell.cancel.clone();
    tauri::async_runtime::spawn(shell.tracker.track_future(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = follow(tray, items, status, reach) => {}
        }
    }));
    Ok(())
}

/// Keeps the icon and the menu in step with the status and the reach, until both watches close.
async fn follow(tray: TrayIcon, items: Items, mut status: watch::Receiver<Status>, mut reach: watch::Receiver<Reach>) {
    let mut shown: Option<Look> = None;
    let mut applied: Option<MenuState> = None;
    let mut frame = 0usize;
    let mut ticker: Option<tokio::time::Interval> = None;
    loop {
        let (now, how) = (status.borrow_and_update().clone(), reach.borrow_and_update().clone());
        let look = Look::of(&now, &how);
        if look == Look::Spinning {
            ticker.get_or_insert_with(|| {
                let mut t = tokio::time::interval(FRAME);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
        } else {
            ticker = None;
            if shown != Some(look) {
                let bytes = match look {
                    Look::Attention => ATTENTION,
                    Look::Error => ERROR,
                    _ => IDLE,
                };
                set_icon(&tray, bytes);
            }
        }
        shown = Some(look);
        let menu = MenuState::of(&now, &how);
        if applied.as_ref() != Some(&menu) {
            menu.apply(&items);
            applied = Some(menu);
        }
        // Wait for the next change, drawing frames meanwhile when spinning.
        loop {
            tokio::select! {
                changed = status.changed() => { if changed.is_err() { return; } break; }
                changed = reach.changed() => { if changed.is_err() { return; } break; }
                _ = async { ticker.as_mut().expect("spinning").tick().await }, if ticker.is_some() => {
                    set_icon(&tray, SPIN[frame]);
                    frame = (frame + 1) % SPIN.len();
                }
            }
        }
    }
}

fn set_icon(tray: &TrayIcon, png: &[u8]) {
    match Image::from_bytes(png) {
        Ok(image) => {
            if let Err(e) = tray.set_icon(Some(image)) {
                tracing::warn!(error = %e, "could not change the tray icon");
            }
        }
        Err(e) => tracing::error!(error = %e, "a tray icon does not decode"),
    }
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    let shell = app.state::<Shell>().inner().clone();
    match event.id().as_ref() {
        "inspector" => inspector::open(app, shell.link.base_url(), None),
        "retry" => shell.act(|link: Link| async move { link.retry_stuck().await }),
        "pause" => {
            let paused = shell.link.status().borrow().paused;
            shell.act(move |link: Link| async move { link.set_paused(!paused).await });
        }
        "autostart" => {
            let on = !autostart::is_enabled(app);
            if let Err(e) = autostart::set(app, on) {
                tracing::error!(error = %e, "could not change start at login");
            }
            refresh_checks(app, &shell);
        }
        "notifications" => {
            shell.prefs.set_notifications(!shell.prefs.notifications());
            refresh_checks(app, &shell);
        }
        "data" => open_folder(&shell.link.config().data_dir),
        "quit" => shell.quit(app.clone()),
        _ => {}
    }
}

/// Puts the check boxes to the real state (a click has toggled them on its own already).
fn refresh_checks(app: &AppHandle, shell: &Shell) {
    let items = app.state::<Items>();
    let _ = items.autostart.set_checked(autostart::is_enabled(app));
    let _ = items.notifications.set_checked(shell.prefs.notifications());
}

/// Opens a folder in the desktop's file manager.
fn open_folder(dir: &std::path::Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(dir).spawn() {
        tracing::warn!(error = %e, dir = %dir.display(), "could not open the data folder");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(f: impl FnOnce(&mut Status)) -> Status {
        let mut s = Status::default();
        f(&mut s);
        s
    }

    #[test]
    fn the_status_line_says_what_is_going_on() {
        let idle = Status::default();
        assert_eq!(status_line(&idle, &Reach::Embedded), "Idle");
        assert_eq!(status_line(&idle, &Reach::Starting), "Starting…");
        let busy = status(|s| {
            s.is_processing = true;
            s.queue_depth = 3;
            s.sessions_with_work = 2;
            s.stuck = 1;
            s.failed = 2;
        });
        assert_eq!(status_line(&busy, &Reach::Embedded), "Processing 3 messages in 2 sessions, 1 stuck, 2 failed");
        let one = status(|s| {
            s.is_processing = true;
            s.queue_depth = 1;
            s.sessions_with_work = 1;
        });
        assert_eq!(status_line(&one, &Reach::Attached), "Processing 1 message in 1 session (memtray serve)");
        let paused = status(|s| {
            s.is_processing = true;
            s.paused = true;
            s.queue_depth = 4;
        });
        assert_eq!(status_line(&paused, &Reach::Embedded), "Paused, 4 messages waiting");
        assert_eq!(
            status_line(&idle, &Reach::Unavailable("port 37777 is in use".into())),
            "Not running: port 37777 is in use"
        );
    }

    #[test]
    fn the_status_line_says_how_the_team_link_is() {
        let team = |f: fn(&mut memtray_core::team::link::LinkState)| {
            status(|s| {
                s.team.enabled = true;
                f(&mut s.team);
            })
        };
        assert_eq!(status_line(&team(|t| t.connected = true), &Reach::Embedded), "Idle; team connected");
        assert_eq!(
            status_line(
                &team(|t| {
                    t.connected = true;
                    t.pushing = 3;
                    t.behind = 7;
                }),
                &Reach::Embedded
            ),
            "Idle; team: pushing 3, behind by 7"
        );
        assert_eq!(
            status_line(&team(|t| t.unreachable_since = Some(1_764_645_600_000)), &Reach::Embedded),
            format!("Idle; team unreachable since {}", memtray_core::recall::dates::format_utc(1_764_645_600_000))
        );
        assert_eq!(status_line(&team(|_| {}), &Reach::Embedded), "Idle; team not connected");
    }

    #[test]
    fn the_icon_spins_only_while_processing_runs() {
        let busy = status(|s| s.is_processing = true);
        assert_eq!(Look::of(&busy, &Reach::Embedded), Look::Spinning);
        let paused = status(|s| {
            s.is_processing = true;
            s.paused = true;
        });
        assert_eq!(Look::of(&paused, &Reach::Embedded), Look::Idle);
        assert_eq!(Look::of(&status(|s| s.failed = 1), &Reach::Embedded), Look::Attention);
        assert_eq!(Look::of(&busy, &Reach::Unavailable("x".into())), Look::Error);
    }

    #[test]
    fn a_provider_in_trouble_shows_with_its_reason() {
        let refused = status(|s| {
            s.is_processing = true;
            s.queue_depth = 2;
            s.sessions_with_work = 1;
            s.provider.name = "anthropic".into();
            s.provider.health = Health::Misconfigured;
            s.provider.reason = Some("anthropic: 401 authentication_error: invalid x-api-key".into());
        });
        assert_eq!(Look::of(&refused, &Reach::Embedded), Look::Error, "an error, not a spinner that never stops");
        assert_eq!(
            status_line(&refused, &Reach::Embedded),
            "Processing 2 messages in 1 session; anthropic refuses its configuration: anthropic: 401 \
             authentication_error: invalid x-api-key"
        );
        let spent = status(|s| {
            s.provider.name = "anthropic".into();
            s.provider.health = Health::OverBudget;
            s.provider.max_tokens_per_day = 5000;
        });
        assert_eq!(Look::of(&spent, &Reach::Embedded), Look::Idle);
        assert_eq!(
            status_line(&spent, &Reach::Embedded),
            "Idle; token ceiling reached (5000): local memory until tomorrow"
        );
    }
}
