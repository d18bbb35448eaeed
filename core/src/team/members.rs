//! Members of a team and their keys: who may push and pull which projects. Behind `memtray team …`
//! (run where `[team] database_url` reaches the database) and the team server's check of every request.
//!
//! A key is 32 random bytes shown once; only its SHA-256 is stored, so a copy of the database opens
//! nothing. Revoking marks the member and every request checks the mark, so it takes effect at once.

use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::TeamError;

/// What every key starts with, so a key pasted in the wrong place is recognisable.
const KEY_PREFIX: &str = "mtk_";

/// A member as `memtray team list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The member's name (the author of what they push).
    pub name: String,
    /// May pull and search.
    pub read: bool,
    /// May push.
    pub write: bool,
    /// The projects the member is in, sorted.
    pub projects: Vec<String>,
    /// Whether the key was revoked.
    pub revoked: bool,
}

/// A member found by key: what a request may do.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) name: String,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) projects: Vec<String>,
}

impl Authenticated {
    pub(crate) fn in_project(&self, project: &str) -> bool {
        self.projects.iter().any(|p| p == project)
    }
}

/// The stored form of a key.
pub(crate) fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

fn new_key() -> Result<String, TeamError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(TeamError::Random)?;
    Ok(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
}

/// Adds a member with these scopes and projects and returns their key (the only time it is seen).
pub async fn add(pool: &Pool, name: &str, read: bool, write: bool, projects: &[String]) -> Result<String, TeamError> {
    let key = new_key()?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let taken = tx.query_opt("SELECT 1 FROM members WHERE name = $1 AND revoked_at IS NULL", &[&name]).await?;
    if taken.is_some() {
        return Err(TeamError::MemberExists(name.to_string()));
    }
    let id: i64 = tx
        .query_one(
            "INSERT INTO members (name, key_hash, can_read, can_write) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name, &hash_key(&key), &read, &write],
        )
        .await?
        .get(0);
    for project in projects {
        tx.execute(
            "INSERT INTO member_projects (member_id, project) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, project],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(key)
}

/// Revokes the member's key: every request with it is refused from now on.
pub async fn revoke(pool: &Pool, name: &str) -> Result<(), TeamError> {
    let client = pool.get().await?;
    let n = client
        .execute("UPDATE members SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", &[&name])
        .await?;
    if n == 0 {
        return Err(TeamError::NoSuchMember(name.to_string()));
    }
    Ok(())
}

/// Puts the member in `project` (`grant`) or takes them out of it.
pub async fn set_project(pool: &Pool, name: &str, project: &str, grant: bool) -> Result<(), TeamError> {
    let client = pool.get().await?;
    let row = client.query_opt("SELECT id FROM members WHERE name = $1 AND revoked_at IS NULL", &[&name]).await?;
    let Some(row) = row else { return Err(TeamError::NoSuchMember(name.to_string())) };
    let id: i64 = row.get(0);
    let sql = if grant {
        "INSERT INTO member_projects (member_id, project) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM member_projects WHERE member_id = $1 AND project = $2"
    };
    client.execute(sql, &[&id, &project]).await?;
    Ok(())
}

/// Every member, live ones first, by name.
pub async fn list(pool: &Pool) -> Result<Vec<Member>, TeamError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT m.name, m.can_read, m.can_write, m.revoked_at IS NOT NULL,
                    coalesce(array_agg(p.project ORDER BY p.project) FILTER (WHERE p.project IS NOT NULL), '{}')
             FROM members m LEFT JOIN member_projects p ON p.member_id = m.id
             GROUP BY m.id ORDER BY m.revoked_at IS NOT NULL, m.name, m.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Member { name: r.get(0), read: r.get(1), write: r.get(2), revoked: r.get(3), projects: r.get(4) })
        .collect())
}

/// The live member holding `key`, with their projects; `None` for an unknown or revoked key.
pub(crate) async fn authenticate(pool: &Pool, key: &str) -> Result<Option<Authenticated>, TeamError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT m.name, m.can_read, m.can_write,
                    coalesce(array_agg(p.project) FILTER (WHERE p.project IS NOT NULL), '{}')
             FROM members m LEFT JOIN member_projects p ON p.member_id = m.id
             WHERE m.key_hash = $1 AND m.revoked_at IS NULL GROUP BY m.id",
        )
        .await?;
    let row = client.query_opt(&statement, &[&hash_key(key)]).await?;
    Ok(row.map(|r| Authenticated { name: r.get(0), read: r.get(1), write: r.get(2), projects: r.get(3) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_key(&a), hash_key(&format!(" {a}\n")));
        assert_ne!(hash_key(&a), hash_key(&b));
        assert!(!hash_key(&a).contains(&a[KEY_PREFIX.len()..]));
    }
}
