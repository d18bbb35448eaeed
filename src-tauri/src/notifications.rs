//! Desktop notifications: "Summary ready — <project>" when a summary is stored (a burst becomes one
//! notification saying how many), and "N messages failed in <project>" once per session until a retry.
//! Clicking one opens the inspector at its session.
//!
//! Spoken over D-Bus to `org.freedesktop.Notifications`; with no bus or no service the app logs once and runs on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use tauri::AppHandle;
use tokio::sync::broadcast;
use tokio::time::Instant;
use zbus::proxy::CacheProperties;
use zbus::zvariant::Value;

use crate::inspector;
use crate::link::{Link, Notice};
use crate::prefs::Prefs;

/// A burst ends after this long without another notice...
const QUIET: Duration = Duration::from_secs(2);
/// ...or this long after it began, whichever comes first.
const LONGEST_WAIT: Duration = Duration::from_secs(6);
/// How many shown notifications remember which session they open.
const REMEMBERED: usize = 64;

const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

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

/// The D-Bus side: show a notification, learn which one was clicked.
struct Daemon {
    proxy: zbus::Proxy<'static>,
    /// Set once a failure was logged, so a missing service is reported once.
    told: bool,
}

impl Daemon {
    async fn connect() -> zbus::Result<Daemon> {
        let conn = zbus::Connection::session().await?;
        let proxy = zbus::proxy::Builder::new(&conn)
            .destination(SERVICE)?
            .path(PATH)?
            .interface(SERVICE)?
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Daemon { proxy, told: false })
    }

    async fn show(&mut self, note: &Note) -> Option<u32> {
        let hints: HashMap<&str, Value<'_>> = HashMap::from([("desktop-entry", Value::from("memtray"))]);
        let actions = vec!["default", "Open inspector"];
        let args = ("memtray", 0u32, "", note.title.as_str(), note.body.as_str(), actions, hints, -1i32);
        match self.proxy.call::<_, _, u32>("Notify", &args).await {
            Ok(id) => {
                self.told = false;
                Some(id)
            }
            Err(e) => {
                if !std::mem::replace(&mut self.told, true) {
                    tracing::warn!(error = %e, "no desktop notification service; notifications are not shown");
                }
                None
            }
        }
    }
}

/// Runs until the notices end: gathers bursts, shows them, opens the inspector when one is clicked.
pub async fn run(app: AppHandle, link: Link, prefs: Prefs, mut notices: broadcast::Receiver<Notice>) {
    let mut daemon = match Daemon::connect().await {
        Ok(daemon) => Some(daemon),
        Err(e) => {
            tracing::warn!(error = %e, "no D-Bus session bus; notifications are not shown");
            None
        }
    };
    let mut clicks = match &daemon {
        Some(d) => d.proxy.receive_signal("ActionInvoked").await.ok(),
        None => None,
    };
    // Which session each shown notification opens, newest last.
    let mut opens: Vec<(u32, Option<i64>)> = Vec::new();
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
                    if let Some(id) = match daemon.as_mut() { Some(d) => d.show(&note).await, None => None } {
                        opens.push((id, note.session_id));
                        if opens.len() > REMEMBERED {
                            opens.remove(0);
                        }
                    }
                }
            }
            click = async { clicks.as_mut().expect("subscribed").next().await }, if clicks.is_some() => {
                let Some(message) = click else { clicks = None; continue };
                let Ok((id, _action)) = message.body().deserialize::<(u32, String)>() else { continue };
                if let Some((_, session_id)) = opens.iter().find(|(shown, _)| *shown == id) {
                    inspector::open(&app, link.base_url(), *session_id);
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
