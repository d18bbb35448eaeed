//! The `claude-cli` provider through the real `memtray serve`: with a fake `claude` (tests/support/
//! fake_claude.py: it records each run and answers, hangs, or leaves a grandchild behind) for the process
//! handling, and with the real Claude Code CLI (offline, against a fake Messages API) for the command line
//! itself. No run outlives its call: not after a timeout, a cancel, a shutdown or an answer.

#[path = "support/fake_llm.rs"]
mod fake_llm;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

/// A `claude` that runs the fake in `mode`, logging into its own folder.
struct FakeClaude {
    dir: tempfile::TempDir,
}

impl FakeClaude {
    fn new(mode: &str) -> FakeClaude {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_claude.py");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let wrapper = format!("#!/bin/sh\nexec python3 '{}' '{mode}' '{}' \"$@\"\n", script.display(), logs.display());
        let command = dir.path().join("claude");
        std::fs::write(&command, wrapper).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeClaude { dir }
    }

    fn command(&self) -> String {
        self.dir.path().join("claude").display().to_string()
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Every run recorded so far.
    fn runs(&self) -> Vec<Value> {
        let mut runs: Vec<Value> = std::fs::read_dir(self.logs())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .collect();
        runs.sort_by_key(|r| r["pid"].as_i64());
        runs
    }

    /// Every process a run started: the runs and their grandchildren.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.runs().iter().map(|r| r["pid"].as_u64().unwrap() as u32).collect();
        for entry in std::fs::read_dir(self.logs()).unwrap().filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with("grandchild-")
                && let Ok(text) = std::fs::read_to_string(entry.path())
                && let Ok(pid) = text.trim().parse()
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Runs and grandchildren, once both of a run are recorded.
    fn wait_started(&self, runs: usize, with_grandchildren: bool) {
        wait_for(LIMIT, "the fake claude to start", || {
            let n = self.runs().len();
            n >= runs && (!with_grandchildren || self.pids().len() >= 2 * runs)
        });
    }
}

/// True while the process exists and is not a zombie (a killed process waits as one for its reaper).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn wait_all_dead(pids: &[u32], why: &str) {
    assert!(!pids.is_empty());
    wait_for(Duration::from_secs(10), why, || pids.iter().all(|p| !alive(*p)));
}

fn server(claude: &FakeClaude, extra: &[(&str, &str)]) -> TestServer {
    let command = claude.command();
    let mut env = vec![
        ("MEMTRAY_PROVIDER", "claude-cli"),
        ("MEMTRAY_CLAUDE_CLI_COMMAND", command.as_str()),
        ("MEMTRAY_RETRY_BACKOFF_MS", "50"),
        ("MEMTRAY_LINGER_MS", "200"),
        ("SOME_SERVICE_TOKEN", "canary-not-for-claude"),
    ];
    env.extend_from_slice(extra);
    TestServer::start(&env)
}

fn queue(server: &TestServer, session: &str, tools: &[&str]) {
    server.post(
        "/api/sessions/init",
        &json!({"claudeSessionId": session, "project": "parser", "prompt": "fix the parser"}),
    );
    for (i, tool) in tools.iter().enumerate() {
        let (status, _) = server
            .post("/api/sessions/observations", &support::observation(session, &format!("{session}-t{}", i + 1), tool));
        assert_eq!(status, 200);
    }
}

#[test]
fn runs_are_clean_and_their_answers_become_memory() {
    let claude = FakeClaude::new("answer");
    let server = server(&claude, &[]);
    server.set_paused(true);
    queue(&server, "c1", &["Read", "Edit"]);
    let mut private = support::observation("c1", "c1-t3", "Bash");
    private["tool_input"] = json!({"command": "echo <private>hunter2-cli</private>"});
    server.post("/api/sessions/observations", &private);
    server.post("/api/sessions/summarize", &json!({"claudeSessionId": "c1", "last_assistant_message": "done"}));
    server.set_paused(false);
    server.wait_idle(LIMIT);

    let titles: Vec<(String, String)> = {
        let (_, session) = server.get("/api/sessions/1");
        session["observations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["title"].as_str().unwrap().to_string(), o["provider"].as_str().unwrap().to_string()))
            .collect()
    };
    let cli = |n: usize| (format!("CLI saw #{n}"), "claude-cli".to_string());
    assert_eq!(titles, [cli(1), cli(2), cli(3)]);
    assert_eq!(server.count("SELECT count(*) FROM summaries WHERE learned = 'Tokens were read twice'"), 1);
    assert_eq!(
        server.count("SELECT count(*) FROM provider_calls WHERE provider = 'claude-cli' AND input_tokens > 7"),
        2
    );

    let runs = claude.runs();
    assert_eq!(runs.len(), 2, "one run for the batch of three, one for the summary");
    for run in &runs {
        let args: Vec<&str> = run["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let joined = args.join(" ");
        assert!(
            joined.starts_with("-p --output-format json --no-session-persistence --strict-mcp-config --tools "),
            "{joined}"
        );
        let settings = args.iter().position(|a| *a == "--settings").map(|i| args[i + 1]);
        assert_eq!(settings, Some(r#"{"disableAllHooks": true}"#), "hooks off inside the run");
        assert!(args.contains(&"--system-prompt") && args.contains(&"--model"));
        assert_eq!(run["pgid"], run["pid"], "its own process group");
        let env = &run["env"];
        assert_eq!(env["MEMTRAY_DISABLED"], "1", "memtray's own hooks stay quiet");
        for gone in ["SOME_SERVICE_TOKEN", "MEMTRAY_DATA_DIR", "MEMTRAY_CONFIG", "MEMTRAY_PORT"] {
            assert!(env.get(gone).is_none(), "{gone} reached the run");
        }
        assert!(env.get("HOME").is_some() && env.get("PATH").is_some());
        assert_eq!(run["cwd"], server.dir.path().join("claude-cli").display().to_string());
    }
    assert!(runs[0]["stdin"].as_str().unwrap().contains("<tool_use number=\"3\">"), "the material comes on stdin");
    assert!(runs.iter().all(|r| !r.to_string().contains("hunter2")), "private text never reaches the run");
    assert!(runs[1]["stdin"].as_str().unwrap().contains("Write the summary."));
    assert!(claude.pids().iter().all(|p| !alive(*p)));
}

#[test]
fn a_run_that_hangs_is_killed_with_its_grandchild_at_the_timeout() {
    let claude = FakeClaude::new("grandchild-hang");
    // Five seconds: ample for the fake to start and record its grandchild (milliseconds) on a loaded machine.
    let server = server(&claude, &[("MEMTRAY_PROVIDER_TIMEOUT_SECS", "5"), ("MEMTRAY_MAX_ATTEMPTS", "1")]);
    queue(&server, "h1", &["Bash"]);
    claude.wait_started(1, true);
    let pids = claude.pids();
    assert_eq!(pids.len(), 2, "the run and its grandchild");
    assert!(pids.iter().all(|p| alive(*p)), "both run until the timeout");
    server.wait_idle(LIMIT);
    wait_all_dead(&pids, "the run and its grandchild to be killed");
    let fallback: String = {
        let (_, session) = server.get("/api/sessions/1");
        session["observations"][0]["fallback"].as_str().unwrap().to_string()
    };
    assert!(fallback.contains("did not answer within 5s"), "{fallback}");
}

#[test]
fn a_cancelled_call_and_a_shutdown_kill_the_run() {
    let claude = FakeClaude::new("grandchild-hang");
    let mut server = server(&claude, &[("MEMTRAY_PROVIDER_TIMEOUT_SECS", "600")]);
    queue(&server, "x1", &["Bash"]);
    claude.wait_started(1, true);
    let first = claude.pids();
    assert!(first.iter().all(|p| alive(*p)));
    // Deleting the session cancels its consumer mid-call.
    let (status, _) = support::http()
        .delete(&server.url("/api/sessions/1"))
        .header("x-memtray-token", server.secret())
        .call()
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    wait_all_dead(&first, "the cancelled run and its grandchild to be killed");

    queue(&server, "x2", &["Bash"]);
    claude.wait_started(2, true);
    let all = claude.pids();
    assert_eq!(all.len(), 4);
    let exit = server.stop();
    assert!(exit.success(), "{exit:?}");
    wait_all_dead(&all, "the run in flight at shutdown and its grandchild to be killed");
}

#[test]
fn what_a_run_leaves_behind_goes_with_it() {
    let claude = FakeClaude::new("grandchild-answer");
    let server = server(&claude, &[]);
    queue(&server, "l1", &["Bash"]);
    server.wait_idle(LIMIT);
    assert_eq!(server.count("SELECT count(*) FROM observations WHERE provider = 'claude-cli'"), 1);
    let pids = claude.pids();
    assert_eq!(pids.len(), 2);
    wait_all_dead(&pids, "the run's grandchild to go with it");
}

#[test]
fn runs_at_once_are_capped() {
    let claude = FakeClaude::new("slow");
    let server =
        server(&claude, &[("MEMTRAY_CLAUDE_CLI_MAX_CONCURRENT", "1"), ("MEMTRAY_MAX_CONCURRENT_PROVIDER_CALLS", "4")]);
    server.set_paused(true);
    for s in ["m1", "m2", "m3"] {
        queue(&server, s, &["Bash"]);
    }
    server.set_paused(false);
    server.wait_idle(LIMIT);
    let log = std::fs::read_to_string(claude.logs().join("runs.log")).unwrap();
    let (mut running, mut most) = (0i32, 0i32);
    let mut events: Vec<(u128, i32)> = log
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts[2].parse().unwrap(), if parts[0] == "start" { 1 } else { -1 })
        })
        .collect();
    events.sort();
    for (_, change) in &events {
        running += change;
        most = most.max(running);
    }
    assert_eq!(events.len(), 6, "{log}");
    assert_eq!(most, 1, "never two runs at once: {log}");
}

#[test]
fn a_logged_out_claude_pauses_the_provider() {
    let claude = FakeClaude::new("logged-out");
    let server = server(&claude, &[("MEMTRAY_PROVIDER_PROBE_SECS", "60")]);
    queue(&server, "o1", &["Bash"]);
    wait_for(LIMIT, "the provider to be paused", || {
        server.get("/api/stats").1["provider"]["health"] == "misconfigured"
    });
    let reason = server.get("/api/stats").1["provider"]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("Please run /login"), "{reason}");
    wait_for(LIMIT, "the message back to pending", || {
        server.count("SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0") == 1
    });
    assert_eq!(claude.runs().len(), 1, "not called again before the probe");
}

/// The real Claude Code CLI (offline, against a fake Messages API) accepts the command line memtray builds
/// and its JSON answer becomes memory; no tool is offered to it and no hook runs inside it.
#[test]
fn the_real_claude_cli_answers_as_a_provider() {
    let claude = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/claude-cli/node_modules/.bin/claude");
    assert!(claude.exists(), "the pinned Claude Code CLI is installed by `make test-deps`");
    let api = fake_llm::FakeLlm::start(Some("sk-ant-test"));
    let home = tempfile::tempdir().unwrap();
    let (base, command, home_path) =
        (api.anthropic_url(), claude.display().to_string(), home.path().display().to_string());
    let server = TestServer::start(&[
        ("MEMTRAY_PROVIDER", "claude-cli"),
        ("MEMTRAY_CLAUDE_CLI_COMMAND", &command),
        ("MEMTRAY_LINGER_MS", "200"),
        ("HOME", &home_path),
        ("ANTHROPIC_BASE_URL", &base),
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ("DISABLE_TELEMETRY", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("IS_SANDBOX", "1"),
    ]);
    server.set_paused(true);
    queue(&server, "r1", &["Read", "Bash"]);
    server.set_paused(false);
    server.wait_idle(Duration::from_secs(60));
    let (_, session) = server.get("/api/sessions/1");
    let titles: Vec<&str> =
        session["observations"].as_array().unwrap().iter().map(|o| o["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Model saw Read #1", "Model saw Bash #2"], "{session}");
    assert!(
        session["observations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["provider"] == "claude-cli" && o.get("fallback").is_none())
    );
    let main: Vec<_> = api.received().into_iter().filter(|r| r.tool_uses() > 0).collect();
    assert_eq!(main.len(), 1, "one model request for the batch");
    let request = &main[0].json;
    assert!(request["tools"].as_array().is_none_or(|t| t.is_empty()), "no tools offered: {}", request["tools"]);
    let system = request["system"].to_string();
    assert!(system.contains("long-term memory of a developer"), "memtray's instructions are the system prompt");
}
