//! SQL for the hook inbox: raw hook events that `memtray hook` stored while no server answered, in arrival
//! order, until the server has dispatched them.

use rusqlite::{Connection, params};

use super::Result;

/// Stores one raw event.
pub fn push(conn: &Connection, body: &str, now: i64) -> Result<i64> {
    conn.prepare_cached("INSERT INTO hook_inbox (body, received_at) VALUES (?1, ?2)")?.execute(params![body, now])?;
    Ok(conn.last_insert_rowid())
}

/// The oldest events, up to `limit`.
pub fn oldest(conn: &Connection, limit: u32) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, body FROM hook_inbox ORDER BY id LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Forgets a dispatched event.
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM hook_inbox WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// True when nothing waits.
pub fn is_empty(conn: &Connection) -> Result<bool> {
    Ok(!conn.prepare_cached("SELECT 1 FROM hook_inbox LIMIT 1")?.exists([])?)
}
