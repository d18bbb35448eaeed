//! The team-memory benchmark, against a throwaway PostgreSQL cluster and the real `memtray serve --team`:
//! push throughput with 10 machines pushing at once (memories/s) and the team server's CPU per pushed memory
//! (from /proc/<pid>/stat); the delay from a memory's commit on machine A to its arrival in machine B's
//! store (real local memtrays) while 9 simulated machines keep pushing; and the pull of 100,000 memories into
//! a fresh machine.
//!
//! Run with `cargo bench --bench team`. Simulated machines speak the team API over loopback as a local
//! memtray's pusher does (batches of 500).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::{self, Machine, Postgres, TeamServer};
use support::{TestServer, wait_for};

const MACHINES: usize = 10;
/// Memories each simulated machine pushes in the throughput phase: 10 × 10,000 = the 100,000 pulled later.
const PER_MACHINE: usize = 10_000;
const BATCH: usize = 500;
const DELAY_SAMPLES: usize = 30;
/// The sync period of the two real machines in the delay phase.
const SYNC_MS: &str = "100";

fn memory(i: usize, project: &str) -> Value {
    json!({
        "kind": "observation", "origin_id": i, "project": project, "session": format!("s{}", i / 50),
        "prompt_number": 1 + (i % 50) as i64 / 10, "created_at": 1_700_000_000_000i64 + i as i64,
        "body": {
            "tool_name": "Bash", "type": "test",
            "title": format!("cargo test ledger::parser::case_{i} passed"),
            "subtitle": "ran the parser's tests after the walrus fix",
            "facts": [format!("cargo test ledger::parser::case_{i}"), "42 passed; 0 failed", "exit 0"],
            "files_read": ["src/parser.rs", "tests/parser.rs"], "files_modified": [],
        }
    })
}

fn push(url: &str, key: &str, machine: &str, memories: Vec<Value>) {
    let body = json!({ "machine": machine, "memories": memories });
    let response = support::http()
        .post(&format!("{url}/team/push"))
        .header("authorization", format!("Bearer {key}"))
        .send_json(&body)
        .expect("push");
    assert_eq!(response.status().as_u16(), 200, "push refused");
}

/// User + system CPU time of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The command may hold spaces; fields after the closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = String::from_utf8(std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse::<f64>()
        .unwrap_or(100.0);
    ticks / hz
}

fn machine(team: &TeamServer, key: &str, share: &str) -> Machine {
    postgres::machine(team, key, share, SYNC_MS, &[("MEMTRAY_DURABILITY", "normal")])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let pg = Postgres::start();
    let team = TeamServer::start(&pg);
    let url = team.url();
    let keys: Vec<String> =
        (0..MACHINES).map(|m| team.add_member(&format!("sim{m}"), &["ledger", "e2e"], &[])).collect();

    // 1. Push throughput and CPU per memory: 10 machines, 10,000 memories each, batches of 500, all at once.
    let cpu_before = cpu_seconds(team.pid());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (m, key) in keys.iter().enumerate() {
            let url = &url;
            scope.spawn(move || {
                for first in (0..PER_MACHINE).step_by(BATCH) {
                    push(url, key, &format!("sim{m}"), (first..first + BATCH).map(|i| memory(i, "ledger")).collect());
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(team.pid()) - cpu_before;
    let total = MACHINES * PER_MACHINE;
    assert_eq!(pg.count("SELECT count(*) FROM memories WHERE project = 'ledger'"), total as i64);
    println!(
        "push: {total} memories from {MACHINES} machines in {elapsed:.2} s = {:.0} memories/s; team server CPU {:.1} µs per memory ({cpu:.2} s)",
        total as f64 / elapsed,
        cpu * 1e6 / total as f64
    );

    // 2. A's commit to B's store, while 9 simulated machines push 20 memories every 100 ms each.
    let alice = team.add_member("alice", &["e2e"], &[]);
    let bob = team.add_member("bob", &["e2e"], &[]);
    let a = machine(&team, &alice, "e2e");
    let b = machine(&team, &bob, "e2e");
    let stop = AtomicBool::new(false);
    let mut delays = std::thread::scope(|scope| {
        for (m, key) in keys.iter().enumerate().skip(1) {
            let (url, stop) = (&url, &stop);
            scope.spawn(move || {
                let mut i = 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    push(url, key, &format!("sim{m}"), (i..i + 20).map(|i| memory(i, "e2e")).collect());
                    i += 20;
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        // Stops the pushers however this closure ends (a panic included), so the scope can end.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let init = json!({"claudeSessionId": "a-e2e", "project": "e2e", "prompt": "measure the delay"});
        assert_eq!(a.post("/api/sessions/init", &init).0, 200);
        let mut delays = Vec::new();
        for n in 0..DELAY_SAMPLES {
            let before: i64 = a.count("SELECT coalesce(max(id), 0) FROM observations");
            let mut body = support::observation("a-e2e", &format!("e2e-{n}"), "Bash");
            body["cwd"] = json!("/home/dev/projects/e2e");
            assert_eq!(a.post("/api/sessions/observations", &body).0, 200);
            // The commit on A: its observation row appears.
            let mut id = 0;
            wait_for(Duration::from_secs(30), "A's commit", || {
                id = a.count(&format!(
                    "SELECT coalesce(max(o.id), 0) FROM observations o JOIN sessions s ON s.id = o.session_id
                     WHERE o.id > {before} AND s.author IS NULL"
                ));
                id > 0
            });
            let committed = Instant::now();
            let arrived = || {
                b.count(&format!(
                    "SELECT count(*) FROM observations o JOIN sessions s ON s.id = o.session_id
                     WHERE o.origin_id = {id} AND s.author = 'alice'"
                )) == 1
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while !arrived() {
                if Instant::now() > deadline {
                    panic!(
                        "B never got A's observation {id}: A's outbox {}, on the server {}, A's link {}, B's link {}",
                        a.count("SELECT count(*) FROM team_outbox"),
                        pg.count("SELECT count(*) FROM memories WHERE author = 'alice'"),
                        a.get("/api/team").1,
                        b.get("/api/team").1
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            delays.push(committed.elapsed().as_secs_f64() * 1000.0);
        }
        delays
    });
    delays.sort_by(f64::total_cmp);
    println!(
        "delay A commit → B store ({DELAY_SAMPLES} samples, sync_ms {SYNC_MS}, 9 machines pushing 1,800/s meanwhile): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        delays[delays.len() - 1]
    );
    drop((a, b));

    // 3. A fresh machine pulls the 100,000 memories of `ledger`.
    let carol = team.add_member("carol", &["ledger"], &[]);
    let start = Instant::now();
    let c = machine(&team, &carol, "ledger");
    let pulled = |c: &TestServer| c.count("SELECT count(*) FROM observations WHERE origin_machine IS NOT NULL");
    wait_for(Duration::from_secs(600), "the fresh machine to pull everything", || {
        std::thread::sleep(Duration::from_millis(40));
        pulled(&c) == total as i64
    });
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "pull: {total} memories into a fresh machine in {elapsed:.1} s = {:.0} memories/s (start-up included); its database {:.1} MB",
        total as f64 / elapsed,
        std::fs::metadata(c.database()).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
}
