//! LLM providers against fake model servers that speak the real protocols (Anthropic Messages, streaming
//! and not; OpenAI chat completions), through the real `memtray serve` and its SQLite file: memory parsed
//! into its fields with its tokens, batches committed once across a SIGKILL, retry-after, a refused key
//! that pauses and recovers when the file is fixed, fallback memory, the circuit breaker, the token ceiling,
//! and private text never leaving the machine.

#[path = "support/fake_llm.rs"]
mod fake_llm;
mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use fake_llm::{FakeLlm, Step};
use serde_json::{Value, json};
use support::{Options, TestServer, wait_for};

const KEY: &str = "sk-test-right-key";
const LIMIT: Duration = Duration::from_secs(30);

/// A server whose provider is `provider` at the fake, paused so tests can queue a whole batch first.
fn server(fake: &FakeLlm, provider: &str, extra: &[(&str, &str)]) -> TestServer {
    server_with(fake, provider, extra, Options::default())
}

fn server_with(fake: &FakeLlm, provider: &str, extra: &[(&str, &str)], options: Options) -> TestServer {
    let (anthropic, openai) = (fake.anthropic_url(), fake.openai_url());
    let mut env: Vec<(&str, &str)> = vec![
        ("MEMTRAY_PROVIDER", provider),
        ("MEMTRAY_ANTHROPIC_BASE_URL", &anthropic),
        ("MEMTRAY_OPENAI_BASE_URL", &openai),
        ("MEMTRAY_OPENAI_MODEL", "llama3.2"),
        ("MEMTRAY_RETRY_BACKOFF_MS", "50"),
        ("MEMTRAY_LINGER_MS", "200"),
    ];
    if options.config.is_none() {
        env.push(("MEMTRAY_ANTHROPIC_API_KEY", KEY));
        env.push(("MEMTRAY_OPENAI_API_KEY", KEY));
    }
    env.extend_from_slice(extra);
    let server = TestServer::start_with(&env, options);
    server.set_paused(true);
    server
}

/// Starts a session with a prompt and queues `tools` tool uses (`t1`, `t2`, ...) of the given tools.
fn queue(server: &TestServer, session: &str, prompt: &str, tools: &[&str]) {
    let (status, _) =
        server.post("/api/sessions/init", &json!({"claudeSessionId": session, "project": "ledger", "prompt": prompt}));
    assert_eq!(status, 200);
    for (i, tool) in tools.iter().enumerate() {
        let (status, _) = server
            .post("/api/sessions/observations", &support::observation(session, &format!("{session}-t{}", i + 1), tool));
        assert_eq!(status, 200);
    }
}

fn summarize(server: &TestServer, session: &str) {
    let (status, _) = server.post(
        "/api/sessions/summarize",
        &json!({"claudeSessionId": session, "last_assistant_message": "I reordered the check in src/auth.rs."}),
    );
    assert_eq!(status, 200);
}

fn rows(server: &TestServer, sql: &str) -> Vec<Vec<Value>> {
    let conn =
        rusqlite::Connection::open_with_flags(server.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(v) => json!(v),
                    rusqlite::types::ValueRef::Real(v) => json!(v),
                    rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    rusqlite::types::ValueRef::Blob(_) => Value::Null,
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn provider_status(server: &TestServer) -> Value {
    server.get("/api/stats").1["provider"].clone()
}

#[test]
fn anthropic_memory_is_read_into_its_fields_and_its_tokens_are_counted() {
    for stream in ["false", "true"] {
        let fake = FakeLlm::start(Some(KEY));
        let server = server(&fake, "anthropic", &[("MEMTRAY_ANTHROPIC_STREAM", stream)]);
        queue(&server, "s1", "fix the login bug", &["Read", "Edit", "Bash"]);
        summarize(&server, "s1");
        server.set_paused(false);
        server.wait_idle(LIMIT);

        let received = fake.received();
        assert_eq!(received.len(), 2, "stream={stream}: one call for the three tool uses, one for the summary");
        let (tools, summary) = (&received[0], &received[1]);
        assert_eq!(tools.tool_uses(), 3, "the batch");
        assert_eq!(tools.json["stream"], stream == "true");
        assert_eq!(tools.json["model"], "claude-haiku-4-5");
        assert!(tools.json["system"].as_str().unwrap().contains("<observation>"), "the instructions");
        let material = tools.material();
        assert!(material.contains("<project>ledger</project>"), "{material}");
        assert!(material.contains("<request>fix the login bug</request>"), "the prompt travels: {material}");
        assert!(summary.is_summary());
        assert!(summary.material().contains("Model saw Read #1"), "earlier observations travel with the summary");

        let observations = rows(
            &server,
            "SELECT o.tool_name, o.type, o.title, o.subtitle, o.facts, o.narrative, o.concepts, o.files_read, o.provider,
                    o.model, o.fallback, o.call_id, m.idempotency_key
             FROM observations o JOIN messages m ON m.id = o.message_id ORDER BY o.id",
        );
        assert_eq!(observations.len(), 3, "stream={stream}");
        for (i, (o, tool)) in observations.iter().zip(["Read", "Edit", "Bash"]).enumerate() {
            let n = i + 1;
            assert_eq!(o[0], tool, "filed under its own tool use");
            assert_eq!(o[12], format!("s1-t{n}"));
            assert_eq!(o[1], "discovery");
            assert_eq!(o[2], format!("Model saw {tool} #{n}"));
            assert_eq!(o[3], "from the fake model");
            assert_eq!(o[4], json!(format!("[\"fact {n}\"]")));
            assert_eq!(o[5], format!("The agent used {tool}; this is why it matters."));
            assert_eq!(o[6], "[\"how-it-works\"]");
            assert_eq!(o[7], "[\"src/auth.rs\"]");
            assert_eq!(o[8], "anthropic");
            assert_eq!(o[9], "claude-haiku-4-5");
            assert_eq!(o[10], Value::Null, "not a fallback");
        }
        assert_eq!(observations[0][11], observations[2][11], "one call made all three");
        let summaries =
            rows(&server, "SELECT request, learned, completed, next_steps, notes, provider, call_id FROM summaries");
        assert_eq!(
            summaries,
            vec![vec![
                json!("Fix the login bug"),
                json!("The password check ran after hashing"),
                json!("Reordered the check"),
                json!("Add a regression test"),
                json!("none"),
                json!("anthropic"),
                summaries[0][6].clone()
            ]]
        );

        // Tokens: what the fake's usage fields said, per call, and in /api/stats.
        let expected_input: i64 = received.iter().map(|r| (r.body.len() / 4).max(1) as i64).sum();
        let calls = rows(
            &server,
            "SELECT provider, model, project, messages, input_tokens, output_tokens, outcome FROM provider_calls ORDER BY id",
        );
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0][3].clone(), calls[1][3].clone()), (json!(3), json!(1)));
        assert_eq!(calls[0][..3], [json!("anthropic"), json!("claude-haiku-4-5"), json!("ledger")]);
        assert_eq!(calls[0][4].as_i64().unwrap() + calls[1][4].as_i64().unwrap(), expected_input);
        assert!(calls.iter().all(|c| c[5].as_i64().unwrap() > 0 && c[6] == "memory"));
        let (_, stats) = server.get("/api/stats");
        let by_provider = &stats["tokens"]["byProvider"][0];
        assert_eq!(by_provider["key"], "anthropic");
        assert_eq!(by_provider["calls"], 2);
        assert_eq!(by_provider["messages"], 4);
        assert_eq!(by_provider["inputTokens"], expected_input);
        assert_eq!(stats["tokens"]["byProject"][0]["key"], "ledger");
        assert_eq!(stats["tokens"]["byDay"].as_array().unwrap().len(), 1);
        assert_eq!(stats["provider"]["health"], "ok");
        let output: i64 = calls.iter().map(|c| c[5].as_i64().unwrap()).sum();
        assert_eq!(stats["provider"]["tokensToday"], expected_input + output);

        // The inspector's session view carries the new fields.
        let (_, session) = server.get("/api/sessions/1");
        let o = &session["observations"][0];
        assert_eq!(o["narrative"], "The agent used Read; this is why it matters.");
        assert_eq!(o["provider"], "anthropic");
        assert_eq!(session["summaries"][0]["learned"], "The password check ran after hashing");
    }
}

#[test]
fn openai_compatible_servers_make_memory_with_their_tokens() {
    let fake = FakeLlm::start(Some(KEY));
    let server = server(&fake, "openai", &[]);
    queue(&server, "o1", "why is the build slow", &["Bash", "Grep"]);
    server.set_paused(false);
    server.wait_idle(LIMIT);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].protocol, "openai");
    assert_eq!(received[0].json["model"], "llama3.2");
    assert_eq!(received[0].json["messages"][0]["role"], "system");
    assert!(received[0].material().contains("why is the build slow"));
    let observations = rows(&server, "SELECT tool_name, title, provider, model FROM observations ORDER BY id");
    assert_eq!(
        observations,
        vec![
            vec![json!("Bash"), json!("Model saw Bash #1"), json!("openai"), json!("llama3.2")],
            vec![json!("Grep"), json!("Model saw Grep #2"), json!("openai"), json!("llama3.2")],
        ]
    );
    let calls = rows(&server, "SELECT provider, input_tokens FROM provider_calls");
    assert_eq!(calls, vec![vec![json!("openai"), json!((received[0].body.len() / 4) as i64)]]);
}

#[test]
fn private_text_and_secrets_never_reach_the_model() {
    let fake = FakeLlm::start(Some(KEY));
    let server = server(&fake, "anthropic", &[]);
    let prompt = "deploy it <private>my password is hunter2-prompt</private> please";
    server.post("/api/sessions/init", &json!({"claudeSessionId": "p1", "project": "ledger", "prompt": prompt}));
    let mut tool = support::observation("p1", "p1-t1", "Bash");
    tool["tool_input"] = json!({"command": "echo <private>hunter2-input</private> && export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"});
    tool["tool_response"] =
        json!({"stdout": "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 <private>hunter2-output</private>"});
    server.post("/api/sessions/observations", &tool);
    server.post(
        "/api/sessions/summarize",
        &json!({"claudeSessionId": "p1", "last_assistant_message": "done <private>hunter2-last</private>"}),
    );
    server.set_paused(false);
    server.wait_idle(LIMIT);
    let received = fake.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        for secret in ["hunter2", "wJalrXUtnFEMI", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"] {
            assert!(!request.body.contains(secret), "{secret} left the machine: {}", request.body);
        }
    }
    assert!(received[0].material().contains("deploy it"), "the rest of the prompt does travel");
}

#[test]
fn a_batch_is_committed_exactly_once_across_a_sigkill_mid_call() {
    let fake = FakeLlm::start(Some(KEY));
    fake.script([Step::Hang]);
    let mut server = server(&fake, "anthropic", &[]);
    queue(&server, "k1", "refactor the parser", &["Read", "Read", "Edit", "Bash", "Bash"]);
    server.set_paused(false);
    wait_for(LIMIT, "the batch call to reach the model", || fake.count() == 1);
    wait_for(LIMIT, "the batch to be claimed", || {
        server.count("SELECT count(*) FROM messages WHERE status = 'processing'") == 5
    });
    server.kill9();
    assert_eq!(server.count("SELECT count(*) FROM observations"), 0, "nothing of the batch was committed");
    assert_eq!(
        server.count("SELECT count(*) FROM messages WHERE status = 'processing'"),
        5,
        "all five were in the call"
    );

    server.spawn();
    server.wait_idle(LIMIT);
    let received = fake.received();
    assert_eq!(received.len(), 2, "the whole batch again, once");
    assert_eq!((received[0].tool_uses(), received[1].tool_uses()), (5, 5));
    assert_eq!(server.count("SELECT count(*) FROM observations"), 5);
    assert_eq!(server.count("SELECT count(DISTINCT message_id) FROM observations"), 5, "one observation per tool use");
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'processed'"), 5);
    assert_eq!(server.count("SELECT count(*) FROM provider_calls"), 1, "the call that never answered cost nothing");
    assert_eq!(server.count("SELECT count(DISTINCT call_id) FROM observations"), 1);
}

#[test]
fn a_rate_limit_waits_as_long_as_retry_after_says_without_spending_an_attempt() {
    let fake = FakeLlm::start(Some(KEY));
    let limited = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}});
    fake.script([Step::Status(429, limited, Some(2))]);
    let server = server(&fake, "anthropic", &[("MEMTRAY_MAX_ATTEMPTS", "1")]);
    queue(&server, "r1", "go", &["Bash"]);
    server.set_paused(false);
    wait_for(LIMIT, "the status to say rate limited", || provider_status(&server)["health"] == "rateLimited");
    assert!(provider_status(&server)["reason"].as_str().unwrap().contains("429 rate_limit_error"));
    server.wait_idle(LIMIT);
    let received = fake.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(2), "the second call came {waited:?} after the 429 (retry-after: 2)");
    // With a single attempt allowed, a spent attempt would have meant fallback memory.
    let made = rows(&server, "SELECT provider, fallback FROM observations");
    assert_eq!(made, vec![vec![json!("anthropic"), Value::Null]]);
    assert_eq!(server.count("SELECT attempts FROM messages"), 1);
    assert_eq!(provider_status(&server)["health"], "ok");
}

#[test]
fn a_refused_key_pauses_without_spending_attempts_and_recovers_when_the_config_file_is_fixed() {
    let fake = FakeLlm::start(Some(KEY));
    let config = |key: &str| format!("[anthropic]\napi_key = \"{key}\"\n");
    let options = Options { config: Some(config("sk-test-wrong-key")), ..Options::default() };
    let server = server_with(
        &fake,
        "anthropic",
        &[("MEMTRAY_PROVIDER_PROBE_SECS", "1"), ("MEMTRAY_MAX_ATTEMPTS", "1")],
        options,
    );
    queue(&server, "a1", "go", &["Bash", "Read"]);
    server.set_paused(false);
    wait_for(LIMIT, "the provider to be paused", || provider_status(&server)["health"] == "misconfigured");
    let status = provider_status(&server);
    assert!(status["reason"].as_str().unwrap().contains("401 authentication_error"), "{status}");
    assert!(status["until"].is_i64(), "the next probe is shown: {status}");
    // Probed again (the file re-read each time), and still nothing spent: both messages wait, attempts 0.
    wait_for(LIMIT, "a probe, with the messages back to pending", || {
        fake.count() >= 3
            && server.count("SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0") == 2
    });
    assert_eq!(server.count("SELECT count(*) FROM observations"), 0);
    assert_eq!(server.get("/api/stats").1["isProcessing"], true, "the work is still owed");

    server.write_config(&config(KEY));
    server.wait_idle(LIMIT);
    let made = rows(&server, "SELECT provider, fallback FROM observations ORDER BY id");
    assert_eq!(made, vec![vec![json!("anthropic"), Value::Null]; 2], "made by the provider, not a fallback");
    assert_eq!(
        server.count("SELECT count(*) FROM messages WHERE attempts = 1"),
        2,
        "one attempt each: the one that worked"
    );
    assert_eq!(provider_status(&server)["health"], "ok");
}

#[test]
fn an_unreadable_reply_is_retried_then_the_message_gets_fallback_memory() {
    let fake = FakeLlm::start(Some(KEY));
    fake.script([
        Step::Text("I think the code is fine.".into()),
        Step::Text("{\"observation\": \"json instead\"}".into()),
    ]);
    let server = server(&fake, "anthropic", &[("MEMTRAY_MAX_ATTEMPTS", "2")]);
    queue(&server, "g1", "go", &["Bash"]);
    server.set_paused(false);
    server.wait_idle(LIMIT);
    assert_eq!(fake.count(), 2, "tried as often as the attempts allow");
    let made = rows(&server, "SELECT provider, fallback, title FROM observations");
    assert_eq!(made.len(), 1, "the message is not lost");
    assert_eq!(made[0][0], "local");
    let reason = made[0][1].as_str().unwrap();
    assert!(reason.contains("anthropic failed") && reason.contains("unreadable reply"), "{reason}");
    assert!(made[0][2].as_str().unwrap().contains("g1-t1"), "local's own observation of the command: {made:?}");
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'processed'"), 1);
    let calls = rows(&server, "SELECT outcome FROM provider_calls");
    assert_eq!(calls, vec![vec![json!("unreadable")]; 2], "the tokens of unreadable replies count too");
    let (_, session) = server.get("/api/sessions/1");
    assert!(session["observations"][0]["fallback"].as_str().unwrap().contains("unreadable reply"), "{session}");
}

#[test]
fn failures_are_retried_by_kind_until_the_model_answers() {
    for stream in ["false", "true"] {
        let fake = FakeLlm::start(Some(KEY));
        let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        fake.script([
            Step::Status(
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
                None,
            ),
            Step::Drop,
            Step::Slow(Duration::from_secs(6)),
            Step::Status(529, overloaded, None),
        ]);
        let server = server(
            &fake,
            "anthropic",
            &[
                ("MEMTRAY_ANTHROPIC_STREAM", stream),
                ("MEMTRAY_MAX_ATTEMPTS", "5"),
                ("MEMTRAY_PROVIDER_TIMEOUT_SECS", "2"),
            ],
        );
        queue(&server, "f1", "go", &["Bash"]);
        server.set_paused(false);
        server.wait_idle(LIMIT);
        assert_eq!(fake.count(), 5, "stream={stream}: 500, a dropped body, a timeout, 529, then the answer");
        assert_eq!(
            rows(&server, "SELECT provider, fallback FROM observations"),
            vec![vec![json!("anthropic"), Value::Null]]
        );
        assert_eq!(server.count("SELECT attempts FROM messages"), 5);
    }
}

#[test]
fn a_refused_request_gets_fallback_memory_at_once() {
    let fake = FakeLlm::start(Some(KEY));
    let invalid = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}});
    fake.script([Step::Status(400, invalid, None)]);
    let server = server(&fake, "anthropic", &[("MEMTRAY_MAX_ATTEMPTS", "5")]);
    queue(&server, "b1", "go", &["Bash"]);
    server.set_paused(false);
    server.wait_idle(LIMIT);
    assert_eq!(fake.count(), 1, "a 400 is not retried");
    let made = rows(&server, "SELECT provider, fallback FROM observations");
    assert_eq!(made[0][0], "local");
    assert!(made[0][1].as_str().unwrap().contains("400 invalid_request_error: prompt is too long"), "{made:?}");
    assert_eq!(server.count("SELECT attempts FROM messages"), 1);
}

#[test]
fn the_circuit_opens_on_a_provider_that_fails_every_call() {
    let fake = FakeLlm::start(Some(KEY));
    let failing = json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}});
    fake.script(std::iter::repeat_n(Step::Status(500, failing, None), 50));
    let server = server(
        &fake,
        "anthropic",
        &[("MEMTRAY_CIRCUIT_FAILURES", "3"), ("MEMTRAY_CIRCUIT_COOLDOWN_SECS", "60"), ("MEMTRAY_MAX_ATTEMPTS", "20")],
    );
    queue(&server, "c1", "go", &["Bash", "Read", "Edit"]);
    server.set_paused(false);
    wait_for(LIMIT, "the circuit to open", || provider_status(&server)["health"] == "circuitOpen");
    let status = provider_status(&server);
    assert!(status["reason"].as_str().unwrap().contains("500"), "{status}");
    assert!(status["until"].as_i64().unwrap() > status["since"].as_i64().unwrap() + 50_000, "{status}");
    assert_eq!(fake.count(), 3, "three failures in a row, then no more calls");
    // Resting: a while later it still has not been called again, and nothing was given up.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fake.count(), 3);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'pending'"), 3);
    assert_eq!(server.count("SELECT count(*) FROM observations"), 0);
}

#[test]
fn past_the_daily_token_ceiling_local_makes_memory_and_it_is_said_once() {
    let fake = FakeLlm::start(Some(KEY));
    let server = server(&fake, "anthropic", &[("MEMTRAY_MAX_TOKENS_PER_DAY", "100")]);
    let response =
        support::http().get(&server.url("/stream")).header("x-memtray-token", server.secret()).call().unwrap();
    let (tx, events) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(response.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("event: ")
                && tx.send(name.to_string()).is_err()
            {
                break;
            }
        }
    });
    queue(&server, "d1", "go", &["Bash", "Read"]);
    server.set_paused(false);
    server.wait_idle(LIMIT);
    assert_eq!(fake.count(), 1);
    let status = provider_status(&server);
    assert_eq!(status["health"], "overBudget", "{status}");
    assert!(status["tokensToday"].as_u64().unwrap() >= 100, "{status}");
    assert_eq!(status["maxTokensPerDay"], 100);

    queue(&server, "d2", "go on", &["Edit", "Bash"]);
    server.wait_idle(LIMIT);
    assert_eq!(fake.count(), 1, "no call past the ceiling");
    let made = rows(
        &server,
        "SELECT o.provider, o.fallback FROM observations o JOIN sessions s ON s.id = o.session_id WHERE s.agent_session_id = 'd2'",
    );
    assert_eq!(made.len(), 2);
    for m in &made {
        assert_eq!(m[0], "local");
        assert!(m[1].as_str().unwrap().contains("daily token ceiling (100)"), "{m:?}");
    }
    let mut ceilings = 0;
    let mut seen = Vec::new();
    while let Ok(name) = events.recv_timeout(Duration::from_millis(500)) {
        ceilings += usize::from(name == "token_ceiling_reached");
        seen.push(name);
    }
    assert_eq!(ceilings, 1, "said once: {seen:?}");
}

#[test]
fn memtray_config_says_where_data_would_go_and_never_prints_a_key() {
    let fake = FakeLlm::start(Some(KEY));
    let server = server(&fake, "anthropic", &[]);
    let out = server.command("config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "# provider anthropic: tool uses and prompts (after <private> removal and redaction) go to {}/v1/messages (model claude-haiku-4-5)",
        fake.anthropic_url()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(!text.contains(KEY), "the key is not printed: {text}");
    assert!(text.contains("api_key = \"(set; not shown)\""), "{text}");

    let out = server.command("config").env("MEMTRAY_PROVIDER", "local").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# provider local: nothing leaves this machine"), "{text}");
}
