//! Memtray's entries in the `hooks` section: the hook object each [`HookMode`] installs, putting one group
//! per event in and taking memtray's hooks out (other tools' groups stay where they are), and recognising
//! memtray's own hooks by their URL or command. Works on parsed JSON only; reading and writing the file is
//! not done here.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::shell::{shell_quote, shell_word};
use super::{EVENTS, HookMode};

/// The events of [`EVENTS`] that take a tool `matcher`; memtray matches every tool.
const TOOL_EVENTS: &[&str] = &["PostToolUse", "PostToolUseFailure"];
/// The events the http mode still installs as command hooks: `SessionStart`, which Claude Code runs only
/// `command` (and `mcp_tool`) hooks for, and `SessionEnd`, so that a session's end reaches memtray's inbox
/// even while memtray is down (what happened in between is filled in from the transcript).
const SESSION_EVENTS: &[&str] = &["SessionStart", "SessionEnd"];
/// The daemon's Claude Code intake path.
const HTTP_PATH: &str = "/hooks/claude-code";
/// Seconds Claude Code waits for the daemon: it answers at once, and a failure never blocks Claude Code.
const HTTP_TIMEOUT_SECS: u64 = 2;
/// Seconds Claude Code gives `memtray hook`, which bounds itself by `hook_budget_ms` well within this.
const COMMAND_TIMEOUT_SECS: u64 = 5;

impl HookMode {
    /// The hook object memtray installs under `event` in this mode. Command hooks are synchronous: Claude
    /// Code kills `async` hooks still running when a `-p` run ends, and their events are lost.
    pub(super) fn hook_for(&self, event: &str) -> Value {
        match self {
            HookMode::Http { port, program, secret } => {
                if SESSION_EVENTS.contains(&event) {
                    return command_hook(program);
                }
                let mut hook = json!({
                    "type": "http",
                    "url": format!("http://127.0.0.1:{port}{HTTP_PATH}"),
                    "timeout": HTTP_TIMEOUT_SECS,
                });
                if let Some(secret) = secret {
                    hook["headers"] = json!({ "X-Memtray-Token": secret });
                }
                hook
            }
            HookMode::Command { program } => command_hook(program),
        }
    }
}

/// `<program> hook`, with the program made absolute (Claude Code runs hooks from the project's directory).
fn command_hook(program: &Path) -> Value {
    let program = std::path::absolute(program).unwrap_or_else(|_| program.to_path_buf());
    json!({
        "type": "command",
        "command": format!("{} hook", shell_quote(&program.to_string_lossy())),
        "timeout": COMMAND_TIMEOUT_SECS,
    })
}

/// The settings JSON has a shape memtray will not edit; becomes
/// [`SettingsError::NotAnObject`](super::SettingsError::NotAnObject).
pub(super) struct BadShape;

/// The `hooks` object of `root`, which must be an object mapping each event to an array.
fn hooks_of(root: &mut Map<String, Value>) -> Result<Option<&mut Map<String, Value>>, BadShape> {
    match root.get_mut("hooks") {
        None => Ok(None),
        Some(Value::Object(hooks)) if hooks.values().all(Value::is_array) => Ok(Some(hooks)),
        Some(_) => Err(BadShape),
    }
}

/// Puts `mode`'s hook under every event of [`EVENTS`], replacing memtray's previous hooks anywhere under
/// `hooks` (older installs' `async` hooks among them).
pub(super) fn install_into(root: &mut Map<String, Value>, mode: &HookMode) -> Result<(), BadShape> {
    let installing: Vec<(&str, Value)> = EVENTS.iter().map(|&event| (event, mode.hook_for(event))).collect();
    // A hook equal to one being installed is memtray's even if its program is not called `memtray`.
    let is_ours = |h: &Value| installing.iter().any(|(_, hook)| h == hook) || is_memtray_hook(h);
    if !root.contains_key("hooks") {
        root.insert("hooks".to_owned(), Value::Object(Map::new()));
    }
    let hooks = hooks_of(root)?.ok_or(BadShape)?;
    // Memtray's hooks under events it no longer installs go.
    remove_from_events(hooks, |event| !EVENTS.contains(&event), is_ours);
    for (event, hook) in &installing {
        let group = if TOOL_EVENTS.contains(event) {
            json!({"matcher": "*", "hooks": [hook]})
        } else {
            json!({"hooks": [hook]})
        };
        match hooks.get_mut(*event) {
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
                hooks.insert((*event).to_owned(), Value::Array(vec![group]));
            }
        }
    }
    Ok(())
}

/// Removes memtray's hooks from every event, then `hooks` itself if that emptied it.
pub(super) fn uninstall_from(root: &mut Map<String, Value>) -> Result<(), BadShape> {
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
pub(super) fn group_hooks(group: &Value) -> impl Iterator<Item = &Value> {
    group.get("hooks").and_then(Value::as_array).into_iter().flatten()
}

/// Whether `hook` is one of memtray's: an http hook to `/hooks/claude-code` on `127.0.0.1` or `localhost`
/// (any port), or a command hook running `<…/memtray> hook`.
pub(super) fn is_memtray_hook(hook: &Value) -> bool {
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
pub(super) fn is_memtray_command(command: &str) -> bool {
    let Some(program) = command.trim_end().strip_suffix(" hook") else { return false };
    let Some(program) = shell_word(program.trim()) else { return false };
    Path::new(&program).file_name().is_some_and(|name| name == "memtray")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::super::fixtures::{OTHER_TOOLS, http, keys, memtray_hooks, read_json, settings_file};
    use super::super::{install, uninstall};
    use super::*;

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
            [
                "PostToolUse",
                "Stop",
                "PreToolUse",
                "SessionStart",
                "UserPromptSubmit",
                "PostToolUseFailure",
                "SubagentStop",
                "SessionEnd"
            ]
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
        // Synchronous: Claude Code kills async hooks still running when a `-p` run ends.
        let expected = json!({"type": "command", "command": "'/opt/my tools/memtray' hook", "timeout": 5});
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
            let command = ["SessionStart", "SessionEnd"].contains(event);
            assert_eq!(hooks[0]["type"], if command { "command" } else { "http" }, "{event}");
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
    fn an_older_install_is_migrated_and_other_hooks_stay() {
        // What memtray installed before: async command hooks under five events, SessionStart among them.
        let old_hook = json!({"type": "command", "command": "/usr/bin/memtray hook", "timeout": 5, "async": true});
        let mut hooks = serde_json::Map::new();
        for event in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd"] {
            hooks.insert(event.into(), json!([{"hooks": [old_hook.clone()]}]));
        }
        hooks.insert("Stop".into(), json!([{"hooks": [{"type": "command", "command": "notify-send done"}, old_hook]}]));
        let (_dir, path) = settings_file(&json!({"hooks": hooks}).to_string());

        let mode = HookMode::Command { program: "/usr/bin/memtray".into() };
        assert!(install(&path, &mode, false).unwrap().changed);
        let settings = read_json(&path);
        let expected = json!({"type": "command", "command": "/usr/bin/memtray hook", "timeout": 5});
        for event in EVENTS {
            assert_eq!(memtray_hooks(&settings, event), std::slice::from_ref(&expected), "{event}");
        }
        let stop = settings["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop[0]["hooks"], json!([{"type": "command", "command": "notify-send done"}]), "kept");
        assert!(!install(&path, &mode, false).unwrap().changed, "a second run changes nothing");
    }

    #[test]
    fn relative_programs_become_absolute_and_any_program_name_is_idempotent() {
        let hook = HookMode::Command { program: "target/debug/memtray".into() }.hook_for("Stop");
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
}
