//! `GET /api/search`: full-text search over memory for the inspector, `memtray search` and other tools.
//!
//! `q` is read as plain words (`syntax=fts5` passes FTS5's own syntax through); `project`, `type`
//! (observation type), `kind` (comma-separated: observation, summary, prompt), `since` (ms since the epoch
//! or an ISO date `YYYY-MM-DD[THH:MM[:SS]Z]`, UTC), `author` (a teammate's name, or `me` for this machine's
//! own memory), `limit` (default 20, at most 100) and `offset` narrow it. A query with no words or malformed FTS5 syntax answers 400 `invalid_search`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiQuery};
use crate::queries::Queries;
use crate::recall::dates;
use crate::store::search::{DEFAULT_LIMIT, Kind, MAX_LIMIT, SearchQuery, Syntax};

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    q: String,
    #[serde(default)]
    syntax: Syntax,
    project: Option<String>,
    #[serde(rename = "type")]
    observation_type: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    /// A teammate's name, or `me` for this machine's own memory.
    author: Option<String>,
}

pub(super) async fn search(
    State(queries): State<Queries>,
    ApiQuery(params): ApiQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let query = to_query(params)?;
    let (limit, offset, text) = (query.limit, query.offset, query.text.clone());
    let hits = queries.search(query).await?;
    Ok(Json(json!({ "query": text, "hits": hits, "limit": limit, "offset": offset })))
}

fn to_query(p: Params) -> Result<SearchQuery, ApiError> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut kinds = Vec::new();
    for name in nonempty(p.kind).iter().flat_map(|k| k.split(',')).map(str::trim).filter(|k| !k.is_empty()) {
        kinds.push(Kind::parse(name).ok_or(ApiError::BadParameter("kind must be observation, summary or prompt"))?);
    }
    let since = match nonempty(p.since) {
        Some(text) => Some(dates::parse_time(&text).ok_or(ApiError::BadParameter(
            "since must be ms since the epoch or a UTC date YYYY-MM-DD[THH:MM[:SS]Z]",
        ))?),
        None => None,
    };
    Ok(SearchQuery {
        text: p.q,
        syntax: p.syntax,
        project: nonempty(p.project),
        observation_type: nonempty(p.observation_type),
        kinds,
        since,
        limit: p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        offset: p.offset.unwrap_or(0),
        author: p
            .author
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .map(|a| if a == "me" { String::new() } else { a }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        let uri: axum::http::Uri = format!("/api/search?{query}").parse().unwrap();
        axum::extract::Query::<Params>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn parameters_become_a_query() {
        let q = to_query(params(
            "q=parser+fix&project=ledger&type=bugfix&kind=summary,prompt&since=2024-01-02&limit=500&offset=3",
        ))
        .unwrap();
        assert_eq!(q.text, "parser fix");
        assert_eq!((q.project.as_deref(), q.observation_type.as_deref()), (Some("ledger"), Some("bugfix")));
        assert_eq!(q.kinds, [Kind::Summary, Kind::Prompt]);
        assert_eq!(q.since, Some(1_704_153_600_000));
        assert_eq!((q.limit, q.offset), (MAX_LIMIT, 3));
        let q = to_query(params("q=x&since=1700000000000&project=")).unwrap();
        assert_eq!(
            (q.since, q.project, q.limit, q.syntax),
            (Some(1_700_000_000_000), None, DEFAULT_LIMIT, Syntax::Words)
        );
        assert_eq!(to_query(params("q=x&syntax=fts5")).unwrap().syntax, Syntax::Fts5);
    }

    #[test]
    fn bad_parameters_are_refused() {
        for bad in ["q=x&kind=note", "q=x&since=yesterday", "q=x&kind=observation,,bogus"] {
            assert!(matches!(to_query(params(bad)), Err(ApiError::BadParameter(_))), "{bad}");
        }
    }
}
