//! `memtray serve --team`: the team server. Shared memory lives in PostgreSQL; the process keeps nothing
//! but its pool of connections, so several can serve one database behind a load balancer.
//!
//! Every request but `/team/health` carries a member's key (`Authorization: Bearer …`), checked against the
//! database each time (a revoked key is refused at once). Errors answer in the local API's format,
//! `{"error": {"code", "message"}}`. A push takes each of its projects' advisory locks before it inserts,
//! so within a project `seq` grows in commit order and a pull's cursor never skips a row committed late.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use super::members::{self, Authenticated};
use super::{
    BEHIND_CAP, MAX_PULL, MAX_PUSH, MemoryKind, PullAnswer, PulledMemory, Push, PushAnswer, SharedMemory, TeamError,
    Whoami, migrations,
};
use crate::config::TeamConfig;

/// How long a request waits for a PostgreSQL connection (and a new one to open) before it answers 503.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Largest push body.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Search hits when the caller does not say, and the most.
const SEARCH_LIMIT: i64 = 20;
const SEARCH_MAX: i64 = 100;

/// The pool of connections to the team database, migrated. For the server and `memtray team …`.
pub async fn connect(team: &TeamConfig) -> Result<Pool, TeamError> {
    if team.database_url.is_empty() {
        return Err(TeamError::NoDatabase);
    }
    let pg: tokio_postgres::Config = team.database_url.parse().map_err(TeamError::DatabaseUrl)?;
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(team.pool_size.max(1))
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime for its timeouts always builds");
    migrations::migrate(&pool).await?;
    Ok(pool)
}

/// A bound, migrated team server; [`TeamServer::run`] serves until cancelled.
pub struct TeamServer {
    listener: tokio::net::TcpListener,
    pool: Pool,
}

impl TeamServer {
    /// Connects to (and migrates) the database and binds `[team] listen`.
    pub async fn bind(team: &TeamConfig) -> Result<TeamServer, TeamError> {
        let pool = connect(team).await?;
        let listener = tokio::net::TcpListener::bind(&team.listen)
            .await
            .map_err(|source| TeamError::Bind { addr: team.listen.clone(), source })?;
        Ok(TeamServer { listener, pool })
    }

    /// The address served.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.pool)).with_graceful_shutdown(shutdown).await
    }
}

/// The team API over `pool`.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/team/health", get(health))
        .route("/team/whoami", get(whoami))
        .route("/team/push", post(push))
        .route("/team/pull", get(pull))
        .route("/team/search", get(search))
        .fallback(|| async { Refusal::NoRoute })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(pool)
}

/// How a request is refused; each becomes a status, a stable code and a message.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("this needs a member's key in the Authorization header (Bearer …)")]
    NoKey,
    #[error("this key is unknown or was revoked")]
    BadKey,
    #[error("this member may not {0}")]
    Scope(&'static str),
    #[error("this member is not in project {0:?}")]
    NotInProject(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no such route")]
    NoRoute,
    #[error(transparent)]
    Team(#[from] TeamError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Refusal::NoKey | Refusal::BadKey => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Refusal::Scope(_) | Refusal::NotInProject(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Refusal::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields"),
            Refusal::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            Refusal::Team(TeamError::Pool(_)) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Refusal::Team(TeamError::Postgres(e)) if e.is_closed() || e.as_db_error().is_none() => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            Refusal::Team(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        let message = match &self {
            Refusal::Team(e) => {
                tracing::warn!(error = %e, "team request failed");
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    "the team database is unavailable; nothing was stored, try again later".to_string()
                } else {
                    "the team server hit an internal error; the cause is in its log".to_string()
                }
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The member behind a request's key.
struct Caller(Authenticated);

impl FromRequestParts<Pool> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, pool: &Pool) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Refusal::NoKey)?;
        members::authenticate(pool, key).await?.map(Caller).ok_or(Refusal::BadKey)
    }
}

/// The JSON body or query of a request, refused in the API's format.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Pool> for Body<T> {
    type Rejection = Refusal;

    async fn from_request(req: axum::extract::Request, state: &Pool) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|j| Body(j.0)).map_err(|e| Refusal::Invalid(e.body_text()))
    }
}

struct Params<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<Pool> for Params<T> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &Pool) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| Refusal::Invalid(e.body_text()))
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "service": "memtray-team", "version": env!("CARGO_PKG_VERSION") }))
}

async fn whoami(Caller(member): Caller) -> Json<Whoami> {
    let mut projects = member.projects.clone();
    projects.sort();
    Json(Whoami { member: member.name, read: member.read, write: member.write, projects })
}

fn check_push(member: &Authenticated, push: &Push) -> Result<(), Refusal> {
    if !member.write {
        return Err(Refusal::Scope("push"));
    }
    if push.machine.is_empty() || push.machine.len() > 100 {
        return Err(Refusal::Invalid("machine must be 1 to 100 characters".into()));
    }
    if push.memories.len() > MAX_PUSH {
        return Err(Refusal::Invalid(format!("a push takes at most {MAX_PUSH} memories")));
    }
    for m in &push.memories {
        if !member.in_project(&m.project) {
            return Err(Refusal::NotInProject(m.project.clone()));
        }
        if !m.body.is_object() {
            return Err(Refusal::Invalid("body must be an object".into()));
        }
    }
    Ok(())
}

/// The text searched: every string in the body.
const SEARCH_VECTOR: &str = "jsonb_to_tsvector('english', b.body, '[\"string\"]')";

async fn push(
    State(pool): State<Pool>,
    Caller(member): Caller,
    Body(push): Body<Push>,
) -> Result<Json<PushAnswer>, Refusal> {
    check_push(&member, &push)?;
    if push.memories.is_empty() {
        return Ok(Json(PushAnswer::default()));
    }
    let mut projects: Vec<&str> = push.memories.iter().map(|m| m.project.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    let column = |f: fn(&SharedMemory) -> String| push.memories.iter().map(f).collect::<Vec<String>>();
    let (project, kind, session, body) = (
        column(|m| m.project.clone()),
        column(|m| m.kind.as_str().to_string()),
        column(|m| m.session.clone()),
        column(|m| m.body.to_string()),
    );
    let origin_id: Vec<i64> = push.memories.iter().map(|m| m.origin_id).collect();
    let prompt_number: Vec<i64> = push.memories.iter().map(|m| m.prompt_number).collect();
    let created_at: Vec<i64> = push.memories.iter().map(|m| m.created_at).collect();
    let mut client = pool.get().await.map_err(TeamError::from)?;
    let tx = client.transaction().await.map_err(TeamError::from)?;
    // In sorted order, so two pushes of overlapping projects never wait on each other in a circle.
    for p in &projects {
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[p]).await.map_err(TeamError::from)?;
    }
    let sql = format!(
        "INSERT INTO memories (project, kind, origin_machine, origin_id, author, session, prompt_number, created_at,
                               body, search)
         SELECT b.project, b.kind, $1, b.origin_id, $2, b.session, b.prompt_number, b.created_at, b.body,
                {SEARCH_VECTOR}
         FROM (SELECT project, kind, origin_id, session, prompt_number, created_at, body::jsonb AS body
               FROM unnest($3::text[], $4::text[], $5::int8[], $6::text[], $7::int8[], $8::int8[], $9::text[])
                    AS u (project, kind, origin_id, session, prompt_number, created_at, body)) b
         ON CONFLICT (origin_machine, kind, origin_id) DO NOTHING"
    );
    let stored = tx
        .execute(
            &sql,
            &[&push.machine, &member.name, &project, &kind, &origin_id, &session, &prompt_number, &created_at, &body],
        )
        .await
        .map_err(TeamError::from)?;
    tx.commit().await.map_err(TeamError::from)?;
    Ok(Json(PushAnswer { stored, duplicates: push.memories.len() as u64 - stored }))
}

#[derive(Deserialize)]
struct PullParams {
    project: String,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
    /// Leave out this machine's own memory.
    exclude_machine: Option<String>,
}

fn pulled(r: &tokio_postgres::Row) -> Result<PulledMemory, Refusal> {
    let kind: String = r.get(1);
    let body: Value = r.get(9);
    Ok(PulledMemory {
        seq: r.get(0),
        machine: r.get(2),
        author: r.get(4),
        memory: SharedMemory {
            kind: MemoryKind::parse(&kind).unwrap_or(MemoryKind::Observation),
            origin_id: r.get(3),
            project: r.get(8),
            session: r.get(5),
            prompt_number: r.get(6),
            created_at: r.get(7),
            body,
        },
    })
}

async fn pull(
    State(pool): State<Pool>,
    Caller(member): Caller,
    Params(p): Params<PullParams>,
) -> Result<Json<PullAnswer>, Refusal> {
    if !member.read {
        return Err(Refusal::Scope("pull"));
    }
    if !member.in_project(&p.project) {
        return Err(Refusal::NotInProject(p.project));
    }
    let limit = p.limit.unwrap_or(500).clamp(1, MAX_PULL);
    let exclude = p.exclude_machine.unwrap_or_default();
    let client = pool.get().await.map_err(TeamError::from)?;
    let rows = client
        .query(
            "SELECT seq, kind, origin_machine, origin_id, author, session, prompt_number, created_at, project, body
             FROM memories WHERE project = $1 AND seq > $2 AND origin_machine <> $3 ORDER BY seq LIMIT $4",
            &[&p.project, &p.after, &exclude, &limit],
        )
        .await
        .map_err(TeamError::from)?;
    let memories = rows.iter().map(pulled).collect::<Result<Vec<_>, _>>()?;
    let next = memories.last().map_or(p.after, |m| m.seq);
    let behind: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM memories WHERE project = $1 AND seq > $2 AND origin_machine <> $3
                                   LIMIT $4) AS later",
            &[&p.project, &next, &exclude, &BEHIND_CAP],
        )
        .await
        .map_err(TeamError::from)?
        .get(0);
    Ok(Json(PullAnswer { memories, next, behind }))
}

#[derive(Deserialize)]
struct SearchParams {
    q: String,
    project: Option<String>,
    limit: Option<i64>,
}

async fn search(
    State(pool): State<Pool>,
    Caller(member): Caller,
    Params(p): Params<SearchParams>,
) -> Result<Json<Value>, Refusal> {
    if !member.read {
        return Err(Refusal::Scope("search"));
    }
    let projects: Vec<String> = match p.project {
        Some(project) if !member.in_project(&project) => return Err(Refusal::NotInProject(project)),
        Some(project) => vec![project],
        None => member.projects.clone(),
    };
    if p.q.trim().is_empty() {
        return Err(Refusal::Invalid("q must have words to look for".into()));
    }
    let limit = p.limit.unwrap_or(SEARCH_LIMIT).clamp(1, SEARCH_MAX);
    let client = pool.get().await.map_err(TeamError::from)?;
    let rows = client
        .query(
            "SELECT seq, kind, origin_machine, origin_id, author, session, prompt_number, created_at, project, body,
                    ts_rank(search, query) AS rank
             FROM memories, websearch_to_tsquery('english', $1) AS query
             WHERE project = ANY($2) AND search @@ query
             ORDER BY rank DESC, seq DESC LIMIT $3",
            &[&p.q, &projects, &limit],
        )
        .await
        .map_err(TeamError::from)?;
    let hits = rows
        .iter()
        .map(|r| Ok(json!({ "memory": pulled(r)?, "rank": r.get::<_, f32>(10) })))
        .collect::<Result<Vec<Value>, Refusal>>()?;
    Ok(Json(json!({ "query": p.q, "hits": hits })))
}
