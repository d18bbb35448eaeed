//! The inspector benchmark: a database with 1,000 sessions and 100,000 observations (written in one
//! transaction with the store's own functions), the real `memtray serve` on it, and headless Chromium over
//! WebDriver.
//!
//! (1) Time to the sessions list's first meaningful paint: navigation start to the UI's `sessions-rendered`
//!     mark, with DOMContentLoaded, first contentful paint and the `/api/sessions` fetch beside it; 5 loads,
//!     median.
//! (2) A view left open while 20 events per second reach the intake for `MEMTRAY_BENCH_MINUTES` minutes
//!     (default 10): browser memory at start and end (the JS heap from `performance.memory`, precise, after a
//!     forced GC; the RSS of Chromium's renderer processes and of all its processes, from /proc), sampled
//!     every minute. `MEMTRAY_BENCH_VIEW` picks the view: `session` (default), `overview`, `sessions`, `queue`.
//!
//! Run with `cargo bench --bench inspector`; needs `/usr/bin/chromium` and `/usr/bin/chromedriver`.

#[path = "../tests/support/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memtray_core::clock::Clock;
use memtray_core::config::Config;
use memtray_core::memory::{MadeBy, NewObservation, NewSummary};
use memtray_core::store::{memories, open_direct, sessions};
use serde_json::{Value, json};
use webdriver::Browser;

const SESSIONS: i64 = 1_000;
const OBSERVATIONS_PER_SESSION: i64 = 100;
const PROJECTS: &[&str] = &[
    "ledger",
    "atlas",
    "refunds",
    "billing-api",
    "docs",
    "infra",
    "mobile",
    "search",
    "auth",
    "reports",
    "etl",
    "web",
];
const TOOLS: &[&str] = &["Read", "Bash", "Edit", "Grep", "Write", "Glob"];
const TYPES: &[&str] = &["discovery", "command", "change", "test", "research", "bugfix", "feature", "refactor"];
/// Events per second in the live phase, and how many sessions they are spread over.
const EVENTS_PER_SECOND: u64 = 20;
const LIVE_SESSIONS: u64 = 20;

// -------------------------------------------------------------------------------------------------------------
// Seeding
// -------------------------------------------------------------------------------------------------------------

/// Writes the sessions, prompts, processed queue rows, observations and summaries in one transaction.
fn seed(data_dir: &Path) -> Duration {
    let started = Instant::now();
    let mut conn = open_direct(&Config::with_data_dir(data_dir), Duration::from_secs(5)).expect("open the database");
    let tx = conn.transaction().expect("begin");
    let made_by = MadeBy::provider("local", None);
    let now = Clock::system().now_ms();
    let six_days = 6 * 86_400_000;
    {
        let mut message = tx
            .prepare(
                "INSERT INTO messages (session_id, kind, status, attempts, last_error, prompt_number, created_at,
                     available_at, claimed_at, completed_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?6, ?6, ?7)",
            )
            .unwrap();
        for s in 0..SESSIONS {
            let project = PROJECTS[(s as usize * 7) % PROJECTS.len()];
            let start = now - six_days + s * (six_days / SESSIONS);
            let (session, _) = sessions::ensure(&tx, &format!("bench-{s:04}-{:x}", s * 2_654_435_761), project, start)
                .expect("session");
            let prompts = 1 + s % 8;
            for p in 0..prompts {
                let text = format!("prompt {p} of session {s}: fix the {project} totals and add a regression test");
                sessions::record_prompt(&tx, session.id, Some(&text), None, start + p * 60_000).expect("prompt");
            }
            let mut at = start;
            for o in 0..OBSERVATIONS_PER_SESSION {
                at += 1_500 + (o * 37) % 4_000;
                let tool = TOOLS[((s + o) as usize) % TOOLS.len()];
                let prompt = 1 + o * prompts / OBSERVATIONS_PER_SESSION;
                message
                    .execute(rusqlite::params![
                        session.id,
                        "observation",
                        "processed",
                        None::<String>,
                        prompt,
                        at,
                        at + 40
                    ])
                    .unwrap();
                let message_id = tx.last_insert_rowid();
                let file = format!("src/{project}/module_{}.rs", o % 23);
                let observation = NewObservation {
                    kind: TYPES[((s * 3 + o) as usize) % TYPES.len()].to_string(),
                    title: format!("{tool} {file}"),
                    subtitle: format!("step {o} of the {project} work"),
                    facts: vec![format!("command: cargo test -p {project}"), format!("exit code {}", o % 2)],
                    files_read: vec![file.clone()],
                    files_modified: if tool == "Edit" { vec![file] } else { Vec::new() },
                    ..NewObservation::default()
                };
                let of = memories::ObservationOf {
                    session_id: session.id,
                    message_id,
                    prompt_number: prompt,
                    tool_name: tool,
                    subagent: None,
                    made_by: &made_by,
                    call_id: None,
                };
                memories::insert_observations(&tx, of, &[observation], at + 40).expect("observation");
            }
            if s % 10 != 0 {
                at += 5_000;
                message
                    .execute(rusqlite::params![
                        session.id,
                        "summarize",
                        "processed",
                        None::<String>,
                        prompts,
                        at,
                        at + 80
                    ])
                    .unwrap();
                let summary = NewSummary {
                    request: format!("fix the {project} totals"),
                    investigated: "the rounding in the totals module".into(),
                    completed: "rounded once at the end; added a regression test".into(),
                    next_steps: String::new(),
                    files_read: vec![format!("src/{project}/totals.rs")],
                    files_edited: vec![format!("src/{project}/totals.rs")],
                    ..NewSummary::default()
                };
                let of = memories::SummaryOf {
                    session_id: session.id,
                    message_id: tx.last_insert_rowid(),
                    prompt_number: prompts,
                    made_by: &made_by,
                    call_id: None,
                };
                memories::insert_summary(&tx, of, &summary, at + 80).expect("summary");
                sessions::complete(&tx, session.id, at + 100).expect("complete");
            } else if s % 100 == 0 {
                message
                    .execute(rusqlite::params![
                        session.id,
                        "observation",
                        "failed",
                        Some("provider answered 500"),
                        prompts,
                        at,
                        at
                    ])
                    .unwrap();
            }
            tx.execute(
                "UPDATE sessions SET last_activity_at = ?2 WHERE id = ?1",
                rusqlite::params![session.id, at + 100],
            )
            .unwrap();
        }
    }
    tx.commit().expect("commit");
    started.elapsed()
}

// -------------------------------------------------------------------------------------------------------------
// The server
// -------------------------------------------------------------------------------------------------------------

/// `memtray serve` on a free port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEMTRAY_")) {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .arg("serve")
            .env("MEMTRAY_DATA_DIR", data_dir)
            .env("MEMTRAY_CONFIG", data_dir.join("none.toml"))
            .env("MEMTRAY_STATE_DIR", data_dir.join("state"))
            .env("MEMTRAY_PORT", "0")
            .env("MEMTRAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn memtray serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the ready line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no ready line from memtray serve, got {line:?}"));
        Server { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    agent.get(url).call().expect("GET").body_mut().read_json().expect("JSON")
}

// -------------------------------------------------------------------------------------------------------------
// Memory
// -------------------------------------------------------------------------------------------------------------

/// A `Key:   123 kB` figure from a /proc file of `pid`.
fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        })
        .unwrap_or(0)
}

/// Chromium rewrites its renderers' argv into one space-separated string, so look for the flag as text.
fn is_renderer(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(15).any(|w| w == b"--type=renderer"))
}

struct Memory {
    heap_used: f64,
    heap_total: f64,
    /// Sum of VmRSS (shared pages counted once per process).
    renderer_rss: f64,
    /// Sum of PSS (shared pages split between the processes sharing them).
    renderer_pss: f64,
    chromium_pss: f64,
    renderers: usize,
    processes: usize,
    /// Live DOM nodes and event listeners (after the GC), from DevTools.
    nodes: u64,
    listeners: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn memory(browser: &Browser) -> Memory {
    let heap = browser.eval(
        "(() => { if (window.gc) window.gc(); const m = performance.memory; \
         return [m.usedJSHeapSize, m.totalJSHeapSize]; })()",
    );
    let counters = browser.cdp("Memory.getDOMCounters", json!({}));
    let processes = browser.processes();
    let renderers: Vec<u32> = processes.iter().copied().filter(|p| is_renderer(*p)).collect();
    let sum = |pids: &[u32], file: &str, key: &str| mib(pids.iter().map(|p| proc_kib(*p, file, key)).sum());
    Memory {
        heap_used: heap[0].as_f64().unwrap_or(0.0) / 1_048_576.0,
        heap_total: heap[1].as_f64().unwrap_or(0.0) / 1_048_576.0,
        renderer_rss: sum(&renderers, "status", "VmRSS:"),
        renderer_pss: sum(&renderers, "smaps_rollup", "Pss:"),
        chromium_pss: sum(&processes, "smaps_rollup", "Pss:"),
        renderers: renderers.len(),
        processes: processes.len(),
        nodes: counters["nodes"].as_u64().unwrap_or(0),
        listeners: counters["jsEventListeners"].as_u64().unwrap_or(0),
    }
}

fn print_memory(label: &str, m: &Memory) {
    println!(
        "    {label:<7} JS heap used {:5.1} MiB (total {:5.1})   DOM nodes {:6} listeners {:5}   renderers ({}): RSS {:6.1} MiB, \
         PSS {:6.1} MiB   all Chromium ({} proc): PSS {:6.1} MiB",
        m.heap_used,
        m.heap_total,
        m.nodes,
        m.listeners,
        m.renderers,
        m.renderer_rss,
        m.renderer_pss,
        m.processes,
        m.chromium_pss
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// -------------------------------------------------------------------------------------------------------------
// The phases
// -------------------------------------------------------------------------------------------------------------

fn first_paint(browser: &Browser, server: &Server) {
    println!("(1) sessions list, first meaningful paint (1,000 sessions, 100,000 observations; 50 rows per page)");
    let mut rendered = Vec::new();
    for run in 1..=5 {
        browser.goto("about:blank");
        browser.goto(&server.url("/#/sessions"));
        browser.wait_for(Duration::from_secs(30), "the sessions view", "document.body.dataset.ready === 'sessions'");
        let t = browser.eval(
            "(() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                const api = performance.getEntriesByType('resource').find(e => e.name.includes('/api/sessions?'));
                const scripts = performance.getEntriesByType('resource').filter(e => e.name.endsWith('.js'));
                return {
                    html: nav.responseEnd,
                    scripts: Math.max(...scripts.map(e => e.responseEnd)),
                    rendered: performance.getEntriesByName('sessions-rendered')[0].startTime,
                    dcl: nav.domContentLoadedEventEnd,
                    fcp: fcp ? fcp.startTime : null,
                    api: api ? api.duration : null,
                    rows: document.querySelectorAll('table.sessions tbody tr').length,
                };
            })()",
        );
        assert_eq!(t["rows"], 50, "a full first page");
        let ms = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "    load {run}: sessions-rendered {:6.1} ms   DOMContentLoaded {:6.1} ms   first contentful paint {:6.1} ms   \
             (page {:5.1} ms, last script {:5.1} ms, /api/sessions fetch {:5.1} ms)",
            ms("rendered"),
            ms("dcl"),
            ms("fcp"),
            ms("html"),
            ms("scripts"),
            ms("api")
        );
        rendered.push((ms("rendered"), ms("dcl")));
    }
    let mut marks: Vec<f64> = rendered.iter().map(|r| r.0).collect();
    let mut dcls: Vec<f64> = rendered.iter().map(|r| r.1).collect();
    println!(
        "    median: navigation start → sessions-rendered {:.1} ms   (DOMContentLoaded {:.1} ms)",
        median(&mut marks),
        median(&mut dcls)
    );
}

/// Posts `EVENTS_PER_SECOND` events a second until `stop`: observations spread over the live sessions, a new
/// prompt every 50 events, a summary every 400. Returns (events sent, failures).
fn post_events(server_url: String, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> u64 {
    let agent = agent();
    let started = Instant::now();
    let mut failures = 0;
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = started + Duration::from_millis(i * 1000 / EVENTS_PER_SECOND);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let session = format!("bench-live-{}", i % LIVE_SESSIONS);
        let (path, body) = if i % 400 == 399 {
            (
                "/api/sessions/summarize",
                json!({"claudeSessionId": session, "last_assistant_message": format!("done with step {i}")}),
            )
        } else if i % 50 == 49 {
            (
                "/api/sessions/init",
                json!({"claudeSessionId": session, "project": "live", "prompt": format!("next step {i}")}),
            )
        } else {
            (
                "/api/sessions/observations",
                json!({
                    "claudeSessionId": session,
                    "tool_name": "Bash",
                    "tool_input": {"command": format!("cargo test -p live --test t{i}")},
                    "tool_response": {"stdout": format!("test result: ok. {i} passed; 0 failed"), "exit_code": 0},
                    "cwd": "/home/dev/live",
                    "tool_use_id": format!("toolu_live_{i}"),
                }),
            )
        };
        match agent.post(&format!("{server_url}{path}")).send_json(&body) {
            Ok(r) if r.status().is_success() => {}
            _ => failures += 1,
        }
        i += 1;
        sent.store(i, Ordering::Relaxed);
    }
    failures
}

fn soak(browser: &Browser, server: &Server, minutes: f64, view: &str) {
    let agent = agent();
    for s in 0..LIVE_SESSIONS {
        let body = json!({"claudeSessionId": format!("bench-live-{s}"), "project": "live", "prompt": "start"});
        agent.post(&server.url("/api/sessions/init")).send_json(&body).expect("init");
    }
    let watched =
        get_json(&agent, &server.url("/api/sessions?project=live&sort=started&order=asc&limit=1"))["sessions"][0]["id"]
            .as_i64()
            .expect("the first live session");
    let (hash, ready) = match view {
        "overview" => ("#/".to_string(), "overview"),
        "sessions" => ("#/sessions".to_string(), "sessions"),
        "queue" => ("#/queue".to_string(), "queue"),
        _ => (format!("#/sessions/{watched}"), "session"),
    };
    println!(
        "(2) {view} view ({hash}) open while {EVENTS_PER_SECOND} events/s reach the intake (over {LIVE_SESSIONS} sessions) for {minutes} min"
    );
    browser.goto(&server.url(&format!("/{hash}")));
    browser.wait_for(Duration::from_secs(30), "the view", &format!("document.body.dataset.ready === '{ready}'"));
    std::thread::sleep(Duration::from_secs(3));
    let start = memory(browser);
    let renders_at_start = browser.eval("Number(document.body.dataset.renders)").as_u64().unwrap_or(0);
    print_memory("start", &start);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let poster = {
        let (url, stop, sent) = (server.url(""), stop.clone(), sent.clone());
        std::thread::spawn(move || post_events(url, stop, sent))
    };
    let began = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut next_sample = Duration::from_secs(60);
    let mut peak_renderer = start.renderer_rss;
    while began.elapsed() < total {
        std::thread::sleep(Duration::from_millis(250));
        if began.elapsed() >= next_sample && began.elapsed() < total {
            let m = memory(browser);
            peak_renderer = peak_renderer.max(m.renderer_rss);
            print_memory(&format!("{:.0} min", next_sample.as_secs_f64() / 60.0), &m);
            next_sample += Duration::from_secs(60);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let failures = poster.join().expect("poster");
    let events = sent.load(Ordering::Relaxed);
    let elapsed = began.elapsed();
    let renders = browser.eval("Number(document.body.dataset.renders)").as_u64().unwrap_or(0) - renders_at_start;

    // Let the queue drain and the page catch up, then check it is still live and measure.
    let drained = Instant::now();
    loop {
        let stats = get_json(&agent, &server.url("/api/processing-status"));
        if stats["queueDepth"] == 0 {
            break;
        }
        assert!(drained.elapsed() < Duration::from_secs(120), "the queue did not drain: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    if ready == "session" {
        let expected = get_json(&agent, &server.url(&format!("/api/sessions/{watched}")))["observations"]
            .as_array()
            .map_or(0, Vec::len);
        browser.wait_for(
            Duration::from_secs(10),
            "the session view to show every observation",
            &format!("document.querySelector('h2 .muted')?.textContent === '({expected})'"),
        );
        println!("    the open session shows all {expected} of its observations at the end (live to the last event)");
    }
    std::thread::sleep(Duration::from_secs(3));
    let end = memory(browser);
    peak_renderer = peak_renderer.max(end.renderer_rss);
    print_memory("end", &end);
    println!(
        "    {events} events in {:.1} s ({:.1}/s, {failures} failed); the page redrew {renders} times ({:.2}/s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        renders as f64 / elapsed.as_secs_f64()
    );
    println!(
        "    change start → end: JS heap used {:+.1} MiB, renderer RSS {:+.1} MiB (peak {:.1} MiB), renderer PSS {:+.1} MiB",
        end.heap_used - start.heap_used,
        end.renderer_rss - start.renderer_rss,
        peak_renderer,
        end.renderer_pss - start.renderer_pss
    );
}

fn main() {
    // `cargo test --benches` runs this with `--test`-like arguments; only a real bench run measures.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let minutes: f64 =
        std::env::var("MEMTRAY_BENCH_MINUTES").ok().and_then(|m| m.parse().ok()).filter(|m| *m > 0.0).unwrap_or(10.0);
    let view = std::env::var("MEMTRAY_BENCH_VIEW").unwrap_or_else(|_| "session".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let took = seed(dir.path());
    let size = std::fs::metadata(dir.path().join("memtray.db")).map_or(0, |m| m.len());
    println!(
        "seeded {SESSIONS} sessions, {} observations in {:.1} s ({:.0} MiB database)",
        SESSIONS * OBSERVATIONS_PER_SESSION,
        took.as_secs_f64(),
        size as f64 / 1_048_576.0
    );
    let server = Server::start(dir.path());
    let flags = ["--enable-precise-memory-info", "--js-flags=--expose-gc"];
    first_paint(&Browser::start(&flags), &server);
    // A fresh browser, so the renderers measured are the open page's, not those the five loads left behind.
    soak(&Browser::start(&flags), &server, minutes, &view);
}
