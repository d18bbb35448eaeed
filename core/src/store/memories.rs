//! SQL for observations and summaries: written with the completion of the message they come from,
//! read by session, page by page, by id, and around a point in time (the timeline).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Result;
use crate::memory::{MadeBy, NewObservation, NewSummary, Observation, Summary};

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings always serializes")
}

fn parse_list(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// Where a message's observations go: its session, the message, its prompt, its tool and who used it, who
/// made them and the provider call that did.
#[derive(Debug, Clone, Copy)]
pub struct ObservationOf<'a> {
    /// The session's row id.
    pub session_id: i64,
    /// The message the observations come from.
    pub message_id: i64,
    /// The prompt it is filed under.
    pub prompt_number: i64,
    /// The tool observed.
    pub tool_name: &'a str,
    /// The subagent that used the tool, when not the main agent.
    pub subagent: Option<&'a str>,
    /// The provider that made them.
    pub made_by: &'a MadeBy,
    /// The provider call that made them (`provider_calls`), when it spent tokens.
    pub call_id: Option<i64>,
}

/// Stores a message's observations (ordinal = position).
pub fn insert_observations(
    conn: &Connection,
    of: ObservationOf<'_>,
    observations: &[NewObservation],
    now: i64,
) -> Result<Vec<i64>> {
    let ObservationOf { session_id, message_id, prompt_number, tool_name, subagent, made_by, call_id } = of;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO observations (session_id, message_id, ordinal, prompt_number, tool_name, type, title, subtitle,
             facts, files_read, files_modified, created_at, subagent, narrative, concepts, provider, model, fallback,
             call_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
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
            subagent,
            o.narrative,
            json_list(&o.concepts),
            made_by.provider,
            made_by.model,
            made_by.fallback,
            call_id
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

/// Where a summary goes: its session, the message, the prompt it closes, who made it and the call that did.
#[derive(Debug, Clone, Copy)]
pub struct SummaryOf<'a> {
    /// The session's row id.
    pub session_id: i64,
    /// The summarize message.
    pub message_id: i64,
    /// The prompt it closes.
    pub prompt_number: i64,
    /// The provider that made it.
    pub made_by: &'a MadeBy,
    /// The provider call that made it, when it spent tokens.
    pub call_id: Option<i64>,
}

/// Stores a summary.
pub fn insert_summary(conn: &Connection, of: SummaryOf<'_>, s: &NewSummary, now: i64) -> Result<i64> {
    let SummaryOf { session_id, message_id, prompt_number, made_by, call_id } = of;
    conn.prepare_cached(
        "INSERT INTO summaries (session_id, message_id, prompt_number, request, investigated, completed, next_steps,
             files_read, files_edited, created_at, learned, notes, provider, model, fallback, call_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
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
        now,
        s.learned,
        s.notes,
        made_by.provider,
        made_by.model,
        made_by.fallback,
        call_id
    ])?;
    Ok(conn.last_insert_rowid())
}

const OBSERVATION_SELECT: &str = "SELECT o.id, o.session_id, s.project, o.message_id, o.prompt_number, o.tool_name,
        o.type, o.title, o.subtitle, o.facts, o.files_read, o.files_modified, o.created_at, o.subagent,
        o.narrative, o.concepts, o.provider, o.model, o.fallback
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
            narrative: r.get(14)?,
            concepts: parse_list(r, 15)?,
            files_read: parse_list(r, 10)?,
            files_modified: parse_list(r, 11)?,
        },
        made_by: MadeBy { provider: r.get(16)?, model: r.get(17)?, fallback: r.get(18)? },
        created_at: r.get(12)?,
    })
}

const SUMMARY_SELECT: &str = "SELECT m.id, m.session_id, s.project, m.message_id, m.prompt_number, m.request,
        m.investigated, m.completed, m.next_steps, m.files_read, m.files_edited, m.created_at, m.learned, m.notes,
        m.provider, m.model, m.fallback
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
            learned: r.get(12)?,
            completed: r.get(7)?,
            next_steps: r.get(8)?,
            notes: r.get(13)?,
            files_read: parse_list(r, 9)?,
            files_edited: parse_list(r, 10)?,
        },
        made_by: MadeBy { provider: r.get(14)?, model: r.get(15)?, fallback: r.get(16)? },
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

/// Where a span starts (the prompt of the summary before `prompt_number`, or 0) and its prompts' text.
fn span_prompts(conn: &Connection, session_id: i64, prompt_number: i64) -> Result<(i64, Vec<String>)> {
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
    Ok((after, prompts))
}

/// The span a summary covers: the prompts and observations after the previous summary's prompt, up to and
/// including `prompt_number`, oldest first.
pub fn span(conn: &Connection, session_id: i64, prompt_number: i64) -> Result<(Vec<String>, Vec<NewObservation>)> {
    let (after, prompts) = span_prompts(conn, session_id, prompt_number)?;
    let sql = format!(
        "{OBSERVATION_SELECT} WHERE o.session_id = ?1 AND o.prompt_number > ?2 AND o.prompt_number <= ?3 ORDER BY o.id"
    );
    let observations = conn
        .prepare_cached(&sql)?
        .query_map(params![session_id, after, prompt_number], |r| observation_from_row(r).map(|o| o.memory))?
        .collect::<Result<_, _>>()?;
    Ok((prompts, observations))
}

/// The span's prompts (as [`span`]) and only its latest `limit` observations, oldest first: the context of a
/// provider call for tool uses, which shows no more than that (a long span would cost a read of all of it
/// per call).
pub fn span_latest(
    conn: &Connection,
    session_id: i64,
    prompt_number: i64,
    limit: u32,
) -> Result<(Vec<String>, Vec<NewObservation>)> {
    let (after, prompts) = span_prompts(conn, session_id, prompt_number)?;
    let sql = format!(
        "{OBSERVATION_SELECT} WHERE o.session_id = ?1 AND o.prompt_number > ?2 AND o.prompt_number <= ?3
         ORDER BY o.id DESC LIMIT ?4"
    );
    let mut observations: Vec<NewObservation> = conn
        .prepare_cached(&sql)?
        .query_map(params![session_id, after, prompt_number, limit], |r| observation_from_row(r).map(|o| o.memory))?
        .collect::<Result<_, _>>()?;
    observations.reverse();
    Ok((prompts, observations))
}

/// The observations with these ids, in the order asked; ids with no observation are left out.
pub fn observations_by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<Observation>> {
    let sql = format!("{OBSERVATION_SELECT} WHERE o.id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(o) = stmt.query_row([id], observation_from_row).optional()? {
            found.push(o);
        }
    }
    Ok(found)
}

/// Where a timeline is centred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// This observation (it is part of the timeline).
    Observation(i64),
    /// This moment (ms since the epoch): what came before it, then what came at or after it.
    Time(i64),
}

/// Up to `before` observations before the anchor and `after` from it on (the anchor observation itself
/// between them), oldest first, optionally of one project. An anchor observation that does not exist gives
/// `None`; its own project is used when `project` is `None`.
pub fn timeline(
    conn: &Connection,
    project: Option<&str>,
    anchor: Anchor,
    before: u32,
    after: u32,
) -> Result<Option<Vec<Observation>>> {
    let (at, id, project, mut middle) = match anchor {
        Anchor::Observation(id) => {
            let Some(o) = observations_by_ids(conn, &[id])?.pop() else { return Ok(None) };
            let project = project.map_or_else(|| o.project.clone(), str::to_string);
            (o.created_at, id, Some(project), vec![o])
        }
        // Everything at `at` or later comes after: (at, 0) sorts before any real row at that time.
        Anchor::Time(at) => (at, 0, project.map(str::to_string), Vec::new()),
    };
    let earlier = format!(
        "{OBSERVATION_SELECT} WHERE (?1 IS NULL OR s.project = ?1) AND (o.created_at, o.id) < (?2, ?3)
         ORDER BY o.created_at DESC, o.id DESC LIMIT ?4"
    );
    let later = format!(
        "{OBSERVATION_SELECT} WHERE (?1 IS NULL OR s.project = ?1) AND (o.created_at, o.id) > (?2, ?3)
         ORDER BY o.created_at, o.id LIMIT ?4"
    );
    let mut list: Vec<Observation> = conn
        .prepare_cached(&earlier)?
        .query_map(params![project, at, id, before], observation_from_row)?
        .collect::<Result<_, _>>()?;
    list.reverse();
    list.append(&mut middle);
    let later: Vec<Observation> = conn
        .prepare_cached(&later)?
        .query_map(params![project, at, id, after], observation_from_row)?
        .collect::<Result<_, _>>()?;
    list.extend(later);
    Ok(Some(list))
}

/// A session that has memory, as the recent-context text lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWithMemory {
    /// The session's row id.
    pub id: i64,
    /// The agent's session id.
    pub agent_session_id: String,
    /// Its last activity (ms since the epoch).
    pub last_activity_at: i64,
}

/// A project's sessions that have observations or summaries, most recently active first.
pub fn sessions_with_memory(conn: &Connection, project: &str, limit: u32) -> Result<Vec<SessionWithMemory>> {
    let rows = conn
        .prepare_cached(
            "SELECT s.id, s.agent_session_id, s.last_activity_at FROM sessions s
             WHERE s.project = ?1 AND (EXISTS (SELECT 1 FROM observations o WHERE o.session_id = s.id)
                                       OR EXISTS (SELECT 1 FROM summaries m WHERE m.session_id = s.id))
             ORDER BY s.last_activity_at DESC, s.id DESC LIMIT ?2",
        )?
        .query_map(params![project, limit], |r| {
            Ok(SessionWithMemory { id: r.get(0)?, agent_session_id: r.get(1)?, last_activity_at: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A session's latest `limit` observations, newest first.
pub fn latest_observations_of(conn: &Connection, session_id: i64, limit: u32) -> Result<Vec<Observation>> {
    let sql = format!("{OBSERVATION_SELECT} WHERE o.session_id = ?1 ORDER BY o.id DESC LIMIT ?2");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![session_id, limit], observation_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
