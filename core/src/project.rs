//! The project a session belongs to, named from its working directory: the top folder of the git work tree
//! containing it, or the folder itself when it is not in one. Looks at the file system only (no `git`);
//! async callers use [`of_cwd`], which walks the folders on the blocking pool and remembers the answer for a
//! minute, so a session's stream of tool uses pays for one walk, not one per event.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a folder's answer is trusted (a `git init` in it shows after this).
const REMEMBER_FOR: Duration = Duration::from_secs(60);
/// How many folders are remembered; the memory is emptied when it is full.
const REMEMBERED: usize = 256;

/// Recent answers by folder. A std mutex: held for a lookup or an insert, never across an `.await`.
fn remembered() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static NAMES: OnceLock<Mutex<HashMap<String, (String, Instant)>>> = OnceLock::new();
    NAMES.get_or_init(Mutex::default)
}

/// The project name for `cwd`, found off the async workers.
pub async fn of_cwd(cwd: &str) -> String {
    if let Some((name, at)) = remembered().lock().expect("project names poisoned").get(cwd)
        && at.elapsed() < REMEMBER_FOR
    {
        return name.clone();
    }
    let owned = cwd.to_string();
    let name = match tokio::task::spawn_blocking(move || from_cwd(&owned)).await {
        Ok(name) => name,
        // The blocking pool is shutting down: name it from the folder itself rather than fail the event.
        Err(_) => return folder_name(Path::new(cwd.trim_end_matches('/'))),
    };
    let mut names = remembered().lock().expect("project names poisoned");
    if names.len() >= REMEMBERED {
        names.clear();
    }
    names.insert(cwd.to_string(), (name.clone(), Instant::now()));
    name
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The project name for `cwd` (walks parent folders: blocking).
pub fn from_cwd(cwd: &str) -> String {
    let cwd = Path::new(cwd.trim_end_matches('/'));
    folder_name(cwd.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(cwd))
}

/// The `exclude_projects` patterns as one matcher of project names (`secret-*`, `client-{a,b}`).
///
/// # Errors
/// The first pattern that is not a glob.
pub fn exclusions(patterns: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut set = globset::GlobSetBuilder::new();
    for pattern in patterns {
        set.add(globset::Glob::new(pattern)?);
    }
    set.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_top_folder_names_the_project() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("ledger");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("src/report")).unwrap();
        assert_eq!(from_cwd(repo.join("src/report").to_str().unwrap()), "ledger");
        assert_eq!(from_cwd(repo.to_str().unwrap()), "ledger");
        // A worktree or submodule has a `.git` file instead of a folder.
        let worktree = dir.path().join("ledger-fix");
        std::fs::create_dir_all(worktree.join("src")).unwrap();
        std::fs::write(worktree.join(".git"), "gitdir: ../ledger/.git/worktrees/fix\n").unwrap();
        assert_eq!(from_cwd(worktree.join("src").to_str().unwrap()), "ledger-fix");
    }

    #[tokio::test]
    async fn the_async_lookup_agrees_and_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("ledger");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let src = repo.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let cwd = src.to_str().unwrap();
        assert_eq!(of_cwd(cwd).await, "ledger");
        // Remembered: the answer stands for a while even when the tree changes under it.
        std::fs::remove_dir(repo.join(".git")).unwrap();
        assert_eq!(of_cwd(cwd).await, "ledger");
        assert_eq!(from_cwd(cwd), "src");
    }

    #[test]
    fn outside_git_the_folder_names_the_project() {
        assert_eq!(from_cwd("/home/dev/projects/nowhere-near-git-xyz/"), "nowhere-near-git-xyz");
        assert_eq!(from_cwd(""), "");
        assert_eq!(from_cwd("/"), "");
    }
}
