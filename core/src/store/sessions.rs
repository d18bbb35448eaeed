//! SQL for sessions and their user prompts.
//!
//! A session is keyed by the agent's own session id; `ensure` creates it on first sight and is safe to call
//! for every event. Prompts are numbered per session by the session's prompt counter.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::Result;

/// A session row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Session {
    /// Row id (`sessionDbId` in the claude-mem API).
    pub id: i64,
    /// The agent's session id.
    pub agent_session_id: String,
    /// Project name.
    pub project: String,
    /// `active` or `completed`.
    pub status: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// When it was completed.
    pub ended_at: Option<i64>,
    /// Prompts so far.
    pub prompt_counter: i64,
    /// The latest prompt's text (`None` when it was private).
    pub current_prompt: Option<String>,
    /// True while the latest prompt was entirely private.
    pub prompt_private: bool,
    /// The last event seen.
    pub last_activity_at: i64,
    /// The teammate whose session this is (pulled from the team server); `None` for this machine's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

const SESSION_COLUMNS: &str = "id, agent_session_id, project, status, started_at, ended_at, prompt_counter, \
     current_prompt, prompt_private, last_activity_at, author";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        agent_session_id: r.get(1)?,
        project: r.get(2)?,
        status: r.get(3)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        prompt_counter: r.get(6)?,
        current_prompt: r.get(7)?,
        prompt_private: r.get(8)?,
        last_activity_at: r.get(9)?,
        author: r.get(10)?,
    })
}

/// Finds a session by the agent's id.
pub fn find(conn: &Connection, agent_session_id: &str) -> Result<Option<Session>> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE agent_session_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([agent_session_id], session_from_row).optional()?)
}

/// Finds a session by row id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Session>> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], session_from_row).optional()?)
}

/// Returns the session, creating it when new (the bool says so). An existing session keeps its stored
/// project unless it has none; a completed session seeing new activity becomes active again.
pub fn ensure(conn: &Connection, agent_session_id: &str, project: &str, now: i64) -> Result<(Session, bool)> {
    if let Some(mut session) = find(conn, agent_session_id)? {
        conn.prepare_cached(
            "UPDATE sessions SET project = CASE WHEN project = '' THEN ?2 ELSE project END,
                 status = 'active', ended_at = NULL, last_activity_at = ?3
             WHERE id = ?1",
        )?
        .execute(params![session.id, project, now])?;
        if session.project.is_empty() {
            session.project = project.to_string();
        }
        session.status = "active".into();
        session.ended_at = None;
        session.last_activity_at = now;
        return Ok((session, false));
    }
    conn.prepare_cached(
        "INSERT INTO sessions (agent_session_id, project, started_at, last_activity_at) VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![agent_session_id, project, now])?;
    let session = get(conn, conn.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok((session, true))
}

/// What `record_prompt` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptRecorded {
    /// The prompt's number within the session.
    pub prompt_number: i64,
    /// The same idempotency key was recorded before; nothing changed.
    pub duplicate: bool,
}

/// Counts a new prompt: bumps the counter, makes it the current prompt, and stores its text. `text: None`
/// marks an entirely private prompt: counted, nothing of it stored, its observations skipped.
pub fn record_prompt(
    conn: &Connection,
    session_id: i64,
    text: Option<&str>,
    idempotency_key: Option<&str>,
    now: i64,
) -> Result<PromptRecorded> {
    if let Some(key) = idempotency_key {
        let seen: Option<i64> = conn
            .prepare_cached("SELECT prompt_number FROM user_prompts WHERE idempotency_key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        if let Some(prompt_number) = seen {
            return Ok(PromptRecorded { prompt_number, duplicate: true });
        }
    }
    let prompt_number: i64 = conn
        .prepare_cached(
            "UPDATE sessions SET prompt_counter = prompt_counter + 1, current_prompt = ?2, prompt_private = ?3,
                 last_activity_at = ?4
             WHERE id = ?1 RETURNING prompt_counter",
        )?
        .query_row(params![session_id, text, text.is_none(), now], |r| r.get(0))?;
    // A private prompt keeps a row with no text only when a key must be remembered.
    if text.is_some() || idempotency_key.is_some() {
        conn.prepare_cached(
            "INSERT INTO user_prompts (session_id, prompt_number, text, idempotency_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![session_id, prompt_number, text.unwrap_or(""), idempotency_key, now])?;
    }
    Ok(PromptRecorded { prompt_number, duplicate: false })
}

/// The session's prompts that carry an idempotency key, as (key, number), and how many prompts have none
/// (counted without a row, or recorded without a key).
pub fn keyed_prompts(conn: &Connection, session_id: i64) -> Result<(Vec<(String, i64)>, i64)> {
    let keyed: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT idempotency_key, prompt_number FROM user_prompts
             WHERE session_id = ?1 AND idempotency_key IS NOT NULL ORDER BY prompt_number",
        )?
        .query_map([session_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let counter: i64 = conn
        .prepare_cached("SELECT prompt_counter FROM sessions WHERE id = ?1")?
        .query_row([session_id], |r| r.get(0))?;
    let unkeyed = (counter - keyed.len() as i64).max(0);
    Ok((keyed, unkeyed))
}

/// Gives the session's prompts new numbers, `(old, new)` pairs, and moves everything filed under an old
/// number (messages, observations, summaries) with them. Numbers pass through their negatives so that no
/// two rows ever share one mid-way.
pub fn renumber_prompts(conn: &Connection, session_id: i64, moves: &[(i64, i64)]) -> Result<()> {
    const TABLES: [&str; 4] = ["user_prompts", "messages", "observations", "summaries"];
    for table in TABLES {
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE {table} SET prompt_number = ?3 WHERE session_id = ?1 AND prompt_number = ?2"
        ))?;
        for &(old, new) in moves {
            stmt.execute(params![session_id, old, -new])?;
        }
        conn.prepare_cached(&format!(
            "UPDATE {table} SET prompt_number = -prompt_number WHERE session_id = ?1 AND prompt_number < 0"
        ))?
        .execute([session_id])?;
    }
    Ok(())
}

/// Stores a prompt memtray did not see when it was submitted, under its own number (`text: None`: private).
/// The session's counter and current prompt follow when it is the newest.
pub fn restore_prompt(
    conn: &Connection,
    session_id: i64,
    prompt_number: i64,
    text: Option<&str>,
    idempotency_key: &str,
    now: i64,
) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO user_prompts (session_id, prompt_number, text, idempotency_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![session_id, prompt_number, text.unwrap_or(""), idempotency_key, now])?;
    conn.prepare_cached(
        "UPDATE sessions SET prompt_counter = ?2, current_prompt = ?3, prompt_private = ?4
         WHERE id = ?1 AND prompt_counter < ?2",
    )?
    .execute(params![session_id, prompt_number, text, text.is_none()])?;
    Ok(inserted > 0)
}

/// Remembers how many bytes of the session's transcript reconciliation has read.
pub fn set_transcript_seen(conn: &Connection, session_id: i64, bytes: u64) -> Result<()> {
    conn.prepare_cached("UPDATE sessions SET transcript_seen = ?2 WHERE id = ?1")?
        .execute(params![session_id, bytes as i64])?;
    Ok(())
}

/// A session whose transcript reconciliation may read at start.
#[derive(Debug, Clone)]
pub struct KnownTranscript {
    /// The agent's session id.
    pub agent_session_id: String,
    /// The session's project.
    pub project: String,
    /// Where the transcript is.
    pub path: String,
    /// Whether the session is active.
    pub active: bool,
    /// Bytes of it reconciliation last read (`None`: never).
    pub seen: Option<u64>,
}

/// Sessions with a known transcript that are active or were last active since `since` (ms).
pub fn transcripts_since(conn: &Connection, since: i64) -> Result<Vec<KnownTranscript>> {
    let mut stmt = conn.prepare_cached(
        "SELECT agent_session_id, project, transcript_path, status = 'active', transcript_seen FROM sessions
         WHERE transcript_path IS NOT NULL AND (status = 'active' OR last_activity_at >= ?1)",
    )?;
    let rows = stmt
        .query_map([since], |r| {
            Ok(KnownTranscript {
                agent_session_id: r.get(0)?,
                project: r.get(1)?,
                path: r.get(2)?,
                active: r.get(3)?,
                seen: r.get::<_, Option<i64>>(4)?.map(|b| b as u64),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Records where the session's transcript is and how it started (values given replace stored ones).
pub fn set_origin(
    conn: &Connection,
    session_id: i64,
    transcript_path: Option<&str>,
    source: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET transcript_path = coalesce(?2, transcript_path), source = coalesce(?3, source) WHERE id = ?1",
    )?
    .execute(params![session_id, transcript_path, source])?;
    Ok(())
}

/// Marks a session completed. Returns false when there is no such session or it was already completed.
pub fn complete(conn: &Connection, session_id: i64, now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE sessions SET status = 'completed', ended_at = ?2, last_activity_at = ?2
             WHERE id = ?1 AND status = 'active'",
        )?
        .execute(params![session_id, now])?;
    Ok(n == 1)
}

/// Deletes a session with everything it owns. Returns false when there was none.
pub fn delete(conn: &Connection, session_id: i64) -> Result<bool> {
    Ok(conn.execute("DELETE FROM sessions WHERE id = ?1", [session_id])? == 1)
}

/// A prompt row.
#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    /// Number within the session.
    pub prompt_number: i64,
    /// Text after privacy stripping.
    pub text: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// A session's prompts, in order.
pub fn prompts(conn: &Connection, session_id: i64) -> Result<Vec<Prompt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT prompt_number, text, created_at FROM user_prompts WHERE session_id = ?1 AND text != ''
         ORDER BY prompt_number",
    )?;
    let rows = stmt
        .query_map([session_id], |r| Ok(Prompt { prompt_number: r.get(0)?, text: r.get(1)?, created_at: r.get(2)? }))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Queue counts of one session, by status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueCounts {
    /// Waiting.
    pub pending: i64,
    /// Claimed.
    pub processing: i64,
    /// Done.
    pub processed: i64,
    /// Given up.
    pub failed: i64,
}

/// A session with its queue counts, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct SessionListItem {
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// Its messages by status.
    pub queue: QueueCounts,
}

/// What a listing is ordered by. A closed set: each maps to a fixed SQL expression, so nothing a client
/// sends is ever written into SQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionSort {
    /// The last event seen (the default).
    #[default]
    LastActivity,
    /// When the session started.
    Started,
    /// Project name, case-insensitively.
    Project,
    /// How many prompts the session has.
    Prompts,
}

impl SessionSort {
    fn sql(self) -> &'static str {
        match self {
            SessionSort::LastActivity => "last_activity_at",
            SessionSort::Started => "started_at",
            SessionSort::Project => "project COLLATE NOCASE",
            SessionSort::Prompts => "prompt_counter",
        }
    }
}

/// Which way a listing is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest (newest) first (the default).
    #[default]
    Desc,
}

impl SortOrder {
    fn sql(self) -> &'static str {
        match self {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        }
    }
}

/// How a listing is filtered, ordered and paged.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Exact project name.
    pub project: Option<String>,
    /// `active` or `completed`.
    pub status: Option<String>,
    /// The column to order by; ties are broken by row id in the same direction.
    pub sort: SessionSort,
    /// Ascending or descending.
    pub order: SortOrder,
    /// Rows per page.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// Lists sessions in the query's order (most recently active first by default), with their queue counts.
pub fn list(conn: &Connection, q: &SessionQuery) -> Result<(Vec<SessionListItem>, i64)> {
    let total: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sessions WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR status = ?2)",
        )?
        .query_row(params![q.project, q.status], |r| r.get(0))?;
    let sql = format!(
        "SELECT {SESSION_COLUMNS},
            (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.status = 'pending'),
            (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.status = 'processing'),
            (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.status = 'processed'),
            (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.status = 'failed')
         FROM sessions s WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR status = ?2)
         ORDER BY {sort} {order}, id {order} LIMIT ?3 OFFSET ?4",
        sort = q.sort.sql(),
        order = q.order.sql(),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![q.project, q.status, q.limit, q.offset], |r| {
            Ok(SessionListItem {
                session: session_from_row(r)?,
                queue: QueueCounts {
                    pending: r.get(11)?,
                    processing: r.get(12)?,
                    processed: r.get(13)?,
                    failed: r.get(14)?,
                },
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((rows, total))
}

/// A project with how many sessions it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectCount {
    /// Project name (empty when the agent sent none).
    pub project: String,
    /// Its sessions.
    pub sessions: i64,
}

/// Every project that has a session, by name, with its session count.
pub fn projects(conn: &Connection) -> Result<Vec<ProjectCount>> {
    let mut stmt = conn.prepare_cached(
        "SELECT project, count(*) FROM sessions GROUP BY project ORDER BY project COLLATE NOCASE, project",
    )?;
    let rows = stmt
        .query_map([], |r| Ok(ProjectCount { project: r.get(0)?, sessions: r.get(1)? }))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    /// (agent id, project, started, prompts, last activity)
    const SEED: &[(&str, &str, i64, i64, i64)] = &[
        ("a", "ledger", 100, 3, 900),
        ("b", "Atlas", 200, 1, 700),
        ("c", "zebra", 300, 5, 800),
        ("d", "atlas", 400, 5, 600),
    ];

    fn seeded() -> Connection {
        let conn = db();
        for &(agent, project, started, prompts, last) in SEED {
            let (s, _) = ensure(&conn, agent, project, started).unwrap();
            for _ in 0..prompts {
                record_prompt(&conn, s.id, Some("p"), None, started).unwrap();
            }
            conn.execute("UPDATE sessions SET last_activity_at = ?2 WHERE id = ?1", params![s.id, last]).unwrap();
        }
        conn
    }

    fn order(conn: &Connection, sort: SessionSort, order: SortOrder) -> Vec<String> {
        let q = SessionQuery { sort, order, limit: 10, ..Default::default() };
        list(conn, &q).unwrap().0.into_iter().map(|i| i.session.agent_session_id).collect()
    }

    #[test]
    fn listings_sort_by_a_whitelisted_column_in_either_direction() {
        let conn = seeded();
        assert_eq!(order(&conn, SessionSort::default(), SortOrder::default()), ["a", "c", "b", "d"]);
        assert_eq!(order(&conn, SessionSort::LastActivity, SortOrder::Asc), ["d", "b", "c", "a"]);
        assert_eq!(order(&conn, SessionSort::Started, SortOrder::Desc), ["d", "c", "b", "a"]);
        // Case-insensitive, ties (Atlas, atlas) broken by id in the same direction.
        assert_eq!(order(&conn, SessionSort::Project, SortOrder::Asc), ["b", "d", "a", "c"]);
        assert_eq!(order(&conn, SessionSort::Project, SortOrder::Desc), ["c", "a", "d", "b"]);
        assert_eq!(order(&conn, SessionSort::Prompts, SortOrder::Desc), ["d", "c", "a", "b"]);
        // Paging follows the order.
        let q = SessionQuery {
            sort: SessionSort::Started,
            order: SortOrder::Asc,
            limit: 2,
            offset: 1,
            ..Default::default()
        };
        let (page, total) = list(&conn, &q).unwrap();
        assert_eq!(total, 4);
        assert_eq!(page.iter().map(|i| i.session.agent_session_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn projects_are_listed_once_with_their_session_counts() {
        let conn = seeded();
        ensure(&conn, "e", "ledger", 1).unwrap();
        let names: Vec<(String, i64)> = projects(&conn).unwrap().into_iter().map(|p| (p.project, p.sessions)).collect();
        assert_eq!(names, [("Atlas".into(), 1), ("atlas".into(), 1), ("ledger".into(), 2), ("zebra".into(), 1)]);
    }
}
