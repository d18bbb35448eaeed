//! Full-text search over memory: observations, summaries and user prompts, through the FTS5 indexes that
//! schema migration 3 keeps in step by triggers. Ranked by bm25 (a title match counts double), newer first
//! among equals; each hit carries a highlighted, HTML-safe snippet.
//!
//! Read-only: plain `fn(&Connection, ...)` SQL like the other table modules; it never writes.

use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode, Row, params_from_iter, types::Value};
use serde::{Deserialize, Serialize};

use super::{Result, StoreError};

/// The most hits one search returns.
pub const MAX_LIMIT: u32 = 100;
/// Hits returned when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// How many characters of a prompt's text make its title.
const PROMPT_TITLE_CHARS: usize = 120;
/// What FTS5 puts around each match in a snippet; private-use characters that stored text does not hold,
/// replaced by `<mark>`/`</mark>` once the rest of the snippet is escaped.
const OPEN_MARK: char = '\u{E000}';
const CLOSE_MARK: char = '\u{E001}';

/// What kind of memory a hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One tool use, understood.
    Observation,
    /// A session's summary.
    Summary,
    /// What the user asked.
    Prompt,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Observation, Kind::Summary, Kind::Prompt];

    /// The name used in the API (`observation`, `summary`, `prompt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Observation => "observation",
            Kind::Summary => "summary",
            Kind::Prompt => "prompt",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The part of the search that reads this kind's index. `?1` is the match expression; `?2` project,
    /// `?3` observation type, `?4` earliest `created_at`, `?7` author (`''` for this machine's own; each NULL
    /// for "any").
    fn sql(self) -> &'static str {
        match self {
            Kind::Observation => {
                "SELECT 'observation', o.id, o.session_id, s.agent_session_id, s.project, o.created_at, o.title,
                        o.type, NULL,
                        bm25(observations_fts, 2.0, 1.0), s.author
                 FROM observations_fts JOIN observations o ON o.id = observations_fts.rowid
                      JOIN sessions s ON s.id = o.session_id
                 WHERE observations_fts MATCH ?1 AND (?2 IS NULL OR s.project = ?2)
                       AND (?3 IS NULL OR o.type = ?3) AND (?4 IS NULL OR o.created_at >= ?4)
                       AND (?7 IS NULL OR coalesce(s.author, '') = ?7)"
            }
            Kind::Summary => {
                "SELECT 'summary', m.id, m.session_id, s.agent_session_id, s.project, m.created_at, m.request,
                        NULL, NULL,
                        bm25(summaries_fts, 2.0, 1.0), s.author
                 FROM summaries_fts JOIN summaries m ON m.id = summaries_fts.rowid
                      JOIN sessions s ON s.id = m.session_id
                 WHERE summaries_fts MATCH ?1 AND (?2 IS NULL OR s.project = ?2) AND ?3 IS NULL
                       AND (?4 IS NULL OR m.created_at >= ?4)
                       AND (?7 IS NULL OR coalesce(s.author, '') = ?7)"
            }
            Kind::Prompt => {
                "SELECT 'prompt', p.id, p.session_id, s.agent_session_id, s.project, p.created_at, p.text,
                        NULL, NULL,
                        bm25(prompts_fts, 2.0, 1.0), s.author
                 FROM prompts_fts JOIN user_prompts p ON p.id = prompts_fts.rowid
                      JOIN sessions s ON s.id = p.session_id
                 WHERE prompts_fts MATCH ?1 AND (?2 IS NULL OR s.project = ?2) AND ?3 IS NULL
                       AND (?4 IS NULL OR p.created_at >= ?4)
                       AND (?7 IS NULL OR coalesce(s.author, '') = ?7)"
            }
        }
    }

    /// The snippet of one row of this kind's index for the match expression `?1`; `?2` is the row id.
    /// Asked only for the hits returned, since a snippet costs far more than a score.
    fn snippet_sql(self) -> &'static str {
        match self {
            Kind::Observation => {
                "SELECT snippet(observations_fts, -1, char(57344), char(57345), '…', 16) FROM observations_fts
                 WHERE observations_fts MATCH ?1 AND rowid = ?2"
            }
            Kind::Summary => {
                "SELECT snippet(summaries_fts, -1, char(57344), char(57345), '…', 16) FROM summaries_fts
                 WHERE summaries_fts MATCH ?1 AND rowid = ?2"
            }
            Kind::Prompt => {
                "SELECT snippet(prompts_fts, -1, char(57344), char(57345), '…', 16) FROM prompts_fts
                 WHERE prompts_fts MATCH ?1 AND rowid = ?2"
            }
        }
    }
}

/// How the query text is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    /// Plain words (the default): every word must appear, in any order and column, the last one also as the
    /// start of a longer word; quotes, operators and punctuation are just text.
    #[default]
    Words,
    /// FTS5's own query syntax (`AND`, `OR`, `NOT`, `"phrases"`, `prefix*`, `NEAR(...)`, `title:word`),
    /// passed through as written; a malformed one is refused with [`StoreError::BadSearch`].
    Fts5,
}

/// One search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// What to look for.
    pub text: String,
    /// How `text` is read.
    pub syntax: Syntax,
    /// Only this project's memory.
    pub project: Option<String>,
    /// Only observations of this type (`change`, `bugfix`, ...): leaves out summaries and prompts.
    pub observation_type: Option<String>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<Kind>,
    /// Only memory created at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// At most this many hits (clamped to 1..=[`MAX_LIMIT`]).
    pub limit: u32,
    /// Skip this many of the ranked hits first.
    pub offset: u32,
    /// Only this teammate's memory (pulled from the team server); `Some("")` for this machine's own.
    pub author: Option<String>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// What it is.
    pub kind: Kind,
    /// Its row id among its kind (an observation id, a summary id, a prompt id).
    pub id: i64,
    /// The session's row id.
    pub session_id: i64,
    /// The agent's session id.
    pub agent_session_id: String,
    /// The session's project.
    pub project: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// Plain text (not escaped): the observation's title, the summary's request, or the prompt's text cut
    /// to 120 characters.
    pub title: String,
    /// The observation's type; `None` for summaries and prompts.
    #[serde(rename = "type")]
    pub observation_type: Option<String>,
    /// The best-matching passage, HTML-escaped, with each match inside `<mark>`…`</mark>`: safe to insert
    /// into a page as it is.
    pub snippet: String,
    /// bm25 relevance: lower is better. Each kind's score comes from its own index's statistics.
    pub score: f64,
    /// The teammate it comes from (pulled from the team server); `None` for this machine's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// The FTS5 match expression for `query`, or why there is none.
pub fn match_expression(text: &str, syntax: Syntax) -> Result<String> {
    match syntax {
        Syntax::Fts5 if text.trim().is_empty() => Err(StoreError::EmptySearch),
        Syntax::Fts5 => Ok(text.to_string()),
        Syntax::Words => {
            let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).collect();
            let Some((last, rest)) = words.split_last() else { return Err(StoreError::EmptySearch) };
            let mut expr = String::new();
            for word in rest {
                let _ = write!(expr, "{} ", quoted(word));
            }
            let _ = write!(expr, "{}*", quoted(last));
            Ok(expr)
        }
    }
}

/// `word` as an FTS5 string: inside double quotes, its own double quotes doubled.
fn quoted(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

/// Runs `query`: hits ranked by bm25, then newest first.
///
/// # Errors
/// [`StoreError::EmptySearch`] when the query has no word; [`StoreError::BadSearch`] when an FTS5-syntax
/// query is malformed; other store errors as usual.
pub fn search(conn: &Connection, query: &SearchQuery) -> Result<Vec<Hit>> {
    let expr = match_expression(&query.text, query.syntax)?;
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| query.kinds.is_empty() || query.kinds.contains(k))
        .filter(|k| query.observation_type.is_none() || *k == Kind::Observation)
        .collect();
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let union: Vec<&str> = kinds.iter().map(|k| k.sql()).collect();
    let sql = format!("{} ORDER BY 10, 6 DESC, 2 DESC LIMIT ?5 OFFSET ?6", union.join("\nUNION ALL\n"));
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let params: [Value; 7] = [
        expr.into(),
        query.project.clone().into(),
        query.observation_type.clone().into(),
        query.since.into(),
        i64::from(limit).into(),
        i64::from(query.offset).into(),
        query.author.clone().into(),
    ];
    let run = || -> rusqlite::Result<Vec<Hit>> {
        if query.syntax == Syntax::Fts5 {
            // FTS5 reads the expression only when the plan reaches the index, which a join over empty
            // tables may never do: parse it here, so a malformed one is refused whatever the data.
            conn.prepare_cached("SELECT 1 FROM prompts_fts WHERE prompts_fts MATCH ?1 LIMIT 1")?
                .query_row([&params[0]], |_| Ok(()))
                .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(()) } else { Err(e) })?;
        }
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut hits: Vec<Hit> =
            stmt.query_map(params_from_iter(params.iter()), hit_from_row)?.collect::<Result<_, _>>()?;
        for hit in &mut hits {
            let raw: Option<String> = conn
                .prepare_cached(hit.kind.snippet_sql())?
                .query_row(rusqlite::params![&params[0], hit.id], |r| r.get(0))?;
            hit.snippet = html_snippet(raw.as_deref().unwrap_or_default().trim());
        }
        Ok(hits)
    };
    run().map_err(|e| match (query.syntax, e.sqlite_error_code()) {
        // The generated word query is always well-formed, so only a caller's FTS5 syntax can be at fault.
        (Syntax::Fts5, Some(ErrorCode::Unknown)) => StoreError::BadSearch(Arc::new(e)),
        _ => StoreError::from(e),
    })
}

fn hit_from_row(r: &Row<'_>) -> rusqlite::Result<Hit> {
    let kind: String = r.get(0)?;
    let kind = Kind::parse(&kind).unwrap_or(Kind::Observation);
    let title: String = r.get(6)?;
    Ok(Hit {
        kind,
        id: r.get(1)?,
        session_id: r.get(2)?,
        agent_session_id: r.get(3)?,
        project: r.get(4)?,
        created_at: r.get(5)?,
        title: if kind == Kind::Prompt { cut(&title, PROMPT_TITLE_CHARS) } else { title },
        observation_type: r.get(7)?,
        snippet: String::new(),
        score: r.get(9)?,
        author: r.get(10)?,
    })
}

/// `text` cut to `max` characters at most, with `…` when something was left off.
fn cut(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text.to_string(),
    }
}

/// FTS5's snippet made HTML-safe: everything escaped, then the match markers turned into `<mark>` tags.
fn html_snippet(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            OPEN_MARK => out.push_str("<mark>"),
            CLOSE_MARK => out.push_str("</mark>"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::memory::NewSummary;
    use crate::store::sessions;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn session(conn: &Connection, agent_id: &str, project: &str) -> i64 {
        sessions::ensure(conn, agent_id, project, 1).unwrap().0.id
    }

    fn observe(conn: &Connection, session_id: i64, kind: &str, title: &str, facts: &[&str], at: i64) -> i64 {
        conn.execute(
            "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, facts, files_read,
                 created_at) VALUES (?1, 1, 'Bash', ?2, ?3, ?4, '[\"src/ledger.rs\"]', ?5)",
            params![session_id, kind, title, serde_json::to_string(facts).unwrap(), at],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn summarize(conn: &Connection, session_id: i64, request: &str, completed: &str, at: i64) -> i64 {
        conn.execute(
            "INSERT INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
                 created_at) VALUES (?1, 1, ?2, '', ?3, '', ?4)",
            params![session_id, request, completed, at],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn query(text: &str) -> SearchQuery {
        SearchQuery { text: text.into(), limit: DEFAULT_LIMIT, ..Default::default() }
    }

    fn ids(hits: &[Hit]) -> Vec<(Kind, i64)> {
        hits.iter().map(|h| (h.kind, h.id)).collect()
    }

    /// The three indexes agree with their views (FTS5's own check against the external content).
    pub(crate) fn assert_in_step(conn: &Connection) {
        for table in ["observations_fts", "summaries_fts", "prompts_fts"] {
            conn.execute(&format!("INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)"), [])
                .unwrap_or_else(|e| panic!("{table} is out of step: {e}"));
        }
    }

    #[test]
    fn words_become_quoted_terms_and_the_last_a_prefix() {
        assert_eq!(match_expression("fix ledger", Syntax::Words).unwrap(), "\"fix\" \"ledger\"*");
        assert_eq!(match_expression("a\"b OR", Syntax::Words).unwrap(), "\"a\"\"b\" \"OR\"*");
        assert_eq!(match_expression(" NEAR( title:x ) ", Syntax::Words).unwrap(), "\"NEAR(\" \"title:x\"*");
        for empty in ["", "   ", "-- () ***", "\"\""] {
            assert!(matches!(match_expression(empty, Syntax::Words), Err(StoreError::EmptySearch)), "{empty:?}");
        }
        assert!(matches!(match_expression(" ", Syntax::Fts5), Err(StoreError::EmptySearch)));
    }

    #[test]
    fn hostile_words_are_just_text() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        observe(&conn, s, "change", "quote \" and paren ( in the title", &[], 1);
        for text in ["AND", "OR NOT", "title:", "NEAR(a b)", "a\"b", "^x", "{col}:y", "'; DROP TABLE x"] {
            search(&conn, &query(text)).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
        for text in ["\"", "*", "-", "("] {
            assert!(matches!(search(&conn, &query(text)), Err(StoreError::EmptySearch)), "{text:?}");
        }
        assert_eq!(search(&conn, &query("paren (")).unwrap().len(), 1);
    }

    #[test]
    fn malformed_fts5_syntax_is_a_bad_search() {
        let conn = db();
        for text in ["AND", "foo AND", "(x", "nosuchcolumn:x", "NEAR(a b", "a OR OR b"] {
            let q = SearchQuery { syntax: Syntax::Fts5, ..query(text) };
            let err = search(&conn, &q).err().unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert!(matches!(err, StoreError::BadSearch(_)), "{text:?}: {err:?}");
            assert!(!err.is_unavailable());
        }
        let s = session(&conn, "a", "ledger");
        observe(&conn, s, "change", "alpha beta", &[], 1);
        observe(&conn, s, "change", "gamma", &[], 2);
        let q = SearchQuery { syntax: Syntax::Fts5, ..query("alpha OR gamma") };
        assert_eq!(search(&conn, &q).unwrap().len(), 2);
        let q = SearchQuery { syntax: Syntax::Fts5, ..query("title:gamma") };
        assert_eq!(search(&conn, &q).unwrap().len(), 1);
    }

    #[test]
    fn ranked_by_bm25_then_newest_first() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        let weak = observe(&conn, s, "change", "updated the readme", &["mentions migration once"], 10);
        let strong = observe(&conn, s, "change", "migration migration", &["the migration ran"], 20);
        let title = observe(&conn, s, "change", "migration", &["a long list of unrelated words here"], 5);
        let hits = search(&conn, &query("migration")).unwrap();
        assert_eq!(hits[0].id, strong, "{hits:#?}");
        assert!(hits.windows(2).all(|w| w[0].score <= w[1].score), "{hits:#?}");
        assert!(hits.iter().position(|h| h.id == title) < hits.iter().position(|h| h.id == weak), "title counts more");

        // Equal text, equal score: the newer comes first, whatever the insertion order.
        let conn = db();
        let s = session(&conn, "a", "ledger");
        let newer = observe(&conn, s, "change", "flaky teardown", &[], 300);
        let older = observe(&conn, s, "change", "flaky teardown", &[], 100);
        let middle = observe(&conn, s, "change", "flaky teardown", &[], 200);
        let hits = search(&conn, &query("teardown")).unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [newer, middle, older]);
        assert_eq!(hits[0].score, hits[2].score);
    }

    #[test]
    fn filters_by_project_type_kind_and_time() {
        let conn = db();
        let a = session(&conn, "a", "ledger");
        let b = session(&conn, "b", "atlas");
        let o1 = observe(&conn, a, "bugfix", "fixed the parser", &[], 100);
        let o2 = observe(&conn, b, "change", "parser rewrite", &[], 200);
        let m = summarize(&conn, a, "make the parser faster", "parser is faster", 300);
        let p = sessions::record_prompt(&conn, a, Some("why is the parser slow"), None, 400).unwrap();
        let p: i64 = conn
            .query_row("SELECT id FROM user_prompts WHERE prompt_number = ?1", [p.prompt_number], |r| r.get(0))
            .unwrap();
        conn.execute("UPDATE user_prompts SET created_at = 400 WHERE id = ?1", [p]).unwrap();

        let all = search(&conn, &query("parser")).unwrap();
        assert_eq!(all.len(), 4, "{all:#?}");
        let ledger = search(&conn, &SearchQuery { project: Some("ledger".into()), ..query("parser") }).unwrap();
        let mut got = ids(&ledger);
        got.sort_by_key(|(k, id)| (k.as_str(), *id));
        assert_eq!(got, [(Kind::Observation, o1), (Kind::Prompt, p), (Kind::Summary, m)]);
        let typed = search(&conn, &SearchQuery { observation_type: Some("change".into()), ..query("parser") }).unwrap();
        assert_eq!(ids(&typed), [(Kind::Observation, o2)]);
        let kinds = SearchQuery { kinds: vec![Kind::Summary, Kind::Prompt], ..query("parser") };
        let mut got = ids(&search(&conn, &kinds).unwrap());
        got.sort_by_key(|(k, _)| k.as_str());
        assert_eq!(got, [(Kind::Prompt, p), (Kind::Summary, m)]);
        let since = search(&conn, &SearchQuery { since: Some(250), ..query("parser") }).unwrap();
        assert_eq!(since.len(), 2);
        assert!(since.iter().all(|h| h.created_at >= 250));
        let paged = search(&conn, &SearchQuery { limit: 2, offset: 2, ..query("parser") }).unwrap();
        assert_eq!(ids(&paged), ids(&all[2..]));

        let hit = all.iter().find(|h| h.kind == Kind::Summary).unwrap();
        assert_eq!(
            (hit.title.as_str(), hit.agent_session_id.as_str(), hit.session_id),
            ("make the parser faster", "a", a)
        );
        assert_eq!(hit.observation_type, None);
        assert_eq!(all.iter().find(|h| h.id == o2 && h.kind == Kind::Observation).unwrap().project, "atlas");
    }

    #[test]
    fn snippets_mark_matches_and_escape_the_rest() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        observe(&conn, s, "change", "render <b>bold</b> & \"quoted\" tags", &["ran <script>alert(1)</script>"], 1);
        let hits = search(&conn, &query("bold")).unwrap();
        assert_eq!(hits[0].snippet, "render &lt;b&gt;<mark>bold</mark>&lt;/b&gt; &amp; &quot;quoted&quot; tags");
        let hits = search(&conn, &query("script alert")).unwrap();
        let snippet = &hits[0].snippet;
        assert!(snippet.contains("&lt;<mark>script</mark>&gt;<mark>alert</mark>(1)"), "{snippet}");
        assert_eq!(
            snippet.matches('<').count(),
            snippet.matches("<mark>").count() + snippet.matches("</mark>").count()
        );
        assert_eq!(hits[0].title, "render <b>bold</b> & \"quoted\" tags", "titles stay plain text");
    }

    #[test]
    fn stemming_and_prefixes_find_word_forms() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        observe(&conn, s, "change", "Fixing the migrations", &[], 1);
        for text in ["fixed migration", "fix", "migr", "FIXES"] {
            assert_eq!(search(&conn, &query(text)).unwrap().len(), 1, "{text}");
        }
        assert!(search(&conn, &query("fixed unrelated")).unwrap().is_empty());
    }

    #[test]
    fn long_prompt_titles_are_cut() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        let text = format!("refactor {}", "word ".repeat(100));
        sessions::record_prompt(&conn, s, Some(&text), None, 1).unwrap();
        let hit = &search(&conn, &query("refactor")).unwrap()[0];
        assert_eq!(hit.kind, Kind::Prompt);
        assert_eq!(hit.title.chars().count(), PROMPT_TITLE_CHARS + 1);
        assert!(hit.title.ends_with('…'));
    }

    #[test]
    fn the_index_follows_inserts_updates_and_cascading_deletes() {
        let conn = db();
        let s = session(&conn, "a", "ledger");
        let keep = session(&conn, "b", "ledger");
        let o = observe(&conn, s, "change", "walrus sighting", &["tusks"], 1);
        observe(&conn, keep, "change", "walrus census", &[], 1);
        summarize(&conn, s, "count the walrus", "walrus counted", 2);
        sessions::record_prompt(&conn, s, Some("walrus please"), None, 3).unwrap();
        sessions::record_prompt(&conn, s, None, Some("private-key"), 4).unwrap();
        assert_eq!(search(&conn, &query("walrus")).unwrap().len(), 4);
        assert_in_step(&conn);

        conn.execute("UPDATE observations SET title = 'seal sighting' WHERE id = ?1", [o]).unwrap();
        assert_eq!(search(&conn, &query("walrus")).unwrap().len(), 3);
        assert_eq!(search(&conn, &query("seal")).unwrap().len(), 1);
        // Columns outside the index change without touching it.
        conn.execute("UPDATE observations SET message_id = NULL, prompt_number = 9 WHERE id = ?1", [o]).unwrap();
        assert_in_step(&conn);

        // Deleting the session cascades to its memory, and the triggers take the index entries with it.
        assert!(sessions::delete(&conn, s).unwrap());
        assert_eq!(conn.query_row("SELECT count(*) FROM observations", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
        let left = search(&conn, &query("walrus")).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].session_id, keep);
        assert!(search(&conn, &query("seal")).unwrap().is_empty());
        assert!(search(&conn, &query("tusks")).unwrap().is_empty());
        assert_in_step(&conn);
    }

    #[test]
    fn the_check_catches_an_index_out_of_step() {
        // The integrity check the tests rely on does see drift: a row changed behind the triggers' back.
        let conn = db();
        let s = session(&conn, "a", "ledger");
        observe(&conn, s, "change", "narwhal", &[], 1);
        conn.execute_batch("DROP TRIGGER observations_fts_unindex; DROP TRIGGER observations_fts_reindex;").unwrap();
        conn.execute("UPDATE observations SET title = 'beluga'", []).unwrap();
        let err =
            conn.execute("INSERT INTO observations_fts (observations_fts, rank) VALUES ('integrity-check', 1)", []);
        assert!(err.is_err(), "integrity-check must notice");
    }

    #[test]
    fn migrating_indexes_the_rows_already_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        // Version 3 is the last without the indexes; its rows are written in its own columns.
        crate::store::schema::migrate_to(&mut conn, 3).unwrap();
        conn.execute(
            "INSERT INTO sessions (agent_session_id, project, started_at, last_activity_at) VALUES ('a', 'ledger', 1, 1)",
            [],
        )
        .unwrap();
        let s = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, facts, created_at)
             VALUES (?1, 1, 'Read', 'discovery', 'old otter memory', '[\"whiskers\"]', 1)",
            [s],
        )
        .unwrap();
        let summary = NewSummary { request: "otters".into(), ..Default::default() };
        conn.execute(
            "INSERT INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
                 created_at) VALUES (?1, 1, ?2, '', '', '', 1)",
            params![s, summary.request],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO user_prompts (session_id, prompt_number, text, created_at) VALUES (?1, 1, 'otter prompt', 1)",
            [s],
        )
        .unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        assert_eq!(search(&conn, &query("otter")).unwrap().len(), 3);
        assert_eq!(search(&conn, &query("whiskers")).unwrap().len(), 1);
        assert_in_step(&conn);
    }
}
