//! SQL for provider calls: one row per call that spent tokens, written in the transaction that stores what
//! the call made; summed for the daily token ceiling and for the cost figures of `/api/stats`.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::Result;

/// One milliseconds-since-the-epoch day, as the ceiling counts days (UTC).
pub const DAY_MS: i64 = 86_400_000;

/// A call to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// The provider's name.
    pub provider: String,
    /// The model that answered.
    pub model: Option<String>,
    /// The session's project.
    pub project: String,
    /// The session's row id.
    pub session_id: i64,
    /// How many messages it was for.
    pub messages: usize,
    /// Input tokens, as the API counted them (cache reads and writes included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// False when its answer could not be parsed (the tokens were spent all the same).
    pub readable: bool,
}

/// Stores a call; returns its id.
pub fn insert(conn: &Connection, call: &NewCall, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO provider_calls (provider, model, project, session_id, messages, input_tokens, output_tokens,
             outcome, day, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        call.provider,
        call.model,
        call.project,
        call.session_id,
        call.messages as i64,
        call.input_tokens as i64,
        call.output_tokens as i64,
        if call.readable { "memory" } else { "unreadable" },
        now.div_euclid(DAY_MS),
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Tokens (input + output) spent on the UTC day `now` falls in.
pub fn tokens_on_day_of(conn: &Connection, now: i64) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM provider_calls WHERE day = ?1")?
        .query_row([now.div_euclid(DAY_MS)], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Token totals of one group (a day, a project or a provider).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenTotals {
    /// The group: a `YYYY-MM-DD` day, a project name or a provider name.
    pub key: String,
    /// Calls made.
    pub calls: i64,
    /// Messages they were for.
    pub messages: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
}

/// What providers cost: totals per day (the last `days`, newest first), per project and per provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Per UTC day, newest first.
    pub by_day: Vec<TokenTotals>,
    /// Per project, most tokens first.
    pub by_project: Vec<TokenTotals>,
    /// Per provider, most tokens first.
    pub by_provider: Vec<TokenTotals>,
}

/// Reads the cost figures, days since `since_day` (a day number) included.
pub fn usage(conn: &Connection, since_day: i64) -> Result<Usage> {
    let group = |key: &str, order: &str| -> Result<Vec<TokenTotals>> {
        let sql = format!(
            "SELECT {key}, count(*), sum(messages), sum(input_tokens), sum(output_tokens) FROM provider_calls
             WHERE day >= ?1 GROUP BY 1 ORDER BY {order}"
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map([since_day], |r| {
                Ok(TokenTotals {
                    key: r.get(0)?,
                    calls: r.get(1)?,
                    messages: r.get(2)?,
                    input_tokens: r.get(3)?,
                    output_tokens: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    };
    Ok(Usage {
        by_day: group("date(day * 86400, 'unixepoch')", "1 DESC")?,
        by_project: group("project", "sum(input_tokens + output_tokens) DESC, 1")?,
        by_provider: group("provider", "sum(input_tokens + output_tokens) DESC, 1")?,
    })
}
