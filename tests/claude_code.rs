//! Claude Code integration against the real binary: the sample session through `/hooks/claude-code` and
//! through `memtray hook`, events sent while no server runs, transcript reconciliation, malformed payloads,
//! and install-hooks / uninstall-hooks on a real settings file.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestServer;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claude-code/session-basic");
const TOOL_USES: [&str; 4] = ["toolu_01Gx7Qm2rP4s", "toolu_01Rd9Lk3vT8w", "toolu_01Ed4Zp8nB2c", "toolu_01Bs6Hn1qW5y"];

/// The sample session's eight hook events, in order, pointing at a copy of its transcript in `dir`.
fn sample_events(dir: &Path) -> Vec<Value> {
    let transcript = dir.join("transcript.jsonl");
    std::fs::copy(Path::new(FIXTURES).join("transcript.jsonl"), &transcript).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let mut event: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            event["transcript_path"] = transcript.display().to_string().into();
            event
        })
        .collect()
}

fn post_hook(server: &TestServer, event: &Value) {
    let (status, answer) = server.post("/hooks/claude-code", event);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({}), "the answer must carry nothing Claude would read");
}

fn run_hook(server: &TestServer, stdin: &[u8]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child =
        server.command("hook").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

fn hook_event(server: &TestServer, event: &Value) {
    let (out, _) = run_hook(server, serde_json::to_vec(event).unwrap().as_slice());
    assert!(out.status.success(), "memtray hook must exit 0");
    assert!(out.stdout.is_empty(), "memtray hook must print nothing: {:?}", String::from_utf8_lossy(&out.stdout));
}

/// What the sample session must leave behind, captured once.
fn assert_sample_captured(server: &TestServer) {
    server.wait_idle(Duration::from_secs(20));
    assert_eq!(server.count("SELECT count(*) FROM sessions"), 1);
    assert_eq!(server.count("SELECT count(*) FROM sessions WHERE project = 'ledger' AND status = 'completed'"), 1);
    assert_eq!(
        server.count("SELECT count(*) FROM user_prompts WHERE text LIKE 'The balance report double-counts refunds.%'"),
        1
    );
    assert_eq!(server.count("SELECT count(*) FROM user_prompts"), 1);
    assert_eq!(server.count("SELECT count(*) FROM observations"), 4, "one observation per tool use");
    for id in TOOL_USES {
        let n = server.count(&format!(
            "SELECT count(*) FROM observations o JOIN messages m ON m.id = o.message_id WHERE m.idempotency_key = '{id}'"
        ));
        assert_eq!(n, 1, "{id} captured {n} times");
    }
    assert_eq!(server.count("SELECT count(*) FROM summaries"), 1);
    assert_eq!(server.count("SELECT count(*) FROM summaries WHERE request LIKE '%double-counts refunds%'"), 1);
    assert_eq!(server.count("SELECT count(*) FROM summaries WHERE files_edited LIKE '%src/report.rs%'"), 1);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status != 'processed'"), 0);
}

#[test]
fn the_sample_session_over_the_http_hook() {
    let server = TestServer::start(&[]);
    for event in sample_events(server.dir.path()) {
        post_hook(&server, &event);
    }
    assert_sample_captured(&server);
    let tools: Vec<String> = {
        let conn = rusqlite::Connection::open(server.database()).unwrap();
        let mut stmt = conn.prepare("SELECT tool_name FROM observations ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(tools, ["Grep", "Read", "Edit", "Bash"]);
}

#[test]
fn the_sample_session_through_memtray_hook() {
    let server = TestServer::start(&[]);
    for event in sample_events(server.dir.path()) {
        hook_event(&server, &event);
    }
    assert_sample_captured(&server);
    assert_eq!(server.count("SELECT count(*) FROM hook_inbox"), 0, "a running server took every event");
}

#[test]
fn events_sent_while_no_server_runs_are_processed_after_it_starts() {
    let mut server = TestServer::start(&[]);
    assert!(server.stop().success());
    let events = sample_events(server.dir.path());
    for event in &events {
        let (out, took) = run_hook(&server, serde_json::to_vec(event).unwrap().as_slice());
        assert!(out.status.success() && out.stdout.is_empty());
        assert!(took < Duration::from_millis(2_500), "the hook took {took:?} with no server");
    }
    assert_eq!(server.count("SELECT count(*) FROM hook_inbox"), 8, "every event kept");
    assert_eq!(server.count("SELECT count(*) FROM messages"), 0);
    server.spawn();
    assert_sample_captured(&server);
    assert_eq!(server.count("SELECT count(*) FROM hook_inbox"), 0);
}

#[test]
fn tool_uses_missed_while_memtray_was_down_are_reconciled_exactly_once() {
    let mut server = TestServer::start(&[]);
    let events = sample_events(server.dir.path());
    // SessionStart, the prompt and the first tool use arrive; then memtray is down for Read and Edit,
    // whose hooks fail and are gone.
    for event in &events[..3] {
        post_hook(&server, event);
    }
    assert!(server.stop().success());
    server.spawn();
    for event in &events[5..] {
        post_hook(&server, event);
    }
    assert_sample_captured(&server);
    // Reconciled in transcript order: Read before Edit.
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let order: Vec<String> = conn
        .prepare("SELECT idempotency_key FROM messages WHERE kind = 'observation' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let read = order.iter().position(|k| k == TOOL_USES[1]).unwrap();
    let edit = order.iter().position(|k| k == TOOL_USES[2]).unwrap();
    assert!(read < edit, "{order:?}");
}

#[test]
fn malformed_payloads_store_nothing_on_either_path() {
    let server = TestServer::start(&[]);
    let url = "/hooks/claude-code";
    let cases: [(&[u8], Option<&str>, u16); 5] = [
        (b"{}", Some("application/json"), 422),
        (br#"{"session_id": "s"}"#, Some("application/json"), 422),
        (br#"{"hook_event_name": "Stop"}"#, Some("application/json"), 422),
        (b"not json", Some("application/json"), 400),
        (br#"{"session_id": "s", "hook_event_name": "Stop"}"#, None, 415),
    ];
    for (body, content_type, status) in cases {
        let (got, answer, _) = server.post_raw(url, content_type, body);
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    // An event memtray does not use is accepted and ignored.
    post_hook(&server, &json!({"session_id": "s", "hook_event_name": "Notification", "message": "hi"}));

    let garbage: [&[u8]; 5] = [b"", b"not json", b"{}", b"[1, 2]", br#"{"session_id": "s"}"#];
    for input in garbage {
        let (out, _) = run_hook(&server, input);
        assert!(out.status.success() && out.stdout.is_empty(), "{input:?}");
    }
    let log = std::fs::read_to_string(server.dir.path().join("state/hook.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("malformed hook event")).count(), 5, "{log}");
    assert_eq!(
        server.count(
            "SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM hook_inbox)"
        ),
        0
    );
}

fn memtray(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memtray"))
        .args(args)
        .env("HOME", home)
        .env("MEMTRAY_CONFIG", home.join("none.toml"))
        .env("MEMTRAY_DATA_DIR", home.join("data"))
        .env("MEMTRAY_STATE_DIR", home.join("state"))
        .env_remove("MEMTRAY_PORT")
        .output()
        .unwrap()
}

fn memtray_hooks(settings: &Value) -> usize {
    settings["hooks"]
        .as_object()
        .into_iter()
        .flat_map(|events| events.values())
        .flat_map(|groups| groups.as_array().into_iter().flatten())
        .flat_map(|group| group["hooks"].as_array().into_iter().flatten())
        .filter(|h| {
            h["url"].as_str().is_some_and(|u| u.ends_with("/hooks/claude-code"))
                || h["command"].as_str().is_some_and(|c| c.ends_with("memtray hook"))
        })
        .count()
}

#[test]
fn install_hooks_keeps_other_hooks_and_is_idempotent() {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let original = json!({
        "permissions": {"allow": ["Bash(cargo test:*)"]},
        "hooks": {
            "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/bin/audit-log", "timeout": 5}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
        },
        "model": "sonnet"
    });
    std::fs::write(&settings, serde_json::to_string_pretty(&original).unwrap()).unwrap();

    let out = memtray(home.path(), &["install-hooks", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&settings).unwrap()).unwrap(),
        original,
        "dry run"
    );

    let out = memtray(home.path(), &["install-hooks"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let installed: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(memtray_hooks(&installed), 7, "one per event: {installed:#}");
    assert_eq!(installed["hooks"]["PostToolUse"][0]["hooks"][0]["command"], "/usr/bin/audit-log");
    assert_eq!(installed["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");
    assert_eq!(installed["permissions"], original["permissions"]);
    assert_eq!(installed["model"], "sonnet");
    let post_tool_use = installed["hooks"]["PostToolUse"].as_array().unwrap();
    let ours = post_tool_use.iter().find(|g| g["hooks"][0]["type"] == "http").unwrap();
    assert_eq!(ours["matcher"], "*");
    assert_eq!(ours["hooks"][0]["url"], "http://127.0.0.1:37777/hooks/claude-code");
    // The http hooks carry this user's secret, so the file is the owner's alone.
    let token = std::fs::read_to_string(home.path().join("state/token")).unwrap();
    assert_eq!(ours["hooks"][0]["headers"]["X-Memtray-Token"], token.trim());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&settings).unwrap().permissions().mode() & 0o777, 0o600);

    let bytes = std::fs::read(&settings).unwrap();
    let out = memtray(home.path(), &["install-hooks"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no change"));
    assert_eq!(std::fs::read(&settings).unwrap(), bytes, "a second install changes nothing");

    let out = memtray(home.path(), &["install-hooks", "--mode", "command"]);
    assert!(out.status.success());
    let switched: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(memtray_hooks(&switched), 7, "switching modes replaces memtray's hooks: {switched:#}");

    let out = memtray(home.path(), &["uninstall-hooks"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(restored, original, "uninstall removes exactly memtray's hooks");
}

#[test]
fn install_hooks_refuses_a_file_that_is_not_json() {
    let home = tempfile::tempdir().unwrap();
    let project = home.path().join("ledger");
    let settings = project.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let broken = "{\n  // comments are not JSON\n  \"model\": \"sonnet\",\n}\n";
    std::fs::write(&settings, broken).unwrap();
    let out = memtray(home.path(), &["install-hooks", "--project", project.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid JSON"), "{err}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), broken, "left untouched");

    // A project without settings gets a new file with only memtray's hooks.
    let fresh = home.path().join("fresh");
    let out = memtray(home.path(), &["install-hooks", "--project", fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value =
        serde_json::from_str(&std::fs::read_to_string(fresh.join(".claude/settings.json")).unwrap()).unwrap();
    assert_eq!(memtray_hooks(&created), 7);
}

/// One line of a Claude Code 2.1 transcript.
fn line(entry: Value) -> String {
    format!("{entry}\n")
}

fn prompt_line(prompt_id: &str, text: &str) -> String {
    line(json!({"type": "user", "promptId": prompt_id, "cwd": "/home/dev/projects/ledger",
        "message": {"role": "user", "content": text}}))
}

fn tool_lines(prompt_id: &str, id: &str, command: &str) -> String {
    line(
        json!({"type": "assistant", "message": {"id": format!("msg_{id}"), "role": "assistant", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": {"command": command}}]}}),
    ) + &line(json!({"type": "user", "promptId": prompt_id, "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "ok"}]}, "toolUseResult": {"stdout": "ok"}}))
}

fn end_line(text: &str) -> String {
    line(json!({"type": "assistant", "message": {"id": format!("msg_end_{text}"), "role": "assistant",
        "stop_reason": "end_turn", "content": [{"type": "text", "text": text}]}}))
}

#[test]
fn a_missed_prompt_is_restored_and_everything_after_it_renumbered() {
    let server = TestServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let base = json!({"session_id": "s", "cwd": "/home/dev/projects/ledger", "transcript_path": path});
    let event = |name: &str, extra: Value| {
        let mut e = base.clone();
        e["hook_event_name"] = name.into();
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    let tool = |prompt: &str, id: &str| {
        event(
            "PostToolUse",
            json!({"prompt_id": prompt, "tool_name": "Bash", "tool_use_id": id,
            "tool_input": {"command": format!("echo {id}")}, "tool_response": {"stdout": "ok"}}),
        )
    };
    // Prompt 1 and its tool use reach memtray; prompt 2's submission and Stop do not, its tool use does (so
    // memtray files it under prompt 1); prompt 3 arrives and memtray counts it as its second.
    post_hook(&server, &event("UserPromptSubmit", json!({"prompt_id": "p1", "prompt": "First"})));
    post_hook(&server, &tool("p1", "t1"));
    post_hook(&server, &event("Stop", json!({"prompt_id": "p1", "last_assistant_message": "One."})));
    post_hook(&server, &tool("p2", "t2"));
    post_hook(&server, &event("UserPromptSubmit", json!({"prompt_id": "p3", "prompt": "Third"})));
    post_hook(&server, &tool("p3", "t3"));
    let transcript = prompt_line("p1", "First")
        + &tool_lines("p1", "t1", "echo t1")
        + &end_line("One.")
        + &prompt_line("p2", "Second")
        + &tool_lines("p2", "t2", "echo t2")
        + &end_line("Two.")
        + &prompt_line("p3", "Third")
        + &tool_lines("p3", "t3", "echo t3")
        + &end_line("Three.");
    std::fs::write(&path, transcript).unwrap();
    post_hook(&server, &event("Stop", json!({"prompt_id": "p3", "last_assistant_message": "Three."})));
    server.wait_idle(Duration::from_secs(10));

    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let rows = |sql: &str| -> Vec<String> {
        conn.prepare(sql).unwrap().query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(
        rows("SELECT prompt_number || ':' || text FROM user_prompts ORDER BY 1"),
        ["1:First", "2:Second", "3:Third"]
    );
    assert_eq!(
        rows("SELECT m.idempotency_key || '@' || o.prompt_number FROM observations o JOIN messages m ON m.id = o.message_id
              ORDER BY 1"),
        ["t1@1", "t2@2", "t3@3"]
    );
    assert_eq!(rows("SELECT prompt_number || '' FROM summaries ORDER BY prompt_number"), ["1", "2", "3"]);
    assert_eq!(server.count("SELECT prompt_counter FROM sessions"), 3);
}

#[test]
fn failed_and_subagent_tool_uses_are_observed_and_labelled() {
    let server = TestServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let agent_transcript = dir.path().join("agent-a1.jsonl");
    // The subagent ran two tools; only one reached memtray live.
    std::fs::write(&agent_transcript, tool_lines("p1", "sub1", "ls") + &tool_lines("p1", "sub2", "pwd")).unwrap();
    let base = json!({"session_id": "s", "cwd": "/home/dev/projects/ledger", "prompt_id": "p1"});
    let event = |extra: Value| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    post_hook(&server, &event(json!({"hook_event_name": "UserPromptSubmit", "prompt": "Look around"})));
    post_hook(
        &server,
        &event(json!({"hook_event_name": "PostToolUseFailure", "tool_name": "Bash", "tool_use_id": "fail1",
            "tool_input": {"command": "exit 3"}, "error": "Exit code 3", "is_interrupt": false, "duration_ms": 8})),
    );
    post_hook(
        &server,
        &event(json!({"hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_use_id": "sub1",
            "tool_input": {"command": "ls"}, "tool_response": {"stdout": "ok"}, "agent_id": "a1", "agent_type": "Explore"})),
    );
    post_hook(
        &server,
        &event(json!({"hook_event_name": "SubagentStop", "agent_id": "a1", "agent_type": "Explore",
            "agent_transcript_path": agent_transcript, "last_assistant_message": "Found it."})),
    );
    server.wait_idle(Duration::from_secs(10));

    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let rows: Vec<(String, String, String, Option<String>)> = conn
        .prepare(
            "SELECT m.idempotency_key, o.type, o.facts, o.subagent FROM observations o JOIN messages m ON m.id = o.message_id
             ORDER BY o.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("fail1", "failure"));
    assert!(rows[0].2.contains("error: Exit code 3"), "{rows:?}");
    assert_eq!(rows[0].3, None);
    assert_eq!((rows[1].0.as_str(), rows[1].3.as_deref()), ("sub1", Some("Explore")));
    assert_eq!((rows[2].0.as_str(), rows[2].3.as_deref()), ("sub2", Some("Explore")), "reconciled from its transcript");
    // The API shows the label.
    let (_, detail) = server.get("/api/sessions/1");
    assert_eq!(detail["observations"][1]["subagent"], "Explore");
    assert!(detail["observations"][0].get("subagent").is_none());
}

#[test]
fn an_excluded_project_is_not_captured_and_memtray_disabled_silences_the_hook() {
    let server = TestServer::start(&[("MEMTRAY_EXCLUDE_PROJECTS", "secret-*, client-?")]);
    for cwd in ["/home/dev/secret-plans", "/home/dev/client-a"] {
        let cwd_project = |name: &str| {
            json!({"session_id": format!("s-{name}"), "cwd": cwd, "hook_event_name": name,
            "prompt": "p", "tool_name": "Bash", "tool_use_id": format!("t-{cwd}-{name}"), "tool_input": {}, "tool_response": {}})
        };
        for name in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd"] {
            post_hook(&server, &cwd_project(name));
        }
    }
    let (status, answer) = server.post(
        "/api/sessions/observations",
        &json!({"claudeSessionId": "cm", "project": "secret-x", "tool_name": "Bash", "tool_input": {}, "tool_response": {}}),
    );
    assert_eq!((status, answer["reason"].as_str()), (200, Some("excluded_project")), "{answer}");
    assert_eq!(server.count("SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM messages)"), 0);
    // Another project is captured as ever.
    post_hook(
        &server,
        &json!({"session_id": "open", "cwd": "/home/dev/ledger", "hook_event_name": "UserPromptSubmit", "prompt": "p"}),
    );
    assert_eq!(server.count("SELECT count(*) FROM sessions"), 1);

    // MEMTRAY_DISABLED=1 in Claude Code's environment: the hook reads nothing, sends nothing, logs nothing.
    let event =
        json!({"session_id": "off", "cwd": "/home/dev/ledger", "hook_event_name": "UserPromptSubmit", "prompt": "p"});
    let mut child = server
        .command("hook")
        .env("MEMTRAY_DISABLED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
    assert_eq!(server.count("SELECT count(*) FROM sessions WHERE agent_session_id = 'off'"), 0);
    // Without it, the same event is taken.
    hook_event(&server, &event);
    assert_eq!(server.count("SELECT count(*) FROM sessions WHERE agent_session_id = 'off'"), 1);
}

/// `memtray hook` for a SessionStart of `session` in `cwd`: what it printed.
fn session_start(server: &TestServer, session: &str, cwd: &str, source: &str) -> String {
    let event = json!({"session_id": session, "hook_event_name": "SessionStart", "source": source, "cwd": cwd});
    let (out, _) = run_hook(server, event.to_string().as_bytes());
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_session_start_prints_the_projects_memory_within_the_budget_from_the_server_or_the_database() {
    let mut server = TestServer::start(&[("MEMTRAY_CONTEXT_CHARS", "1200")]);
    let cwd = "/home/dev/projects/ledger";
    for n in 0..12 {
        let s = format!("past-{n}");
        post_hook(
            &server,
            &json!({"session_id": s, "cwd": cwd, "hook_event_name": "UserPromptSubmit", "prompt": format!("Task number {n}")}),
        );
        post_hook(
            &server,
            &json!({"session_id": s, "cwd": cwd, "hook_event_name": "PostToolUse", "tool_name": "Bash",
            "tool_use_id": format!("t{n}"), "tool_input": {"command": format!("cargo test part{n}")}, "tool_response": {"stdout": "ok"}}),
        );
        post_hook(
            &server,
            &json!({"session_id": s, "cwd": cwd, "hook_event_name": "Stop", "last_assistant_message": format!("Finished task {n}.")}),
        );
    }
    server.wait_idle(Duration::from_secs(20));

    let printed = session_start(&server, "new-1", cwd, "startup");
    let output: Value = serde_json::from_str(printed.trim()).expect("one JSON object and nothing else");
    assert_eq!(output["hookSpecificOutput"]["hookEventName"], "SessionStart");
    let context = output["hookSpecificOutput"]["additionalContext"].as_str().unwrap();
    assert!(context.chars().count() <= 1200, "within context_chars: {}", context.chars().count());
    assert!(context.starts_with("# Recent memory of ledger"), "{context}");
    assert!(context.contains("Task number 11") && !context.contains("Task number 0"), "newest first: {context}");
    assert!(context.trim_end().ends_with("(mcp__memtray__search, ...)."), "how to get more: {context}");
    // Whole items only: every line is a heading, an item or an item's continuation.
    for line in context.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with('#') || line.starts_with("- ") || line.starts_with("  ") || line.starts_with("More"),
            "{line:?}"
        );
    }

    // Resumed with nothing new since: nothing at all.
    assert_eq!(session_start(&server, "past-11", cwd, "resume"), "");
    // Another project: nothing. Other events: nothing.
    assert_eq!(session_start(&server, "new-2", "/home/dev/projects/elsewhere", "startup"), "");

    // The same text over the API (memtray's and claude-mem's), for this user only.
    let (status, answer) = server.get("/api/context?project=ledger&chars=1200");
    assert_eq!((status, answer["context"].as_str()), (200, Some(context)));
    assert_eq!(server.get_anonymous("/api/context/inject?project=ledger").0, 401);
    let inject = support::http()
        .get(&server.url("/api/context/inject?project=ledger&chars=1200"))
        .header("x-memtray-token", server.secret())
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(inject, context);

    // With the server down the hook reads the database itself: the same text.
    server.stop();
    let offline = session_start(&server, "new-3", cwd, "clear");
    let offline: Value = serde_json::from_str(offline.trim()).unwrap();
    assert_eq!(offline["hookSpecificOutput"]["additionalContext"], context);
    // And `memtray context` prints it in a terminal.
    let out = server.command("context").args(["--project", "ledger"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# Recent memory of ledger"));
}

#[test]
fn with_prompt_context_a_prompt_gets_related_older_memory_and_only_this_user_does() {
    let server = TestServer::start(&[("MEMTRAY_PROMPT_CONTEXT", "1")]);
    let cwd = "/home/dev/projects/ledger";
    post_hook(
        &server,
        &json!({"session_id": "old", "cwd": cwd, "hook_event_name": "PostToolUse", "tool_name": "Read",
        "tool_use_id": "t-old", "tool_input": {"file_path": "/home/dev/projects/ledger/src/zephyrine.rs"}, "tool_response": {}}),
    );
    post_hook(
        &server,
        &json!({"session_id": "now", "cwd": cwd, "hook_event_name": "PostToolUse", "tool_name": "Read",
        "tool_use_id": "t-now", "tool_input": {"file_path": "/home/dev/projects/ledger/src/zephyrine_now.rs"}, "tool_response": {}}),
    );
    server.wait_idle(Duration::from_secs(10));
    let prompt = json!({"session_id": "now", "cwd": cwd, "hook_event_name": "UserPromptSubmit",
        "prompt": "How does the zephyrine module work?"});
    let (status, answer) = server.post("/hooks/claude-code", &prompt);
    assert_eq!(status, 200);
    let context = answer["hookSpecificOutput"]["additionalContext"].as_str().expect("related memory");
    assert_eq!(answer["hookSpecificOutput"]["hookEventName"], "UserPromptSubmit");
    assert!(
        context.contains("zephyrine.rs") && !context.contains("zephyrine_now.rs"),
        "older sessions only: {context}"
    );
    // Without this user's secret the answer carries nothing (and the prompt is still taken in).
    let (status, answer, _) =
        server.post_raw("/hooks/claude-code", Some("application/json"), prompt.to_string().as_bytes());
    assert_eq!((status, answer), (200, json!({})));
}
