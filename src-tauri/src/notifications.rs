//! Desktop notifications: "Summary ready — <project>" when a summary is stored (a burst becomes one
//! notification saying how many), "N messages failed in <project>" once per session until a retry, and the
//! day's token ceiling when the core reports it (once a day).
//! Clicking one opens the inspector at its session.
//!
//! Shown through notify-rust: over D-Bus on Linux and the BSDs, the system's centre elsewhere. With no service the
//! app logs once and runs on.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use notify_rust::Notification;
use tauri::AppHandle;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::inspector;
use crate::link::{Link, Notice};
use crate::prefs::Prefs;

/// A burst ends after this long without another notice...
const QUIET: Duration = Duration::from_secs(2);
/// ...or this long after it began, whichever comes first.
const LONGEST_WAIT: Duration = Duration::from_secs(6);
/// How many shown notifications still wait for a click, at most; past this the oldest is given up. On D-Bus each
/// one holds the connection it was sent on (some servers send the click only there).
const WATCHED: usize = 16;

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The title.
    pub title: String,
    /// One or two lines.
    pub body: String,
    /// The session a click opens; `None` opens the inspector's overview.
    pub session_id: Option<i64>,
}

/// Notices gathered during one burst.
#[derive(Default)]
struct Burst {
    /// (session, project, request, completed), in arrival order.
    summaries: Vec<(i64, String, String, String)>,
    /// Failures per session: its project and how many.
    failures: BTreeMap<i64, (String, u32)>,
    /// The token ceiling reached: provider and ceiling.
    ceiling: Option<(String, u64)>,
    /// When the first and the latest notice came.
    first: Option<Instant>,
    latest: Option<Instant>,
}

impl Burst {
    fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Summary { session_id, project, request, completed } => {
                self.summaries.push((session_id, project, request, completed));
            }
            Notice::Failed { session_id, project } => self.failures.entry(session_id).or_insert((project, 0)).1 += 1,
            Notice::Retried { .. } => return,
            Notice::TokenCeiling { provider, ceiling } => self.ceiling = Some((provider, ceiling)),
        }
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.latest = Some(now);
    }

    /// When the burst is over, if one is under way.
    fn due(&self) -> Option<Instant> {
        Some((self.latest? + QUIET).min(self.first? + LONGEST_WAIT))
    }
}

/// The one notification for a burst of summaries.
pub fn summary_note(summaries: &[(i64, String, String, String)]) -> Option<Note> {
    let (first_session, project, request, completed) = summaries.first()?;
    if summaries.len() == 1 {
        let body = [one_line(request, 120), one_line(completed, 120)]
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        return Some(Note { title: format!("Summary ready — {project}"), body, session_id: Some(*first_session) });
    }
    let mut projects: Vec<(&str, usize)> = Vec::new();
    for (_, project, _, _) in summaries {
        match projects.iter_mut().find(|(p, _)| p == project) {
            Some((_, n)) => *n += 1,
            None => projects.push((project, 1)),
        }
    }
    let body = projects
        .iter()
        .map(|(p, n)| if *n == 1 { p.to_string() } else { format!("{p} ({n})") })
        .collect::<Vec<_>>()
        .join(", ");
    let one_session = summaries.iter().all(|(s, ..)| s == first_session);
    Some(Note {
        title: format!("{} summaries ready", summaries.len()),
        body: one_line(&body, 160),
        session_id: one_session.then_some(*first_session),
    })
}

/// The notification for the day's token ceiling.
pub fn ceiling_note(provider: &str, ceiling: u64) -> Note {
    Note {
        title: "Daily token ceiling reached".into(),
        body: format!("{provider} has used its {ceiling} tokens for today; local memory until tomorrow (UTC)."),
        session_id: None,
    }
}

/// The notification for a session's failed messages.
pub fn failure_note(session_id: i64, project: &str, count: u32) -> Note {
    let what = if count == 1 { "1 message".to_string() } else { format!("{count} messages") };
    Note {
        title: format!("{what} failed in {project}"),
        body: "Open the inspector to retry or abort.".into(),
        session_id: Some(session_id),
    }
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let cut: String = flat.chars().take(max_chars - 1).collect();
    format!("{}…", cut.trim_end())
}

/// Why a notification could not be shown.
#[derive(Debug, thiserror::Error)]
enum ShowError {
    /// No bus, no service, or the service refused it.
    #[error("the notification service: {0}")]
    Service(#[from] notify_rust::error::Error),
    /// The thread that shows it (macOS, Windows) stopped before saying.
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    #[error("the notification thread stopped")]
    Thread,
}

/// Resolves once the user acts on a shown notification or it goes away: whether it was clicked.
type Click = BoxFuture<'static, bool>;

/// Linux and the BSDs: sent over D-Bus on this runtime; the click is the `ActionInvoked` signal, awaited on the
/// connection the notification was sent on. No thread waits.
#[cfg(all(unix, not(target_os = "macos")))]
mod platform {
    use std::panic::AssertUnwindSafe;

    use futures_util::FutureExt;
    use notify_rust::{Hint, Notification, NotificationResponse};

    use super::{Click, ShowError};

    pub fn desktop_entry(notification: &mut Notification) {
        notification.hint(Hint::DesktopEntry("memtray".into()));
    }

    pub async fn show(notification: Notification) -> Result<Click, ShowError> {
        let handle = notification.show_async().await?;
        let wait = async move {
            let mut clicked = false;
            handle
                .wait_for_action_async(|response: &NotificationResponse| {
                    clicked = matches!(response, NotificationResponse::Default | NotificationResponse::Action(_));
                })
                .await;
            clicked
        };
        // notify-rust panics if the bus refuses the signal subscription; that loses this click, not the notifier.
        Ok(AssertUnwindSafe(wait).catch_unwind().map(|clicked| clicked.unwrap_or(false)).boxed())
    }
}

/// macOS and Windows: notify-rust's calls block until the user acts, so each runs on a blocking thread. At most
/// [`BLOCKED`](platform::BLOCKED) threads wait for a click at once; past that a notification is shown without one.
#[cfg(not(all(unix, not(target_os = "macos"))))]
mod platform {
    use std::sync::{Arc, LazyLock};

    use futures_util::FutureExt;
    use notify_rust::{Notification, NotificationResponse};
    use tokio::sync::{Semaphore, oneshot};

    use super::{Click, ShowError};

    /// How many threads may wait for a click.
    pub const BLOCKED: usize = 4;

    /// One permit per thread allowed to wait for a click; a thread gives its permit back when it ends.
    static WAITERS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(BLOCKED)));

    pub fn desktop_entry(_notification: &mut Notification) {}

    pub async fn show(notification: Notification) -> Result<Click, ShowError> {
        let permit = WAITERS.clone().try_acquire_owned().ok();
        let (shown_tx, shown_rx) = oneshot::channel();
        let (click_tx, click_rx) = oneshot::channel();
        tauri::async_runtime::spawn_blocking(move || {
            let handle = notification.show();
            let (handle, shown) = match handle {
                Ok(handle) => (Some(handle), Ok(())),
                Err(e) => (None, Err(e)),
            };
            let _ = shown_tx.send(shown);
            // Without a permit the handle is dropped: the notification stays, nothing waits for it.
            let (Some(handle), Some(_permit)) = (handle, permit) else { return };
            let mut clicked = false;
            let _ = handle.wait_for_response(|response: &NotificationResponse| {
                clicked = matches!(response, NotificationResponse::Default | NotificationResponse::Action(_));
            });
            let _ = click_tx.send(clicked);
        });
        shown_rx.await.map_err(|_| ShowError::Thread)??;
        Ok(click_rx.map(|clicked| clicked.unwrap_or(false)).boxed())
    }
}

/// The notifications shown and not yet acted on: each one's click, and what it opens.
struct Shown {
    /// The clicks being awaited; polled by [`run`]'s loop, so no task holds them and they end with it.
    clicks: FuturesUnordered<BoxFuture<'static, Option<Option<i64>>>>,
    /// One token per awaited click, oldest first; cancelling one gives that click up (it resolves to `None`).
    tokens: VecDeque<CancellationToken>,
    /// Set once a failure was logged, so a missing service is reported once (until a notification is shown).
    told: bool,
}

impl Shown {
    fn new() -> Shown {
        Shown { clicks: FuturesUnordered::new(), tokens: VecDeque::new(), told: false }
    }

    /// Shows a notification and starts awaiting its click.
    async fn show(&mut self, note: &Note) {
        let mut notification = Notification::new();
        notification.appname("memtray").summary(&note.title).body(&note.body).action("default", "Open inspector");
        platform::desktop_entry(&mut notification);
        let click = match platform::show(notification).await {
            Ok(click) => {
                self.told = false;
                click
            }
            Err(e) => {
                if !std::mem::replace(&mut self.told, true) {
                    tracing::warn!(error = %e, "no desktop notification service; notifications are not shown");
                }
                return;
            }
        };
        self.watch(click, note.session_id);
    }

    /// Awaits a shown notification's click, giving up the oldest past [`WATCHED`].
    fn watch(&mut self, click: Click, opens: Option<i64>) {
        // Tokens of clicks already resolved linger here harmlessly, so at most WATCHED clicks are awaited.
        if self.tokens.len() == WATCHED
            && let Some(oldest) = self.tokens.pop_front()
        {
            oldest.cancel();
        }
        let token = CancellationToken::new();
        self.tokens.push_back(token.clone());
        self.clicks.push(Box::pin(async move {
            tokio::select! {
                // A click given up stays given up, even if the user clicked it meanwhile.
                biased;
                _ = token.cancelled() => None,
                clicked = click => clicked.then_some(opens),
            }
        }));
    }
}

/// Runs until the notices end: gathers bursts, shows them, opens the inspector when one is clicked.
pub async fn run(app: AppHandle, link: Link, prefs: Prefs, mut notices: broadcast::Receiver<Notice>) {
    let mut shown = Shown::new();
    // Sessions already told about their failures; a retry takes a session off.
    let mut told_failed: HashSet<i64> = HashSet::new();
    let mut burst = Burst::default();
    loop {
        let due = burst.due();
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice::Retried { session_id }) => { told_failed.remove(&session_id); }
                Ok(notice) => if prefs.notifications() { burst.add(notice) },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = async { tokio::time::sleep_until(due.expect("a burst")).await }, if due.is_some() => {
                let done = std::mem::take(&mut burst);
                let mut notes: Vec<Note> = summary_note(&done.summaries).into_iter().collect();
                notes.extend(done.ceiling.map(|(provider, ceiling)| ceiling_note(&provider, ceiling)));
                for (session_id, (project, count)) in done.failures {
                    if told_failed.insert(session_id) {
                        notes.push(failure_note(session_id, &project, count));
                    }
                }
                for note in notes {
                    if !prefs.notifications() {
                        break;
                    }
                    tracing::info!(title = %note.title, "notification");
                    shown.show(&note).await;
                }
            }
            Some(click) = shown.clicks.next(), if !shown.clicks.is_empty() => {
                if let Some(session_id) = click {
                    inspector::open(&app, link.base_url(), session_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(session: i64, project: &str) -> (i64, String, String, String) {
        (session, project.into(), "Fix the totals".into(), "Totals add up\nand tests pass".into())
    }

    #[test]
    fn one_summary_names_its_project_and_says_what_was_done() {
        let note = summary_note(&[summary(4, "ledger")]).unwrap();
        assert_eq!(note.title, "Summary ready — ledger");
        assert_eq!(note.body, "Fix the totals\nTotals add up and tests pass");
        assert_eq!(note.session_id, Some(4));
        assert_eq!(summary_note(&[]), None);
    }

    #[test]
    fn a_burst_says_how_many() {
        let note = summary_note(&[summary(1, "ledger"), summary(2, "api"), summary(3, "ledger")]).unwrap();
        assert_eq!(note.title, "3 summaries ready");
        assert_eq!(note.body, "ledger (2), api");
        assert_eq!(note.session_id, None);
        let same = summary_note(&[summary(5, "ledger"), summary(5, "ledger")]).unwrap();
        assert_eq!(same.session_id, Some(5));
    }

    #[test]
    fn failures_count_messages() {
        assert_eq!(failure_note(1, "ledger", 2).title, "2 messages failed in ledger");
        assert_eq!(failure_note(1, "ledger", 1).title, "1 message failed in ledger");
    }

    #[test]
    fn long_lines_are_cut() {
        let cut = one_line(&"word ".repeat(100), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
    }

    #[tokio::test]
    async fn a_click_opens_its_session_and_only_the_newest_clicks_are_awaited() {
        use futures_util::FutureExt;
        let mut shown = Shown::new();
        let (clicked, click) = tokio::sync::oneshot::channel::<bool>();
        shown.watch(click.map(|c| c.unwrap_or(false)).boxed(), Some(7));
        for _ in 0..WATCHED {
            shown.watch(std::future::pending().boxed(), Some(1));
        }
        // The first one was given up to make room: it resolves, opening nothing, even when clicked later.
        let _ = clicked.send(true);
        assert_eq!(shown.clicks.next().await, Some(None));
        assert_eq!(shown.clicks.len(), WATCHED);
        assert_eq!(shown.clicks.next().now_or_never(), None, "the rest still wait");
        let (clicked, click) = tokio::sync::oneshot::channel::<bool>();
        shown.watch(click.map(|c| c.unwrap_or(false)).boxed(), Some(9));
        assert_eq!(shown.clicks.next().await, Some(None), "the oldest waiting one is given up");
        let _ = clicked.send(true);
        assert_eq!(shown.clicks.next().await, Some(Some(Some(9))));
        assert_eq!(shown.clicks.len(), WATCHED - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_due_after_a_quiet_spell_or_at_the_longest_wait() {
        let mut burst = Burst::default();
        assert_eq!(burst.due(), None);
        let start = Instant::now();
        burst.add(Notice::Failed { session_id: 1, project: "ledger".into() });
        assert_eq!(burst.due(), Some(start + QUIET));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            burst.add(Notice::Failed { session_id: 1, project: "ledger".into() });
        }
        assert_eq!(burst.due(), Some(start + LONGEST_WAIT));
    }
}
