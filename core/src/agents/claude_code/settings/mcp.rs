//! Registers memtray's MCP server (`memtray mcp`) with Claude Code, and removes it: the `memtray` entry
//! under `mcpServers` in `~/.claude.json` (user scope) or in a project's `.mcp.json` (project scope). Every
//! other key of those files keeps its value and place. Reading, the backup, the atomic write and the diff
//! are the settings file's (`file`, `diff`); only the entry is decided here.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::entries::BadShape;
use super::{Change, SettingsError, edit};

/// The name memtray's server is registered under.
pub const SERVER_NAME: &str = "memtray";
/// The object that holds the MCP servers, in both files.
const SERVERS: &str = "mcpServers";

/// Where user-scope MCP servers are registered: `~/.claude.json`.
pub fn user_config(home: &Path) -> PathBuf {
    home.join(".claude.json")
}

/// Where a project's shared MCP servers are registered: `<dir>/.mcp.json`.
pub fn project_config(dir: &Path) -> PathBuf {
    dir.join(".mcp.json")
}

/// Registers `<program> mcp` as the stdio server `memtray` in the file at `path` (made if missing).
///
/// The entry is `{"type": "stdio", "command": <program, made absolute>, "args": ["mcp"]}`; an existing
/// `memtray` entry is replaced where it stands, a new one goes last, and a file already holding exactly
/// this entry is not written. Backup, atomic write and `dry_run` work as for [`super::install`].
///
/// # Errors
/// [`SettingsError`] when the file cannot be read, is not valid JSON, is not an object or has an
/// `mcpServers` that is not one, or cannot be written; the file is then unchanged.
pub fn install(path: &Path, program: &Path, dry_run: bool) -> Result<Change, SettingsError> {
    let program = std::path::absolute(program).unwrap_or_else(|_| program.to_path_buf());
    let entry = json!({"type": "stdio", "command": program.to_string_lossy(), "args": ["mcp"]});
    edit(path, dry_run, false, |root| install_into(root, entry)).map_err(|e| shape_error(e, path))
}

/// Removes the `memtray` entry from `mcpServers` in the file at `path`, and `mcpServers` itself when that
/// left it empty. A missing file, or one without the entry, is no change.
///
/// # Errors
/// As for [`install`].
pub fn uninstall(path: &Path, dry_run: bool) -> Result<Change, SettingsError> {
    edit(path, dry_run, false, uninstall_from).map_err(|e| shape_error(e, path))
}

fn install_into(root: &mut Map<String, Value>, entry: Value) -> Result<(), BadShape> {
    let servers = root.entry(SERVERS).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else { return Err(BadShape) };
    // An existing key keeps its place (the map preserves insertion order).
    servers.insert(SERVER_NAME.to_owned(), entry);
    Ok(())
}

fn uninstall_from(root: &mut Map<String, Value>) -> Result<(), BadShape> {
    let Some(servers) = root.get_mut(SERVERS) else { return Ok(()) };
    let Value::Object(servers) = servers else { return Err(BadShape) };
    if servers.shift_remove(SERVER_NAME).is_some() && servers.is_empty() {
        root.shift_remove(SERVERS);
    }
    Ok(())
}

/// The settings error for a wrongly shaped MCP file names `mcpServers`, not `hooks`.
fn shape_error(e: SettingsError, path: &Path) -> SettingsError {
    match e {
        SettingsError::NotAnObject { .. } => SettingsError::McpNotAnObject { path: path.to_path_buf() },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::file::backup_path;
    use super::super::fixtures::{keys, read_json, settings_file};
    use super::*;

    /// A `~/.claude.json` as Claude Code keeps it: many keys, other servers at user and local scope.
    const CLAUDE_JSON: &str = r#"{
  "numStartups": 42,
  "theme": "dark",
  "mcpServers": {
    "github": {"type": "http", "url": "https://example.invalid/mcp"},
    "fs": {"type": "stdio", "command": "npx", "args": ["-y", "fs-server"], "env": {"ROOT": "/"}}
  },
  "projects": {
    "/home/dev/ledger": {"mcpServers": {"local-db": {"command": "db-mcp"}}, "allowedTools": []}
  },
  "userID": "abc"
}"#;

    fn program() -> PathBuf {
        PathBuf::from("/opt/memtray/bin/memtray")
    }

    #[test]
    fn install_adds_one_entry_and_keeps_everything_else() {
        let (_dir, path) = settings_file(CLAUDE_JSON);
        let change = install(&path, &program(), false).unwrap();
        assert!(change.changed);
        let after = read_json(&path);
        assert_eq!(keys(&after), ["numStartups", "theme", "mcpServers", "projects", "userID"]);
        assert_eq!(keys(&after["mcpServers"]), ["github", "fs", "memtray"]);
        assert_eq!(
            after["mcpServers"]["memtray"],
            json!({"type": "stdio", "command": "/opt/memtray/bin/memtray", "args": ["mcp"]})
        );
        let before: Value = serde_json::from_str(CLAUDE_JSON).unwrap();
        for key in ["numStartups", "theme", "projects", "userID"] {
            assert_eq!(after[key], before[key], "{key}");
        }
        assert_eq!(after["mcpServers"]["fs"], before["mcpServers"]["fs"]);
        assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), CLAUDE_JSON);
    }

    #[test]
    fn installing_again_is_no_change_and_a_moved_binary_is_updated_in_place() {
        let (_dir, path) = settings_file(CLAUDE_JSON);
        install(&path, &program(), false).unwrap();
        fs::remove_file(backup_path(&path)).unwrap();
        let bytes = fs::read(&path).unwrap();
        let again = install(&path, &program(), false).unwrap();
        assert!(!again.changed);
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(!backup_path(&path).exists(), "no write, no backup");

        let moved = install(&path, Path::new("/usr/local/bin/memtray"), false).unwrap();
        assert!(moved.changed);
        let after = read_json(&path);
        assert_eq!(keys(&after["mcpServers"]), ["github", "fs", "memtray"]);
        assert_eq!(after["mcpServers"]["memtray"]["command"], "/usr/local/bin/memtray");
    }

    #[test]
    fn a_relative_program_becomes_absolute() {
        let (_dir, path) = settings_file("");
        install(&path, Path::new("target/debug/memtray"), false).unwrap();
        let command = read_json(&path)["mcpServers"]["memtray"]["command"].as_str().unwrap().to_owned();
        assert!(Path::new(&command).is_absolute(), "{command}");
        assert!(command.ends_with("target/debug/memtray"));
    }

    #[test]
    fn a_missing_project_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = project_config(dir.path());
        assert_eq!(path, dir.path().join(".mcp.json"));
        let change = install(&path, &program(), false).unwrap();
        assert_eq!(change.before, "");
        assert_eq!(keys(&read_json(&path)), ["mcpServers"]);
        assert_eq!(keys(&read_json(&path)["mcpServers"]), ["memtray"]);
        assert_eq!(user_config(Path::new("/home/dev")), Path::new("/home/dev/.claude.json"));
    }

    #[test]
    fn uninstall_removes_exactly_the_entry() {
        let (_dir, path) = settings_file(CLAUDE_JSON);
        install(&path, &program(), false).unwrap();
        let change = uninstall(&path, false).unwrap();
        assert!(change.changed);
        assert_eq!(read_json(&path), serde_json::from_str::<Value>(CLAUDE_JSON).unwrap());
        assert!(!uninstall(&path, false).unwrap().changed, "a second uninstall is no change");

        // mcpServers made only for memtray goes with it; one that was already empty stays.
        let (_dir, path) = settings_file(r#"{"theme": "dark"}"#);
        install(&path, &program(), false).unwrap();
        uninstall(&path, false).unwrap();
        assert_eq!(read_json(&path), json!({"theme": "dark"}));
        let (_dir, path) = settings_file(r#"{"mcpServers": {}}"#);
        assert!(!uninstall(&path, false).unwrap().changed);

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(".mcp.json");
        assert!(!uninstall(&missing, false).unwrap().changed);
        assert!(!missing.exists());
    }

    #[test]
    fn wrong_shapes_are_refused_and_left_untouched() {
        for content in ["[]", r#"{"mcpServers": []}"#, r#"{"mcpServers": "memtray"}"#] {
            let (_dir, path) = settings_file(content);
            for result in [install(&path, &program(), false), uninstall(&path, false)] {
                let err = result.unwrap_err();
                assert!(matches!(err, SettingsError::McpNotAnObject { .. }), "{content}: {err:?}");
                assert!(err.to_string().contains("mcpServers"), "{err}");
            }
            assert_eq!(fs::read_to_string(&path).unwrap(), content);
        }
        let (_dir, path) = settings_file("{ // comment\n}");
        assert!(matches!(install(&path, &program(), false), Err(SettingsError::Invalid { .. })));
    }

    #[test]
    fn dry_run_shows_the_diff_and_writes_nothing() {
        let (_dir, path) = settings_file(CLAUDE_JSON);
        let change = install(&path, &program(), true).unwrap();
        assert!(change.changed);
        assert_eq!(fs::read_to_string(&path).unwrap(), CLAUDE_JSON);
        assert!(!backup_path(&path).exists());
        let shown = super::super::describe(&change);
        assert!(shown.contains("+     \"memtray\": {"), "{shown}");
        assert!(shown.contains("+       \"command\": \"/opt/memtray/bin/memtray\","), "{shown}");
    }
}
