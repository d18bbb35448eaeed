//! The schema, as an ordered list of migrations keyed on `PRAGMA user_version`.
//!
//! All pending migrations run in one `BEGIN IMMEDIATE` transaction, so a crash mid-way leaves the old
//! schema intact; a file whose version is newer than this code is refused rather than guessed at.

use rusqlite::Connection;

use super::{Result, StoreError};

/// Each entry moves the schema one version up; never edit a shipped entry, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, prompts, the message queue, and the memory made from it.
    r#"
    CREATE TABLE sessions (
        id               INTEGER PRIMARY KEY,
        agent_session_id TEXT    NOT NULL UNIQUE,
        project          TEXT    NOT NULL DEFAULT '',
        status           TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed')),
        started_at       INTEGER NOT NULL,
        ended_at         INTEGER,
        prompt_counter   INTEGER NOT NULL DEFAULT 0,
        current_prompt   TEXT,
        -- 1 while the latest prompt was entirely private: its observations are skipped.
        prompt_private   INTEGER NOT NULL DEFAULT 0,
        last_activity_at INTEGER NOT NULL,
        transcript_path  TEXT,
        source           TEXT
    );
    CREATE INDEX sessions_status ON sessions (status);
    CREATE INDEX sessions_activity ON sessions (last_activity_at);

    CREATE TABLE user_prompts (
        id              INTEGER PRIMARY KEY,
        session_id      INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        prompt_number   INTEGER NOT NULL,
        text            TEXT    NOT NULL,
        idempotency_key TEXT    UNIQUE,
        created_at      INTEGER NOT NULL,
        UNIQUE (session_id, prompt_number)
    );

    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        session_id      INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        kind            TEXT    NOT NULL CHECK (kind IN ('observation', 'summarize')),
        -- JSON; NULL once processed (the memory made from it is what is kept).
        payload         TEXT,
        status          TEXT    NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'processing', 'processed', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        prompt_number   INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT    UNIQUE,
        created_at      INTEGER NOT NULL,
        -- Not claimable before this time (retry backoff).
        available_at    INTEGER NOT NULL,
        claimed_at      INTEGER,
        completed_at    INTEGER
    );
    -- Claiming a session's next message (a seek on status + session; entries end in the rowid, so they come
    -- in queue order without a sort), counts by status, sessions with pending work, stuck detection.
    CREATE INDEX messages_status ON messages (status, session_id);
    -- "Processed in the last hour" and retention pruning.
    CREATE INDEX messages_completed ON messages (completed_at) WHERE status = 'processed';

    CREATE TABLE observations (
        id             INTEGER PRIMARY KEY,
        session_id     INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        message_id     INTEGER REFERENCES messages (id) ON DELETE SET NULL,
        ordinal        INTEGER NOT NULL DEFAULT 0,
        prompt_number  INTEGER NOT NULL,
        tool_name      TEXT    NOT NULL,
        type           TEXT    NOT NULL,
        title          TEXT    NOT NULL,
        subtitle       TEXT    NOT NULL DEFAULT '',
        facts          TEXT    NOT NULL DEFAULT '[]',
        files_read     TEXT    NOT NULL DEFAULT '[]',
        files_modified TEXT    NOT NULL DEFAULT '[]',
        created_at     INTEGER NOT NULL,
        -- A message's memory is written once, whatever crashes and retries happen around it.
        UNIQUE (message_id, ordinal)
    );
    CREATE INDEX observations_session ON observations (session_id, id);

    CREATE TABLE summaries (
        id            INTEGER PRIMARY KEY,
        session_id    INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        message_id    INTEGER UNIQUE REFERENCES messages (id) ON DELETE SET NULL,
        prompt_number INTEGER NOT NULL,
        request       TEXT    NOT NULL,
        investigated  TEXT    NOT NULL,
        completed     TEXT    NOT NULL,
        next_steps    TEXT    NOT NULL,
        files_read    TEXT    NOT NULL DEFAULT '[]',
        files_edited  TEXT    NOT NULL DEFAULT '[]',
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX summaries_session ON summaries (session_id, id);
    "#,
    // 2: raw hook events written by `memtray hook` while no server answered; the server dispatches them.
    r#"
    CREATE TABLE hook_inbox (
        id          INTEGER PRIMARY KEY,
        body        TEXT    NOT NULL,
        received_at INTEGER NOT NULL
    );
    "#,
    // 3: a subagent's tool uses are labelled with it; how much of a session's transcript reconciliation has
    // seen, so that start-up finds sessions continued while memtray was away.
    r#"
    ALTER TABLE observations ADD COLUMN subagent TEXT;
    ALTER TABLE sessions ADD COLUMN transcript_seen INTEGER;
    "#,
    // 4: full-text search over memory. Each kind has a view that presents its rows as (id, title, body)
    // text (a JSON list of strings reads as its items joined by "; ") and an FTS5 index whose external
    // content is that view; triggers keep the index in step inside
    // the transaction that writes, deletes (cascades included) or edits a row, and the last statement
    // indexes the rows that already exist.
    r#"
    CREATE VIEW observation_text AS
        SELECT id, title,
               subtitle || char(10) || replace(replace(replace(replace(replace(facts, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_read, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_modified, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   AS body
        FROM observations;
    CREATE VIEW summary_text AS
        SELECT id, request AS title,
               investigated || char(10) || completed || char(10) || next_steps
                   || char(10) || replace(replace(replace(replace(replace(files_read, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_edited, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   AS body
        FROM summaries;
    -- An entirely private prompt keeps a row without text (for its idempotency key): nothing to index.
    CREATE VIEW prompt_text AS SELECT id, text AS title, '' AS body FROM user_prompts WHERE text != '';

    CREATE VIRTUAL TABLE observations_fts USING fts5 (title, body, content = 'observation_text',
        content_rowid = 'id', tokenize = 'porter unicode61 remove_diacritics 2');
    CREATE VIRTUAL TABLE summaries_fts USING fts5 (title, body, content = 'summary_text',
        content_rowid = 'id', tokenize = 'porter unicode61 remove_diacritics 2');
    CREATE VIRTUAL TABLE prompts_fts USING fts5 (title, body, content = 'prompt_text',
        content_rowid = 'id', tokenize = 'porter unicode61 remove_diacritics 2');

    -- An index entry is removed with the text it was made from, so the delete half reads the view before
    -- the row changes and the insert half after.
    CREATE TRIGGER observations_fts_insert AFTER INSERT ON observations BEGIN
        INSERT INTO observations_fts (rowid, title, body) SELECT id, title, body FROM observation_text WHERE id = new.id;
    END;
    CREATE TRIGGER observations_fts_delete BEFORE DELETE ON observations BEGIN
        INSERT INTO observations_fts (observations_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM observation_text WHERE id = old.id;
    END;
    CREATE TRIGGER observations_fts_unindex BEFORE UPDATE OF id, title, subtitle, facts, files_read, files_modified
        ON observations BEGIN
        INSERT INTO observations_fts (observations_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM observation_text WHERE id = old.id;
    END;
    CREATE TRIGGER observations_fts_reindex AFTER UPDATE OF id, title, subtitle, facts, files_read, files_modified
        ON observations BEGIN
        INSERT INTO observations_fts (rowid, title, body) SELECT id, title, body FROM observation_text WHERE id = new.id;
    END;

    CREATE TRIGGER summaries_fts_insert AFTER INSERT ON summaries BEGIN
        INSERT INTO summaries_fts (rowid, title, body) SELECT id, title, body FROM summary_text WHERE id = new.id;
    END;
    CREATE TRIGGER summaries_fts_delete BEFORE DELETE ON summaries BEGIN
        INSERT INTO summaries_fts (summaries_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM summary_text WHERE id = old.id;
    END;
    CREATE TRIGGER summaries_fts_unindex BEFORE UPDATE OF id, request, investigated, completed, next_steps,
        files_read, files_edited ON summaries BEGIN
        INSERT INTO summaries_fts (summaries_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM summary_text WHERE id = old.id;
    END;
    CREATE TRIGGER summaries_fts_reindex AFTER UPDATE OF id, request, investigated, completed, next_steps,
        files_read, files_edited ON summaries BEGIN
        INSERT INTO summaries_fts (rowid, title, body) SELECT id, title, body FROM summary_text WHERE id = new.id;
    END;

    CREATE TRIGGER prompts_fts_insert AFTER INSERT ON user_prompts BEGIN
        INSERT INTO prompts_fts (rowid, title, body) SELECT id, title, body FROM prompt_text WHERE id = new.id;
    END;
    CREATE TRIGGER prompts_fts_delete BEFORE DELETE ON user_prompts BEGIN
        INSERT INTO prompts_fts (prompts_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM prompt_text WHERE id = old.id;
    END;
    CREATE TRIGGER prompts_fts_unindex BEFORE UPDATE OF id, text ON user_prompts BEGIN
        INSERT INTO prompts_fts (prompts_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM prompt_text WHERE id = old.id;
    END;
    CREATE TRIGGER prompts_fts_reindex AFTER UPDATE OF id, text ON user_prompts BEGIN
        INSERT INTO prompts_fts (rowid, title, body) SELECT id, title, body FROM prompt_text WHERE id = new.id;
    END;

    -- Timelines walk observations by time.
    CREATE INDEX observations_created ON observations (created_at, id);

    INSERT INTO observations_fts (observations_fts) VALUES ('rebuild');
    INSERT INTO summaries_fts (summaries_fts) VALUES ('rebuild');
    INSERT INTO prompts_fts (prompts_fts) VALUES ('rebuild');
    "#,
    // 5: LLM providers. Observations gain a narrative and concepts, summaries what was learned and notes; all
    // memory says which provider (and model) made it, and why `local` stood in when it did; every provider
    // call that spent tokens is a row of `provider_calls` (the memory it made points at it), which the daily
    // token ceiling and the cost figures add up. Search indexes the new text: the views are redefined, the
    // edit triggers list the new columns, the indexes are rebuilt.
    r#"
    CREATE TABLE provider_calls (
        id            INTEGER PRIMARY KEY,
        provider      TEXT    NOT NULL,
        model         TEXT,
        project       TEXT    NOT NULL DEFAULT '',
        session_id    INTEGER REFERENCES sessions (id) ON DELETE SET NULL,
        -- How many messages the call was for (a batch is one call).
        messages      INTEGER NOT NULL,
        input_tokens  INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        -- 'memory' (its answer was stored) or 'unreadable' (its answer could not be parsed).
        outcome       TEXT    NOT NULL CHECK (outcome IN ('memory', 'unreadable')),
        -- The UTC day (ms since the epoch / 86,400,000) the ceiling counts it in.
        day           INTEGER NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX provider_calls_day ON provider_calls (day);

    ALTER TABLE observations ADD COLUMN narrative TEXT NOT NULL DEFAULT '';
    ALTER TABLE observations ADD COLUMN concepts TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE observations ADD COLUMN provider TEXT NOT NULL DEFAULT 'local';
    ALTER TABLE observations ADD COLUMN model TEXT;
    ALTER TABLE observations ADD COLUMN fallback TEXT;
    ALTER TABLE observations ADD COLUMN call_id INTEGER REFERENCES provider_calls (id) ON DELETE SET NULL;
    ALTER TABLE summaries ADD COLUMN learned TEXT NOT NULL DEFAULT '';
    ALTER TABLE summaries ADD COLUMN notes TEXT NOT NULL DEFAULT '';
    ALTER TABLE summaries ADD COLUMN provider TEXT NOT NULL DEFAULT 'local';
    ALTER TABLE summaries ADD COLUMN model TEXT;
    ALTER TABLE summaries ADD COLUMN fallback TEXT;
    ALTER TABLE summaries ADD COLUMN call_id INTEGER REFERENCES provider_calls (id) ON DELETE SET NULL;

    DROP TRIGGER observations_fts_unindex;
    DROP TRIGGER observations_fts_reindex;
    DROP TRIGGER summaries_fts_unindex;
    DROP TRIGGER summaries_fts_reindex;
    DROP VIEW observation_text;
    DROP VIEW summary_text;
    CREATE VIEW observation_text AS
        SELECT id, title,
               subtitle || char(10) || narrative
                   || char(10) || replace(replace(replace(replace(replace(facts, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(concepts, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_read, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_modified, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   AS body
        FROM observations;
    CREATE VIEW summary_text AS
        SELECT id, request AS title,
               investigated || char(10) || learned || char(10) || completed || char(10) || next_steps
                   || char(10) || notes
                   || char(10) || replace(replace(replace(replace(replace(files_read, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   || char(10) || replace(replace(replace(replace(replace(files_edited, '[]', ''), '["', ''), '"]', ''), '","', '; '), '\"', '"')
                   AS body
        FROM summaries;
    CREATE TRIGGER observations_fts_unindex BEFORE UPDATE OF id, title, subtitle, narrative, facts, concepts,
        files_read, files_modified ON observations BEGIN
        INSERT INTO observations_fts (observations_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM observation_text WHERE id = old.id;
    END;
    CREATE TRIGGER observations_fts_reindex AFTER UPDATE OF id, title, subtitle, narrative, facts, concepts,
        files_read, files_modified ON observations BEGIN
        INSERT INTO observations_fts (rowid, title, body) SELECT id, title, body FROM observation_text WHERE id = new.id;
    END;
    CREATE TRIGGER summaries_fts_unindex BEFORE UPDATE OF id, request, investigated, learned, completed,
        next_steps, notes, files_read, files_edited ON summaries BEGIN
        INSERT INTO summaries_fts (summaries_fts, rowid, title, body)
            SELECT 'delete', id, title, body FROM summary_text WHERE id = old.id;
    END;
    CREATE TRIGGER summaries_fts_reindex AFTER UPDATE OF id, request, investigated, learned, completed,
        next_steps, notes, files_read, files_edited ON summaries BEGIN
        INSERT INTO summaries_fts (rowid, title, body) SELECT id, title, body FROM summary_text WHERE id = new.id;
    END;
    INSERT INTO observations_fts (observations_fts) VALUES ('rebuild');
    INSERT INTO summaries_fts (summaries_fts) VALUES ('rebuild');
    "#,
    // 6: team memory. A session pulled from the team server carries its author (NULL: this machine's own)
    // and each pulled row its origin (machine, id there), unique, so a pull applied twice adds nothing.
    // `team_share` holds the shared-project patterns (GLOB), kept in step with the config at start; the
    // outbox triggers queue a new observation or summary of this machine's own session in a shared project,
    // inside the transaction that writes it. `team_state` keeps this machine's id; `team_cursors` how far
    // each project was pulled.
    r#"
    ALTER TABLE sessions ADD COLUMN author TEXT;
    ALTER TABLE observations ADD COLUMN origin_machine TEXT;
    ALTER TABLE observations ADD COLUMN origin_id INTEGER;
    ALTER TABLE summaries ADD COLUMN origin_machine TEXT;
    ALTER TABLE summaries ADD COLUMN origin_id INTEGER;
    CREATE UNIQUE INDEX observations_origin ON observations (origin_machine, origin_id)
        WHERE origin_machine IS NOT NULL;
    CREATE UNIQUE INDEX summaries_origin ON summaries (origin_machine, origin_id) WHERE origin_machine IS NOT NULL;
    CREATE INDEX sessions_author ON sessions (author) WHERE author IS NOT NULL;

    CREATE TABLE team_share (pattern TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE team_outbox (
        id        INTEGER PRIMARY KEY,
        kind      TEXT    NOT NULL CHECK (kind IN ('observation', 'summary')),
        local_id  INTEGER NOT NULL,
        queued_at INTEGER NOT NULL,
        UNIQUE (kind, local_id)
    );
    CREATE TABLE team_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE team_cursors (project TEXT PRIMARY KEY, after INTEGER NOT NULL) WITHOUT ROWID;

    CREATE TRIGGER team_outbox_observation AFTER INSERT ON observations
        WHEN new.origin_machine IS NULL AND EXISTS (
            SELECT 1 FROM sessions s, team_share t
            WHERE s.id = new.session_id AND s.author IS NULL AND s.project GLOB t.pattern)
    BEGIN
        INSERT OR IGNORE INTO team_outbox (kind, local_id, queued_at) VALUES ('observation', new.id, new.created_at);
    END;
    CREATE TRIGGER team_outbox_summary AFTER INSERT ON summaries
        WHEN new.origin_machine IS NULL AND EXISTS (
            SELECT 1 FROM sessions s, team_share t
            WHERE s.id = new.session_id AND s.author IS NULL AND s.project GLOB t.pattern)
    BEGIN
        INSERT OR IGNORE INTO team_outbox (kind, local_id, queued_at) VALUES ('summary', new.id, new.created_at);
    END;
    -- Memory deleted before it was pushed (its session deleted) is not pushed.
    CREATE TRIGGER team_outbox_observation_gone AFTER DELETE ON observations BEGIN
        DELETE FROM team_outbox WHERE kind = 'observation' AND local_id = old.id;
    END;
    CREATE TRIGGER team_outbox_summary_gone AFTER DELETE ON summaries BEGIN
        DELETE FROM team_outbox WHERE kind = 'summary' AND local_id = old.id;
    END;
    "#,
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database up to `version` (tests build older schemas with it).
pub(super) fn migrate_to(conn: &mut Connection, version: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION });
    }
    for sql in MIGRATIONS.iter().take(version as usize).skip(found as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", version.max(found))?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_claims_use_the_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", crate::store::messages::NEXT_PENDING_SQL))
            .unwrap()
            .query_map([1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX messages_status (status=? AND session_id=?)"), "{plan}");
        assert!(!plan.contains("SCAN") && !plan.contains("TEMP B-TREE"), "claiming must not scan or sort: {plan}");
    }
}
