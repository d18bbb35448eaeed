//! The local store's side of pulling: teammates' memory written into the local tables, under a session
//! labelled with its author, so search, session-start context, the MCP tools and the inspector read it
//! like this machine's own. Plain `fn(&Connection, ...)` SQL run through the store's writer.
//!
//! A page and the project's cursor are written in one transaction, and each row keeps its origin (unique),
//! so a page applied twice (a crash between the write and the next pull) adds nothing.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{MemoryKind, PulledMemory};
use crate::store::Result;

/// How far `project` was pulled (0: not yet).
pub fn cursor(conn: &Connection, project: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT after FROM team_cursors WHERE project = ?1")?
        .query_row([project], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The local session id a teammate's session is kept under: theirs, marked with its author so it never
/// meets a session of this machine's.
pub fn local_session_id(session: &str, author: &str) -> String {
    format!("{session}@{author}")
}

fn text(body: &Value, field: &str) -> String {
    body.get(field).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn list(body: &Value, field: &str) -> String {
    match body.get(field) {
        Some(v @ Value::Array(items)) if items.iter().all(Value::is_string) => v.to_string(),
        _ => "[]".into(),
    }
}

/// Writes one pulled page of `project` and moves its cursor to `next`. Returns how many rows were new.
pub fn apply(conn: &Connection, project: &str, page: &[PulledMemory], next: i64) -> Result<usize> {
    let mut session_of = conn.prepare_cached(
        "INSERT INTO sessions (agent_session_id, project, status, started_at, ended_at, last_activity_at, author)
         VALUES (?1, ?2, 'completed', ?3, ?3, ?3, ?4)
         ON CONFLICT (agent_session_id) DO UPDATE
             SET last_activity_at = max(last_activity_at, excluded.last_activity_at),
                 ended_at = max(coalesce(ended_at, 0), excluded.ended_at)
         RETURNING id",
    )?;
    let mut observation = conn.prepare_cached(
        "INSERT OR IGNORE INTO observations (session_id, prompt_number, tool_name, type, title, subtitle, facts,
             files_read, files_modified, created_at, origin_machine, origin_id, narrative, concepts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut summary = conn.prepare_cached(
        "INSERT OR IGNORE INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
             files_read, files_edited, created_at, origin_machine, origin_id, learned, notes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut added = 0;
    for p in page {
        let m = &p.memory;
        let session_id: i64 = session_of
            .query_row(params![local_session_id(&m.session, &p.author), m.project, m.created_at, p.author], |r| {
                r.get(0)
            })?;
        let b = &m.body;
        added += match m.kind {
            MemoryKind::Observation => observation.execute(params![
                session_id,
                m.prompt_number,
                text(b, "tool_name"),
                text(b, "type"),
                text(b, "title"),
                text(b, "subtitle"),
                list(b, "facts"),
                list(b, "files_read"),
                list(b, "files_modified"),
                m.created_at,
                p.machine,
                m.origin_id,
                text(b, "narrative"),
                list(b, "concepts")
            ])?,
            MemoryKind::Summary => summary.execute(params![
                session_id,
                m.prompt_number,
                text(b, "request"),
                text(b, "investigated"),
                text(b, "completed"),
                text(b, "next_steps"),
                list(b, "files_read"),
                list(b, "files_edited"),
                m.created_at,
                p.machine,
                m.origin_id,
                text(b, "learned"),
                text(b, "notes")
            ])?,
        };
    }
    conn.prepare_cached(
        "INSERT INTO team_cursors (project, after) VALUES (?1, ?2)
         ON CONFLICT (project) DO UPDATE SET after = max(after, excluded.after)",
    )?
    .execute(params![project, next])?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::team::SharedMemory;

    fn memory(seq: i64, kind: MemoryKind, body: Value) -> PulledMemory {
        PulledMemory {
            seq,
            machine: "m-a".into(),
            author: "alice".into(),
            memory: SharedMemory {
                kind,
                origin_id: seq * 10,
                project: "ledger".into(),
                session: "sa".into(),
                prompt_number: 1,
                created_at: 1_000 + seq,
                body,
            },
        }
    }

    #[test]
    fn a_page_lands_once_labelled_and_is_never_queued_again() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::store::migrate_for_tests(&mut conn);
        crate::team::outbox::set_share(&conn, &["*".into()]).unwrap();
        let page = vec![
            memory(
                1,
                MemoryKind::Observation,
                json!({"type": "change", "title": "walrus parser", "narrative": "sped up"}),
            ),
            memory(2, MemoryKind::Summary, json!({"request": "speed up", "completed": "done"})),
        ];
        assert_eq!(apply(&conn, "ledger", &page, 2).unwrap(), 2);
        assert_eq!(apply(&conn, "ledger", &page, 2).unwrap(), 0);
        assert_eq!(cursor(&conn, "ledger").unwrap(), 2);
        apply(&conn, "ledger", &[], 1).unwrap();
        assert_eq!(cursor(&conn, "ledger").unwrap(), 2, "a cursor never goes back");
        let (author, sid): (String, String) = conn
            .query_row("SELECT author, agent_session_id FROM sessions", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((author.as_str(), sid.as_str()), ("alice", "sa@alice"));
        assert_eq!(crate::team::outbox::len(&conn).unwrap(), 0, "pulled memory is not pushed back");
        let hits = crate::store::search::search(
            &conn,
            &crate::store::search::SearchQuery { text: "walrus".into(), limit: 10, ..Default::default() },
        )
        .unwrap();
        assert_eq!(hits.len(), 1);
        let narrative: String = conn.query_row("SELECT narrative FROM observations", [], |r| r.get(0)).unwrap();
        assert_eq!(narrative, "sped up");
    }
}
