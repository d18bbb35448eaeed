//! The team database's schema, as ordered migrations recorded in `team_migrations`.
//!
//! Every team-server process migrates at start, under one transaction-scoped advisory lock, so several
//! starting at once apply each migration exactly once; a database newer than this code is refused.

use deadpool_postgres::Pool;

use super::TeamError;

/// The advisory lock that orders migrations (any fixed number no other code takes).
const MIGRATION_LOCK: i64 = 0x6d65_6d74_7261_7901;

/// Each entry moves the schema one version up; never edit a shipped entry, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: members with their hashed keys and scopes, the projects each is in, and the shared memory: one row
    // per (machine, kind, local id), numbered in commit order per project (`seq`, the pull cursor), with
    // its full-text vector.
    r#"
    CREATE TABLE members (
        id         BIGSERIAL PRIMARY KEY,
        name       TEXT        NOT NULL,
        key_hash   TEXT        NOT NULL UNIQUE,
        can_read   BOOLEAN     NOT NULL,
        can_write  BOOLEAN     NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        revoked_at TIMESTAMPTZ
    );
    CREATE UNIQUE INDEX members_live_name ON members (name) WHERE revoked_at IS NULL;

    CREATE TABLE member_projects (
        member_id BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
        project   TEXT   NOT NULL,
        PRIMARY KEY (member_id, project)
    );

    CREATE TABLE memories (
        seq            BIGSERIAL PRIMARY KEY,
        project        TEXT     NOT NULL,
        kind           TEXT     NOT NULL CHECK (kind IN ('observation', 'summary')),
        origin_machine TEXT     NOT NULL,
        origin_id      BIGINT   NOT NULL,
        author         TEXT     NOT NULL,
        session        TEXT     NOT NULL,
        prompt_number  BIGINT   NOT NULL,
        created_at     BIGINT   NOT NULL,
        body           JSONB    NOT NULL,
        search         TSVECTOR NOT NULL,
        pushed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (origin_machine, kind, origin_id)
    );
    CREATE INDEX memories_project_seq ON memories (project, seq);
    CREATE INDEX memories_search ON memories USING GIN (search);
    "#,
];

/// Brings the database up to the newest schema, or refuses a newer one.
pub(super) async fn migrate(pool: &Pool) -> Result<(), TeamError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS team_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL \
         DEFAULT now())",
    )
    .await?;
    let found: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM team_migrations", &[]).await?.get(0);
    let supported = MIGRATIONS.len() as i32;
    if found > supported {
        return Err(TeamError::TooNew { found, supported });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO team_migrations (version) VALUES ($1)", &[&(index as i32 + 1)]).await?;
    }
    tx.commit().await?;
    Ok(())
}
