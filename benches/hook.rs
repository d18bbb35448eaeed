//! Claude Code integration figures: `memtray hook` spawn-to-exit with a PostToolUse payload (server up and
//! server down), server time per `/hooks/claude-code` PostToolUse request, and transcript reconciliation
//! time for a 10,000-line transcript. Prints figures; asserts nothing. (The same figures against an older
//! binary, in one run, are `benches/guards.rs`'s.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memtray_core::agents::claude_code::{reconcile, transcript};
use memtray_core::config::{Config, Durability};
use memtray_core::{Core, Settings};

const RUNS: usize = 50;

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &std::path::Path, durability: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_memtray"))
            .arg("serve")
            .env("MEMTRAY_DATA_DIR", dir)
            .env("MEMTRAY_CONFIG", dir.join("none.toml"))
            .env("MEMTRAY_PORT", "0")
            .env("MEMTRAY_DURABILITY", durability)
            .env("MEMTRAY_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn memtray serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn payload(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "session_id": "bench-session",
        "transcript_path": "/nonexistent/transcript.jsonl",
        "cwd": "/home/dev/projects/ledger",
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_use_id": format!("toolu_bench_{i}_{}", std::process::id()),
        "tool_input": {"command": "cargo test -q", "description": "Run the test suite"},
        "tool_response": {"stdout": "test result: ok. 14 passed; 0 failed\n", "stderr": "", "interrupted": false}
    }))
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>, target: &str) {
    samples.sort();
    println!(
        "{label:<58} p50 {:>8.3} ms  p90 {:>8.3} ms  max {:>8.3} ms  (n={}, {target})",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len()
    );
}

fn hook_runs(dir: &std::path::Path, port: u16, offset: usize) -> Vec<Duration> {
    (0..RUNS)
        .map(|i| {
            let body = payload(offset + i);
            let started = Instant::now();
            let mut child = Command::new(env!("CARGO_BIN_EXE_memtray"))
                .arg("hook")
                .env("MEMTRAY_DATA_DIR", dir)
                .env("MEMTRAY_CONFIG", dir.join("none.toml"))
                .env("MEMTRAY_STATE_DIR", dir.join("state"))
                .env("MEMTRAY_PORT", port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&body).unwrap();
            assert!(child.wait().unwrap().success());
            started.elapsed()
        })
        .collect()
}

/// Keep-alive POSTs of PostToolUse payloads; returns per-request latency.
fn server_requests(port: u16, n: usize) -> Vec<Duration> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 4096];
    (0..n)
        .map(|i| {
            let body = payload(1_000_000 + i);
            let head = format!(
                "POST /hooks/claude-code HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let started = Instant::now();
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            // The answer is `{}` with a small header block: read until the 2-byte body has arrived.
            let mut got = Vec::new();
            loop {
                let n = stream.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"{}") {
                    break;
                }
            }
            assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
            started.elapsed()
        })
        .collect()
}

/// A transcript of `lines` lines: a prompt, then tool use / tool result pairs with ~1 KiB outputs.
fn write_transcript(path: &std::path::Path, lines: usize) -> usize {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, r#"{{"type":"user","message":{{"role":"user","content":"Refactor the ledger"}}}}"#).unwrap();
    let pairs = (lines - 1) / 2;
    let output = "x".repeat(1024);
    for i in 0..pairs {
        writeln!(
            out,
            r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_r{i}","name":"Bash","input":{{"command":"echo {i}"}}}}]}}}}"#
        )
        .unwrap();
        writeln!(
            out,
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_r{i}","content":"{output}"}}]}},"toolUseResult":{{"stdout":"{output}","stderr":""}}}}"#
        )
        .unwrap();
    }
    pairs
}

fn reconciliation(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transcript.jsonl");
    let tool_uses = write_transcript(&path, 10_001);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut config = Config::with_data_dir(dir.path());
        config.durability = durability;
        let core = Core::start_with(&config, std::sync::Arc::new(NoProvider), Settings::from(&config)).await.unwrap();
        core.queue().set_paused(true);
        let started = Instant::now();
        let transcript = transcript::read(&path).unwrap();
        let read = started.elapsed();
        let queued = reconcile::reconcile(core.intake(), "s", "ledger", "/p", &transcript, reconcile::Reader::Session)
            .await
            .unwrap()
            .observations;
        let first = started.elapsed();
        let again = Instant::now();
        let transcript = transcript::read(&path).unwrap();
        let requeued = reconcile::reconcile(core.intake(), "s", "ledger", "/p", &transcript, reconcile::Reader::Session)
            .await
            .unwrap()
            .observations;
        let second = again.elapsed();
        assert_eq!((queued, requeued), (tool_uses, 0));
        println!(
            "reconcile 10,001-line transcript ({durability:?}): read {:.1} ms, read+queue {} missing {:.1} ms; nothing missing {:.1} ms",
            read.as_secs_f64() * 1e3,
            queued,
            first.as_secs_f64() * 1e3,
            second.as_secs_f64() * 1e3
        );
        core.stop().await;
    });
}

/// Reconciliation only queues; nothing is processed here.
struct NoProvider;

#[async_trait::async_trait]
impl memtray_core::memory::provider::Provider for NoProvider {
    fn name(&self) -> &str {
        "none"
    }
    async fn observe(
        &self,
        _: &memtray_core::memory::provider::SessionContext,
        tools: &[memtray_core::queue::message::ToolUse],
    ) -> Result<memtray_core::memory::provider::Observed, memtray_core::memory::provider::ProviderError> {
        Ok(memtray_core::memory::provider::Made::free(vec![Vec::new(); tools.len()]))
    }
    async fn summarize(
        &self,
        _: &memtray_core::memory::provider::SessionContext,
        _: &memtray_core::queue::message::SummaryRequest,
    ) -> Result<memtray_core::memory::provider::Summarized, memtray_core::memory::provider::ProviderError> {
        Ok(memtray_core::memory::provider::Made::free(None))
    }
}

fn main() {
    println!("memtray hook bench ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    for durability in ["full", "normal"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), durability);
        hook_runs(dir.path(), server.port, 0); // warm the page cache
        report(
            &format!("memtray hook spawn-to-exit, server up ({durability})"),
            hook_runs(dir.path(), server.port, 10_000),
            "target p50 <= 2 ms",
        );
        report(
            &format!("POST /hooks/claude-code PostToolUse, keep-alive ({durability})"),
            server_requests(server.port, 500),
            "server time per request",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let stopped = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    report(
        "memtray hook spawn-to-exit, no server (inbox fallback)",
        hook_runs(dir.path(), stopped, 20_000),
        "must stay within the 2 s budget",
    );
    reconciliation(Durability::Full);
    reconciliation(Durability::Normal);
}
