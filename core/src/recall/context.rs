//! The recent-context text of a project: its latest summaries and observations as plain text within a
//! character budget, for an agent starting work (the MCP `recent_context` tool, and the session-start
//! context that builds on it). Reads through a connection it is given; never writes.
//!
//! Newest first, grouped by session; items are cut whole, never mid-way.

use std::fmt::Write as _;

use rusqlite::Connection;

use super::dates::format_utc;
use crate::memory::{Observation, Summary};
use crate::store::{self, memories, search, sessions};

/// Sessions looked at, most recently active first.
const SESSIONS: u32 = 10;
/// Observations looked at per session, newest first.
const OBSERVATIONS_PER_SESSION: u32 = 30;

/// The recent memory of `project` as text of at most `chars` characters: a heading, then per session
/// (most recently active first) a line naming it, its summaries (newest first), and its observations
/// (newest first). An item (a summary, an observation, a session's line with its first item) goes in whole
/// or not at all, and the text stops at the first that does not fit, so what is there is the newest.
/// Empty when the project has no memory or not even the first item fits.
///
/// # Errors
/// The store's, when reading fails.
pub fn build(conn: &Connection, project: &str, chars: usize) -> store::Result<String> {
    build_filtered(conn, project, chars, Filter::default())
}

/// What [`build_filtered`] leaves out.
#[derive(Debug, Clone, Copy, Default)]
struct Filter {
    /// Only memory made after this time (ms).
    since: Option<i64>,
    /// Not this session's (row id).
    exclude_session: Option<i64>,
}

fn build_filtered(conn: &Connection, project: &str, chars: usize, filter: Filter) -> store::Result<String> {
    let mut text = Budget::new(chars);
    let heading = format!("# Recent memory of {project} (newest first)\n");
    let newer = |at: i64| filter.since.is_none_or(|since| at > since);
    for session in memories::sessions_with_memory(conn, project, SESSIONS)? {
        if Some(session.id) == filter.exclude_session || !newer(session.last_activity_at) {
            continue;
        }
        let mut summaries = memories::summaries_of(conn, session.id)?;
        summaries.retain(|s| newer(s.created_at));
        summaries.reverse();
        let mut observations = memories::latest_observations_of(conn, session.id, OBSERVATIONS_PER_SESSION)?;
        observations.retain(|o| newer(o.created_at));
        let items = summaries.iter().map(summary_text).chain(observations.iter().map(observation_text));
        // A teammate's session (pulled from the team server) says whose it is.
        let by = sessions::get(conn, session.id)?
            .and_then(|s| s.author)
            .map(|author| format!(", by {author} (a teammate)"))
            .unwrap_or_default();
        let mut header = Some(format!(
            "\n## Session {} (last active {}{by})\n",
            session.agent_session_id,
            format_utc(session.last_activity_at)
        ));
        for item in items {
            // The heading and a session's line go in only with an item after them.
            let lead: String =
                [(text.is_empty()).then(|| heading.clone()), header.clone()].into_iter().flatten().collect();
            if !text.push(&lead, &item) {
                return Ok(text.into_string());
            }
            header = None;
        }
    }
    Ok(text.into_string())
}

/// How a session started, as Claude Code's SessionStart `source` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// `startup`, `clear` or `compact`: the agent knows nothing of the project's past.
    Fresh,
    /// `resume`: the agent has its own session's history; only what others did since is news.
    Resume {
        /// The resumed session (the agent's id).
        agent_session_id: &'a str,
    },
}

impl Start<'_> {
    /// The start a SessionStart `source` names (`resume`; anything else is fresh).
    pub fn of<'a>(source: Option<&str>, agent_session_id: &'a str) -> Start<'a> {
        if source == Some("resume") { Start::Resume { agent_session_id } } else { Start::Fresh }
    }
}

/// The line that closes a session-start context: where to find more.
const MORE: &str = "\nMore from memtray: the MCP tools search, timeline and get_observations \
                    (mcp__memtray__search, ...).\n";

/// The context a session start gets, within `chars`: for a fresh start the project's recent memory
/// ([`build`]); for a resumed one only what the project's other sessions remembered since that session was
/// last active. Either ends with a line on the MCP tools. Empty when there is nothing to tell (nothing is
/// then printed at all).
///
/// # Errors
/// The store's, when reading fails.
pub fn session_start(conn: &Connection, project: &str, chars: usize, start: Start<'_>) -> store::Result<String> {
    let filter = match start {
        Start::Fresh => Filter::default(),
        Start::Resume { agent_session_id } => match sessions::find(conn, agent_session_id)? {
            Some(session) => Filter { since: Some(session.last_activity_at), exclude_session: Some(session.id) },
            None => Filter::default(),
        },
    };
    let more = MORE.chars().count();
    let mut text = build_filtered(conn, project, chars.saturating_sub(more), filter)?;
    if !text.is_empty() {
        text.push_str(MORE);
    }
    Ok(text)
}

/// What the project's older memory says about `prompt`: the best few matches of its words among the
/// observations and summaries of the project's other sessions, as a short list within `chars`. Empty when
/// nothing matches.
///
/// # Errors
/// The store's, when reading fails.
pub fn prompt_recall(
    conn: &Connection,
    project: &str,
    prompt: &str,
    agent_session_id: &str,
    chars: usize,
) -> store::Result<String> {
    // Words worth matching, each quoted (no FTS syntax from the prompt), any of them.
    let mut words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words.truncate(12);
    if words.is_empty() {
        return Ok(String::new());
    }
    let expression = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR ");
    let query = search::SearchQuery {
        text: expression,
        syntax: search::Syntax::Fts5,
        project: Some(project.to_string()),
        observation_type: None,
        kinds: vec![search::Kind::Observation, search::Kind::Summary],
        since: None,
        limit: 8,
        offset: 0,
        author: None,
    };
    let mut text = Budget::new(chars);
    let heading = "# memtray: related memory from earlier sessions\n".to_string();
    for hit in search::search(conn, &query)?.into_iter().filter(|h| h.agent_session_id != agent_session_id) {
        let kind = hit.observation_type.as_deref().unwrap_or(hit.kind.as_str());
        let by = hit.author.as_deref().map(|a| format!(" (by {a})")).unwrap_or_default();
        let item = format!("- {} [{kind}] {}{by} (#{})\n", format_utc(hit.created_at), one_line(&hit.title), hit.id);
        let lead = if text.is_empty() { heading.clone() } else { String::new() };
        if !text.push(&lead, &item) {
            break;
        }
    }
    Ok(text.into_string())
}

/// A summary as one item: its request, then what was investigated, done and left.
fn summary_text(s: &Summary) -> String {
    let m = &s.memory;
    let mut out = format!("- {} summary: {}\n", format_utc(s.created_at), one_line(&m.request));
    for (label, value) in [("investigated", &m.investigated), ("completed", &m.completed), ("next", &m.next_steps)] {
        if !value.trim().is_empty() {
            let _ = writeln!(out, "  {label}: {}", one_line(value));
        }
    }
    if !m.files_edited.is_empty() {
        let _ = writeln!(out, "  files edited: {}", m.files_edited.join(", "));
    }
    out
}

/// An observation as one item: its type and title, then its subtitle.
fn observation_text(o: &Observation) -> String {
    let m = &o.memory;
    let mut out = format!("- {} [{}] {} (#{})\n", format_utc(o.created_at), m.kind, one_line(&m.title), o.id);
    if !m.subtitle.trim().is_empty() {
        let _ = writeln!(out, "  {}", one_line(&m.subtitle));
    }
    out
}

/// `text` on one line: runs of whitespace (newlines included) become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that grows by whole items while they fit in a number of characters.
struct Budget {
    text: String,
    /// Characters left.
    left: usize,
}

impl Budget {
    fn new(chars: usize) -> Budget {
        Budget { text: String::new(), left: chars }
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Appends `lead` then `item` if both fit; false (and nothing appended) otherwise.
    fn push(&mut self, lead: &str, item: &str) -> bool {
        let needed = lead.chars().count() + item.chars().count();
        if needed > self.left {
            return false;
        }
        self.left -= needed;
        self.text.push_str(lead);
        self.text.push_str(item);
        true
    }

    fn into_string(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::store::sessions;

    fn db() -> Connection {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::with_data_dir(dir.path());
        let conn = store::open_direct(&config, std::time::Duration::from_secs(1)).unwrap();
        // The file lives on in the connection after the folder's guard is dropped (unlinked on close).
        drop(dir);
        conn
    }

    fn observe(conn: &Connection, session: i64, title: &str, at: i64) {
        conn.execute(
            "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, subtitle, created_at)
             VALUES (?1, 1, 'Edit', 'change', ?2, 'in src/lib.rs', ?3)",
            params![session, title, at],
        )
        .unwrap();
    }

    fn summarize(conn: &Connection, session: i64, request: &str, at: i64) {
        conn.execute(
            "INSERT INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
                 files_edited, created_at) VALUES (?1, 1, ?2, '', 'done it', 'ship it', '[\"a.rs\"]', ?3)",
            params![session, request, at],
        )
        .unwrap();
    }

    fn active(conn: &Connection, session: i64, at: i64) {
        conn.execute("UPDATE sessions SET last_activity_at = ?2 WHERE id = ?1", params![session, at]).unwrap();
    }

    #[test]
    fn newest_first_grouped_by_session_and_cut_at_whole_items() {
        let conn = db();
        let old = sessions::ensure(&conn, "old-session", "ledger", 1).unwrap().0.id;
        let new = sessions::ensure(&conn, "new-session", "ledger", 1).unwrap().0.id;
        let other = sessions::ensure(&conn, "other", "atlas", 1).unwrap().0.id;
        observe(&conn, old, "first old change", 1_000);
        observe(&conn, old, "second old change", 2_000);
        summarize(&conn, old, "old request", 3_000);
        observe(&conn, new, "new change", 10_000);
        summarize(&conn, new, "new request", 11_000);
        observe(&conn, other, "atlas change", 12_000);
        active(&conn, old, 3_000);
        active(&conn, new, 11_000);
        let empty = sessions::ensure(&conn, "no-memory", "ledger", 1).unwrap().0.id;
        active(&conn, empty, 99_000);

        let full = build(&conn, "ledger", 10_000).unwrap();
        let order: Vec<usize> = [
            "# Recent memory of ledger",
            "## Session new-session",
            "new request",
            "new change",
            "## Session old-session",
            "old request",
            "second old change",
            "first old change",
        ]
        .iter()
        .map(|needle| full.find(needle).unwrap_or_else(|| panic!("{needle} missing from:\n{full}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order:\n{full}");
        assert!(!full.contains("atlas") && !full.contains("no-memory"), "{full}");
        assert!(full.contains("  completed: done it\n  next: ship it\n  files edited: a.rs\n"), "{full}");

        // Every budget gives a prefix of the full text made of whole items, never more than the budget.
        let mut previous = 0;
        for chars in 0..=full.chars().count() {
            let cut = build(&conn, "ledger", chars).unwrap();
            assert!(cut.chars().count() <= chars);
            assert!(full.starts_with(&cut), "{chars}: {cut}");
            assert!(cut.is_empty() || cut.ends_with('\n'));
            let last = cut.lines().last().unwrap_or("- ");
            assert!(last.starts_with("- ") || last.starts_with("  "), "a heading without an item: {cut}");
            assert!(cut.len() >= previous);
            previous = cut.len();
        }
        let one = build(&conn, "ledger", 200).unwrap();
        assert!(one.contains("new request") && !one.contains("new change") && !one.contains("old-session"), "{one}");
        assert_eq!(build(&conn, "nothing-here", 1000).unwrap(), "");
    }
}
