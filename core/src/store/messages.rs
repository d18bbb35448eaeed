//! SQL for the message queue table: enqueue, claim, complete, fail, release, recover, retry, abort, prune.
//!
//! Every state change is guarded by the state it expects (and a claim by its attempt number), so a late
//! answer from a consumer whose message was retried, aborted or reset cannot overwrite the newer state.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, StoreError};
use crate::queue::message::{Claimed, MessageInfo, MessageKind, MessageStatus, Payload, ToolUse};

/// The next pending message of a session, by queue order. A seek on `messages_status`.
pub const NEXT_PENDING_SQL: &str = "SELECT id, kind, payload, attempts, prompt_number, available_at \
     FROM messages WHERE session_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1";

/// The outcome of enqueuing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this id.
    New(i64),
    /// A message with the same idempotency key was already stored.
    Duplicate,
}

/// Stores a pending message. Returns `Duplicate` (and stores nothing) when the key was seen before.
pub fn enqueue(
    conn: &Connection,
    session_id: i64,
    payload: &Payload,
    prompt_number: i64,
    idempotency_key: Option<&str>,
    now: i64,
) -> Result<Enqueued> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (session_id, kind, payload, prompt_number, idempotency_key, created_at, available_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )?;
    let n = stmt.execute(params![
        session_id,
        payload.kind().as_str(),
        payload.to_json(),
        prompt_number,
        idempotency_key,
        now
    ])?;
    Ok(if n == 0 { Enqueued::Duplicate } else { Enqueued::New(conn.last_insert_rowid()) })
}

/// Files the session's message with this key (and the observations made from it) under `prompt_number`.
/// True when it moved.
pub fn refile(conn: &Connection, session_id: i64, idempotency_key: &str, prompt_number: i64) -> Result<bool> {
    let moved: Option<i64> = conn
        .prepare_cached(
            "UPDATE messages SET prompt_number = ?3
             WHERE session_id = ?1 AND idempotency_key = ?2 AND prompt_number != ?3 RETURNING id",
        )?
        .query_row(params![session_id, idempotency_key, prompt_number], |r| r.get(0))
        .optional()?;
    let Some(id) = moved else { return Ok(false) };
    conn.prepare_cached("UPDATE observations SET prompt_number = ?2 WHERE message_id = ?1")?
        .execute(params![id, prompt_number])?;
    conn.prepare_cached("UPDATE summaries SET prompt_number = ?2 WHERE message_id = ?1")?
        .execute(params![id, prompt_number])?;
    Ok(true)
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The session's next message, now `processing` with its attempt counted.
    Message(Box<Claimed>),
    /// The next message is backing off until this time (ms); nothing was claimed.
    NotBefore(i64),
    /// Nothing pending.
    Empty,
}

/// Claims a session's next pending message, strictly in queue order.
pub fn claim_next(conn: &Connection, session_id: i64, now: i64) -> Result<Claim> {
    let mut stmt = conn.prepare_cached(NEXT_PENDING_SQL)?;
    let next = stmt
        .query_row([session_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((id, kind, payload, attempts, prompt_number, available_at)) = next else {
        return Ok(Claim::Empty);
    };
    if available_at > now {
        return Ok(Claim::NotBefore(available_at));
    }
    conn.prepare_cached(
        "UPDATE messages SET status = 'processing', attempts = attempts + 1, claimed_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    let kind = match kind.as_str() {
        "summarize" => MessageKind::Summarize,
        _ => MessageKind::Observation,
    };
    let payload = Payload::from_json(kind, payload.as_deref().unwrap_or("{}"))?;
    Ok(Claim::Message(Box::new(Claimed { id, session_id, payload, attempts: attempts + 1, prompt_number })))
}

/// A session's pending messages from the next one on, in queue order: what a batch claim looks at.
pub const PENDING_RUN_SQL: &str = "SELECT id, kind, payload, attempts, prompt_number, available_at \
     FROM messages WHERE session_id = ?1 AND status = 'pending' ORDER BY id LIMIT ?2";

/// What a batch claim found.
#[derive(Debug)]
pub enum BatchClaim {
    /// The session's next messages, now `processing` with their attempts counted: one summarize alone, or
    /// consecutive tool uses that are due, within the limits.
    Batch(Vec<Claimed>),
    /// The next message is backing off until this time (ms); nothing was claimed.
    NotBefore(i64),
    /// Nothing pending.
    Empty,
}

/// Claims a session's next pending messages, strictly in queue order: the next message, then (when it is a
/// tool use) the tool uses right behind it while they are due, up to `max_items` and about `max_tokens`
/// (payload bytes / 4; the first goes whatever its size). A summarize is always claimed alone.
pub fn claim_batch(
    conn: &Connection,
    session_id: i64,
    now: i64,
    max_items: usize,
    max_tokens: usize,
) -> Result<BatchClaim> {
    let mut stmt = conn.prepare_cached(PENDING_RUN_SQL)?;
    let rows = stmt
        .query_map(params![session_id, max_items.max(1) as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let Some(first) = rows.first() else { return Ok(BatchClaim::Empty) };
    if first.5 > now {
        return Ok(BatchClaim::NotBefore(first.5));
    }
    let mut claimed = Vec::new();
    let mut tokens = 0usize;
    for (id, kind, payload, attempts, prompt_number, available_at) in rows {
        let kind = match kind.as_str() {
            "summarize" => MessageKind::Summarize,
            _ => MessageKind::Observation,
        };
        let payload = payload.as_deref().unwrap_or("{}");
        let cost = payload.len() / 4;
        let fits = claimed.is_empty()
            || (kind == MessageKind::Observation && available_at <= now && tokens + cost <= max_tokens);
        if !fits {
            break;
        }
        tokens += cost;
        let payload = Payload::from_json(kind, payload)?;
        claimed.push(Claimed { id, session_id, payload, attempts: attempts + 1, prompt_number });
        if kind == MessageKind::Summarize {
            break;
        }
    }
    let mut mark = conn.prepare_cached(
        "UPDATE messages SET status = 'processing', attempts = attempts + 1, claimed_at = ?2 WHERE id = ?1",
    )?;
    for message in &claimed {
        mark.execute(params![message.id, now])?;
    }
    Ok(BatchClaim::Batch(claimed))
}

/// Sends a claimed message back to `pending` until `at` with its attempt refunded: the provider asked to be
/// left alone (a rate limit), which is not the message's failure.
pub fn postpone(conn: &Connection, id: i64, attempt: u32, error: &str, at: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE messages SET status = 'pending', attempts = attempts - 1, claimed_at = NULL, last_error = ?3,
                 available_at = ?4
             WHERE id = ?1 AND status = 'processing' AND attempts = ?2",
        )?
        .execute(params![id, attempt, error, at])?;
    Ok(n == 1)
}

/// Marks a claimed message processed. A summarize's payload is dropped; an observation's tool use is kept for
/// the summary of its span ([`span_tool_uses`]) until that summary is committed ([`drop_span_payloads`]) or
/// retention prunes the row. Returns the prompt the message is filed under now (reconciliation may have moved
/// it since the claim), or `None` when the claim is no longer current (the message was retried, aborted or
/// reset meanwhile): the caller must then store nothing.
pub fn complete(conn: &Connection, id: i64, attempt: u32, now: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "UPDATE messages SET status = 'processed', payload = CASE WHEN kind = 'observation' THEN payload END,
                 last_error = NULL, completed_at = ?3
             WHERE id = ?1 AND status = 'processing' AND attempts = ?2
             RETURNING prompt_number",
        )?
        .query_row(params![id, attempt, now], |r| r.get(0))
        .optional()?)
}

/// Drops the tool uses of a summarized span (processed observation messages up to `prompt_number`): once
/// the summary is committed nothing needs them, and tool output (file contents, command output) is not kept
/// longer than that.
pub fn drop_span_payloads(conn: &Connection, session_id: i64, prompt_number: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE messages SET payload = NULL
             WHERE session_id = ?1 AND status = 'processed' AND kind = 'observation' AND payload IS NOT NULL
                 AND prompt_number <= ?2",
        )?
        .execute(params![session_id, prompt_number])?)
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back to `pending`, claimable from this time (ms).
    Retry(i64),
    /// No attempts left (or the error was final): `failed`.
    Failed,
    /// The claim was no longer current; nothing changed.
    Stale,
}

/// Records a failed attempt: back to `pending` at `retry_at`, or `failed` when `retry_at` is `None`.
pub fn fail_attempt(
    conn: &Connection,
    id: i64,
    attempt: u32,
    error: &str,
    retry_at: Option<i64>,
    now: i64,
) -> Result<AfterFailure> {
    let n = match retry_at {
        Some(at) => conn
            .prepare_cached(
                "UPDATE messages SET status = 'pending', last_error = ?3, available_at = ?4
                 WHERE id = ?1 AND status = 'processing' AND attempts = ?2",
            )?
            .execute(params![id, attempt, error, at])?,
        None => conn
            .prepare_cached(
                "UPDATE messages SET status = 'failed', last_error = ?3, completed_at = ?4
                 WHERE id = ?1 AND status = 'processing' AND attempts = ?2",
            )?
            .execute(params![id, attempt, error, now])?,
    };
    Ok(match (n, retry_at) {
        (0, _) => AfterFailure::Stale,
        (_, Some(at)) => AfterFailure::Retry(at),
        (_, None) => AfterFailure::Failed,
    })
}

/// Gives a claimed message back untouched (its consumer was cancelled): `pending`, attempt refunded.
pub fn release(conn: &Connection, id: i64, attempt: u32) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE messages SET status = 'pending', attempts = attempts - 1, claimed_at = NULL
             WHERE id = ?1 AND status = 'processing' AND attempts = ?2",
        )?
        .execute(params![id, attempt])?;
    Ok(n == 1)
}

/// At start: what a previous process left `processing` goes back to `pending` at once, except messages
/// that have used up their attempts (a crash loop), which become `failed`. Returns (requeued, failed).
pub fn recover(conn: &Connection, max_attempts: u32, now: i64) -> Result<(usize, usize)> {
    let failed = conn.execute(
        "UPDATE messages SET status = 'failed', completed_at = ?2,
             last_error = 'the process stopped while processing this message, attempt ' || attempts || ' of ' || ?1
         WHERE status = 'processing' AND attempts >= ?1",
        params![max_attempts, now],
    )?;
    let requeued = conn.execute(
        "UPDATE messages SET status = 'pending', claimed_at = NULL, available_at = ?1 WHERE status = 'processing'",
        [now],
    )?;
    Ok((requeued, failed))
}

/// Every `processing` message goes back to `pending` (shutdown's last sweep), attempts refunded.
pub fn release_all(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE messages SET status = 'pending', attempts = max(attempts - 1, 0), claimed_at = NULL
         WHERE status = 'processing'",
        [],
    )?)
}

/// Sessions that have pending messages, in session order.
pub fn sessions_with_pending(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT session_id FROM messages WHERE status = 'pending'")?;
    let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// True when the session has a pending message.
pub fn has_pending(conn: &Connection, session_id: i64) -> Result<bool> {
    let mut stmt =
        conn.prepare_cached("SELECT 1 FROM messages WHERE session_id = ?1 AND status = 'pending' LIMIT 1")?;
    Ok(stmt.exists([session_id])?)
}

/// The tool uses of a summary's span, in queue order: the payloads of the session's processed observation
/// messages after the previous summary's prompt, up to and including `prompt_number` (the span of
/// `memories::span`). Messages pruned by retention, and those processed before payloads were kept, are missing.
pub fn span_tool_uses(conn: &Connection, session_id: i64, prompt_number: i64) -> Result<Vec<ToolUse>> {
    let mut stmt = conn.prepare_cached(
        "SELECT payload FROM messages
         WHERE session_id = ?1 AND status = 'processed' AND kind = 'observation' AND payload IS NOT NULL
             AND prompt_number <= ?2
             AND prompt_number > (SELECT coalesce(max(prompt_number), 0) FROM summaries
                                  WHERE session_id = ?1 AND prompt_number < ?2)
         ORDER BY id",
    )?;
    let payloads = stmt.query_map(params![session_id, prompt_number], |r| r.get::<_, String>(0))?;
    let mut tools = Vec::new();
    for payload in payloads {
        if let Payload::Observation(tool) = Payload::from_json(MessageKind::Observation, &payload?)? {
            tools.push(*tool);
        }
    }
    Ok(tools)
}

/// A message a queue operation changed, with what its events need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The message.
    pub message_id: i64,
    /// Its session.
    pub session_id: i64,
    /// The session's project.
    pub project: String,
}

/// Sends one message back to `pending` with fresh attempts. `None` when there is no such message or it is
/// already processed.
pub fn retry(conn: &Connection, id: i64, now: i64) -> Result<Option<Touched>> {
    let session_id: Option<i64> = conn
        .prepare_cached(
            "UPDATE messages SET status = 'pending', attempts = 0, available_at = ?2, claimed_at = NULL
             WHERE id = ?1 AND status IN ('failed', 'processing', 'pending') RETURNING session_id",
        )?
        .query_row(params![id, now], |r| r.get(0))
        .optional()?;
    session_id.map(|session_id| touched(conn, id, session_id)).transpose()
}

/// Sends every failed message, and every message stuck in `processing` since before `stuck_before`, back
/// to `pending`, in queue order.
pub fn retry_stuck_and_failed(conn: &Connection, stuck_before: i64, now: i64) -> Result<Vec<Touched>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE messages SET status = 'pending', attempts = 0, available_at = ?2, claimed_at = NULL
         WHERE status = 'failed' OR (status = 'processing' AND claimed_at < ?1) RETURNING id, session_id",
    )?;
    let mut ids: Vec<(i64, i64)> =
        stmt.query_map(params![stuck_before, now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    ids.sort_unstable();
    ids.into_iter().map(|(message_id, session_id)| touched(conn, message_id, session_id)).collect()
}

fn touched(conn: &Connection, message_id: i64, session_id: i64) -> Result<Touched> {
    let project = conn
        .prepare_cached("SELECT project FROM sessions WHERE id = ?1")?
        .query_row([session_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    Ok(Touched { message_id, session_id, project })
}

/// Deletes one message that is not yet processed. Returns its session, or `None`.
pub fn abort(conn: &Connection, id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("DELETE FROM messages WHERE id = ?1 AND status != 'processed' RETURNING session_id")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Deletes processed messages completed before `before`. Their observations and summaries stay.
pub fn prune(conn: &Connection, before: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM messages WHERE status = 'processed' AND completed_at < ?1", [before])?)
}

/// Which messages a listing returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageFilter {
    /// Only this session's.
    pub session_id: Option<i64>,
    /// Only messages not yet processed.
    pub unfinished: bool,
}

/// Lists messages for the inspector: failed and stuck first, then processing, then pending, then the rest;
/// oldest first within each group.
pub fn list(conn: &Connection, filter: MessageFilter, stuck_before: i64, limit: u32) -> Result<Vec<MessageInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.session_id, s.agent_session_id, s.project, m.kind, m.status, m.attempts, m.last_error,
                json_extract(m.payload, '$.tool_name'), m.created_at, m.claimed_at, m.completed_at
         FROM messages m JOIN sessions s ON s.id = m.session_id
         WHERE (?1 IS NULL OR m.session_id = ?1) AND (?2 = 0 OR m.status != 'processed')
         ORDER BY CASE
                    WHEN m.status = 'failed' THEN 0
                    WHEN m.status = 'processing' AND m.claimed_at < ?3 THEN 0
                    WHEN m.status = 'processing' THEN 1
                    WHEN m.status = 'pending' THEN 2
                    ELSE 3 END,
                  m.id
         LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![filter.session_id, filter.unfinished, stuck_before, limit], |r| {
        let status = MessageStatus::parse(&r.get::<_, String>(5)?).unwrap_or(MessageStatus::Pending);
        let claimed_at: Option<i64> = r.get(10)?;
        Ok(MessageInfo {
            id: r.get(0)?,
            session_id: r.get(1)?,
            agent_session_id: r.get(2)?,
            project: r.get(3)?,
            kind: if r.get::<_, String>(4)? == "summarize" { MessageKind::Summarize } else { MessageKind::Observation },
            status,
            stuck: status == MessageStatus::Processing && claimed_at.is_some_and(|t| t < stuck_before),
            attempts: r.get(6)?,
            last_error: r.get(7)?,
            tool_name: r.get(8)?,
            created_at: r.get(9)?,
            claimed_at,
            completed_at: r.get(11)?,
        })
    })?;
    rows.collect::<Result<_, _>>().map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{NewObservation, NewSummary};
    use crate::queue::message::SummaryRequest;
    use crate::store::{memories, sessions};

    fn tool(id: &str) -> ToolUse {
        ToolUse {
            tool_name: "Read".into(),
            tool_input: serde_json::json!({"file_path": format!("/p/{id}.rs")}),
            tool_response: serde_json::json!({}),
            cwd: "/p".into(),
            tool_use_id: Some(id.into()),
            error: None,
            subagent: None,
        }
    }

    /// Queues a message under the session's current prompt and, when `processed`, processes it (an observation
    /// gets its observation, a summarize its summary).
    fn message(conn: &Connection, session_id: i64, payload: Payload, processed: bool) -> i64 {
        let prompt: i64 =
            conn.query_row("SELECT prompt_counter FROM sessions WHERE id = ?1", [session_id], |r| r.get(0)).unwrap();
        let Enqueued::New(id) = enqueue(conn, session_id, &payload, prompt, None, 1).unwrap() else { panic!() };
        if processed {
            let Claim::Message(claimed) = claim_next(conn, session_id, 1).unwrap() else { panic!() };
            assert!(complete(conn, claimed.id, claimed.attempts, 2).unwrap().is_some());
            match payload {
                Payload::Observation(t) => {
                    let obs = NewObservation { title: t.tool_use_id.unwrap(), ..Default::default() };
                    let of = memories::ObservationOf {
                        session_id,
                        message_id: id,
                        prompt_number: prompt,
                        tool_name: "Read",
                        subagent: None,
                        made_by: &crate::memory::MadeBy::default(),
                        call_id: None,
                    };
                    memories::insert_observations(conn, of, &[obs], 2).unwrap();
                }
                Payload::Summarize(_) => {
                    let made_by = crate::memory::MadeBy::default();
                    let of = memories::SummaryOf {
                        session_id,
                        message_id: id,
                        prompt_number: prompt,
                        made_by: &made_by,
                        call_id: None,
                    };
                    memories::insert_summary(conn, of, &NewSummary::default(), 2).unwrap();
                }
            }
        }
        id
    }

    fn ids(tools: Vec<ToolUse>) -> Vec<String> {
        tools.into_iter().map(|t| t.tool_use_id.unwrap()).collect()
    }

    #[test]
    fn a_span_holds_its_processed_tool_uses_in_queue_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let (session, _) = sessions::ensure(&conn, "a", "p", 0).unwrap();
        let s = session.id;
        let summarize = || Payload::Summarize(SummaryRequest::default());
        sessions::record_prompt(&conn, s, Some("first"), None, 0).unwrap();
        message(&conn, s, Payload::Observation(Box::new(tool("t1"))), true);
        message(&conn, s, summarize(), true);
        sessions::record_prompt(&conn, s, Some("second"), None, 0).unwrap();
        message(&conn, s, Payload::Observation(Box::new(tool("t2"))), true);
        sessions::record_prompt(&conn, s, Some("third"), None, 0).unwrap();
        message(&conn, s, Payload::Observation(Box::new(tool("t3"))), true);
        message(&conn, s, Payload::Observation(Box::new(tool("t4"))), false);

        assert_eq!(ids(span_tool_uses(&conn, s, 1).unwrap()), ["t1"], "the first summary's span");
        assert_eq!(ids(span_tool_uses(&conn, s, 3).unwrap()), ["t2", "t3"], "after the first summary's prompt");
        assert_eq!(span_tool_uses(&conn, s, 3).unwrap()[0], tool("t2"), "the payload as queued");
        assert_eq!(memories::span(&conn, s, 3).unwrap().1.len(), 2, "the same span as its observations");
        let summarize_payload: Option<String> =
            conn.query_row("SELECT payload FROM messages WHERE kind = 'summarize'", [], |r| r.get(0)).unwrap();
        assert_eq!(summarize_payload, None, "a processed summarize keeps no payload");

        conn.execute("UPDATE messages SET completed_at = 0 WHERE payload LIKE '%t2%'", []).unwrap();
        assert_eq!(prune(&conn, 1).unwrap(), 1);
        assert_eq!(ids(span_tool_uses(&conn, s, 3).unwrap()), ["t3"], "a pruned message's tool use is gone");
        assert_eq!(memories::span(&conn, s, 3).unwrap().1.len(), 2, "its observation stays");
    }
}
