//! The cost of the hot path's guards: `<private>` stripping and secret redaction per observation on realistic
//! payloads, the database-file liveness check per batch, `PRAGMA quick_check` at start on a 100,000-observation
//! database, and, against the real binary, server CPU per observation and `memtray hook` p50, before (a
//! baseline binary named by `MEMTRAY_BENCH_BASELINE`, e.g. one built from the commit before the guards) and
//! after, in the same run, with redaction on and off. Prints figures; asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memtray_core::config::Config;
use memtray_core::privacy::Privacy;
use memtray_core::redact::Redactor;
use memtray_core::store::Store;
use serde_json::{Value, json};

/// A Bash observation with 1 KiB of plain output (the core bench's shape).
fn plain() -> (Value, Value) {
    let stdout: String = "abcdefghijklmnopqrstuvwxyz0123456789 ".chars().cycle().take(1024).collect();
    (
        json!({"command": "cargo test --package ledger", "description": "Run the tests"}),
        json!({"stdout": stdout, "exit_code": 0}),
    )
}

/// A Read of a 16 KiB source file.
fn file_read() -> (Value, Value) {
    let line = "    let total = txns.iter().filter(|t| t.kind != Kind::Refund).map(|t| t.amount).sum::<i64>();\n";
    let content: String = line.repeat(16 * 1024 / line.len());
    (
        json!({"file_path": "/home/dev/projects/ledger/src/report.rs"}),
        json!({"type": "text", "file": {"filePath": "/home/dev/projects/ledger/src/report.rs", "content": content}}),
    )
}

/// `env` output with a few secrets and a private part among 2 KiB.
fn with_secrets() -> (Value, Value) {
    let key = format!("AKIA{}", "Q7ZX".repeat(4));
    let token = format!("ghp_{}", "aB3d".repeat(9));
    let mut out = String::new();
    for i in 0..40 {
        out.push_str(&format!("VAR_{i}=/usr/local/lib/thing{i}\n"));
    }
    out.push_str(&format!("AWS_ACCESS_KEY_ID={key}\nGITHUB_TOKEN={token}\nDB_PASSWORD=hunter2hunter2\n"));
    out.push_str("DATABASE_URL=postgres://app:s3cret@db:5432/ledger\n<private>my notes</private>\n");
    (json!({"command": "env"}), json!({"stdout": out, "stderr": ""}))
}

/// A 1 MiB tool output.
fn large() -> (Value, Value) {
    let line = "test ledger::report::tests::balance_counts_each_refund_once ... ok\n";
    (json!({"command": "cargo test -- --nocapture"}), json!({"stdout": line.repeat(1024 * 1024 / line.len())}))
}

/// Nanoseconds per call of `f` on fresh clones of `(input, response)`, less the cost of the clones.
fn per_observation(payload: &(Value, Value), f: impl Fn(&mut Value, &mut Value)) -> f64 {
    let bytes = payload.0.to_string().len() + payload.1.to_string().len();
    let runs = (64 * 1024 * 1024 / bytes).clamp(20, 20_000);
    let mut clones: Vec<(Value, Value)> = (0..runs).map(|_| payload.clone()).collect();
    let started = Instant::now();
    for (input, response) in clones.iter_mut() {
        f(input, response);
    }
    started.elapsed().as_nanos() as f64 / runs as f64
}

fn scrubbing() {
    println!("-- stripping and redaction per observation (tool_input + tool_response), in process");
    let on = Privacy::new(Redactor::default());
    let off = Privacy::new(Redactor::off());
    for (name, payload) in [
        ("plain 1 KiB", plain()),
        ("file read 16 KiB", file_read()),
        ("env with secrets 2 KiB", with_secrets()),
        ("large 1 MiB", large()),
    ] {
        let bytes = payload.0.to_string().len() + payload.1.to_string().len();
        let strip_only = per_observation(&payload, |i, r| {
            off.json(i);
            off.json(r);
        });
        let both = per_observation(&payload, |i, r| {
            on.json(i);
            on.json(r);
        });
        println!(
            "{name:<24} {bytes:>8} B   <private> strip {:>9.1} µs   strip + redaction {:>9.1} µs   ({:.0} MB/s)",
            strip_only / 1e3,
            both / 1e3,
            bytes as f64 / (both / 1e9) / 1e6,
        );
    }
    let started = Instant::now();
    let _ = Redactor::new(true, &["acme-[0-9]{6}".to_string()]).unwrap();
    println!(
        "compiling the patterns (once per process; once per `memtray hook` that falls back): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn liveness() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memtray.db");
    std::fs::write(&path, b"x").unwrap();
    let runs = 200_000;
    let started = Instant::now();
    let mut same = 0u64;
    for _ in 0..runs {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&path).unwrap();
            same += u64::from(m.ino() != 0 && m.dev() != u64::MAX);
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / runs as f64;
    println!("-- the liveness check (one stat of the database file per committed batch): {ns:.0} ns ({same} checks)");
}

fn quick_check() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(&Config::with_data_dir(dir.path())).await.unwrap();
        store.close().await;
    });
    let path = dir.path().join("memtray.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; BEGIN").unwrap();
    conn.execute(
        "INSERT INTO sessions (agent_session_id, project, started_at, last_activity_at) VALUES ('s', 'ledger', 0, 0)",
        [],
    )
    .expect("a session row");
    let session: i64 = conn.last_insert_rowid();
    {
        let mut insert = conn
            .prepare(
                "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, subtitle, facts, files_read, created_at)
                 VALUES (?1, 1, 'Bash', 'command', ?2, ?3, ?4, ?5, 0)",
            )
            .unwrap();
        for i in 0..100_000 {
            let facts = json!([
                format!("ran cargo test --package p{i}"),
                "test result: ok. 14 passed; 0 failed",
                "exit code 0"
            ])
            .to_string();
            insert
                .execute(rusqlite::params![
                    session,
                    format!("Ran the ledger tests ({i})"),
                    "cargo test --package ledger",
                    facts,
                    json!([format!("src/report{}.rs", i % 50)]).to_string()
                ])
                .unwrap();
        }
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(conn);
    let size = std::fs::metadata(&path).unwrap().len();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let started = Instant::now();
    let answer: String = conn.query_row("PRAGMA quick_check(3)", [], |r| r.get(0)).unwrap();
    let warm = started.elapsed();
    println!(
        "-- PRAGMA quick_check at start, 100,000 observations ({:.1} MB): {:.0} ms ({answer}; page cache warm)",
        size as f64 / 1e6,
        warm.as_secs_f64() * 1e3
    );
}

// -------------------------------------------------------------------------------------------------------------
// Against the binary
// -------------------------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    port: u16,
    /// This user's secret (empty for a binary from before it existed).
    token: String,
}

impl Server {
    fn start(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEMTRAY_")) {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .arg("serve")
            .env("MEMTRAY_DATA_DIR", dir)
            .env("MEMTRAY_CONFIG", dir.join("none.toml"))
            .env("MEMTRAY_STATE_DIR", dir.join("state"))
            .env("MEMTRAY_PORT", "0")
            .env("MEMTRAY_LOG", "warn")
            .env("MEMTRAY_DURABILITY", "normal")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn memtray serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        let token = std::fs::read_to_string(dir.join("state/token")).unwrap_or_default().trim().to_string();
        Server { child, port, token }
    }

    /// utime + stime in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(stream: &mut TcpStream, token: &str, path: &str, body: &[u8]) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Memtray-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
                return;
            }
        }
    }
}

/// Server CPU per observation over `n` keep-alive posts of `payload`, processing paused (intake alone).
fn cpu_per_observation(server: &Server, run: &str, n: usize, payload: &(Value, Value)) -> f64 {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_nodelay(true).unwrap();
    request(&mut stream, &server.token, "/api/processing", br#"{"paused": true}"#);
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            json!({"claudeSessionId": format!("bench-{run}"), "tool_name": "Bash", "tool_input": payload.0,
                   "tool_response": payload.1, "cwd": "/home/dev/projects/ledger", "tool_use_id": format!("toolu_{run}_{i}")})
            .to_string()
            .into_bytes()
        })
        .collect();
    let before = server.cpu_ticks();
    for body in &bodies {
        request(&mut stream, &server.token, "/api/sessions/observations", body);
    }
    let ticks = server.cpu_ticks() - before;
    ticks as f64 * 10_000.0 / n as f64 // µs
}

fn hook_p50(bin: &Path, dir: &Path, port: u16, runs: usize) -> f64 {
    let body = json!({"session_id": "bench-hook", "hook_event_name": "PostToolUse", "cwd": "/home/dev/projects/ledger",
                      "transcript_path": "/nonexistent/t.jsonl", "tool_name": "Bash", "tool_input": plain().0, "tool_response": plain().1});
    let mut samples: Vec<Duration> = (0..runs)
        .map(|i| {
            let mut event = body.clone();
            event["tool_use_id"] = format!("toolu_hook_{i}_{}", std::process::id()).into();
            let started = Instant::now();
            let mut child = Command::new(bin)
                .arg("hook")
                .env("MEMTRAY_DATA_DIR", dir)
                .env("MEMTRAY_CONFIG", dir.join("none.toml"))
                .env("MEMTRAY_STATE_DIR", dir.join("state"))
                .env("MEMTRAY_PORT", port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
            assert!(child.wait().unwrap().success());
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// A binary and how it is run.
struct Variant {
    name: &'static str,
    bin: PathBuf,
    env: Vec<(&'static str, &'static str)>,
}

fn against_the_binary() {
    const POSTS: usize = 3_000;
    const ROUNDS: usize = 3;
    const HOOKS: usize = 100;
    let after = PathBuf::from(env!("CARGO_BIN_EXE_memtray"));
    let mut variants = Vec::new();
    if let Ok(baseline) = std::env::var("MEMTRAY_BENCH_BASELINE") {
        variants.push(Variant { name: "before (baseline binary)", bin: PathBuf::from(baseline), env: vec![] });
    } else {
        println!("(set MEMTRAY_BENCH_BASELINE to a memtray binary from before the guards for the 'before' rows)");
    }
    variants.push(Variant { name: "after, redaction off", bin: after.clone(), env: vec![("MEMTRAY_REDACT", "0")] });
    variants.push(Variant { name: "after, redaction on (default)", bin: after, env: vec![] });
    println!(
        "-- server CPU per observation ({POSTS} keep-alive posts, intake alone: processing paused; durability normal) \
         and `memtray hook` spawn-to-exit p50 ({HOOKS} runs, server up); {ROUNDS} rounds, interleaved"
    );
    // Interleaved rounds, so a change in the machine's load falls on every variant alike.
    let mut figures: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (v, variant) in variants.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let server = Server::start(&variant.bin, dir.path(), &variant.env);
            cpu_per_observation(&server, "warm", 300, &plain());
            let plain_cpu = cpu_per_observation(&server, &format!("p{round}"), POSTS, &plain());
            let secret_cpu = cpu_per_observation(&server, &format!("s{round}"), POSTS, &with_secrets());
            hook_p50(&variant.bin, dir.path(), server.port, 10);
            let p50 = hook_p50(&variant.bin, dir.path(), server.port, HOOKS);
            figures[v].push((plain_cpu, secret_cpu, p50));
        }
    }
    for (variant, runs) in variants.iter().zip(&figures) {
        let median = |f: fn(&(f64, f64, f64)) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let rounds: Vec<String> = runs.iter().map(|r| format!("{:.1}/{:.1}/{:.2}", r.0, r.1, r.2)).collect();
        println!(
            "{:<32} CPU/observation: plain 1 KiB {:>6.1} µs, env with secrets {:>6.1} µs   hook p50 {:>5.2} ms   (rounds: {})",
            variant.name,
            median(|r| r.0),
            median(|r| r.1),
            median(|r| r.2),
            rounds.join(", ")
        );
    }
}

fn main() {
    println!("memtray guards bench ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    scrubbing();
    liveness();
    quick_check();
    against_the_binary();
}
