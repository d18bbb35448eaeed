//! The project a session belongs to, named from its working directory: the top folder of the git work tree
//! containing it, or the folder itself when it is not in one. Looks at the file system only (no `git`);
//! async callers use [`of_cwd`], which walks the folders on the blocking pool.

use std::path::Path;

/// The project name for `cwd`, found off the async workers.
pub async fn of_cwd(cwd: &str) -> String {
    let owned = cwd.to_string();
    match tokio::task::spawn_blocking(move || from_cwd(&owned)).await {
        Ok(name) => name,
        // The blocking pool is shutting down: name it from the folder itself rather than fail the event.
        Err(_) => Path::new(cwd.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The project name for `cwd` (walks parent folders: blocking).
pub fn from_cwd(cwd: &str) -> String {
    let cwd = Path::new(cwd.trim_end_matches('/'));
    let top = cwd.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(cwd);
    top.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
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

    #[test]
    fn outside_git_the_folder_names_the_project() {
        assert_eq!(from_cwd("/home/dev/projects/nowhere-near-git-xyz/"), "nowhere-near-git-xyz");
        assert_eq!(from_cwd(""), "");
        assert_eq!(from_cwd("/"), "");
    }
}
