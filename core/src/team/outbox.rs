//! The local store's side of pushing: the shared-project patterns kept in step with the config, this
//! machine's id, and the outbox that triggers fill inside the transaction writing the memory (schema
//! migration 6). Plain `fn(&Connection, ...)` SQL run through the store's writer and readers.
//!
//! A row leaves the outbox only after the team server acknowledged it; a retried push is harmless, since
//! the server keeps one row per origin.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{MemoryKind, SharedMemory};
use crate::store::Result;

/// Replaces the shared-project patterns with `patterns`, and drops what the outbox holds of projects no
/// longer shared: opting a project out means none of it leaves from then on. Returns how many were dropped.
pub fn set_share(conn: &Connection, patterns: &[String]) -> Result<usize> {
    conn.execute("DELETE FROM team_share", [])?;
    let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO team_share (pattern) VALUES (?1)")?;
    for pattern in patterns {
        insert.execute([pattern])?;
    }
    Ok(conn.execute(
        "DELETE FROM team_outbox WHERE id IN (
             SELECT q.id FROM team_outbox q
                  LEFT JOIN observations o ON q.kind = 'observation' AND o.id = q.local_id
                  LEFT JOIN summaries m ON q.kind = 'summary' AND m.id = q.local_id
                  JOIN sessions s ON s.id = coalesce(o.session_id, m.session_id)
             WHERE NOT EXISTS (SELECT 1 FROM team_share t WHERE s.project GLOB t.pattern))",
        [],
    )?)
}

/// Whether `project` matches a shared-project pattern (the same GLOB test the outbox triggers make).
pub fn is_shared(conn: &Connection, project: &str) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM team_share WHERE ?1 GLOB pattern LIMIT 1")?.exists([project])?)
}

/// This machine's id, made on first use: what the team server keys its rows by, with their local ids.
pub fn machine_id(conn: &Connection) -> Result<String> {
    let found: Option<String> = conn
        .prepare_cached("SELECT value FROM team_state WHERE key = 'machine'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.execute("INSERT OR IGNORE INTO team_state (key, value) VALUES ('machine', lower(hex(randomblob(16))))", [])?;
    machine_id(conn)
}

/// How many memories wait to be pushed.
pub fn len(conn: &Connection) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM team_outbox")?.query_row([], |r| r.get(0))?)
}

/// The projects with memory in the outbox, the one queued longest ago first.
pub fn projects(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.project FROM team_outbox q
              LEFT JOIN observations o ON q.kind = 'observation' AND o.id = q.local_id
              LEFT JOIN summaries m ON q.kind = 'summary' AND m.id = q.local_id
              JOIN sessions s ON s.id = coalesce(o.session_id, m.session_id)
         GROUP BY s.project ORDER BY min(q.id)",
    )?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// The oldest `limit` queued memories of `project` with their outbox ids, as the team server takes them.
/// One project per batch, so a project the server refuses holds up no other.
pub fn next_batch(conn: &Connection, project: &str, limit: usize) -> Result<Vec<(i64, SharedMemory)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.id, q.kind, q.local_id, s.project, s.agent_session_id,
                coalesce(o.prompt_number, m.prompt_number), coalesce(o.created_at, m.created_at),
                o.tool_name, o.type, o.title, o.subtitle, o.facts, o.files_read, o.files_modified,
                m.request, m.investigated, m.completed, m.next_steps, m.files_read, m.files_edited,
                o.narrative, o.concepts, m.learned, m.notes
         FROM team_outbox q
              LEFT JOIN observations o ON q.kind = 'observation' AND o.id = q.local_id
              LEFT JOIN summaries m ON q.kind = 'summary' AND m.id = q.local_id
              JOIN sessions s ON s.id = coalesce(o.session_id, m.session_id)
         WHERE s.project = ?2
         ORDER BY q.id LIMIT ?1",
    )?;
    let list = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<serde_json::Value> {
        let text: Option<String> = r.get(i)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_else(|| json!([])))
    };
    let rows = stmt.query_map(params![limit as i64, project], |r| {
        let kind: String = r.get(1)?;
        let kind = MemoryKind::parse(&kind).unwrap_or(MemoryKind::Observation);
        let body = match kind {
            MemoryKind::Observation => json!({
                "tool_name": r.get::<_, String>(7)?,
                "type": r.get::<_, String>(8)?,
                "title": r.get::<_, String>(9)?,
                "subtitle": r.get::<_, String>(10)?,
                "facts": list(r, 11)?,
                "files_read": list(r, 12)?,
                "files_modified": list(r, 13)?,
                "narrative": r.get::<_, String>(20)?,
                "concepts": list(r, 21)?,
            }),
            MemoryKind::Summary => json!({
                "request": r.get::<_, String>(14)?,
                "investigated": r.get::<_, String>(15)?,
                "completed": r.get::<_, String>(16)?,
                "next_steps": r.get::<_, String>(17)?,
                "files_read": list(r, 18)?,
                "files_edited": list(r, 19)?,
                "learned": r.get::<_, String>(22)?,
                "notes": r.get::<_, String>(23)?,
            }),
        };
        Ok((
            r.get(0)?,
            SharedMemory {
                kind,
                origin_id: r.get(2)?,
                project: r.get(3)?,
                session: r.get(4)?,
                prompt_number: r.get(5)?,
                created_at: r.get(6)?,
                body,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes pushed memories from the outbox.
pub fn acknowledge(conn: &Connection, ids: &[i64]) -> Result<()> {
    let mut delete = conn.prepare_cached("DELETE FROM team_outbox WHERE id = ?1")?;
    for id in ids {
        delete.execute([id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::store::migrate_for_tests(&mut conn);
        conn
    }

    fn observe(conn: &Connection, session_id: i64, title: &str) -> i64 {
        conn.execute(
            "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, facts, created_at)
             VALUES (?1, 1, 'Bash', 'command', ?2, '[\"ran it\"]', 5)",
            params![session_id, title],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    #[test]
    fn only_own_memory_of_shared_projects_is_queued_in_its_transaction() {
        let conn = db();
        set_share(&conn, &["ledger*".to_string()]).unwrap();
        let shared = sessions::ensure(&conn, "s1", "ledger-api", 1).unwrap().0.id;
        let private = sessions::ensure(&conn, "s2", "atlas", 1).unwrap().0.id;
        let pulled = sessions::ensure(&conn, "s3", "ledger-api", 1).unwrap().0.id;
        conn.execute("UPDATE sessions SET author = 'bob' WHERE id = ?1", [pulled]).unwrap();
        let queued = observe(&conn, shared, "shared one");
        observe(&conn, private, "private one");
        observe(&conn, pulled, "bob's one");
        conn.execute(
            "INSERT INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
                 created_at) VALUES (?1, 1, 'fix it', '', 'fixed', '', 6)",
            [shared],
        )
        .unwrap();
        assert_eq!(projects(&conn).unwrap(), ["ledger-api"]);
        let batch = next_batch(&conn, "ledger-api", 10).unwrap();
        let got: Vec<(MemoryKind, String)> = batch.iter().map(|(_, m)| (m.kind, m.project.clone())).collect();
        assert_eq!(got, [(MemoryKind::Observation, "ledger-api".into()), (MemoryKind::Summary, "ledger-api".into())]);
        assert_eq!(batch[0].1.origin_id, queued);
        assert_eq!(batch[0].1.body["title"], "shared one");
        assert_eq!(batch[0].1.body["facts"], json!(["ran it"]));
        assert_eq!(batch[1].1.body["completed"], "fixed");
        // A write rolled back queues nothing.
        conn.execute_batch("BEGIN").unwrap();
        observe(&conn, shared, "rolled back");
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(len(&conn).unwrap(), 2);
        acknowledge(&conn, &[batch[0].0]).unwrap();
        assert_eq!(len(&conn).unwrap(), 1);
        // Still shared: what is queued stays queued.
        assert_eq!(set_share(&conn, &["ledger-*".to_string(), "atlas".to_string()]).unwrap(), 0);
        assert_eq!(len(&conn).unwrap(), 1);
        // Deleting the session before the push drops what it queued.
        sessions::delete(&conn, shared).unwrap();
        assert_eq!(len(&conn).unwrap(), 0);
        // No patterns: nothing is queued, and what was queued is dropped.
        observe(&conn, sessions::ensure(&conn, "s5", "ledger-api", 1).unwrap().0.id, "queued, then opted out");
        assert_eq!(len(&conn).unwrap(), 1);
        assert_eq!(set_share(&conn, &[]).unwrap(), 1);
        let again = sessions::ensure(&conn, "s4", "ledger-api", 1).unwrap().0.id;
        observe(&conn, again, "after opting out");
        assert_eq!(len(&conn).unwrap(), 0);
        assert!(!is_shared(&conn, "ledger-api").unwrap());
    }

    #[test]
    fn the_machine_id_is_made_once() {
        let conn = db();
        let id = machine_id(&conn).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(machine_id(&conn).unwrap(), id);
    }
}
