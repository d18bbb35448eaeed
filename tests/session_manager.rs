//! Session-manager semantics on a real SQLite file, with a scripted provider: per-session order and one
//! message in flight per session, linger exit, summarize ends a batch, delete and shutdown leave nothing
//! processing, stats return to zero, poison messages, recovery, retry and abort, pause.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memtray::config::Config;
use memtray::memory::{NewObservation, NewSummary};
use memtray::provider::{Provider, ProviderError, SessionContext};
use memtray::queue::{SummaryRequest, ToolUse};
use memtray::session::{Queued, SessionManager, Settings};
use memtray::store::{Store, messages};
use tokio::sync::Semaphore;

/// A provider whose behaviour each test scripts.
#[derive(Default)]
struct Scripted {
    /// Every observe call, in call order: (agent session id, tool_use_id).
    calls: Mutex<Vec<(String, String)>>,
    /// Calls running now, per session, and the most ever seen at once for any session.
    in_flight: Mutex<(HashMap<String, usize>, usize)>,
    /// Tools whose observations always fail.
    poison: Mutex<Vec<String>>,
    /// Every summarize call, in call order: the tool_use_ids of its span's tool uses, and how many observations
    /// it was given.
    summaries: Mutex<Vec<(Vec<String>, usize)>>,
    /// When set, every call waits for a permit (a blocked provider).
    gate: Option<Semaphore>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn observe(&self, ctx: &SessionContext, tool: &ToolUse) -> Result<Vec<NewObservation>, ProviderError> {
        {
            let mut flight = self.in_flight.lock().unwrap();
            let n = flight.0.entry(ctx.agent_session_id.clone()).or_default();
            *n += 1;
            let n = *n;
            flight.1 = flight.1.max(n);
        }
        self.calls.lock().unwrap().push((ctx.agent_session_id.clone(), tool.tool_use_id.clone().unwrap_or_default()));
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.unwrap();
        }
        tokio::time::sleep(self.delay).await;
        *self.in_flight.lock().unwrap().0.get_mut(&ctx.agent_session_id).unwrap() -= 1;
        if self.poison.lock().unwrap().contains(&tool.tool_name) {
            return Err(ProviderError::Retry(format!("{} is poison", tool.tool_name).into()));
        }
        Ok(vec![NewObservation { kind: "discovery".into(), title: tool.tool_name.clone(), ..Default::default() }])
    }

    async fn summarize(&self, ctx: &SessionContext, _: &SummaryRequest) -> Result<NewSummary, ProviderError> {
        let tool_uses = ctx.tool_uses.iter().map(|t| t.tool_use_id.clone().unwrap_or_default()).collect();
        self.summaries.lock().unwrap().push((tool_uses, ctx.observations.len()));
        Ok(NewSummary { request: ctx.prompts.join(" / "), ..Default::default() })
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: Config,
    provider: Arc<Scripted>,
    manager: SessionManager,
}

async fn start(provider: Scripted, tune: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.durability = memtray::config::Durability::Normal;
    config.retry_backoff_ms = 10;
    tune(&mut config);
    let provider = Arc::new(provider);
    let manager = start_manager(&config, provider.clone()).await;
    Harness { dir, config, provider, manager }
}

async fn start_manager(config: &Config, provider: Arc<Scripted>) -> SessionManager {
    let store = Store::open(config).unwrap();
    SessionManager::start(store, provider, Settings::from(config)).await.unwrap()
}

fn tool(id: &str, name: &str) -> ToolUse {
    ToolUse {
        tool_name: name.into(),
        tool_input: serde_json::json!({}),
        tool_response: serde_json::json!({}),
        cwd: "/p".into(),
        tool_use_id: Some(id.into()),
    }
}

async fn queue(m: &SessionManager, session: &str, id: &str, name: &str) -> Queued {
    m.queue_observation(session, "proj", tool(id, name), None).await.unwrap()
}

async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn count(h: &Harness, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(h.dir.path().join("memtray.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits until the database has no pending or processing message, then until the status says so too.
async fn drained(h: &Harness) {
    eventually(Duration::from_secs(20), "the queue to drain", async || {
        count(h, "SELECT count(*) FROM messages WHERE status IN ('pending', 'processing')") == 0
    })
    .await;
    let mut status = h.manager.status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.queue_depth == 0 && !s.is_processing))
        .await
        .expect("the status follows the database")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_is_consumed_in_order_one_message_at_a_time() {
    let h = start(Scripted { delay: Duration::from_millis(1), ..Default::default() }, |_| {}).await;
    let mut producers = Vec::new();
    for s in 0..4 {
        let m = h.manager.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..40 {
                queue(&m, &format!("s{s}"), &format!("s{s}-{i:03}"), "Bash").await;
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    drained(&h).await;
    let calls = h.provider.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 160);
    for s in 0..4 {
        let ids: Vec<&String> = calls.iter().filter(|(sess, _)| *sess == format!("s{s}")).map(|(_, id)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "session s{s} was consumed out of order");
    }
    assert_eq!(h.provider.in_flight.lock().unwrap().1, 1, "never two messages of one session at once");
    // Sessions ran side by side, not one after another.
    let first_of = |s: &str| calls.iter().position(|(sess, _)| sess == s).unwrap();
    assert!((0..4).map(|s| first_of(&format!("s{s}"))).max().unwrap() < 100);
}

#[tokio::test]
async fn an_idle_consumer_lingers_then_exits_and_new_work_starts_another() {
    let h = start(Scripted::default(), |c| c.linger_ms = 300).await;
    let started = Instant::now();
    queue(&h.manager, "a", "a1", "Bash").await;
    drained(&h).await;
    assert_eq!(h.manager.live_consumers().len(), 1, "the consumer lingers after its queue empties");
    eventually(Duration::from_secs(5), "the consumer to exit", async || h.manager.live_consumers().is_empty()).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "it exited before the linger timeout");
    // While it lingered it would have taken new work; after it exited, new work starts a new consumer.
    queue(&h.manager, "a", "a2", "Bash").await;
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 2);
    assert_eq!(h.manager.live_consumers().len(), 1);
}

#[tokio::test]
async fn a_lingering_consumer_takes_new_work_at_once() {
    let h = start(Scripted::default(), |c| c.linger_ms = 60_000).await;
    queue(&h.manager, "a", "a1", "Bash").await;
    drained(&h).await;
    let before = h.manager.live_consumers();
    let t = Instant::now();
    queue(&h.manager, "a", "a2", "Bash").await;
    eventually(Duration::from_secs(5), "the second observation", async || h.provider.calls.lock().unwrap().len() == 2)
        .await;
    assert!(t.elapsed() < Duration::from_secs(1), "woken, not polled: {:?}", t.elapsed());
    assert_eq!(h.manager.live_consumers(), before, "the same consumer took it");
}

#[tokio::test]
async fn a_summarize_ends_the_batch() {
    let h = start(Scripted::default(), |c| c.linger_ms = 60_000).await;
    h.manager.init_session("a", "proj", Some("fix the report"), None).await.unwrap();
    queue(&h.manager, "a", "a1", "Bash").await;
    let request = SummaryRequest { last_user_message: String::new(), last_assistant_message: "done".into() };
    h.manager.queue_summarize("a", "proj", request, None).await.unwrap();
    eventually(Duration::from_secs(5), "the consumer to exit after the summary", async || {
        h.manager.live_consumers().is_empty()
    })
    .await;
    assert_eq!(count(&h, "SELECT count(*) FROM summaries WHERE request = 'fix the report'"), 1);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processed'"), 2);
}

#[tokio::test]
async fn a_summary_is_given_the_tool_uses_of_its_span_while_the_store_keeps_them() {
    let h = start(Scripted::default(), |_| {}).await;
    let summarize = async |n: i64| {
        let request = SummaryRequest { last_user_message: String::new(), last_assistant_message: "done".into() };
        h.manager.queue_summarize("a", "proj", request, None).await.unwrap();
        eventually(Duration::from_secs(5), "the summary", async || count(&h, "SELECT count(*) FROM summaries") == n)
            .await;
    };
    h.manager.init_session("a", "proj", Some("first"), None).await.unwrap();
    queue(&h.manager, "a", "a1", "Read").await;
    queue(&h.manager, "a", "a2", "Bash").await;
    summarize(1).await;
    h.manager.init_session("a", "proj", Some("second"), None).await.unwrap();
    queue(&h.manager, "a", "a3", "Grep").await;
    summarize(2).await;
    // Retention prunes the processed messages, tool uses and all; the observations stay.
    let pruned = h.manager.store().write(|c| messages::prune(c, i64::MAX)).await.unwrap();
    assert_eq!(pruned, 5);
    summarize(3).await;

    let summaries = h.provider.summaries.lock().unwrap().clone();
    let span = |ids: &[&str], observations| (ids.iter().map(|id| id.to_string()).collect::<Vec<_>>(), observations);
    assert_eq!(summaries, [span(&["a1", "a2"], 2), span(&["a3"], 1), span(&[], 1)]);
}

#[tokio::test]
async fn stats_return_to_zero_after_the_work_is_done() {
    let h = start(Scripted::default(), |c| c.linger_ms = 50).await;
    let mut status = h.manager.status();
    for i in 0..100 {
        queue(&h.manager, &format!("s{}", i % 5), &format!("t{i}"), "Bash").await;
    }
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.is_processing)).await.unwrap().unwrap();
    eventually(Duration::from_secs(20), "zero", async || {
        let s = h.manager.status().borrow().clone();
        s.queue_depth == 0 && !s.is_processing && s.live_consumers == 0 && s.total_active_work == 0
    })
    .await;
    let s = h.manager.status().borrow().clone();
    assert_eq!((s.pending, s.processing, s.stuck, s.failed, s.sessions_with_work), (0, 0, 0, 0, 0), "{s:?}");
    assert_eq!(s.active_sessions, 5);
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 100);
}

#[tokio::test]
async fn a_poison_message_fails_after_max_attempts_while_others_flow() {
    let h = start(Scripted::default(), |c| c.max_attempts = 3).await;
    h.provider.poison.lock().unwrap().push("Poison".into());
    queue(&h.manager, "bad", "p1", "Poison").await;
    for i in 0..20 {
        queue(&h.manager, "good", &format!("g{i}"), "Bash").await;
    }
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processed'"), 20);
    let conn = rusqlite::Connection::open(h.dir.path().join("memtray.db")).unwrap();
    let (status, attempts, error): (String, i64, String) = conn
        .query_row("SELECT status, attempts, last_error FROM messages WHERE idempotency_key = 'p1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 3));
    assert!(error.contains("Poison is poison"), "{error}");
    assert_eq!(h.manager.status().borrow().failed, 1);
    let calls = h.provider.calls.lock().unwrap().iter().filter(|(_, id)| id == "p1").count();
    assert_eq!(calls, 3, "retried until attempts ran out, no more");

    // Retrying a failed message gives it fresh attempts; once the cause is gone it is processed.
    h.provider.poison.lock().unwrap().clear();
    let id: i64 = conn.query_row("SELECT id FROM messages WHERE idempotency_key = 'p1'", [], |r| r.get(0)).unwrap();
    assert!(h.manager.retry_message(id).await.unwrap());
    drained(&h).await;
    let status: String = conn.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(status, "processed");
}

#[tokio::test]
async fn deleting_a_session_cancels_its_consumer_and_leaves_nothing_processing() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    let Queued::New { session_id, .. } = queue(&h.manager, "a", "a1", "Bash").await else { panic!() };
    queue(&h.manager, "b", "b1", "Bash").await;
    eventually(Duration::from_secs(5), "both to be processing", async || {
        count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'") == 2
    })
    .await;
    assert!(h.manager.delete_session(session_id).await.unwrap());
    assert!(!h.manager.live_consumers().contains(&session_id));
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE session_id = 1"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM sessions WHERE agent_session_id = 'a'"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'"), 1, "b is untouched");
}

#[tokio::test]
async fn shutdown_hands_in_flight_messages_back() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    for s in 0..3 {
        for i in 0..3 {
            queue(&h.manager, &format!("s{s}"), &format!("s{s}-{i}"), "Bash").await;
        }
    }
    eventually(Duration::from_secs(5), "one message per session in flight", async || {
        count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'") == 3
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), h.manager.shutdown()).await.expect("shutdown does not hang");
    assert!(h.manager.live_consumers().is_empty());
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 9);
    let refused = h.manager.queue_observation("s0", "proj", tool("late", "Bash"), None).await;
    assert!(refused.is_err(), "no new work after shutdown");
}

#[tokio::test]
async fn restart_recovers_processing_messages_at_once_and_ends_crash_loops() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.max_attempts = 3).await;
    queue(&h.manager, "a", "a1", "Bash").await;
    queue(&h.manager, "b", "b1", "Bash").await;
    h.manager.shutdown().await;
    // Simulate a process that died mid-processing: one message with attempts to spare, one that has
    // crashed the process on every attempt.
    let conn = rusqlite::Connection::open(h.dir.path().join("memtray.db")).unwrap();
    conn.execute_batch(
        "UPDATE messages SET status = 'processing', attempts = 1, claimed_at = 0 WHERE idempotency_key = 'a1';
         UPDATE messages SET status = 'processing', attempts = 3, claimed_at = 0 WHERE idempotency_key = 'b1';",
    )
    .unwrap();
    let provider = Arc::new(Scripted::default());
    let started = Instant::now();
    let manager = start_manager(&h.config, provider.clone()).await;
    let mut status = manager.status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.queue_depth == 0 && s.failed == 1))
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "recovered at once, not after a timeout");
    let (a, b): (String, String) = conn
        .query_row(
            "SELECT (SELECT status FROM messages WHERE idempotency_key = 'a1'),
                    (SELECT status || ': ' || last_error FROM messages WHERE idempotency_key = 'b1')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(a, "processed");
    assert!(b.starts_with("failed: the process stopped while processing"), "{b}");
    manager.shutdown().await;
}

#[tokio::test]
async fn abort_removes_a_message_and_the_session_moves_on() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    let Queued::New { message_id: first, .. } = queue(&h.manager, "a", "a1", "Bash").await else { panic!() };
    let Queued::New { message_id: second, .. } = queue(&h.manager, "a", "a2", "Bash").await else { panic!() };
    eventually(Duration::from_secs(5), "a1 in flight", async || h.provider.calls.lock().unwrap().len() == 1).await;
    assert!(h.manager.abort_message(second).await.unwrap(), "a pending message can be aborted");
    assert!(h.manager.abort_message(first).await.unwrap(), "an in-flight message can be aborted");
    h.provider.gate.as_ref().unwrap().add_permits(10);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 0, "an aborted message leaves no memory");
    assert!(!h.manager.abort_message(first).await.unwrap(), "nothing left to abort");
}

#[tokio::test]
async fn paused_processing_keeps_storing_and_resumes() {
    let h = start(Scripted::default(), |_| {}).await;
    h.manager.set_paused(true);
    for i in 0..5 {
        queue(&h.manager, "a", &format!("t{i}"), "Bash").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending'"), 5);
    assert!(h.provider.calls.lock().unwrap().is_empty());
    let s = h.manager.status().borrow().clone();
    assert!(s.paused && !s.is_processing && s.queue_depth == 5, "{s:?}");
    h.manager.set_paused(false);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 5);
}

#[tokio::test]
async fn a_message_processing_too_long_is_reported_stuck_and_can_be_retried() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.stuck_after_secs = 1).await;
    queue(&h.manager, "a", "a1", "Bash").await;
    let mut status = h.manager.status();
    // Nothing polls: the status publisher sets itself a deadline for when the claim turns stuck.
    // (`is_ok` drops the watch's read guard at once; holding it would block the publisher.)
    let stuck = tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.stuck == 1)).await.is_ok();
    assert!(stuck, "the claim was never reported stuck: {:?}", h.manager.status().borrow());
    assert_eq!(h.manager.retry_stuck_and_failed().await.unwrap(), 1);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 1);
    h.provider.gate.as_ref().unwrap().add_permits(10);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 1, "processed once, not twice");
}
