//! Installs and removes memtray's hooks in Claude Code's `settings.json`: the public API and the sequence of
//! read, edit, write. Other tools' hooks and other settings keep their place and order; invalid JSON is refused,
//! the old file is backed up and the new one replaces it atomically. The parts: `entries` (memtray's entries,
//! put into and taken out of `hooks`, and recognised), `shell` (quoting the hook's command), `file` (reading,
//! the backup, the atomic write), `diff` (the line diff behind [`describe`]) and [`mcp`] (registering
//! `memtray mcp` in `~/.claude.json` or a project's `.mcp.json` the same way).

mod diff;
mod entries;
mod file;
#[cfg(test)]
mod fixtures;
pub mod mcp;
mod shell;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use entries::{BadShape, install_into, uninstall_from};
use file::{load, save};

/// The Claude Code events memtray hooks into, in the order they are added to a settings file.
pub const EVENTS: &[&str] =
    &["SessionStart", "UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "SubagentStop", "Stop", "SessionEnd"];

/// How Claude Code should deliver hook events to memtray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookMode {
    /// Claude Code POSTs each event to the running daemon on `127.0.0.1:<port>`; `SessionStart` (which Claude
    /// Code runs only command hooks for) and `SessionEnd` (so that it is kept while memtray is down) run
    /// `<program> hook`.
    Http {
        /// The daemon's listening port.
        port: u16,
        /// The memtray binary, for the session events (made absolute as for `Command`).
        program: PathBuf,
        /// This user's secret, sent by the http hooks in the `X-Memtray-Token` header (so that a server set
        /// to `intake_requires_secret` takes them); the settings file is then kept 0600.
        secret: Option<String>,
    },
    /// Claude Code runs `<program> hook` with the event on stdin and waits for it (it answers within
    /// `hook_budget_ms`).
    Command {
        /// The memtray binary. A relative path is made absolute against the current directory, because
        /// Claude Code runs hooks from the project's directory.
        program: PathBuf,
    },
}

/// Why a settings file could not be read, edited or written. In every case the file was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but could not be read.
    #[error("cannot read Claude Code settings {path}: {source}")]
    Read {
        /// The settings file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid JSON (comments and trailing commas are not JSON), so memtray refuses to edit it.
    #[error("refusing to touch {path}: the file is not valid JSON ({source}); memtray did not change it")]
    Invalid {
        /// The settings file.
        path: PathBuf,
        /// The parse error, with its line and column.
        source: serde_json::Error,
    },
    /// The file is JSON but not shaped like Claude Code settings: the top level or `hooks` is not an object,
    /// or an event under `hooks` does not map to an array.
    #[error(
        "refusing to touch {path}: expected a JSON object at the top level and under \"hooks\", and an array \
         for each hook event; memtray did not change it"
    )]
    NotAnObject {
        /// The settings file.
        path: PathBuf,
    },
    /// An MCP configuration file is JSON but its top level or its `mcpServers` is not an object.
    #[error(
        "refusing to touch {path}: expected a JSON object at the top level and under \"mcpServers\"; memtray \
         did not change it"
    )]
    McpNotAnObject {
        /// The MCP configuration file.
        path: PathBuf,
    },
    /// Writing the new file (or its backup, or creating its directory) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file that could not be written: the settings file or its backup.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The outcome of [`install`] or [`uninstall`] on one settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The settings file, as given.
    pub path: PathBuf,
    /// The file's text before the edit; empty when the file did not exist.
    pub before: String,
    /// The file's text after the edit (or as it would be, for a dry run); equal to `before` when unchanged.
    pub after: String,
    /// Whether the edit changes the file's JSON value, i.e. whether the file was (or would be) rewritten.
    pub changed: bool,
}

/// Installs memtray's hook for every event of [`EVENTS`] in the settings file at `path`.
///
/// A missing file (or directory) is created; an empty file counts as `{}`. Memtray's existing hooks are removed
/// wherever they are (under any event, also from groups shared with other hooks; groups and events this empties
/// go), then each event gets one group holding the hook for `mode`, at the end of its array. A group already
/// exactly right, and memtray's only one under its event, is left in place instead. Every other hook and setting
/// stays as it was, in order. When the JSON value would not change, nothing is written. Otherwise the old file
/// is first copied to `<name>.bak-memtray` next to it (overwriting an older backup), then the new one,
/// pretty-printed, replaces it atomically. A symlink is followed: its target is replaced and the link stays.
/// With `dry_run`, nothing is written at all.
///
/// # Errors
/// [`SettingsError`] when the file cannot be read, is not valid JSON, is not shaped like settings, or cannot be
/// written; the file is then unchanged.
///
/// When the http hooks carry this user's secret (see [`HookMode::Http`]), the file (and its backup) is made
/// readable by its owner alone.
pub fn install(path: &Path, mode: &HookMode, dry_run: bool) -> Result<Change, SettingsError> {
    let holds_secret = matches!(mode, HookMode::Http { secret: Some(_), .. });
    edit(path, dry_run, holds_secret, |root| install_into(root, mode))
}

/// Removes exactly memtray's hooks from the settings file at `path`.
///
/// Groups, events and the `hooks` object itself are dropped when removing memtray's hooks left them empty;
/// anything that was already empty stays. A missing file is no change. Writing, backup and `dry_run` work as
/// for [`install`].
///
/// # Errors
/// As for [`install`].
pub fn uninstall(path: &Path, dry_run: bool) -> Result<Change, SettingsError> {
    edit(path, dry_run, false, uninstall_from)
}

/// A readable summary of `change`: a line diff with a little context (`- ` removed, `+ ` added, `  ` kept,
/// `...` between distant regions), or `no change`.
#[must_use]
pub fn describe(change: &Change) -> String {
    if !change.changed {
        return "no change".to_owned();
    }
    let shown = diff::with_context(&change.before, &change.after);
    // Empty only if the texts differ in line endings alone, which never happens to a changed value.
    if shown.is_empty() { "no change".to_owned() } else { shown }
}

/// Reads, edits with `apply`, and (unless `dry_run` or unchanged) writes the settings file at `path`; with
/// `owner_only`, the file ends up readable by its owner alone (0600) even when its content was right.
fn edit(
    path: &Path,
    dry_run: bool,
    owner_only: bool,
    apply: impl FnOnce(&mut Map<String, Value>) -> Result<(), BadShape>,
) -> Result<Change, SettingsError> {
    use std::os::unix::fs::PermissionsExt;

    let mut loaded = load(path)?;
    if owner_only {
        loaded.permissions = Some(std::fs::Permissions::from_mode(0o600));
    }
    let mut root = loaded.root.clone();
    apply(&mut root).map_err(|BadShape| SettingsError::NotAnObject { path: path.to_path_buf() })?;
    let changed = root != loaded.root;
    let after = if changed {
        let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value always serializes");
        text.push('\n');
        text
    } else {
        loaded.text.clone()
    };
    if changed && !dry_run {
        save(path, &loaded, &after)?;
    } else if owner_only && !dry_run && loaded.bytes.is_some() {
        let restrict = std::fs::set_permissions(&loaded.target, std::fs::Permissions::from_mode(0o600));
        restrict.map_err(|source| SettingsError::Write { path: path.to_path_buf(), source })?;
    }
    Ok(Change { path: path.to_path_buf(), before: loaded.text, after, changed })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::file::backup_path;
    use super::fixtures::{OTHER_TOOLS, http, keys, read_json, settings_file};
    use super::*;

    #[test]
    fn install_into_a_missing_file_and_directory_creates_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("project/.claude/settings.json");
        let change = install(&path, &http(4417), false).unwrap();
        assert!(change.changed);
        assert_eq!(change.before, "");
        assert_eq!(fs::read_to_string(&path).unwrap(), change.after);
        assert!(change.after.ends_with("}\n"));
        assert!(change.after.contains("\n  \"hooks\": {\n    \"SessionStart\""), "2-space indent: {}", change.after);
        assert!(!backup_path(&path).exists(), "nothing to back up");

        let settings = read_json(&path);
        assert_eq!(keys(&settings), ["hooks"]);
        assert_eq!(keys(&settings["hooks"]), EVENTS);
        for event in EVENTS {
            // Claude Code runs only command hooks on SessionStart; SessionEnd must reach the inbox when down.
            let expected_hook = if *event == "SessionStart" || *event == "SessionEnd" {
                json!({"type": "command", "command": "/usr/bin/memtray hook", "timeout": 5})
            } else {
                json!({"type": "http", "url": "http://127.0.0.1:4417/hooks/claude-code", "timeout": 2})
            };
            let expected = if *event == "PostToolUse" || *event == "PostToolUseFailure" {
                json!([{"matcher": "*", "hooks": [expected_hook]}])
            } else {
                json!([{"hooks": [expected_hook]}])
            };
            assert_eq!(settings["hooks"][event], expected, "{event}");
        }
        assert_eq!(keys(&settings["hooks"]["PostToolUse"][0]), ["matcher", "hooks"]);
        assert_eq!(keys(&settings["hooks"]["Stop"][0]["hooks"][0]), ["type", "url", "timeout"]);
    }

    #[test]
    fn installing_twice_changes_nothing_the_second_time() {
        let (_dir, path) = settings_file(OTHER_TOOLS);
        assert!(install(&path, &http(4417), false).unwrap().changed);
        let backup = backup_path(&path);
        fs::remove_file(&backup).unwrap();
        let bytes = fs::read(&path).unwrap();
        let modified = fs::metadata(&path).unwrap().modified().unwrap();

        let second = install(&path, &http(4417), false).unwrap();
        assert!(!second.changed);
        assert_eq!(second.before, second.after);
        assert_eq!(describe(&second), "no change");
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
        assert!(!backup.exists(), "no backup without a write");
    }

    #[test]
    fn wrong_shapes_are_refused_and_left_untouched() {
        for content in ["[]", r#""text""#, r#"{"hooks": []}"#, r#"{"hooks": {"Stop": {"hooks": []}}}"#] {
            let (_dir, path) = settings_file(content);
            for result in [install(&path, &http(4417), false), uninstall(&path, false)] {
                let err = result.unwrap_err();
                assert!(matches!(err, SettingsError::NotAnObject { .. }), "{content}: {err:?}");
            }
            assert_eq!(fs::read(&path).unwrap(), content.as_bytes());
            assert!(!backup_path(&path).exists());
        }
    }

    #[test]
    fn dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(".claude/settings.json");
        let change = install(&missing, &http(4417), true).unwrap();
        assert!(change.changed);
        assert!(change.after.contains("/hooks/claude-code"));
        assert!(!missing.parent().unwrap().exists());

        let (_dir, path) = settings_file(OTHER_TOOLS);
        let change = install(&path, &http(4417), true).unwrap();
        assert!(change.changed);
        assert_eq!(change.before, OTHER_TOOLS);
        assert_eq!(fs::read_to_string(&path).unwrap(), OTHER_TOOLS);
        assert!(!backup_path(&path).exists());

        install(&path, &http(4417), false).unwrap();
        fs::remove_file(backup_path(&path)).unwrap();
        let installed = fs::read(&path).unwrap();
        let change = uninstall(&path, true).unwrap();
        assert!(change.changed);
        assert_eq!(fs::read(&path).unwrap(), installed);
        assert!(!backup_path(&path).exists());
    }
}
