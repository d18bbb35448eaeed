//! SIGKILL the real server again and again while 20 sessions post 50 observations and a summarize each, with
//! processing slowed. Afterwards every acknowledged message is processed exactly once, in per-session order,
//! and nothing is left pending, processing or failed.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};

const SESSIONS: usize = 20;
const OBSERVATIONS: usize = 50;
const KILLS: usize = 5;

/// Posts until the server acknowledges with 200; connection failures and 503 (restarting) are retried.
fn deliver(agent: &ureq::Agent, url: &str, body: &Value, key: &str) -> Value {
    loop {
        match agent.post(url).header("Idempotency-Key", key).send_json(body) {
            Ok(mut r) if r.status() == 200 => return r.body_mut().read_json().unwrap(),
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!("{url}: unexpected {}", r.status()),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_mid_way_loses_and_duplicates_nothing() {
    let mut server = TestServer::start(&[("MEMTRAY_FAULT_PROVIDER_DELAY_MS", "10"), ("MEMTRAY_LINGER_MS", "200")]);
    let port = server.port;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();

    let producers: Vec<_> = (0..SESSIONS)
        .map(|s| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
                let base = format!("http://127.0.0.1:{port}");
                let session = format!("crash-{s:02}");
                let init = json!({"claudeSessionId": session, "project": "ledger", "prompt": format!("task {s}")});
                deliver(&agent, &format!("{base}/api/sessions/init"), &init, &format!("init-{session}"));
                for i in 0..OBSERVATIONS {
                    let key = format!("{session}-{i:02}");
                    let answer = deliver(
                        &agent,
                        &format!("{base}/api/sessions/observations"),
                        &observation(&session, &key, "Bash"),
                        &key,
                    );
                    assert!(answer["status"] == "queued" || answer["status"] == "duplicate", "{answer}");
                    acked.lock().unwrap().push(key);
                }
                let key = format!("{session}-summary");
                let body = json!({"claudeSessionId": session, "last_assistant_message": "done"});
                deliver(&agent, &format!("{base}/api/sessions/summarize"), &body, &key);
                acked.lock().unwrap().push(key);
            })
        })
        .collect();

    let total = (SESSIONS * (OBSERVATIONS + 1)) as i64;
    let mut kills_mid_way = 0;
    for kill in 0..KILLS {
        // Let some work arrive and some get processed, then pull the plug.
        std::thread::sleep(Duration::from_millis(250 + 100 * kill as u64));
        let processed = server.count("SELECT count(*) FROM messages WHERE status = 'processed'");
        server.kill9();
        if processed < total {
            kills_mid_way += 1;
        }
        server.spawn();
        assert_eq!(server.port, port, "restarted on the same port");
    }
    for p in producers {
        p.join().expect("producer");
    }
    // One more crash while the backlog is still being processed, if it still is.
    if server.count("SELECT count(*) FROM messages WHERE status != 'processed'") > 0 {
        server.kill9();
        server.spawn();
        kills_mid_way += 1;
    }
    assert!(kills_mid_way >= 3, "only {kills_mid_way} kills landed mid-way; the test proves nothing");

    wait_for(Duration::from_secs(60), "every message to be processed", || {
        server.count("SELECT count(*) FROM messages WHERE status IN ('pending', 'processing')") == 0
    });

    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as i64, total);
    assert_eq!(server.count("SELECT count(*) FROM messages"), total, "one message per acknowledged event");
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'processed'"), total, "all processed");
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'failed'"), 0);
    assert_eq!(
        server.count("SELECT count(*) FROM observations"),
        (SESSIONS * OBSERVATIONS) as i64,
        "no duplicate observation"
    );
    assert_eq!(server.count("SELECT count(DISTINCT message_id) FROM observations"), (SESSIONS * OBSERVATIONS) as i64);
    assert_eq!(server.count("SELECT count(*) FROM summaries"), SESSIONS as i64, "one summary per session");
    assert_eq!(server.count("SELECT count(DISTINCT session_id) FROM summaries"), SESSIONS as i64);
    assert_eq!(server.count("SELECT count(*) FROM user_prompts"), SESSIONS as i64, "init replays were deduplicated");

    // Per-session order: observations were made in the order their events were acknowledged, and each
    // session's summary came after all of its observations.
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT s.agent_session_id, m.idempotency_key FROM observations o
             JOIN messages m ON m.id = o.message_id JOIN sessions s ON s.id = o.session_id ORDER BY o.id",
        )
        .unwrap();
    let mut per_session: HashMap<String, Vec<String>> = HashMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap() {
        let (session, key) = row.unwrap();
        per_session.entry(session).or_default().push(key);
    }
    assert_eq!(per_session.len(), SESSIONS);
    for (session, keys) in per_session {
        let expected: Vec<String> = (0..OBSERVATIONS).map(|i| format!("{session}-{i:02}")).collect();
        assert_eq!(keys, expected, "{session} was processed out of order");
    }
    let late_summaries = server.count(
        "SELECT count(*) FROM summaries m
         WHERE m.created_at < (SELECT max(o.created_at) FROM observations o WHERE o.session_id = m.session_id)",
    );
    assert_eq!(late_summaries, 0, "a summary was made before its session's observations");
}
