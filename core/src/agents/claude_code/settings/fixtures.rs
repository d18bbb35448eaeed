//! What the unit tests of the settings modules share: a settings file in a temporary directory, one holding
//! other tools' hooks and settings, and readers for what a test checks afterwards (the file's JSON, an
//! object's keys in order, memtray's hooks under an event). Compiled for tests only.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::HookMode;
use super::entries::{group_hooks, is_memtray_hook};

/// The http mode on `port`, with `/usr/bin/memtray` for `SessionStart`.
pub(super) fn http(port: u16) -> HookMode {
    HookMode::Http { port, program: "/usr/bin/memtray".into(), secret: None }
}

/// The JSON value of the file at `path`.
pub(super) fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The keys of the object `value`, in order.
pub(super) fn keys(value: &Value) -> Vec<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// Memtray's hooks under `event`, across all groups.
pub(super) fn memtray_hooks(settings: &Value, event: &str) -> Vec<Value> {
    settings["hooks"][event]
        .as_array()
        .map(|groups| groups.iter().flat_map(group_hooks).filter(|h| is_memtray_hook(h)).cloned().collect())
        .unwrap_or_default()
}

/// A settings file with other tools' hooks under three events and other settings around `hooks`.
pub(super) const OTHER_TOOLS: &str = r#"{
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

/// `settings.json` holding `content` in a new temporary directory, which lives as long as the returned guard.
pub(super) fn settings_file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    fs::write(&path, content).unwrap();
    (dir, path)
}
