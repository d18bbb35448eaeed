//! Installs and removes memtray's hooks in Claude Code's `settings.json`.
//!
//! Owns recognising memtray's own hook entries, editing the `hooks` section without disturbing anything else
//! (other tools' hooks stay where they are, other settings keep their order), and writing the file safely:
//! invalid JSON is refused, the previous file is backed up, the new one replaces it atomically.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

/// The Claude Code events memtray hooks into, in the order they are added to a settings file.
pub const EVENTS: &[&str] = &["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd"];

/// The only event of [`EVENTS`] that takes a tool `matcher`; memtray matches every tool.
const TOOL_EVENT: &str = "PostToolUse";
/// The daemon's Claude Code intake path.
const HTTP_PATH: &str = "/hooks/claude-code";
/// Seconds Claude Code waits for the daemon: it answers at once, and a failure never blocks Claude Code.
const HTTP_TIMEOUT_SECS: u64 = 2;
/// Seconds Claude Code gives `memtray hook` (which runs asynchronously anyway).
const COMMAND_TIMEOUT_SECS: u64 = 5;
/// Appended to the settings file's name for the copy taken before each write.
const BACKUP_SUFFIX: &str = ".bak-memtray";
/// Above this many cells the line diff stops looking for a minimal diff (see [`diff_lines`]).
const DIFF_CELL_LIMIT: usize = 4_000_000;
/// Unchanged lines shown around each changed region by [`describe`].
const DIFF_CONTEXT: usize = 2;

/// How Claude Code should deliver hook events to memtray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookMode {
    /// Claude Code POSTs each event to the running daemon on `127.0.0.1:<port>`.
    Http {
        /// The daemon's listening port.
        port: u16,
    },
    /// Claude Code runs `<program> hook`, asynchronously, with the event on stdin.
    Command {
        /// The memtray binary. A relative path is made absolute against the current directory, because
        /// Claude Code runs hooks from the project's directory.
        program: PathBuf,
    },
}

impl HookMode {
    /// The hook object memtray installs for this mode.
    fn hook(&self) -> Value {
        match self {
            HookMode::Http { port } => json!({
                "type": "http",
                "url": format!("http://127.0.0.1:{port}{HTTP_PATH}"),
                "timeout": HTTP_TIMEOUT_SECS,
            }),
            HookMode::Command { program } => {
                let program = std::path::absolute(program).unwrap_or_else(|_| program.clone());
                json!({
                    "type": "command",
                    "command": format!("{} hook", shell_quote(&program.to_string_lossy())),
                    "timeout": COMMAND_TIMEOUT_SECS,
                    "async": true,
                })
            }
        }
    }
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
pub fn install(path: &Path, mode: &HookMode, dry_run: bool) -> Result<Change, SettingsError> {
    let hook = mode.hook();
    edit(path, dry_run, |root| install_into(root, &hook))
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
    edit(path, dry_run, uninstall_from)
}

/// A readable summary of `change`: a line diff with a little context (`- ` removed, `+ ` added, `  ` kept,
/// `...` between distant regions), or `no change`.
#[must_use]
pub fn describe(change: &Change) -> String {
    if !change.changed {
        return "no change".to_owned();
    }
    let before: Vec<&str> = change.before.lines().collect();
    let after: Vec<&str> = change.after.lines().collect();
    let ops = diff_lines(&before, &after);
    let near_change: Vec<bool> = (0..ops.len())
        .map(|i| {
            let lo = i.saturating_sub(DIFF_CONTEXT);
            let hi = (i + DIFF_CONTEXT + 1).min(ops.len());
            ops[lo..hi].iter().any(|op| !matches!(op, Op::Keep(_)))
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = false;
    for (op, shown) in ops.iter().zip(near_change) {
        if !shown {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push("...".to_owned());
        }
        skipped = false;
        out.push(match op {
            Op::Keep(line) => format!("  {line}"),
            Op::Del(line) => format!("- {line}"),
            Op::Add(line) => format!("+ {line}"),
        });
    }
    // Empty only if the texts differ in line endings alone, which never happens to a changed value.
    if out.is_empty() { "no change".to_owned() } else { out.join("\n") }
}

/// The settings JSON has a shape memtray will not edit; becomes [`SettingsError::NotAnObject`].
struct BadShape;

/// A settings file as read from disk.
struct Loaded {
    /// The file to replace: `path` with symlinks resolved.
    target: PathBuf,
    /// The file's bytes, `None` when it does not exist.
    bytes: Option<Vec<u8>>,
    /// The file's text (empty when missing).
    text: String,
    /// The parsed top level.
    root: Map<String, Value>,
    /// The file's permissions, kept by the new file and the backup.
    permissions: Option<Permissions>,
}

/// Reads, edits with `apply`, and (unless `dry_run` or unchanged) writes the settings file at `path`.
fn edit(
    path: &Path,
    dry_run: bool,
    apply: impl FnOnce(&mut Map<String, Value>) -> Result<(), BadShape>,
) -> Result<Change, SettingsError> {
    let loaded = load(path)?;
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
    }
    Ok(Change { path: path.to_path_buf(), before: loaded.text, after, changed })
}

/// Reads and parses the settings file; a missing file or one holding only whitespace reads as `{}`.
fn load(path: &Path) -> Result<Loaded, SettingsError> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let bytes = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SettingsError::Read { path: path.to_path_buf(), source }),
    };
    let content = bytes.as_deref().unwrap_or_default();
    let value = if content.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(content).map_err(|source| SettingsError::Invalid { path: path.to_path_buf(), source })?
    };
    let Value::Object(root) = value else { return Err(SettingsError::NotAnObject { path: path.to_path_buf() }) };
    // Valid JSON is valid UTF-8, so this is lossless.
    let text = String::from_utf8_lossy(content).into_owned();
    let permissions = bytes.as_ref().and_then(|_| fs::metadata(&target).ok()).map(|m| m.permissions());
    Ok(Loaded { target, bytes, text, root, permissions })
}

/// Backs up the old file (if any) next to `path`, then atomically replaces the file with `after`.
fn save(path: &Path, loaded: &Loaded, after: &str) -> Result<(), SettingsError> {
    fn write_error(path: &Path) -> impl FnOnce(io::Error) -> SettingsError {
        let path = path.to_path_buf();
        move |source| SettingsError::Write { path, source }
    }
    if let Some(dir) = loaded.target.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    if let Some(bytes) = &loaded.bytes {
        let backup = backup_path(path);
        write_atomic(&backup, bytes, loaded.permissions.as_ref()).map_err(write_error(&backup))?;
    }
    write_atomic(&loaded.target, after.as_bytes(), loaded.permissions.as_ref()).map_err(write_error(path))
}

/// Where the copy of `path` taken before a write goes: `<file name>.bak-memtray` in the same directory.
fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or("settings.json".as_ref()).to_os_string();
    name.push(BACKUP_SUFFIX);
    path.with_file_name(name)
}

/// Writes `bytes` to a new file next to `dest`, syncs it and renames it over `dest`.
fn write_atomic(dest: &Path, bytes: &[u8], permissions: Option<&Permissions>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dest.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut attempts = 0;
    let (temp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{}.memtray-tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let result = fill_and_rename(&mut file, &temp, dest, bytes, permissions);
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(&temp);
    } else {
        sync_dir(dir);
    }
    result
}

/// The fallible middle of [`write_atomic`].
fn fill_and_rename(
    file: &mut File,
    temp: &Path,
    dest: &Path,
    bytes: &[u8],
    permissions: Option<&Permissions>,
) -> io::Result<()> {
    file.write_all(bytes)?;
    if let Some(permissions) = permissions {
        file.set_permissions(permissions.clone())?;
    }
    file.sync_all()?;
    fs::rename(temp, dest)
}

/// Makes a rename in `dir` durable, where the platform allows it (best effort).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The `hooks` object of `root`, which must be an object mapping each event to an array.
fn hooks_of(root: &mut Map<String, Value>) -> Result<Option<&mut Map<String, Value>>, BadShape> {
    match root.get_mut("hooks") {
        None => Ok(None),
        Some(Value::Object(hooks)) if hooks.values().all(Value::is_array) => Ok(Some(hooks)),
        Some(_) => Err(BadShape),
    }
}

/// Puts `hook` under every event of [`EVENTS`], replacing memtray's previous hooks anywhere under `hooks`.
fn install_into(root: &mut Map<String, Value>, hook: &Value) -> Result<(), BadShape> {
    // A hook equal to the one being installed is memtray's even if its program is not called `memtray`.
    let is_ours = |h: &Value| h == hook || is_memtray_hook(h);
    if !root.contains_key("hooks") {
        root.insert("hooks".to_owned(), Value::Object(Map::new()));
    }
    let hooks = hooks_of(root)?.ok_or(BadShape)?;
    // Memtray's hooks under events it no longer installs go.
    remove_from_events(hooks, |event| !EVENTS.contains(&event), is_ours);
    for &event in EVENTS {
        let group =
            if event == TOOL_EVENT { json!({"matcher": "*", "hooks": [hook]}) } else { json!({"hooks": [hook]}) };
        match hooks.get_mut(event) {
            Some(Value::Array(groups)) => {
                let ours = groups.iter().flat_map(group_hooks).filter(|h| is_ours(h)).count();
                if ours == 1 && groups.contains(&group) {
                    continue; // Already installed exactly: leave it where it is.
                }
                remove_from_groups(groups, is_ours);
                groups.push(group);
            }
            Some(_) => return Err(BadShape),
            None => {
                hooks.insert(event.to_owned(), Value::Array(vec![group]));
            }
        }
    }
    Ok(())
}

/// Removes memtray's hooks from every event, then `hooks` itself if that emptied it.
fn uninstall_from(root: &mut Map<String, Value>) -> Result<(), BadShape> {
    let Some(hooks) = hooks_of(root)? else { return Ok(()) };
    let dropped = remove_from_events(hooks, |_| true, is_memtray_hook);
    if dropped && hooks.is_empty() {
        root.retain(|key, _| key != "hooks");
    }
    Ok(())
}

/// Removes the hooks matching `is_ours` under the events selected by `events`, dropping events this empties.
/// Returns whether an event was dropped.
fn remove_from_events(
    hooks: &mut Map<String, Value>,
    events: impl Fn(&str) -> bool,
    is_ours: impl Fn(&Value) -> bool,
) -> bool {
    let mut dropped = false;
    hooks.retain(|event, groups| {
        let Value::Array(groups) = groups else { return true };
        if !events(event) || !remove_from_groups(groups, &is_ours) || !groups.is_empty() {
            return true;
        }
        dropped = true;
        false
    });
    dropped
}

/// Removes the hooks matching `is_ours` from each matcher group, dropping groups this empties.
/// Returns whether anything was removed. Groups that are not `{"hooks": [...]}` objects are left alone.
fn remove_from_groups(groups: &mut Vec<Value>, is_ours: impl Fn(&Value) -> bool) -> bool {
    let mut removed_any = false;
    groups.retain_mut(|group| {
        let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else { return true };
        let len = list.len();
        list.retain(|h| !is_ours(h));
        let removed = list.len() < len;
        removed_any |= removed;
        !(removed && list.is_empty())
    });
    removed_any
}

/// The hooks of one matcher group (none if it is not shaped like one).
fn group_hooks(group: &Value) -> impl Iterator<Item = &Value> {
    group.get("hooks").and_then(Value::as_array).into_iter().flatten()
}

/// Whether `hook` is one of memtray's: an http hook to `/hooks/claude-code` on `127.0.0.1` or `localhost`
/// (any port), or a command hook running `<…/memtray> hook`.
fn is_memtray_hook(hook: &Value) -> bool {
    let field = |name| hook.get(name).and_then(Value::as_str);
    match field("type") {
        Some("http") => field("url").is_some_and(is_memtray_url),
        Some("command") => field("command").is_some_and(is_memtray_command),
        _ => false,
    }
}

/// Whether `url` is `http://{127.0.0.1|localhost}[:port]/hooks/claude-code[?query][#fragment]`.
fn is_memtray_url(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
    let port_ok = port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    let host_ok = host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost");
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    host_ok && port_ok && path == HTTP_PATH
}

/// Whether `command` is one shell word naming a program whose file name is `memtray`, then ` hook`.
fn is_memtray_command(command: &str) -> bool {
    let Some(program) = command.trim_end().strip_suffix(" hook") else { return false };
    let Some(program) = shell_word(program.trim()) else { return false };
    Path::new(&program).file_name().is_some_and(|name| name == "memtray")
}

/// The value of `text` if it is exactly one POSIX shell word (quotes and backslashes resolved), else `None`.
fn shell_word(text: &str) -> Option<String> {
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => word.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        '\n' => {}
                        c @ ('$' | '`' | '"' | '\\') => word.push(c),
                        c => {
                            word.push('\\');
                            word.push(c);
                        }
                    },
                    c => word.push(c),
                }
            },
            '\\' => match chars.next()? {
                '\n' => {}
                c => word.push(c),
            },
            c if c.is_whitespace() || ";&|<>()`".contains(c) => return None,
            c => word.push(c),
        }
    }
    (!text.is_empty()).then_some(word)
}

/// `text` as one POSIX shell word: as is when made only of `[A-Za-z0-9/._+-]`, else in single quotes (an
/// embedded `'` becomes `'\''`).
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+-".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// One step of a line diff.
#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    /// A line in both texts.
    Keep(&'a str),
    /// A line only in the old text.
    Del(&'a str),
    /// A line only in the new text.
    Add(&'a str),
}

/// A line diff of `old` to `new`: common prefix and suffix, and a longest-common-subsequence diff of the middle
/// (or, when the middle is huge, all of it removed then added).
fn diff_lines<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest.iter().rev().zip(new_rest.iter().rev()).take_while(|(a, b)| a == b).count();
    let a = &old_rest[..old_rest.len() - suffix];
    let b = &new_rest[..new_rest.len() - suffix];

    let mut ops: Vec<Op<'a>> = old[..prefix].iter().map(|l| Op::Keep(l)).collect();
    let cells = (a.len() + 1).saturating_mul(b.len() + 1);
    if cells > DIFF_CELL_LIMIT {
        ops.extend(a.iter().map(|l| Op::Del(l)));
        ops.extend(b.iter().map(|l| Op::Add(l)));
    } else {
        // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
        let width = b.len() + 1;
        let mut lcs = vec![0u32; cells];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i * width + j] = if a[i] == b[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push(Op::Keep(a[i]));
                (i, j) = (i + 1, j + 1);
            } else if i < a.len() && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Del(a[i])); // Removals first, so a replaced line reads "- old" then "+ new".
                i += 1;
            } else {
                ops.push(Op::Add(b[j]));
                j += 1;
            }
        }
    }
    ops.extend(old_rest[old_rest.len() - suffix..].iter().map(|l| Op::Keep(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(port: u16) -> HookMode {
        HookMode::Http { port }
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }

    fn keys(value: &Value) -> Vec<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    /// Memtray's hooks under `event`, across all groups.
    fn memtray_hooks(settings: &Value, event: &str) -> Vec<Value> {
        settings["hooks"][event]
            .as_array()
            .map(|groups| groups.iter().flat_map(group_hooks).filter(|h| is_memtray_hook(h)).cloned().collect())
            .unwrap_or_default()
    }

    const OTHER_TOOLS: &str = r#"{
    "permissions": {"allow": ["Bash(git status)"], "deny": []},
    "env": {"FOO": "1"},
    "hooks": {
        "PostToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "/opt/lint/bin/check", "timeout": 10}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Edit", "hooks": [{"type": "http", "url": "http://127.0.0.1:9999/other"}]}]
    },
    "model": "opus",
    "zzz": [1, 2.5, null, true]
}"#;

    fn settings_file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

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
            let expected_hook = json!({"type": "http", "url": "http://127.0.0.1:4417/hooks/claude-code", "timeout": 2});
            let expected = if *event == "PostToolUse" {
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
    fn other_hooks_and_settings_survive_install_and_uninstall_restores_the_original() {
        let (_dir, path) = settings_file(OTHER_TOOLS);
        let original: Value = serde_json::from_str(OTHER_TOOLS).unwrap();

        let installed = install(&path, &http(4417), false).unwrap();
        assert!(installed.changed);
        assert_eq!(installed.before, OTHER_TOOLS);
        let settings = read_json(&path);
        assert_eq!(keys(&settings), keys(&original), "top-level order kept");
        for key in ["permissions", "env", "model", "zzz"] {
            assert_eq!(settings[key], original[key]);
        }
        assert_eq!(
            keys(&settings["hooks"]),
            ["PostToolUse", "Stop", "PreToolUse", "SessionStart", "UserPromptSubmit", "SessionEnd"]
        );
        let post = settings["hooks"]["PostToolUse"].as_array().unwrap();
        assert_eq!(post.len(), 2);
        assert_eq!(post[0], original["hooks"]["PostToolUse"][0], "other tool's group untouched, in place");
        assert_eq!(post[1]["matcher"], "*");
        let stop = settings["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop[0], original["hooks"]["Stop"][0]);
        assert!(stop[1].get("matcher").is_none());
        assert_eq!(settings["hooks"]["PreToolUse"], original["hooks"]["PreToolUse"]);
        for event in EVENTS {
            assert_eq!(memtray_hooks(&settings, event).len(), 1, "{event}");
        }

        let removed = uninstall(&path, false).unwrap();
        assert!(removed.changed);
        let restored = read_json(&path);
        assert_eq!(restored, original);
        assert_eq!(keys(&restored), keys(&original));
        assert_eq!(keys(&restored["hooks"]), keys(&original["hooks"]));

        let again = uninstall(&path, false).unwrap();
        assert!(!again.changed);
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
    fn a_correct_install_stays_in_place_when_other_groups_follow_it() {
        let (_dir, path) = settings_file("{}");
        install(&path, &http(4417), false).unwrap();
        let mut settings = read_json(&path);
        settings["hooks"]["Stop"]
            .as_array_mut()
            .unwrap()
            .push(json!({"hooks": [{"type": "command", "command": "later"}]}));
        fs::write(&path, serde_json::to_string(&settings).unwrap()).unwrap();
        let change = install(&path, &http(4417), false).unwrap();
        assert!(!change.changed);
    }

    #[test]
    fn switching_http_to_command_replaces_memtray_entries() {
        let (_dir, path) = settings_file(OTHER_TOOLS);
        install(&path, &http(4417), false).unwrap();
        install(&path, &http(5000), false).unwrap();
        let program = PathBuf::from("/opt/my tools/memtray");
        let change = install(&path, &HookMode::Command { program }, false).unwrap();
        assert!(change.changed);
        let settings = read_json(&path);
        let expected = json!({
            "type": "command", "command": "'/opt/my tools/memtray' hook", "timeout": 5, "async": true
        });
        for event in EVENTS {
            assert_eq!(memtray_hooks(&settings, event), std::slice::from_ref(&expected), "{event}");
        }
        assert_eq!(settings["hooks"]["PostToolUse"].as_array().unwrap().len(), 2);
        assert_eq!(settings["hooks"]["PostToolUse"][1]["matcher"], "*");
        assert_eq!(settings["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");

        // And back: still one per event.
        install(&path, &http(4417), false).unwrap();
        let settings = read_json(&path);
        for event in EVENTS {
            let hooks = memtray_hooks(&settings, event);
            assert_eq!(hooks.len(), 1, "{event}");
            assert_eq!(hooks[0]["type"], "http");
        }
    }

    #[test]
    fn memtray_hooks_are_taken_out_of_shared_groups_and_stale_events() {
        let (_dir, path) = settings_file(
            r#"{"hooks": {
                "PostToolUse": [{"matcher": "*", "hooks": [
                    {"type": "command", "command": "other"},
                    {"type": "command", "command": "/usr/bin/memtray hook"}
                ]}],
                "PreToolUse": [{"hooks": [{"type": "http", "url": "http://localhost:1/hooks/claude-code"}]}]
            }}"#,
        );
        install(&path, &http(4417), false).unwrap();
        let settings = read_json(&path);
        assert!(settings["hooks"].get("PreToolUse").is_none(), "stale memtray-only event dropped");
        let post = settings["hooks"]["PostToolUse"].as_array().unwrap();
        assert_eq!(post[0], json!({"matcher": "*", "hooks": [{"type": "command", "command": "other"}]}));
        assert_eq!(post.len(), 2);
        assert_eq!(memtray_hooks(&settings, "PostToolUse").len(), 1);
    }

    #[test]
    fn invalid_json_is_refused_and_left_untouched() {
        for content in [
            "{\n  // a comment\n  \"model\": \"opus\"\n}\n",
            "{\n  \"model\": \"opus\",\n}\n",
            "{\"hooks\": {",
            "not json",
        ] {
            let (_dir, path) = settings_file(content);
            for result in [install(&path, &http(4417), false), uninstall(&path, false)] {
                let err = result.unwrap_err();
                assert!(matches!(err, SettingsError::Invalid { .. }), "{err:?}");
                let message = err.to_string();
                assert!(message.contains("not valid JSON"), "{message}");
                assert!(message.contains("did not change"), "{message}");
                assert!(message.contains("line ") && message.contains("column "), "{message}");
                assert!(message.contains(&path.display().to_string()), "{message}");
            }
            assert_eq!(fs::read(&path).unwrap(), content.as_bytes());
            assert!(!backup_path(&path).exists());
        }
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
    fn an_empty_or_blank_file_counts_as_an_empty_object() {
        for content in ["", "  \n\t\n"] {
            let (_dir, path) = settings_file(content);
            assert!(!uninstall(&path, false).unwrap().changed);
            let change = install(&path, &http(4417), false).unwrap();
            assert!(change.changed);
            assert_eq!(change.before, content);
            assert_eq!(keys(&read_json(&path)), ["hooks"]);
            assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), content);
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

    #[test]
    fn the_backup_holds_the_original_bytes() {
        let original = "{ \"model\":\"opus\" ,\n\n     \"env\" : {} }";
        let (dir, path) = settings_file(original);
        install(&path, &http(4417), false).unwrap();
        let backup = dir.path().join("settings.json.bak-memtray");
        assert_eq!(fs::read_to_string(&backup).unwrap(), original);
        let installed = fs::read_to_string(&path).unwrap();

        // Each write overwrites the backup with the file as it was just before.
        uninstall(&path, false).unwrap();
        assert_eq!(fs::read_to_string(&backup).unwrap(), installed);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains("memtray-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn uninstall_of_a_missing_file_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let change = uninstall(&path, false).unwrap();
        assert!(!change.changed);
        assert_eq!(change.before, "");
        assert!(!path.exists());
    }

    #[test]
    fn uninstall_only_drops_what_it_emptied() {
        let content = r#"{"hooks": {"Stop": [], "SessionStart": [{"hooks": []}]}, "model": "x"}"#;
        let (_dir, path) = settings_file(content);
        assert!(!uninstall(&path, false).unwrap().changed);
        let (_dir, path) = settings_file(r#"{"hooks": {}}"#);
        assert!(!uninstall(&path, false).unwrap().changed);
        install(&path, &http(1), false).unwrap();
        uninstall(&path, false).unwrap();
        assert_eq!(read_json(&path), json!({}), "hooks emptied by the removal goes");
        // An event memtray was the only one using goes with memtray's hook, even if it held an empty array
        // before the install: the file does not say which it was.
        let (_dir, path) = settings_file(content);
        install(&path, &http(1), false).unwrap();
        uninstall(&path, false).unwrap();
        assert_eq!(read_json(&path), json!({"hooks": {"SessionStart": [{"hooks": []}]}, "model": "x"}));
    }

    #[test]
    fn recognises_memtray_urls_only() {
        for url in [
            "http://127.0.0.1:4417/hooks/claude-code",
            "http://localhost:80/hooks/claude-code",
            "http://LOCALHOST/hooks/claude-code",
            "HTTP://127.0.0.1:65535/hooks/claude-code?x=1",
        ] {
            assert!(is_memtray_url(url), "{url}");
            assert!(is_memtray_hook(&json!({"type": "http", "url": url})), "{url}");
        }
        for url in [
            "http://127.0.0.1:9999/other",
            "http://127.0.0.1:4417/hooks/claude-code/extra",
            "http://127.0.0.1:4417/hooks/codex",
            "http://example.com/hooks/claude-code",
            "http://127.0.0.2:4417/hooks/claude-code",
            "http://localhost.evil.com/hooks/claude-code",
            "http://user@localhost/hooks/claude-code",
            "http://localhost:99999/hooks/claude-code",
            "https://localhost/hooks/claude-code",
            "http://localhost",
            "",
        ] {
            assert!(!is_memtray_url(url), "{url}");
        }
        let command_with_url = json!({"type": "command", "url": "http://127.0.0.1:4417/hooks/claude-code"});
        assert!(!is_memtray_hook(&command_with_url));
    }

    #[test]
    fn recognises_memtray_commands_only() {
        for command in [
            "/usr/bin/memtray hook",
            "/usr/local/bin/memtray hook",
            "'/a b/memtray' hook",
            "'/it'\\''s/memtray' hook",
            "\"/a b/memtray\" hook",
            "/a\\ b/memtray hook",
            "memtray hook",
            "~/bin/memtray hook ",
        ] {
            assert!(is_memtray_command(command), "{command}");
            assert!(is_memtray_hook(&json!({"type": "command", "command": command})), "{command}");
        }
        for command in [
            "memtray-other hook",
            "/usr/bin/other hook",
            "/usr/bin/memtray hooks",
            "/usr/bin/memtray",
            "/usr/bin/memtray status hook",
            "env X=1 /usr/bin/memtray hook",
            "true; /usr/bin/memtray hook",
            "/a b/memtray hook",
            "'/a b/memtray hook",
            "/usr/bin/memtray/ x hook",
            " hook",
        ] {
            assert!(!is_memtray_command(command), "{command}");
        }
        let http_with_command = json!({"type": "http", "command": "/usr/bin/memtray hook"});
        assert!(!is_memtray_hook(&http_with_command));
    }

    #[test]
    fn program_paths_are_quoted_when_needed_and_recognised_back() {
        assert_eq!(shell_quote("/usr/local/bin/memtray"), "/usr/local/bin/memtray");
        assert_eq!(shell_quote("/opt/a-b_c+d.e/memtray"), "/opt/a-b_c+d.e/memtray");
        assert_eq!(shell_quote("/a b/memtray"), "'/a b/memtray'");
        assert_eq!(shell_quote("/it's/memtray"), r"'/it'\''s/memtray'");
        assert_eq!(shell_quote("/$HOME/memtray"), "'/$HOME/memtray'");
        assert_eq!(shell_quote(""), "''");
        for program in ["/usr/bin/memtray", "/a b/memtray", "/it's here/memtray", "/x\"y/$z/`w`;/memtray"] {
            let hook = HookMode::Command { program: program.into() }.hook();
            let command = hook["command"].as_str().unwrap();
            assert!(is_memtray_command(command), "{command}");
            assert_eq!(shell_word(command.strip_suffix(" hook").unwrap()).as_deref(), Some(program));
        }
    }

    #[test]
    fn relative_programs_become_absolute_and_any_program_name_is_idempotent() {
        let hook = HookMode::Command { program: "target/debug/memtray".into() }.hook();
        let command = hook["command"].as_str().unwrap();
        assert!(command.starts_with('/') || command.starts_with('\''), "{command}");
        assert!(Path::new(&shell_word(command.strip_suffix(" hook").unwrap()).unwrap()).is_absolute());

        let (_dir, path) = settings_file("{}");
        let mode = HookMode::Command { program: "/opt/memtray-dev".into() };
        install(&path, &mode, false).unwrap();
        assert!(!install(&path, &mode, false).unwrap().changed);
        let settings = read_json(&path);
        assert_eq!(settings["hooks"]["Stop"].as_array().unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_is_edited_through_the_link_and_permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/claude.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, r#"{"model": "opus"}"#).unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let change = install(&link, &http(4417), false).unwrap();
        assert_eq!(change.path, link);
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(read_json(&real)["model"], "opus");
        assert_eq!(memtray_hooks(&read_json(&real), "Stop").len(), 1);
        assert_eq!(fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
        let backup = dir.path().join("settings.json.bak-memtray");
        assert_eq!(fs::read_to_string(&backup).unwrap(), r#"{"model": "opus"}"#);
        assert_eq!(fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn describe_shows_the_added_lines() {
        let (_dir, path) = settings_file("{\n  \"model\": \"opus\"\n}\n");
        let change = install(&path, &http(4417), true).unwrap();
        let text = describe(&change);
        assert!(text.contains("+   \"hooks\": {"), "{text}");
        assert!(text.contains("+             \"url\": \"http://127.0.0.1:4417/hooks/claude-code\","), "{text}");
        assert!(text.contains("-   \"model\": \"opus\"\n+   \"model\": \"opus\","), "{text}");
        assert!(text.lines().all(|l| l.starts_with("+ ") || l.starts_with("- ") || l.starts_with("  ")), "{text}");

        let missing = Change { path: "x".into(), before: String::new(), after: change.after.clone(), changed: true };
        assert!(describe(&missing).lines().all(|l| l.starts_with("+ ")));
    }

    #[test]
    fn diff_keeps_context_around_distant_changes() {
        let old: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut new = old.clone();
        new[2] = "changed 2".into();
        new.insert(15, "inserted".into());
        let change = Change { path: "x".into(), before: old.join("\n"), after: new.join("\n"), changed: true };
        let expected = "  line 0\n  line 1\n- line 2\n+ changed 2\n  line 3\n  line 4\n...\n  line 13\n  line 14\n\
                        + inserted\n  line 15\n  line 16";
        assert_eq!(describe(&change), expected);

        let a = ["a", "b", "c", "d"];
        let b = ["a", "x", "c", "y", "d"];
        let ops = diff_lines(&a, &b);
        let kept: Vec<_> = ops.iter().filter_map(|op| if let Op::Keep(l) = op { Some(*l) } else { None }).collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }
}
