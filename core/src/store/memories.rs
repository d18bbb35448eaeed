//! SQL for observations and summaries: written with the completion of the message they come from,
//! read by session or page by page.

use rusqlite::{Connection, Row, params};

use super::Result;
use crate::memory::{NewObservation, NewSummary, Observation, Summary};

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings always serializes")
}

fn parse_list(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// Stores a message's observations (ordinal = position); `subagent` labels a subagent's tool use.
#[allow(clippy::too_many_arguments, reason = "one row's columns, passed as they are")]
pub fn insert_observations(
    conn: &Connection,
    session_id: i64,
    message_id: i64,
    prompt_number: i64,
    tool_name: &str,
    subagent: Option<&str>,
    observations: &[NewObservation],
    now: i64,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO observations (session_id, message_id, ordinal, prompt_number, tool_name, type, title, subtitle,
             facts, files_read, files_modified, created_at, subagent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut ids = Vec::with_capacity(observations.len());
    for (ordinal, o) in observations.iter().enumerate() {
        stmt.execute(params![
            session_id,
            message_id,
            ordinal as i64,
            prompt_number,
            tool_name,
            o.kind,
            o.title,
            o.subtitle,
            json_list(&o.facts),
            json_list(&o.files_read),
            json_list(&o.files_modified),
            now,
            subagent
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

/// Stores a summary.
pub fn insert_summary(
    conn: &Connection,
    session_id: i64,
    message_id: i64,
    prompt_number: i64,
    s: &NewSummary,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO summaries (session_id, message_id, prompt_number, request, investigated, completed, next_steps,
             files_read, files_edited, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        session_id,
        message_id,
        prompt_number,
        s.request,
        s.investigated,
        s.completed,
        s.next_steps,
        json_list(&s.files_read),
        json_list(&s.files_edited),
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

const OBSERVATION_SELECT: &str = "SELECT o.id, o.session_id, s.project, o.message_id, o.prompt_number, o.tool_name,
        o.type, o.title, o.subtitle, o.facts, o.files_read, o.files_modified, o.created_at, o.subagent
     FROM observations o JOIN sessions s ON s.id = o.session_id";

fn observation_from_row(r: &Row<'_>) -> rusqlite::Result<Observation> {
    Ok(Observation {
        id: r.get(0)?,
        session_id: r.get(1)?,
        project: r.get(2)?,
        message_id: r.get(3)?,
        prompt_number: r.get(4)?,
        tool_name: r.get(5)?,
        subagent: r.get(13)?,
        memory: NewObservation {
            kind: r.get(6)?,
            title: r.get(7)?,
            subtitle: r.get(8)?,
            facts: parse_list(r, 9)?,
            files_read: parse_list(r, 10)?,
            files_modified: parse_list(r, 11)?,
        },
        created_at: r.get(12)?,
    })
}

const SUMMARY_SELECT: &str = "SELECT m.id, m.session_id, s.project, m.message_id, m.prompt_number, m.request,
        m.investigated, m.completed, m.next_steps, m.files_read, m.files_edited, m.created_at
     FROM summaries m JOIN sessions s ON s.id = m.session_id";

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: r.get(0)?,
        session_id: r.get(1)?,
        project: r.get(2)?,
        message_id: r.get(3)?,
        prompt_number: r.get(4)?,
        memory: NewSummary {
            request: r.get(5)?,
            investigated: r.get(6)?,
            completed: r.get(7)?,
            next_steps: r.get(8)?,
            files_read: parse_list(r, 9)?,
            files_edited: parse_list(r, 10)?,
        },
        created_at: r.get(11)?,
    })
}

/// A session's observations in the order they were made.
pub fn observations_of(conn: &Connection, session_id: i64) -> Result<Vec<Observation>> {
    let sql = format!("{OBSERVATION_SELECT} WHERE o.session_id = ?1 ORDER BY o.id");
    let rows = conn.prepare_cached(&sql)?.query_map([session_id], observation_from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A session's summaries, oldest first.
pub fn summaries_of(conn: &Connection, session_id: i64) -> Result<Vec<Summary>> {
    let sql = format!("{SUMMARY_SELECT} WHERE m.session_id = ?1 ORDER BY m.id");
    let rows = conn.prepare_cached(&sql)?.query_map([session_id], summary_from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Newest observations first, optionally of one project; with the total count.
pub fn page_observations(
    conn: &Connection,
    project: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<(Vec<Observation>, i64)> {
    let total = conn
        .prepare_cached(
            "SELECT count(*) FROM observations o JOIN sessions s ON s.id = o.session_id WHERE (?1 IS NULL OR s.project = ?1)",
        )?
        .query_row([project], |r| r.get(0))?;
    let sql =
        format!("{OBSERVATION_SELECT} WHERE (?1 IS NULL OR s.project = ?1) ORDER BY o.id DESC LIMIT ?2 OFFSET ?3");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![project, limit, offset], observation_from_row)?
        .collect::<Result<_, _>>()?;
    Ok((rows, total))
}

/// Newest summaries first, optionally of one project; with the total count.
pub fn page_summaries(
    conn: &Connection,
    project: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<(Vec<Summary>, i64)> {
    let total = conn
        .prepare_cached(
            "SELECT count(*) FROM summaries m JOIN sessions s ON s.id = m.session_id WHERE (?1 IS NULL OR s.project = ?1)",
        )?
        .query_row([project], |r| r.get(0))?;
    let sql = format!("{SUMMARY_SELECT} WHERE (?1 IS NULL OR s.project = ?1) ORDER BY m.id DESC LIMIT ?2 OFFSET ?3");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![project, limit, offset], summary_from_row)?
        .collect::<Result<_, _>>()?;
    Ok((rows, total))
}

/// The span a summary covers: the prompts and observations after the previous summary's prompt, up to and
/// including `prompt_number`, oldest first.
pub fn span(conn: &Connection, session_id: i64, prompt_number: i64) -> Result<(Vec<String>, Vec<NewObservation>)> {
    let after: i64 = conn
        .prepare_cached(
            "SELECT coalesce(max(prompt_number), 0) FROM summaries WHERE session_id = ?1 AND prompt_number < ?2",
        )?
        .query_row(params![session_id, prompt_number], |r| r.get(0))?;
    let prompts = conn
        .prepare_cached(
            "SELECT text FROM user_prompts WHERE session_id = ?1 AND prompt_number > ?2 AND prompt_number <= ?3
                 AND text != '' ORDER BY prompt_number",
        )?
        .query_map(params![session_id, after, prompt_number], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let sql = format!(
        "{OBSERVATION_SELECT} WHERE o.session_id = ?1 AND o.prompt_number > ?2 AND o.prompt_number <= ?3 ORDER BY o.id"
    );
    let observations = conn
        .prepare_cached(&sql)?
        .query_map(params![session_id, after, prompt_number], |r| observation_from_row(r).map(|o| o.memory))?
        .collect::<Result<_, _>>()?;
    Ok((prompts, observations))
}
