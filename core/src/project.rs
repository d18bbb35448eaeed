//! The project a session belongs to, named from its working directory: the top folder of the git work tree
//! containing it, or the folder itself when it is not in one. Looks at the file system only (no `git`);
//! async callers use [`of_cwd`], which walks the folders on the blocking pool and remembers the answer for a
//! minute, so a session's stream of tool uses pays for one walk, not one per event.
//!
//! The walk is linear: it goes down from the root one folder descriptor at a time and stops at the first
//! folder that does not exist. A `cwd` longer than [`MAX_CWD`] is no real folder: it is named from its last
//! component without a walk and never remembered.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest `cwd` that is walked (Linux's PATH_MAX). A real one has a few hundred bytes.
pub const MAX_CWD: usize = 4096;
/// The longest project name, in bytes (a folder name has at most 255: NAME_MAX).
const MAX_NAME: usize = 255;
/// How long a folder's answer is trusted (a `git init` in it shows after this).
const REMEMBER_FOR: Duration = Duration::from_secs(60);
/// How many folders are remembered; the memory is emptied when it is full. Keys are at most `MAX_CWD` bytes,
/// so the memory holds at most about 1 MiB.
const REMEMBERED: usize = 256;

/// Recent answers by folder. A std mutex: held for a lookup or an insert, never across an `.await`.
fn remembered() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static NAMES: OnceLock<Mutex<HashMap<String, (String, Instant)>>> = OnceLock::new();
    NAMES.get_or_init(Mutex::default)
}

/// The project name for `cwd`, found off the async workers.
pub async fn of_cwd(cwd: &str) -> String {
    if cwd.len() > MAX_CWD {
        return last_component(cwd);
    }
    if let Some((name, at)) = remembered().lock().expect("project names poisoned").get(cwd)
        && at.elapsed() < REMEMBER_FOR
    {
        return name.clone();
    }
    let owned = cwd.to_string();
    let name = match tokio::task::spawn_blocking(move || from_cwd(&owned)).await {
        Ok(name) => name,
        // The blocking pool is shutting down: name it from the folder itself rather than fail the event.
        Err(_) => return last_component(cwd),
    };
    let mut names = remembered().lock().expect("project names poisoned");
    if names.len() >= REMEMBERED {
        names.clear();
    }
    names.insert(cwd.to_string(), (name.clone(), Instant::now()));
    name
}

/// The name of the folder `cwd` names, from its text alone (at most [`MAX_NAME`] bytes).
fn last_component(cwd: &str) -> String {
    let name = cwd.rsplit('/').find(|c| !c.is_empty() && *c != ".").unwrap_or_default();
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The project name for `cwd` (walks its folders: blocking).
pub fn from_cwd(cwd: &str) -> String {
    if cwd.len() > MAX_CWD {
        return last_component(cwd);
    }
    git_top(cwd).unwrap_or_else(|| last_component(cwd))
}

/// The name of the deepest folder on the way to `cwd` that holds a `.git` (a folder, or the file of a
/// worktree or submodule). Goes down from the root by descriptor, so each step resolves one name: linear in
/// the number of components, where testing every ancestor by its full path is quadratic.
#[cfg(unix)]
fn git_top(cwd: &str) -> Option<String> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags, openat, statat};
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let has_git = |dir: &rustix::fd::OwnedFd| statat(dir, ".git", AtFlags::empty()).is_ok();
    let start = if cwd.starts_with('/') { "/" } else { "." };
    let mut dir = openat(CWD, start, flags, Mode::empty()).ok()?;
    let mut top = has_git(&dir).then_some("");
    for name in cwd.split('/').filter(|c| !c.is_empty() && *c != ".") {
        // A folder that is not there has no sub-folder that is: stop.
        let Ok(next) = openat(&dir, name, flags, Mode::empty()) else { break };
        dir = next;
        if has_git(&dir) {
            top = Some(name);
        }
    }
    top.map(last_component)
}

#[cfg(not(unix))]
fn git_top(cwd: &str) -> Option<String> {
    let cwd = std::path::Path::new(cwd);
    let top = cwd.ancestors().find(|dir| dir.join(".git").exists())?;
    Some(top.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
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
        assert_eq!(from_cwd("/home/dev/projects/nowhere-near-git-xyz/."), "nowhere-near-git-xyz");
        assert_eq!(from_cwd(""), "");
        assert_eq!(from_cwd("/"), "");
    }

    #[test]
    fn a_relative_cwd_is_walked_from_the_current_folder() {
        assert_eq!(from_cwd("no/such/relative-folder-xyz"), "relative-folder-xyz");
    }

    #[tokio::test]
    async fn a_huge_cwd_is_named_from_its_last_component_and_not_remembered() {
        let huge = format!("{}/the-end", "/a".repeat(200_000));
        let started = Instant::now();
        assert_eq!(of_cwd(&huge).await, "the-end");
        assert_eq!(from_cwd(&huge), "the-end");
        assert!(!remembered().lock().unwrap().contains_key(&huge));
        // One long last component is cut to a folder name's length, on a character boundary.
        let long_name = format!("/x/{}", "é".repeat(1000));
        assert_eq!(of_cwd(&long_name).await.len(), 254);
        // Just under the bound, deep and real-looking: walked, and quickly (linear, stops where folders end).
        let deep = "/a".repeat(MAX_CWD / 2);
        assert_eq!(from_cwd(&deep), "a");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_deep_existing_tree_is_walked_linearly() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("deep-repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let mut deep = repo.clone();
        for _ in 0..500 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(from_cwd(deep.to_str().unwrap()), "deep-repo");
    }
}
