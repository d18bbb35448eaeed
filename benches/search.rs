//! The search benchmark: with 100,000 observations and 5,000 summaries in the database, `/api/search`
//! latency (p50/p99) for one-word and three-word queries, the MCP `search` round trip, the database's size
//! with and without the full-text index, and what keeping the index costs the drain rate.
//!
//! Run with `cargo bench --bench search`. The real `memtray serve` and `memtray mcp` binaries, over loopback
//! and stdio; the database is filled with plain SQL (the index's triggers fire as they do for the server).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use rusqlite::{Connection, params};
use serde_json::json;
use support::{TestServer, observation};

const OBSERVATIONS: usize = 100_000;
const SUMMARIES: usize = 5_000;
const SESSIONS: usize = 1_000;
const PROJECTS: usize = 20;
/// Words the memory is made of; drawn with a Zipf-like skew, so a few are common and most are rare.
const VOCABULARY: usize = 5_000;
const QUERIES: usize = 300;
const DRAIN: usize = 5_000;
const TYPES: [&str; 6] = ["change", "bugfix", "discovery", "test", "command", "refactor"];
const TRIGGERS: [&str; 12] = [
    "observations_fts_insert",
    "observations_fts_delete",
    "observations_fts_unindex",
    "observations_fts_reindex",
    "summaries_fts_insert",
    "summaries_fts_delete",
    "summaries_fts_unindex",
    "summaries_fts_reindex",
    "prompts_fts_insert",
    "prompts_fts_delete",
    "prompts_fts_unindex",
    "prompts_fts_reindex",
];

/// A small deterministic generator (xorshift), so every run searches the same memory.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A word index, skewed towards small ones (roughly Zipf: the square of a uniform draw).
    fn word(&mut self) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((u * u * u) * VOCABULARY as f64) as usize
    }
}

/// Word `i` of the vocabulary: pronounceable, distinct, not an English stem.
fn word(i: usize) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut w = String::new();
    let mut n = i + 1;
    while n > 0 {
        w.push(C[n % C.len()] as char);
        n /= C.len();
        w.push(V[n % V.len()] as char);
        n /= V.len();
    }
    w.push('x');
    w
}

fn words(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| word(rng.word())).collect::<Vec<_>>().join(" ")
}

fn fill(path: &std::path::Path) -> Duration {
    let start = Instant::now();
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let tx = conn.transaction().unwrap();
    for s in 0..SESSIONS {
        tx.execute(
            "INSERT INTO sessions (agent_session_id, project, started_at, last_activity_at) VALUES (?1, ?2, ?3, ?3)",
            params![format!("bench-{s}"), format!("project{}", s % PROJECTS), 1_700_000_000_000i64 + s as i64 * 1000],
        )
        .unwrap();
    }
    {
        let mut obs = tx
            .prepare(
                "INSERT INTO observations (session_id, prompt_number, tool_name, type, title, subtitle, facts,
                     files_read, files_modified, created_at) VALUES (?1, 1, 'Bash', ?2, ?3, ?4, ?5, ?6, '[]', ?7)",
            )
            .unwrap();
        for i in 0..OBSERVATIONS {
            let facts = json!([
                format!("command: cargo test {}", words(&mut rng, 2)),
                format!("output: {}", words(&mut rng, 8))
            ]);
            let files = json!([format!("src/{}.rs", word(rng.word()))]);
            obs.execute(params![
                (i % SESSIONS) as i64 + 1,
                TYPES[i % TYPES.len()],
                format!("Ran {}", words(&mut rng, 4)),
                words(&mut rng, 6),
                facts.to_string(),
                files.to_string(),
                1_700_000_000_000i64 + i as i64 * 1000,
            ])
            .unwrap();
        }
        let mut sum = tx
            .prepare(
                "INSERT INTO summaries (session_id, prompt_number, request, investigated, completed, next_steps,
                     files_read, files_edited, created_at) VALUES (?1, 1, ?2, ?3, ?4, ?5, '[]', ?6, ?7)",
            )
            .unwrap();
        for i in 0..SUMMARIES {
            sum.execute(params![
                (i % SESSIONS) as i64 + 1,
                words(&mut rng, 10),
                words(&mut rng, 20),
                words(&mut rng, 20),
                words(&mut rng, 8),
                json!([format!("src/{}.rs", word(rng.word()))]).to_string(),
                1_700_000_000_000i64 + i as i64 * 20_000,
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn latencies(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn api_search(server: &TestServer, queries: &[String]) -> (f64, f64, f64) {
    let agent = support::http();
    let url = server.url("/api/search");
    let secret = server.secret();
    let mut hits = 0usize;
    let samples = queries
        .iter()
        .map(|q| {
            let start = Instant::now();
            let mut response = agent.get(&url).header("x-memtray-token", &secret).query("q", q).call().unwrap();
            let body: serde_json::Value = response.body_mut().read_json().unwrap();
            let took = start.elapsed();
            assert_eq!(response.status(), 200, "{body}");
            hits += body["hits"].as_array().unwrap().len();
            took
        })
        .collect();
    let (p50, p99) = latencies(samples);
    (p50, p99, hits as f64 / queries.len() as f64)
}

fn file_size(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

/// The database's size as it is, and with the full-text index dropped; both vacuumed.
fn sizes(db: &std::path::Path) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (dir.path().join("with.db"), dir.path().join("without.db"));
    let conn = Connection::open(db).unwrap();
    conn.execute("VACUUM INTO ?1", [with.to_str().unwrap()]).unwrap();
    conn.execute("VACUUM INTO ?1", [without.to_str().unwrap()]).unwrap();
    let stripped = Connection::open(&without).unwrap();
    stripped
        .execute_batch("DROP TABLE observations_fts; DROP TABLE summaries_fts; DROP TABLE prompts_fts; VACUUM;")
        .unwrap();
    drop(stripped);
    (file_size(&with), file_size(&without))
}

/// Messages per second the server drains: DRAIN observations queued while paused, then processed.
fn drain(index: bool) -> f64 {
    let mut server = TestServer::start(&[("MEMTRAY_DURABILITY", "normal")]);
    if !index {
        server.stop();
        let conn = Connection::open(server.database()).unwrap();
        for trigger in TRIGGERS {
            conn.execute_batch(&format!("DROP TRIGGER {trigger}")).unwrap();
        }
        drop(conn);
        server.spawn();
    }
    server.post("/api/processing", &json!({"paused": true}));
    let agent = support::http();
    let url = server.url("/api/sessions/observations");
    for i in 0..DRAIN {
        let mut body = observation(&format!("drain-{}", i % 10), &format!("t{i}"), "Bash");
        body["tool_input"] = json!({"command": format!("cargo test --package p{i} walrus")});
        agent.post(&url).send_json(&body).unwrap();
    }
    let start = Instant::now();
    server.post("/api/processing", &json!({"paused": false}));
    support::wait_for(Duration::from_secs(300), "the drain", || {
        let (_, s) = server.get("/api/processing-status");
        s["queueDepth"] == 0
    });
    let rate = DRAIN as f64 / start.elapsed().as_secs_f64();
    assert_eq!(server.count("SELECT count(*) FROM observations"), DRAIN as i64);
    rate
}

/// `memtray hook` on a SessionStart in a project with memory, 50 times: p50, p99 (ms) and the context's length.
fn session_starts(server: &TestServer) -> (f64, f64, usize) {
    use std::io::Write as _;
    let mut samples = Vec::new();
    let mut chars = 0;
    for i in 0..50 {
        let event = json!({"session_id": format!("start-{i}"), "hook_event_name": "SessionStart", "source": "startup",
            "cwd": "/nonexistent/project0"});
        let start = Instant::now();
        let mut child = server
            .command("hook")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        samples.push(start.elapsed());
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        chars = printed["hookSpecificOutput"]["additionalContext"].as_str().map_or(0, |c| c.chars().count());
    }
    let (p50, p99) = latencies(samples);
    (p50, p99, chars)
}

fn main() {
    println!(
        "memtray search benchmark ({} CPUs; release build)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let t0 = Instant::now();
    let mut server = TestServer::start(&[]);
    server.stop();
    let filled = fill(&server.database());
    println!(
        "filled {OBSERVATIONS} observations and {SUMMARIES} summaries in {SESSIONS} sessions (index kept by its triggers) in {:.1} s",
        filled.as_secs_f64()
    );
    server.spawn();

    let mut rng = Rng(42);
    let one: Vec<String> = (0..QUERIES).map(|_| word(rng.word())).collect();
    let three: Vec<String> = (0..QUERIES).map(|_| words(&mut rng, 3)).collect();
    // Warm the page cache the way a running server's would be.
    api_search(&server, &one[..20]);
    let (p50, p99, hits) = api_search(&server, &one);
    println!(
        "/api/search one word:    p50 {p50:.2} ms, p99 {p99:.2} ms ({QUERIES} queries, {hits:.1} hits each on average)"
    );
    let (p50, p99, hits) = api_search(&server, &three);
    println!(
        "/api/search three words: p50 {p50:.2} ms, p99 {p99:.2} ms ({QUERIES} queries, {hits:.1} hits each on average)"
    );
    let common = vec![word(0); 50];
    let (p50, p99, _) = api_search(&server, &common);
    println!("/api/search the most common word ({}): p50 {p50:.2} ms, p99 {p99:.2} ms", word(0));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (mcp_p50, mcp_p99) = runtime.block_on(async {
        let transport = TokioChildProcess::new(tokio::process::Command::from(server.command("mcp"))).unwrap();
        let client = ().serve(transport).await.unwrap();
        let mut samples = Vec::new();
        for q in one.iter().take(QUERIES) {
            let args = json!({"query": q, "limit": 10});
            let request = CallToolRequestParams::new("search").with_arguments(args.as_object().unwrap().clone());
            let start = Instant::now();
            let result = client.call_tool(request).await.unwrap();
            samples.push(start.elapsed());
            assert_eq!(result.is_error, Some(false));
        }
        client.cancel().await.unwrap();
        latencies(samples)
    });
    println!("MCP search round trip (stdio, one word, limit 10): p50 {mcp_p50:.2} ms, p99 {mcp_p99:.2} ms");
    let (p50, p99, chars) = session_starts(&server);
    println!(
        "SessionStart hook spawn-to-exit, server up:   p50 {p50:.2} ms, p99 {p99:.2} ms ({chars} characters of context)"
    );
    server.stop();
    let (p50, p99, chars) = session_starts(&server);
    println!(
        "SessionStart hook spawn-to-exit, server down: p50 {p50:.2} ms, p99 {p99:.2} ms ({chars} characters of context)"
    );

    let (with, without) = sizes(&server.database());
    println!(
        "database size: {with:.1} MiB with the index, {without:.1} MiB without (the index adds {:.1} MiB, {:.0} %)",
        with - without,
        (with - without) / without * 100.0
    );

    let with_index = drain(true);
    let without_index = drain(false);
    println!(
        "drain ({DRAIN} observations, 10 sessions, durability normal): {with_index:.0} msgs/s with the index, \
         {without_index:.0} msgs/s with its triggers dropped ({:+.1} %)",
        (with_index - without_index) / without_index * 100.0
    );
    println!("done in {:.0} s", t0.elapsed().as_secs_f64());
}
