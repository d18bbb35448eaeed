//! The core's queue semantics on a real SQLite file, with a scripted provider: per-session order and one
//! message in flight per session, linger exit, summarize ends a batch, delete and shutdown leave nothing
//! processing, stats return to zero, poison messages and backoff, recovery, retry and abort, pause,
//! retention, the events queue operations publish, and a server start that fails half way.
//!
//! Everything time-based runs on tokio's paused clock (the core reads it through `Settings::clock`), so
//! "lingers 300 ms", "backs off" and "turns stuck after 1 s" are exact, never wall-clock guesses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memtray_core::clock::Clock;
use memtray_core::config::Config;
use memtray_core::events::Event;
use memtray_core::intake::Queued;
use memtray_core::memory::provider::{Made, Observed, Provider, ProviderError, SessionContext, Summarized};
use memtray_core::memory::{NewObservation, NewSummary};
use memtray_core::queue::message::{SummaryRequest, ToolUse};
use memtray_core::{Core, Settings};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A provider whose behaviour each test scripts.
#[derive(Default)]
struct Scripted {
    /// Every observe call, in call order: (agent session id, tool_use_id).
    calls: Mutex<Vec<(String, String)>>,
    /// When each observe call began, on tokio's clock.
    call_times: Mutex<Vec<Instant>>,
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

    async fn observe(&self, ctx: &SessionContext, tools: &[ToolUse]) -> Result<Observed, ProviderError> {
        // No batching: one tool use per call.
        let [tool] = tools else { panic!("{} tool uses in a call that takes one", tools.len()) };
        {
            let mut flight = self.in_flight.lock().unwrap();
            let n = flight.0.entry(ctx.agent_session_id.clone()).or_default();
            *n += 1;
            let n = *n;
            flight.1 = flight.1.max(n);
        }
        self.calls.lock().unwrap().push((ctx.agent_session_id.clone(), tool.tool_use_id.clone().unwrap_or_default()));
        self.call_times.lock().unwrap().push(Instant::now());
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.unwrap();
        }
        tokio::time::sleep(self.delay).await;
        *self.in_flight.lock().unwrap().0.get_mut(&ctx.agent_session_id).unwrap() -= 1;
        if self.poison.lock().unwrap().contains(&tool.tool_name) {
            return Err(ProviderError::Retry(format!("{} is poison", tool.tool_name).into()));
        }
        Ok(Made::free(vec![vec![NewObservation {
            kind: "discovery".into(),
            title: tool.tool_name.clone(),
            ..Default::default()
        }]]))
    }

    async fn summarize(&self, ctx: &SessionContext, _: &SummaryRequest) -> Result<Summarized, ProviderError> {
        let tool_uses = ctx.tool_uses.iter().map(|t| t.tool_use_id.clone().unwrap_or_default()).collect();
        self.summaries.lock().unwrap().push((tool_uses, ctx.observations.len()));
        Ok(Made::free(Some(NewSummary { request: ctx.prompts.join(" / "), ..Default::default() })))
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: Config,
    clock: Clock,
    provider: Arc<Scripted>,
    core: Core,
}

async fn start(provider: Scripted, tune: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.durability = memtray_core::config::Durability::Normal;
    config.retry_backoff_ms = 10;
    tune(&mut config);
    let provider = Arc::new(provider);
    let clock = Clock::tokio();
    let core = start_core(&config, clock, provider.clone()).await;
    Harness { dir, config, clock, provider, core }
}

/// A core on `config` that reads time from `clock`.
async fn start_core(config: &Config, clock: Clock, provider: Arc<Scripted>) -> Core {
    let settings = Settings { clock, ..Settings::from(config) };
    Core::start_with(config, provider, settings).await.unwrap()
}

fn tool(id: &str, name: &str) -> ToolUse {
    ToolUse {
        tool_name: name.into(),
        tool_input: serde_json::json!({}),
        tool_response: serde_json::json!({}),
        cwd: "/p".into(),
        tool_use_id: Some(id.into()),
        error: None,
        subagent: None,
    }
}

async fn queue(core: &Core, session: &str, id: &str, name: &str) -> Queued {
    core.intake().queue_observation(session, "proj", tool(id, name), None).await.unwrap()
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
    let mut status = h.core.status();
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
        let intake = h.core.intake().clone();
        producers.push(tokio::spawn(async move {
            for i in 0..40 {
                let tool = tool(&format!("s{s}-{i:03}"), "Bash");
                intake.queue_observation(&format!("s{s}"), "proj", tool, None).await.unwrap();
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

#[tokio::test(start_paused = true)]
async fn an_idle_consumer_lingers_then_exits_and_new_work_starts_another() {
    let h = start(Scripted::default(), |c| c.linger_ms = 300).await;
    let started = Instant::now();
    queue(&h.core, "a", "a1", "Bash").await;
    drained(&h).await;
    assert_eq!(h.core.queue().live_consumers().len(), 1, "the consumer lingers after its queue empties");
    eventually(Duration::from_secs(5), "the consumer to exit", async || h.core.queue().live_consumers().is_empty())
        .await;
    let lingered = started.elapsed();
    assert!(lingered >= Duration::from_millis(300), "it exited before the linger timeout: {lingered:?}");
    assert!(lingered < Duration::from_millis(400), "it lingered longer than asked: {lingered:?}");
    // While it lingered it would have taken new work; after it exited, new work starts a new consumer.
    queue(&h.core, "a", "a2", "Bash").await;
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 2);
    assert_eq!(h.core.queue().live_consumers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lingering_consumer_takes_new_work_at_once() {
    let h = start(Scripted::default(), |c| c.linger_ms = 60_000).await;
    queue(&h.core, "a", "a1", "Bash").await;
    drained(&h).await;
    let before = h.core.queue().live_consumers();
    let t = Instant::now();
    queue(&h.core, "a", "a2", "Bash").await;
    eventually(Duration::from_secs(5), "the second observation", async || h.provider.calls.lock().unwrap().len() == 2)
        .await;
    assert!(t.elapsed() < Duration::from_millis(100), "woken, not polled: {:?}", t.elapsed());
    assert_eq!(h.core.queue().live_consumers(), before, "the same consumer took it");
}

#[tokio::test(start_paused = true)]
async fn a_summarize_ends_the_batch() {
    let h = start(Scripted::default(), |c| c.linger_ms = 60_000).await;
    h.core.intake().init_session("a", "proj", Some("fix the report"), None).await.unwrap();
    queue(&h.core, "a", "a1", "Bash").await;
    let request = SummaryRequest { last_user_message: String::new(), last_assistant_message: "done".into() };
    h.core.intake().queue_summarize("a", "proj", request, None).await.unwrap();
    eventually(Duration::from_secs(5), "the consumer to exit after the summary", async || {
        h.core.queue().live_consumers().is_empty()
    })
    .await;
    assert_eq!(count(&h, "SELECT count(*) FROM summaries WHERE request = 'fix the report'"), 1);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processed'"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_summary_is_given_the_tool_uses_of_its_span_and_then_they_are_dropped() {
    let h = start(Scripted::default(), |_| {}).await;
    let summarize = async |n: i64| {
        let request = SummaryRequest { last_user_message: String::new(), last_assistant_message: "done".into() };
        h.core.intake().queue_summarize("a", "proj", request, None).await.unwrap();
        eventually(Duration::from_secs(5), "the summary", async || count(&h, "SELECT count(*) FROM summaries") == n)
            .await;
    };
    let kept = "SELECT count(*) FROM messages WHERE kind = 'observation' AND payload IS NOT NULL";
    h.core.intake().init_session("a", "proj", Some("first"), None).await.unwrap();
    queue(&h.core, "a", "a1", "Read").await;
    queue(&h.core, "a", "a2", "Bash").await;
    drained(&h).await;
    assert_eq!(count(&h, kept), 2, "processed tool uses wait for their summary");
    summarize(1).await;
    assert_eq!(count(&h, kept), 0, "a committed summary drops its span's tool uses");
    h.core.intake().init_session("a", "proj", Some("second"), None).await.unwrap();
    queue(&h.core, "a", "a3", "Grep").await;
    summarize(2).await;
    // A second summary of the same span finds the tool uses gone and works from the observations.
    summarize(3).await;
    let summaries = h.provider.summaries.lock().unwrap().clone();
    let span = |ids: &[&str], observations| (ids.iter().map(|id| id.to_string()).collect::<Vec<_>>(), observations);
    assert_eq!(summaries, [span(&["a1", "a2"], 2), span(&["a3"], 1), span(&[], 1)]);
}

#[tokio::test(start_paused = true)]
async fn stats_return_to_zero_after_the_work_is_done() {
    // The provider waits at the gate until the status has said "processing" (on the paused clock the work
    // itself takes no time at all).
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.linger_ms = 50).await;
    let mut status = h.core.status();
    for i in 0..100 {
        queue(&h.core, &format!("s{}", i % 5), &format!("t{i}"), "Bash").await;
    }
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.is_processing)).await.unwrap().unwrap();
    h.provider.gate.as_ref().unwrap().add_permits(1000);
    eventually(Duration::from_secs(20), "zero", async || {
        let s = h.core.status().borrow().clone();
        s.queue_depth == 0 && !s.is_processing && s.live_consumers == 0 && s.total_active_work == 0
    })
    .await;
    let s = h.core.status().borrow().clone();
    assert_eq!((s.pending, s.processing, s.stuck, s.failed, s.sessions_with_work), (0, 0, 0, 0, 0), "{s:?}");
    assert_eq!(s.active_sessions, 5);
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 100);
}

#[tokio::test(start_paused = true)]
async fn a_poison_message_fails_after_max_attempts_while_others_flow() {
    let h = start(Scripted::default(), |c| c.max_attempts = 3).await;
    h.provider.poison.lock().unwrap().push("Poison".into());
    queue(&h.core, "bad", "p1", "Poison").await;
    for i in 0..20 {
        queue(&h.core, "good", &format!("g{i}"), "Bash").await;
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
    assert_eq!(h.core.status().borrow().failed, 1);
    let calls = h.provider.calls.lock().unwrap().iter().filter(|(_, id)| id == "p1").count();
    assert_eq!(calls, 3, "retried until attempts ran out, no more");

    // Retrying a failed message gives it fresh attempts; once the cause is gone it is processed.
    h.provider.poison.lock().unwrap().clear();
    let id: i64 = conn.query_row("SELECT id FROM messages WHERE idempotency_key = 'p1'", [], |r| r.get(0)).unwrap();
    assert!(h.core.queue().retry_message(id).await.unwrap());
    drained(&h).await;
    let status: String = conn.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(status, "processed");
}

#[tokio::test(start_paused = true)]
async fn deleting_a_session_cancels_its_consumer_and_leaves_nothing_processing() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    let Queued::New { session_id, .. } = queue(&h.core, "a", "a1", "Bash").await else { panic!() };
    queue(&h.core, "b", "b1", "Bash").await;
    eventually(Duration::from_secs(5), "both to be processing", async || {
        count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'") == 2
    })
    .await;
    assert!(h.core.queue().delete_session(session_id).await.unwrap());
    assert!(!h.core.queue().live_consumers().contains(&session_id));
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE session_id = 1"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM sessions WHERE agent_session_id = 'a'"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'"), 1, "b is untouched");
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_in_flight_messages_back() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    for s in 0..3 {
        for i in 0..3 {
            queue(&h.core, &format!("s{s}"), &format!("s{s}-{i}"), "Bash").await;
        }
    }
    eventually(Duration::from_secs(5), "one message per session in flight", async || {
        count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'") == 3
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), h.core.stop()).await.expect("shutdown does not hang");
    assert!(h.core.queue().live_consumers().is_empty());
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'processing'"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 9);
    let refused = h.core.intake().queue_observation("s0", "proj", tool("late", "Bash"), None).await;
    assert!(refused.is_err(), "no new work after shutdown");
}

#[tokio::test(start_paused = true)]
async fn restart_recovers_processing_messages_at_once_and_ends_crash_loops() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.max_attempts = 3).await;
    queue(&h.core, "a", "a1", "Bash").await;
    queue(&h.core, "b", "b1", "Bash").await;
    h.core.stop().await;
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
    let core = start_core(&h.config, h.clock, provider.clone()).await;
    let mut status = core.status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.queue_depth == 0 && s.failed == 1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "recovered at once, not after a timeout: {:?}",
        started.elapsed()
    );
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
    core.stop().await;
}

#[tokio::test(start_paused = true)]
async fn abort_removes_a_message_and_the_session_moves_on() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |_| {}).await;
    let Queued::New { message_id: first, .. } = queue(&h.core, "a", "a1", "Bash").await else { panic!() };
    let Queued::New { message_id: second, .. } = queue(&h.core, "a", "a2", "Bash").await else { panic!() };
    eventually(Duration::from_secs(5), "a1 in flight", async || h.provider.calls.lock().unwrap().len() == 1).await;
    assert!(h.core.queue().abort_message(second).await.unwrap(), "a pending message can be aborted");
    assert!(h.core.queue().abort_message(first).await.unwrap(), "an in-flight message can be aborted");
    h.provider.gate.as_ref().unwrap().add_permits(10);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 0, "an aborted message leaves no memory");
    assert!(!h.core.queue().abort_message(first).await.unwrap(), "nothing left to abort");
}

#[tokio::test(start_paused = true)]
async fn paused_processing_keeps_storing_and_resumes() {
    let h = start(Scripted::default(), |_| {}).await;
    h.core.queue().set_paused(true);
    for i in 0..5 {
        queue(&h.core, "a", &format!("t{i}"), "Bash").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending'"), 5);
    assert!(h.provider.calls.lock().unwrap().is_empty());
    let s = h.core.status().borrow().clone();
    assert!(s.paused && !s.is_processing && s.queue_depth == 5, "{s:?}");
    h.core.queue().set_paused(false);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 5);
}

#[tokio::test(start_paused = true)]
async fn a_message_processing_too_long_is_reported_stuck_and_can_be_retried() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.stuck_after_secs = 1).await;
    queue(&h.core, "a", "a1", "Bash").await;
    let mut status = h.core.status();
    // Nothing polls: the status publisher sets itself a deadline for when the claim turns stuck.
    // (`is_ok` drops the watch's read guard at once; holding it would block the publisher.)
    let stuck = tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.stuck == 1)).await.is_ok();
    assert!(stuck, "the claim was never reported stuck: {:?}", h.core.status().borrow());
    assert_eq!(h.core.queue().retry_stuck_and_failed().await.unwrap().messages, 1);
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 1);
    h.provider.gate.as_ref().unwrap().add_permits(10);
    drained(&h).await;
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 1, "processed once, not twice");
}

#[tokio::test(start_paused = true)]
async fn a_failing_message_backs_off_doubling_on_the_core_clock() {
    let h = start(Scripted::default(), |c| {
        c.max_attempts = 4;
        c.retry_backoff_ms = 1000;
    })
    .await;
    h.provider.poison.lock().unwrap().push("Poison".into());
    queue(&h.core, "a", "p1", "Poison").await;
    drained(&h).await;
    let times = h.provider.call_times.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "one call per attempt");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 1 s, then 2 s, then 4 s: each wait at least the backoff, and not a poll interval more.
    for (gap, want) in gaps.iter().zip([1000, 2000, 4000]) {
        let want = Duration::from_millis(want);
        assert!(*gap >= want && *gap < want + Duration::from_millis(50), "gaps {gaps:?}");
    }
    assert_eq!(count(&h, "SELECT count(*) FROM messages WHERE status = 'failed'"), 1);
}

#[tokio::test(start_paused = true)]
async fn processed_messages_are_pruned_after_the_retention_and_memory_stays() {
    let h = start(Scripted::default(), |c| c.retention_days = 7).await;
    queue(&h.core, "a", "a1", "Bash").await;
    drained(&h).await;
    h.core.stop().await;
    // Six days later the message is kept; eight days later it is pruned at start, its observation kept.
    tokio::time::advance(Duration::from_secs(6 * 86_400)).await;
    let core = start_core(&h.config, h.clock, h.provider.clone()).await;
    core.stop().await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages"), 1, "within the retention");
    tokio::time::advance(Duration::from_secs(2 * 86_400)).await;
    let core = start_core(&h.config, h.clock, h.provider.clone()).await;
    core.stop().await;
    assert_eq!(count(&h, "SELECT count(*) FROM messages"), 0, "past the retention");
    assert_eq!(count(&h, "SELECT count(*) FROM observations"), 1);
}

#[tokio::test(start_paused = true)]
async fn queue_operations_publish_what_happened() {
    let h = start(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() }, |c| c.stuck_after_secs = 1).await;
    let mut events = h.core.events();
    queue(&h.core, "a", "a1", "Bash").await;
    let request = SummaryRequest { last_user_message: String::new(), last_assistant_message: "done".into() };
    let Queued::New { message_id: summarize, session_id } =
        h.core.intake().queue_summarize("a", "proj", request, None).await.unwrap()
    else {
        panic!()
    };
    let mut status = h.core.status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.stuck == 1)).await.unwrap().unwrap();
    h.core.queue().retry_stuck_and_failed().await.unwrap();
    assert!(h.core.queue().abort_message(summarize).await.unwrap());
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let names: Vec<&str> = seen.iter().map(Event::name).collect();
    assert_eq!(
        names,
        ["session_started", "observation_queued", "summary_queued", "message_retried", "message_aborted"],
        "{seen:?}"
    );
    assert_eq!(seen[2], Event::SummaryQueued { session_id, message_id: summarize, project: "proj".into() });
    assert!(
        matches!(&seen[3], Event::MessageRetried { project, message_id, .. } if project == "proj" && *message_id != summarize),
        "{:?}",
        seen[3]
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_that_fails_for_good_is_announced_with_its_project() {
    let h = start(Scripted::default(), |c| c.max_attempts = 1).await;
    h.provider.poison.lock().unwrap().push("Poison".into());
    let mut events = h.core.events();
    let Queued::New { message_id, session_id } = queue(&h.core, "a", "p1", "Poison").await else { panic!() };
    drained(&h).await;
    let failed = std::iter::from_fn(|| events.try_recv().ok()).find(|e| e.name() == "message_failed");
    assert_eq!(
        failed,
        Some(Event::MessageFailed { session_id, message_id, project: "proj".into(), error: "Poison is poison".into() })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_start_that_fails_half_way_stops_what_it_started() {
    use memtray_core::server::{Server, ServerError};
    use memtray_core::store::{inbox, open_direct};

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let wal = dir.path().join("memtray.db-wal");
    // A previous run left a message pending.
    let provider = Arc::new(Scripted { gate: Some(Semaphore::new(0)), ..Default::default() });
    let core = start_core(&config, Clock::system(), provider).await;
    queue(&core, "a", "a1", "Bash").await;
    core.stop().await;
    // `memtray hook` stored an event the database will refuse when the server takes it in.
    {
        let conn = open_direct(&config, Duration::from_secs(5)).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON sessions WHEN NEW.agent_session_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
        let event = r#"{"session_id":"poison","hook_event_name":"UserPromptSubmit","prompt":"go","cwd":"/p"}"#;
        inbox::push(&conn, event, 0).unwrap();
    }
    assert!(!wal.exists(), "with every connection closed SQLite removes the WAL (what this test watches)");

    let secret = memtray_core::secret::Secret::load_or_create(&config.data_dir.join("state")).unwrap();
    let err = Server::start(&config, secret.clone()).await.err().expect("the inbox cannot be taken in");
    assert!(matches!(err, ServerError::Inbox(_)), "{err}");
    // Everything the start had started is stopped: the port is free, no connection holds the database, and
    // no consumer is left holding the old message.
    std::net::TcpListener::bind(("127.0.0.1", config.port)).expect("the port was released");
    assert!(!wal.exists(), "a connection to the database was left open");
    let conn = rusqlite::Connection::open(dir.path().join("memtray.db")).unwrap();
    let processing: i64 =
        conn.query_row("SELECT count(*) FROM messages WHERE status = 'processing'", [], |r| r.get(0)).unwrap();
    assert_eq!(processing, 0);

    // Once the cause is gone the next start takes the inbox in.
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    drop(conn);
    let server = Server::start(&config, secret).await.expect("starts once the cause is gone");
    server.shutdown().await;
    let conn = rusqlite::Connection::open(dir.path().join("memtray.db")).unwrap();
    let (sessions, waiting): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sessions WHERE agent_session_id = 'poison'), (SELECT count(*) FROM hook_inbox)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sessions, waiting), (1, 0));
}
