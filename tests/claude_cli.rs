//! The real Claude Code CLI (pinned in `tests/claude-cli/package.json`, installed by `make deps`) against a
//! fake Anthropic Messages API, with memtray's hooks installed by `memtray install-hooks` into the test's own
//! HOME, in both modes. One session of four `claude -p` runs (`--continue`, `--resume`), with parallel tool
//! uses and failing tools, memtray down for the second run and for the last one. Afterwards every tool use
//! in the transcript is exactly one observation under the prompt it followed, every Stop one summary, the
//! session completed and the queue empty.

#[path = "support/fake_anthropic.rs"]
mod fake_anthropic;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fake_anthropic::{FakeAnthropic, text, tool};
use serde_json::{Value, json};
use support::TestServer;

/// The pinned CLI, as `make deps` installs it.
fn claude_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/claude-cli/node_modules/.bin/claude");
    assert!(bin.exists(), "the Claude Code CLI is missing at {}: run `make deps`", bin.display());
    bin
}

/// A session of the real CLI in its own HOME and git repository, hooked into `server`.
struct Session {
    home: tempfile::TempDir,
    repo: tempfile::TempDir,
    api: FakeAnthropic,
}

impl Session {
    fn new(server: &TestServer, mode: &str) -> Session {
        let session = Session {
            home: tempfile::tempdir().unwrap(),
            repo: tempfile::tempdir().unwrap(),
            api: FakeAnthropic::start(),
        };
        let git = Command::new("git").args(["init", "-q"]).current_dir(session.repo.path()).status().unwrap();
        assert!(git.success());
        let out =
            server.command("install-hooks").args(["--mode", mode]).env("HOME", session.home.path()).output().unwrap();
        assert!(out.status.success(), "install-hooks: {}", String::from_utf8_lossy(&out.stderr));
        session
    }

    /// A second git repository (another project) for the same HOME.
    fn other_repo(&self) -> tempfile::TempDir {
        let repo = tempfile::tempdir().unwrap();
        let git = Command::new("git").args(["init", "-q"]).current_dir(repo.path()).status().unwrap();
        assert!(git.success());
        repo
    }

    /// Runs `claude -p PROMPT ARGS…` to its end with a clean environment plus memtray's own variables (which
    /// the hooks inherit), and returns its JSON result.
    fn run(&self, server: &TestServer, prompt: &str, args: &[&str]) -> Value {
        self.run_in(self.repo.path(), server, prompt, args)
    }

    fn run_in(&self, repo: &Path, server: &TestServer, prompt: &str, args: &[&str]) -> Value {
        let memtray = server.command("hook");
        let mut cmd = Command::new(claude_bin());
        cmd.env_clear()
            .envs(memtray.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("ANTHROPIC_BASE_URL", self.api.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("IS_SANDBOX", "1")
            .current_dir(repo)
            .args(["-p", prompt, "--output-format", "json", "--dangerously-skip-permissions"])
            .args(args)
            .stdin(Stdio::null());
        let out: Output = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "claude failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_slice(&out.stdout).expect("claude's JSON result");
        assert_eq!(result["is_error"], false, "{result}");
        assert_eq!(self.api.left(), 0, "every scripted turn was used");
        result
    }

    /// The tool use ids of the session's transcript, in order.
    fn transcript_tool_uses(&self, session_id: &str) -> Vec<String> {
        let projects = self.home.path().join(".claude/projects");
        let file = std::fs::read_dir(&projects)
            .unwrap()
            .map(|d| d.unwrap().path().join(format!("{session_id}.jsonl")))
            .find(|p| p.exists())
            .expect("the session's transcript");
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e["type"] == "assistant" && e["isSidechain"] != true)
            .flat_map(|e| e["message"]["content"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["type"] == "tool_use")
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn bash(id: &str, command: &str) -> fake_anthropic::Block {
    tool(id, "Bash", json!({"command": command, "description": format!("run {command}")}))
}

/// The four runs; memtray is stopped for the second and the fourth. Returns the session id and, per tool
/// use id, the prompt it belongs to.
fn four_runs(mut server: TestServer, mode: &str) -> (TestServer, Session, String, BTreeMap<String, i64>) {
    let session = Session::new(&server, mode);
    let id = |n: &str| format!("toolu_{mode}_{n}");
    let repo = session.repo.path().to_path_buf();
    let mut expected = BTreeMap::new();

    // 1. Parallel tool uses, one of them failing, then a failing command.
    session.api.script(vec![
        vec![
            text("Creating the file and reading a missing one."),
            bash(&id("1"), "echo one > one.txt"),
            tool(&id("2"), "Read", json!({"file_path": repo.join("missing.txt")})),
        ],
        vec![bash(&id("3"), "exit 3")],
        vec![text("Wrote one.txt; the missing file and the command failed.")],
    ]);
    let first = session.run(&server, "Create one.txt and look for missing.txt", &[]);
    let session_id = first["session_id"].as_str().unwrap().to_string();
    expected.extend([(id("1"), 1), (id("2"), 1), (id("3"), 1)]);

    // 2. memtray is down.
    server.stop();
    session.api.script(vec![
        vec![tool(&id("4"), "Write", json!({"file_path": repo.join("two.txt"), "content": "two\n"}))],
        vec![bash(&id("5"), "cat one.txt two.txt")],
        vec![text("two.txt holds two.")],
    ]);
    session.run(&server, "Add two.txt", &["--continue"]);
    expected.extend([(id("4"), 2), (id("5"), 2)]);

    // 3. memtray is back.
    server.spawn();
    session.api.script(vec![
        vec![bash(&id("6"), "ls"), tool(&id("7"), "Read", json!({"file_path": repo.join("one.txt")}))],
        vec![text("Two files.")],
    ]);
    session.run(&server, "List the files", &["--resume", &session_id]);
    expected.extend([(id("6"), 3), (id("7"), 3)]);

    // 4. memtray is down for the last run, and starts afterwards.
    server.stop();
    session.api.script(vec![vec![bash(&id("8"), "rm one.txt")], vec![text("Removed one.txt.")]]);
    session.run(&server, "Remove one.txt", &["--continue"]);
    expected.insert(id("8"), 4);
    server.spawn();
    (server, session, session_id, expected)
}

/// Every tool use of the transcript exactly once under its prompt, one summary per Stop, four prompts with
/// their text, the session completed, nothing left in the queue.
fn assert_complete(server: &TestServer, session: &Session, session_id: &str, expected: &BTreeMap<String, i64>) {
    server.wait_idle(Duration::from_secs(20));
    let in_transcript = session.transcript_tool_uses(session_id);
    let mut sorted = in_transcript.clone();
    sorted.sort();
    assert_eq!(sorted, expected.keys().cloned().collect::<Vec<_>>(), "the transcript holds the scripted tool uses");

    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let rows: Vec<(String, i64, String)> = conn
        .prepare(
            "SELECT m.idempotency_key, o.prompt_number, o.type FROM observations o JOIN messages m ON m.id = o.message_id
             ORDER BY o.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let observed: BTreeMap<String, i64> = rows.iter().map(|(k, p, _)| (k.clone(), *p)).collect();
    let mut log = std::fs::read_to_string(server.dir.path().join("state/hook.log")).unwrap_or_default();
    let messages: Vec<String> = conn
        .prepare("SELECT id, kind, status, prompt_number, idempotency_key FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok(format!(
                "{} {} {} {} {:?}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    log.push_str(&format!("messages:\n{}", messages.join("\n")));
    assert_eq!(rows.len(), expected.len(), "exactly one observation per tool use: {rows:?}\nhook.log:\n{log}");
    assert_eq!(&observed, expected, "each under the prompt it followed");
    let failures: Vec<&str> = rows.iter().filter(|(_, _, t)| t == "failure").map(|(k, _, _)| k.as_str()).collect();
    let mode = expected.keys().next().unwrap().split('_').nth(1).unwrap().to_string();
    assert_eq!(failures, [format!("toolu_{mode}_2"), format!("toolu_{mode}_3")], "the failed tool uses say so");

    let summaries: Vec<(i64, i64)> = conn
        .prepare("SELECT prompt_number, count(*) FROM summaries GROUP BY prompt_number ORDER BY prompt_number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(summaries, [(1, 1), (2, 1), (3, 1), (4, 1)], "one summary per Stop");

    let prompts: Vec<(i64, String)> = conn
        .prepare("SELECT prompt_number, text FROM user_prompts ORDER BY prompt_number")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let texts = ["Create one.txt and look for missing.txt", "Add two.txt", "List the files", "Remove one.txt"];
    let want: Vec<(i64, String)> = texts.iter().enumerate().map(|(i, t)| (i as i64 + 1, t.to_string())).collect();
    assert_eq!(prompts, want, "every prompt, under its number");

    let (status, counter): (String, i64) = conn
        .query_row("SELECT status, prompt_counter FROM sessions WHERE agent_session_id = ?1", [session_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), counter), ("completed", 4));
    assert_eq!(server.count("SELECT count(*) FROM sessions"), 1);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status != 'processed'"), 0, "the queue is empty");
    assert_eq!(server.count("SELECT count(*) FROM hook_inbox"), 0);
    let (_, status) = server.get("/api/processing-status");
    assert_eq!(status["isProcessing"], false);
}

#[test]
fn command_hooks_capture_every_tool_use_and_stop_across_downtime() {
    let (server, session, id, expected) = four_runs(TestServer::start(&[]), "command");
    assert_complete(&server, &session, &id, &expected);
}

#[test]
fn http_hooks_capture_every_tool_use_and_stop_across_downtime() {
    let (server, session, id, expected) = four_runs(TestServer::start(&[]), "http");
    assert_complete(&server, &session, &id, &expected);
}

/// The text of a request's messages (where Claude Code puts SessionStart context: a system reminder in the
/// first user message), and of its tool results.
fn messages_text(request: &Value) -> String {
    request["messages"].to_string()
}

/// The main conversation's requests (those offering tools) from `from` on.
fn conversation(api: &FakeAnthropic, from: usize) -> Vec<Value> {
    api.requests().into_iter().skip(from).filter(|r| r["tools"].as_array().is_some_and(|t| !t.is_empty())).collect()
}

#[test]
fn the_next_session_starts_with_the_last_ones_memory_and_searches_it_over_mcp() {
    let server = TestServer::start(&[]);
    let session = Session::new(&server, "command");
    let notes = session.repo.path().join("zephyrine-notes.md");

    // Session 1 does work in the project.
    session.api.script(vec![
        vec![tool("toolu_r1", "Write", json!({"file_path": notes, "content": "zephyrine calibration steps\n"}))],
        vec![text("Wrote the zephyrine calibration notes.")],
    ]);
    session.run(&server, "Write down the zephyrine calibration", &[]);
    server.wait_idle(Duration::from_secs(20));
    assert_eq!(server.count("SELECT count(*) FROM summaries"), 1);
    let observation: i64 = server.count("SELECT id FROM observations");

    // Session 2, a new one in the same project: its first request carries session 1's memory, and the model
    // asks memtray's MCP server for more.
    let from = session.api.requests().len();
    session.api.script(vec![
        vec![tool("toolu_r2", "mcp__memtray__search", json!({"query": "zephyrine"}))],
        vec![text("Found the earlier notes.")],
    ]);
    session.run(&server, "Where were we with the calibration?", &[]);
    let requests = conversation(&session.api, from);
    assert!(requests.len() >= 2, "the model was asked twice: {}", requests.len());
    let first = messages_text(&requests[0]);
    assert!(first.contains("Recent memory of"), "memtray's context is in the first request: {first}");
    assert!(first.contains("Write down the zephyrine calibration"), "session 1's summary (its request)");
    assert!(first.contains("zephyrine-notes.md"), "and the file it wrote");
    assert!(first.contains("mcp__memtray__search"), "and how to get more");
    let offered: Vec<&str> =
        requests[0]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(offered.contains(&"mcp__memtray__search"), "memtray's MCP tools are offered: {offered:?}");
    let answered = messages_text(&requests[1]);
    // What follows the tool result's id: the MCP tool's answer (session 1's context is earlier in the text).
    let result = answered.split("toolu_r2").nth(2).unwrap_or_default();
    assert!(
        result.contains(&format!("observation #{observation}")),
        "the search result names the observation: {result}"
    );
    assert!(!answered.contains("\"is_error\":true"), "the tool call did not fail: {answered}");

    // A session in another project gets none of it.
    let elsewhere = session.other_repo();
    let from = session.api.requests().len();
    session.api.script(vec![vec![text("Nothing here yet.")]]);
    session.run_in(elsewhere.path(), &server, "Start something new", &[]);
    let first = messages_text(&conversation(&session.api, from)[0]);
    assert!(!first.contains("Recent memory of") && !first.contains("zephyrine"), "{first}");
}
