//! The wall time a user feels: a scripted three-prompt `claude -p` session (the real, pinned CLI against the
//! fake Anthropic API of the tests, two tool uses per prompt) with no hooks, with memtray's http hooks and with
//! its command hooks; then memtray's own time per hook event by kind, over `/hooks/claude-code` and through
//! `memtray hook`. Prints figures; asserts nothing.

#[path = "../tests/support/fake_anthropic.rs"]
mod fake_anthropic;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_anthropic::{FakeAnthropic, text, tool};
use serde_json::{Value, json};

const RUNS: usize = 5;
const EVENT_RUNS: usize = 30;

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child =
            memtray(dir.path(), 0).arg("serve").stdout(Stdio::piped()).spawn().expect("spawn memtray serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Server { child, port, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn memtray(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
    cmd.env("MEMTRAY_DATA_DIR", dir)
        .env("MEMTRAY_CONFIG", dir.join("none.toml"))
        .env("MEMTRAY_STATE_DIR", dir.join("state"))
        .env("MEMTRAY_PORT", port.to_string())
        .env("MEMTRAY_LOG", "warn");
    cmd
}

fn claude_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/claude-cli/node_modules/.bin/claude");
    assert!(bin.exists(), "the Claude Code CLI is missing at {}: run `make deps`", bin.display());
    bin
}

/// One three-prompt session in a fresh HOME and repository; returns its wall time and its transcript.
fn session(server: &Server, mode: Option<&str>, run: usize) -> (Duration, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    Command::new("git").args(["init", "-q"]).current_dir(repo.path()).status().unwrap();
    if let Some(mode) = mode {
        let out = memtray(server.dir.path(), server.port)
            .args(["install-hooks", "--mode", mode])
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let api = FakeAnthropic::start();
    let started = Instant::now();
    for (prompt, n) in ["Look at the repo", "Write a file", "Check it"].iter().zip(0..) {
        let id = |k: &str| format!("toolu_{}_{run}_{n}_{k}", mode.unwrap_or("none"));
        api.script(vec![
            vec![
                tool(&id("a"), "Bash", json!({"command": "ls -la", "description": "list"})),
                tool(&id("b"), "Write", json!({"file_path": repo.path().join(format!("f{n}.txt")), "content": "x\n"})),
            ],
            vec![text("Done with this step.")],
        ]);
        let mut cmd = Command::new(claude_bin());
        cmd.env_clear()
            .envs(memtray(server.dir.path(), server.port).get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("ANTHROPIC_BASE_URL", api.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("IS_SANDBOX", "1")
            .current_dir(repo.path())
            .args(["-p", prompt, "--output-format", "json", "--dangerously-skip-permissions"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if n > 0 {
            cmd.arg("--continue");
        }
        assert!(cmd.status().unwrap().success());
    }
    let elapsed = started.elapsed();
    let transcript = std::fs::read_dir(home.path().join(".claude/projects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let kept = std::env::temp_dir().join(format!("memtray-bench-transcript-{}-{run}.jsonl", mode.unwrap_or("none")));
    std::fs::copy(&transcript, &kept).unwrap();
    (elapsed, kept)
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = samples[samples.len() / 2];
    format!("median {:.0} ms, min {:.0} ms, max {:.0} ms", ms(median), ms(samples[0]), ms(*samples.last().unwrap()))
}

fn p50_p99(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99))
}

/// One event of each kind for a session whose transcript is `transcript`.
fn events(session: &str, transcript: &Path, i: usize) -> Vec<(&'static str, Value)> {
    let base = json!({"session_id": session, "cwd": "/home/dev/projects/ledger", "transcript_path": transcript});
    let with = |name: &str, extra: Value| {
        let mut e = base.clone();
        e["hook_event_name"] = name.into();
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    vec![
        ("SessionStart", with("SessionStart", json!({"source": "startup"}))),
        (
            "UserPromptSubmit",
            with("UserPromptSubmit", json!({"prompt": "Look at the repo", "prompt_id": format!("p{i}")})),
        ),
        (
            "PostToolUse",
            with(
                "PostToolUse",
                json!({"tool_name": "Bash", "tool_use_id": format!("toolu_kind_{i}"), "tool_input": {"command": "ls"},
                       "tool_response": {"stdout": "a\nb\n", "stderr": ""}, "duration_ms": 12}),
            ),
        ),
        (
            "PostToolUseFailure",
            with(
                "PostToolUseFailure",
                json!({"tool_name": "Bash", "tool_use_id": format!("toolu_fail_{i}"), "tool_input": {"command": "false"},
                       "error": "Exit code 1", "is_interrupt": false}),
            ),
        ),
        ("Stop", with("Stop", json!({"prompt_id": format!("p{i}"), "last_assistant_message": "Done."}))),
        ("SessionEnd", with("SessionEnd", json!({"reason": "other"}))),
    ]
}

fn main() {
    let server = Server::start();
    println!("claude -p, three prompts with two tool uses each, {RUNS} runs per configuration:");
    let mut transcript = None;
    for mode in [None, Some("http"), Some("command")] {
        let mut times = Vec::new();
        for run in 0..RUNS {
            let (elapsed, kept) = session(&server, mode, run);
            times.push(elapsed);
            transcript = Some(kept);
        }
        println!("  {:<12} {}", mode.map_or("no hooks".to_string(), |m| format!("{m} hooks")), stats(times));
    }
    let transcript = transcript.unwrap();

    println!("memtray's own time per hook event ({EVENT_RUNS} each; Stop and SessionEnd read a 3-prompt transcript):");
    let http = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let url = format!("http://127.0.0.1:{}/hooks/claude-code", server.port);
    let mut by_kind: Vec<(&str, Vec<Duration>, Vec<Duration>)> =
        events("s", &transcript, 0).iter().map(|(k, _)| (*k, Vec::new(), Vec::new())).collect();
    for i in 0..EVENT_RUNS {
        for (slot, (kind, event)) in events(&format!("http-{i}"), &transcript, i).into_iter().enumerate() {
            let started = Instant::now();
            let status = http.post(&url).send_json(&event).unwrap().status();
            by_kind[slot].1.push(started.elapsed());
            assert_eq!(status, 200, "{kind}");
        }
        for (slot, (_, event)) in events(&format!("hook-{i}"), &transcript, i).into_iter().enumerate() {
            let started = Instant::now();
            let mut child = memtray(server.dir.path(), server.port)
                .arg("hook")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&serde_json::to_vec(&event).unwrap()).unwrap();
            assert!(child.wait().unwrap().success());
            by_kind[slot].2.push(started.elapsed());
        }
    }
    for (kind, requests, hooks) in by_kind {
        println!("  {kind:<19} request {}; memtray hook spawn-to-exit {}", p50_p99(requests), p50_p99(hooks));
    }
}
