//! Draining 1,000 tool uses in 10 sessions through the `anthropic` provider against the fake Messages API
//! (tests/support/fake_llm.rs) answering after a fixed 300 ms, with batching on (10 per call) and off: calls
//! made, tokens sent and received, wall time, and memtray's own CPU per message (the server process's
//! utime + stime while it drains) beside the provider's latency. Prints figures; asserts nothing.

#[path = "../tests/support/fake_llm.rs"]
mod fake_llm;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_llm::FakeLlm;
use serde_json::{Value, json};

const KEY: &str = "sk-bench";
const SESSIONS: usize = 10;
const TOOL_USES_PER_SESSION: usize = 100;
const LATENCY: Duration = Duration::from_millis(300);

struct Server {
    child: Child,
    port: u16,
    secret: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
        cmd.arg("serve");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEMTRAY_")) {
            cmd.env_remove(k);
        }
        cmd.env("MEMTRAY_DATA_DIR", data_dir)
            .env("MEMTRAY_CONFIG", data_dir.join("none.toml"))
            .env("MEMTRAY_STATE_DIR", data_dir.join("state"))
            .env("MEMTRAY_PORT", "0")
            .env("MEMTRAY_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn memtray serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port on the ready line");
        let secret = std::fs::read_to_string(data_dir.join("state/token")).expect("the secret").trim().to_string();
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { child, port, secret, agent }
    }

    fn post(&self, path: &str, body: &Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = self.agent.post(&url).header("x-memtray-token", &self.secret).send_json(body).expect("POST");
        assert_eq!(response.status().as_u16(), 200, "POST {path}");
    }

    fn get(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut response = self.agent.get(&url).header("x-memtray-token", &self.secret).call().expect("GET");
        response.body_mut().read_json().expect("JSON")
    }

    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / 100.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Bash tool use with about 1 KiB of test output.
fn tool_use(session: &str, i: usize) -> Value {
    let stdout: String = format!("test ledger::report::case_{i} ... ok\n").repeat(24);
    json!({
        "claudeSessionId": session,
        "tool_name": "Bash",
        "tool_input": {"command": format!("cargo test -p ledger case_{i}"), "description": "Run one test"},
        "tool_response": {"stdout": stdout, "stderr": "", "exit_code": 0},
        "cwd": "/home/dev/projects/ledger",
        "tool_use_id": format!("{session}-{i}"),
    })
}

struct Figures {
    calls: usize,
    input_tokens: i64,
    output_tokens: i64,
    wall: Duration,
    cpu: Duration,
}

fn drain(batch_max_items: &str) -> Figures {
    let fake = FakeLlm::start(Some(KEY));
    fake.set_latency(LATENCY);
    let dir = tempfile::tempdir().unwrap();
    let base = fake.anthropic_url();
    let server = Server::start(
        dir.path(),
        &[
            ("MEMTRAY_PROVIDER", "anthropic"),
            ("MEMTRAY_ANTHROPIC_BASE_URL", &base),
            ("MEMTRAY_ANTHROPIC_API_KEY", KEY),
            ("MEMTRAY_BATCH_MAX_ITEMS", batch_max_items),
        ],
    );
    server.post("/api/processing", &json!({"paused": true}));
    for s in 0..SESSIONS {
        let session = format!("bench-{s}");
        server.post(
            "/api/sessions/init",
            &json!({"claudeSessionId": session, "project": "ledger", "prompt": "make the report tests pass"}),
        );
        for i in 0..TOOL_USES_PER_SESSION {
            server.post("/api/sessions/observations", &tool_use(&session, i));
        }
    }
    let (cpu_before, start) = (server.cpu(), Instant::now());
    server.post("/api/processing", &json!({"paused": false}));
    loop {
        let status = server.get("/api/processing-status");
        if status["queueDepth"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "the drain took too long: {status}");
        // Every 100 ms: the polls are part of the server CPU measured, so they are kept few.
        std::thread::sleep(Duration::from_millis(100));
    }
    let (wall, cpu) = (start.elapsed(), server.cpu() - cpu_before);
    let totals = &server.get("/api/stats")["tokens"]["byProvider"][0];
    let observations = server.get("/api/observations?limit=1")["total"].as_i64().unwrap_or(0);
    assert_eq!(observations as usize, SESSIONS * TOOL_USES_PER_SESSION, "every tool use observed");
    Figures {
        calls: fake.count(),
        input_tokens: totals["inputTokens"].as_i64().unwrap_or(0),
        output_tokens: totals["outputTokens"].as_i64().unwrap_or(0),
        wall,
        cpu,
    }
}

fn main() {
    let messages = SESSIONS * TOOL_USES_PER_SESSION;
    println!(
        "providers bench: {messages} tool uses in {SESSIONS} sessions, fake Anthropic API answering after {LATENCY:?}, \
         4 concurrent provider calls (the default), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (label, items) in [("batching on (10 per call)", "10"), ("batching off (1 per call)", "1")] {
        let f = drain(items);
        println!(
            "  {label:<26} calls {:>5}  tokens sent {:>8}  received {:>7}  wall {:>7.2} s  server CPU {:>6.3} s = {:>6.0} µs/message",
            f.calls,
            f.input_tokens,
            f.output_tokens,
            f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            f.cpu.as_secs_f64() * 1e6 / messages as f64,
        );
    }
}
