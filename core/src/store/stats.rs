//! SQL for the numbers the status line, tray and overview show. Each is a count over an index, so the
//! database stays the one source of truth and nothing is mirrored in memory.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::Result;

/// Queue and session counts at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Messages waiting.
    pub pending: i64,
    /// Messages claimed.
    pub processing: i64,
    /// Of `processing`, claimed before the stuck threshold.
    pub stuck: i64,
    /// Messages given up on.
    pub failed: i64,
    /// Sessions with status `active`.
    pub active_sessions: i64,
    /// Sessions with a pending or processing message.
    pub sessions_with_work: i64,
    /// The earliest claim among `processing` messages not stuck yet: the next to turn stuck.
    pub oldest_claim: Option<i64>,
}

/// Reads the totals; a message is stuck when claimed before `stuck_before`.
pub fn totals(conn: &Connection, stuck_before: i64) -> Result<Totals> {
    let mut t = Totals::default();
    let mut stmt = conn.prepare_cached(
        "SELECT status, count(*) FROM messages
         WHERE status IN ('pending', 'processing', 'failed') GROUP BY status",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(1)?;
        match r.get_ref(0)?.as_str().unwrap_or_default() {
            "pending" => t.pending = n,
            "processing" => t.processing = n,
            _ => t.failed = n,
        }
    }
    t.sessions_with_work = conn
        .prepare_cached("SELECT count(DISTINCT session_id) FROM messages WHERE status IN ('pending', 'processing')")?
        .query_row([], |r| r.get(0))?;
    (t.stuck, t.oldest_claim) = conn
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE claimed_at < ?1), min(claimed_at) FILTER (WHERE claimed_at >= ?1)
             FROM messages WHERE status = 'processing'",
        )?
        .query_row(params![stuck_before], |r| Ok((r.get(0)?, r.get(1)?)))?;
    t.active_sessions =
        conn.prepare_cached("SELECT count(*) FROM sessions WHERE status = 'active'")?.query_row([], |r| r.get(0))?;
    Ok(t)
}

/// Messages processed since `since` (ms).
pub fn processed_since(conn: &Connection, since: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM messages WHERE status = 'processed' AND completed_at >= ?1")?
        .query_row([since], |r| r.get(0))?)
}
