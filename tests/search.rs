//! Full-text search against the real binary: `/api/search` ranks, filters and highlights what the server
//! made from real events, never finds private text, answers malformed queries with 400, and its index stays
//! in step with memory across retries, aborts, session deletion, retention pruning and SIGKILLs mid-way.
//! `memtray search` answers from the server, or from the database when none runs.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};

/// GET `/api/search` with these query parameters.
fn search(server: &TestServer, params: &[(&str, &str)]) -> (u16, Value) {
    let mut request = support::http().get(&server.url("/api/search")).header("x-memtray-token", server.secret());
    for (k, v) in params {
        request = request.query(*k, *v);
    }
    let mut response = request.call().expect("GET /api/search");
    (response.status().as_u16(), response.body_mut().read_json().unwrap_or(Value::Null))
}

fn hits(server: &TestServer, params: &[(&str, &str)]) -> Vec<Value> {
    let (status, answer) = search(server, params);
    assert_eq!(status, 200, "{params:?}: {answer}");
    answer["hits"].as_array().cloned().unwrap()
}

/// Every FTS5 index agrees with the rows it indexes (FTS5's own check against its external content), and
/// holds exactly one entry per indexed row.
fn assert_index_in_step(server: &TestServer) {
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    for table in ["observations_fts", "summaries_fts", "prompts_fts"] {
        conn.execute(&format!("INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)"), [])
            .unwrap_or_else(|e| panic!("{table} is out of step: {e}"));
    }
    for (index, rows) in [
        ("observations_fts", "SELECT count(*) FROM observations"),
        ("summaries_fts", "SELECT count(*) FROM summaries"),
        ("prompts_fts", "SELECT count(*) FROM user_prompts WHERE text != ''"),
    ] {
        let entries = server.count(&format!("SELECT count(*) FROM {index}_docsize"));
        assert_eq!(entries, server.count(rows), "{index} entries");
    }
}

fn tool(session: &str, id: &str, tool: &str, input: Value) -> Value {
    let mut body = observation(session, id, tool);
    body["tool_input"] = input;
    body
}

fn init(server: &TestServer, session: &str, project: &str, prompt: &str) {
    let body = json!({"claudeSessionId": session, "project": project, "prompt": prompt});
    assert_eq!(server.post("/api/sessions/init", &body).0, 200);
}

fn summarize(server: &TestServer, session: &str) {
    let body = json!({"claudeSessionId": session, "last_assistant_message": "done"});
    assert_eq!(server.post("/api/sessions/summarize", &body).0, 200);
}

#[test]
fn search_ranks_filters_and_highlights_real_memory() {
    let server = TestServer::start(&[]);
    init(&server, "a", "ledger", "make the walrus parser faster");
    let edit = json!({"file_path": "/home/dev/projects/ledger/src/walrus.rs", "old_string": "a", "new_string": "b"});
    server.post("/api/sessions/observations", &tool("a", "a1", "Edit", edit));
    server.post("/api/sessions/observations", &tool("a", "a2", "Bash", json!({"command": "cargo test walrus"})));
    summarize(&server, "a");
    init(&server, "b", "atlas", "map the <b>walrus</b> colony");
    server.post("/api/sessions/observations", &tool("b", "b1", "Bash", json!({"command": "grep -r walrus docs"})));
    server.wait_idle(Duration::from_secs(20));

    let all = hits(&server, &[("q", "walrus")]);
    let kinds: Vec<&str> = all.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    for kind in ["observation", "summary", "prompt"] {
        assert!(kinds.contains(&kind), "{kind} missing: {all:#?}");
    }
    assert_eq!(all.len(), 6, "3 observations, 1 summary, 2 prompts: {all:#?}");
    let scores: Vec<f64> = all.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "best first: {scores:?}");
    for hit in &all {
        for key in ["id", "session_id", "created_at"] {
            assert!(hit[key].as_i64().is_some(), "{key}: {hit}");
        }
        assert!(hit["agent_session_id"] == "a" || hit["agent_session_id"] == "b", "{hit}");
        assert!(hit["snippet"].as_str().unwrap().contains("<mark>"), "highlighted: {hit}");
    }
    let prompt = all.iter().find(|h| h["kind"] == "prompt" && h["project"] == "atlas").unwrap();
    assert_eq!(prompt["title"], "map the <b>walrus</b> colony", "titles are plain text");
    assert_eq!(prompt["snippet"], "map the &lt;b&gt;<mark>walrus</mark>&lt;/b&gt; colony", "snippets are HTML-safe");

    let atlas = hits(&server, &[("q", "walrus"), ("project", "atlas")]);
    assert_eq!(atlas.len(), 2);
    assert!(atlas.iter().all(|h| h["project"] == "atlas"));
    let changes = hits(&server, &[("q", "walrus"), ("type", "change")]);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!((changes[0]["kind"].as_str(), changes[0]["type"].as_str()), (Some("observation"), Some("change")));
    let words = hits(&server, &[("q", "walrus"), ("kind", "summary,prompt")]);
    assert_eq!(words.len(), 3);
    assert!(words.iter().all(|h| h["kind"] != "observation"));
    assert_eq!(hits(&server, &[("q", "walrus"), ("since", "2000-01-01")]).len(), 6);
    let newest = all.iter().map(|h| h["created_at"].as_i64().unwrap()).max().unwrap();
    let late = hits(&server, &[("q", "walrus"), ("since", &newest.to_string())]);
    assert!(!late.is_empty() && late.iter().all(|h| h["created_at"].as_i64().unwrap() >= newest));
    assert!(hits(&server, &[("q", "walrus"), ("since", "2999-01-01")]).is_empty());
    let page = hits(&server, &[("q", "walrus"), ("limit", "2"), ("offset", "1")]);
    assert_eq!(page, all[1..3]);
    assert!(hits(&server, &[("q", "walrus colony parser")]).is_empty(), "every word must appear");
    assert_eq!(hits(&server, &[("q", "walrus colony")]).len(), 1);
    assert_eq!(hits(&server, &[("q", "walrus OR nothing"), ("syntax", "fts5")]).len(), 6);
    let (_, answer) = search(&server, &[("q", "walrus"), ("limit", "1000")]);
    assert_eq!(answer["limit"], 100, "the limit is capped");
    assert_index_in_step(&server);
}

#[test]
fn malformed_queries_answer_400_in_the_api_error_format() {
    let server = TestServer::start(&[]);
    init(&server, "a", "ledger", "something to find");
    server.wait_idle(Duration::from_secs(20));
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "invalid_search"),
        (&[("q", "   ")], "invalid_search"),
        (&[("q", "*** ((( ---")], "invalid_search"),
        (&[("q", "AND"), ("syntax", "fts5")], "invalid_search"),
        (&[("q", "find OR OR x"), ("syntax", "fts5")], "invalid_search"),
        (&[("q", "nosuchcolumn:x"), ("syntax", "fts5")], "invalid_search"),
        (&[("q", "NEAR(a b"), ("syntax", "fts5")], "invalid_search"),
        (&[("q", "x"), ("syntax", "regex")], "invalid_query"),
        (&[("q", "x"), ("kind", "note")], "invalid_query"),
        (&[("q", "x"), ("since", "yesterday")], "invalid_query"),
        (&[("q", "x"), ("limit", "-1")], "invalid_query"),
    ];
    for (params, code) in cases {
        let (status, answer) = search(&server, params);
        assert_eq!(status, 400, "{params:?}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{params:?}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{params:?}: {answer}");
    }
    // Whatever the words, plain-word queries are never a syntax error.
    for q in ["AND", "\"unclosed", "title:find", "NEAR(", "find)", "a OR OR b", "^x", "'; DROP TABLE sessions; --"] {
        assert_eq!(search(&server, &[("q", q)]).0, 200, "{q}");
    }
    assert_eq!(hits(&server, &[("q", "title:find")]).len(), 0);
    assert_eq!(hits(&server, &[("q", "find)")]).len(), 1);
}

#[test]
fn private_text_is_never_found() {
    let server = TestServer::start(&[]);
    init(&server, "p", "ledger", "rotate the key <private>hunter2 walrus-secret</private> today");
    let body =
        tool("p", "t1", "Bash", json!({"command": "deploy --token <private>sk-walrus-987</private> --env prod"}));
    server.post("/api/sessions/observations", &body);
    init(&server, "p", "ledger", "<private>entirely private walrus prompt</private>");
    summarize(&server, "p");
    server.wait_idle(Duration::from_secs(20));
    for secret in ["hunter2", "walrus-secret", "sk-walrus-987", "987", "entirely private", "walrus"] {
        assert!(hits(&server, &[("q", secret)]).is_empty(), "{secret} was found");
    }
    assert_eq!(hits(&server, &[("q", "rotate key")]).len(), 2, "the public prompt and its summary are found");
    assert!(!hits(&server, &[("q", "deploy prod")]).is_empty(), "the public part of the tool use is found");
    assert_index_in_step(&server);
}

#[test]
fn the_index_stays_in_step_across_retries_aborts_deletion_and_pruning() {
    let mut server = TestServer::start(&[("MEMTRAY_FAULT_FAIL_TOOLS", "Flaky"), ("MEMTRAY_MAX_ATTEMPTS", "1")]);
    init(&server, "keep", "ledger", "keep the narwhal notes");
    server
        .post("/api/sessions/observations", &tool("keep", "k1", "Bash", json!({"command": "cargo run --bin narwhal"})));
    server
        .post("/api/sessions/observations", &tool("keep", "k2", "Flaky", json!({"command": "cargo run --bin beluga"})));
    init(&server, "gone", "ledger", "the orca session");
    server.post("/api/sessions/observations", &tool("gone", "g1", "Bash", json!({"command": "cargo run --bin orca"})));
    summarize(&server, "gone");
    server.wait_idle(Duration::from_secs(20));
    assert!(hits(&server, &[("q", "beluga")]).is_empty(), "a failed message makes no memory");

    // A message aborted before it is processed leaves nothing in the index.
    assert_eq!(server.post("/api/processing", &json!({"paused": true})).0, 200);
    server
        .post("/api/sessions/observations", &tool("keep", "k3", "Bash", json!({"command": "cargo run --bin dugong"})));
    let (_, queue) = server.get("/api/queue");
    let pending = queue["messages"].as_array().unwrap().iter().find(|m| m["status"] == "pending").unwrap().clone();
    assert_eq!(server.post(&format!("/api/queue/{}/abort", pending["id"]), &json!({})).0, 200);
    assert_eq!(server.post("/api/processing", &json!({"paused": false})).0, 200);
    server.wait_idle(Duration::from_secs(20));
    assert!(hits(&server, &[("q", "dugong")]).is_empty());
    assert_index_in_step(&server);

    // A retried message, once it succeeds, is indexed once.
    server.stop();
    server.set_env("MEMTRAY_FAULT_FAIL_TOOLS", "");
    server.spawn();
    let (_, queue) = server.get("/api/queue");
    let failed = queue["messages"].as_array().unwrap().iter().find(|m| m["status"] == "failed").unwrap().clone();
    assert_eq!(server.post(&format!("/api/queue/{}/retry", failed["id"]), &json!({})).0, 200);
    server.wait_idle(Duration::from_secs(20));
    assert_eq!(hits(&server, &[("q", "beluga")]).len(), 1);
    assert_eq!(server.post(&format!("/api/queue/{}/retry", failed["id"]), &json!({})).0, 404, "nothing to retry");
    assert_index_in_step(&server);

    // Deleting a session takes its observations, summary and prompts out of the index.
    assert_eq!(hits(&server, &[("q", "orca")]).len(), 3);
    let gone = hits(&server, &[("q", "orca")])[0]["session_id"].as_i64().unwrap();
    let delete = support::http()
        .delete(&server.url(&format!("/api/sessions/{gone}")))
        .header("x-memtray-token", server.secret())
        .call()
        .unwrap();
    assert_eq!(delete.status().as_u16(), 200);
    assert!(hits(&server, &[("q", "orca")]).is_empty());
    assert_eq!(hits(&server, &[("q", "narwhal")]).len(), 2);
    assert_index_in_step(&server);

    // Retention prunes processed messages at start; the memory made from them stays findable.
    server.stop();
    server.set_env("MEMTRAY_RETENTION_DAYS", "0");
    server.spawn();
    wait_for(Duration::from_secs(10), "processed messages to be pruned", || {
        server.count("SELECT count(*) FROM messages WHERE status = 'processed'") == 0
    });
    assert_eq!(server.count("SELECT count(*) FROM observations WHERE message_id IS NULL"), 2);
    assert_eq!(hits(&server, &[("q", "narwhal")]).len(), 2);
    assert_eq!(hits(&server, &[("q", "beluga")]).len(), 1);
    assert_index_in_step(&server);
}

#[test]
fn sigkill_mid_processing_leaves_the_index_in_step() {
    let mut server = TestServer::start(&[("MEMTRAY_FAULT_PROVIDER_DELAY_MS", "50"), ("MEMTRAY_LINGER_MS", "200")]);
    const SESSIONS: usize = 4;
    const EACH: usize = 40;
    for s in 0..SESSIONS {
        init(&server, &format!("k{s}"), "ledger", &format!("kill test {s}"));
        for i in 0..EACH {
            let body = tool(
                &format!("k{s}"),
                &format!("k{s}-{i}"),
                "Bash",
                json!({"command": format!("cargo run --bin manatee{i} manatee")}),
            );
            assert_eq!(server.post("/api/sessions/observations", &body).0, 200);
        }
        summarize(&server, &format!("k{s}"));
    }
    let total = (SESSIONS * (EACH + 1)) as i64;
    let mut mid_way = 0;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let processed = server.count("SELECT count(*) FROM messages WHERE status = 'processed'");
        server.kill9();
        if processed < total {
            mid_way += 1;
        }
        assert_index_in_step(&server);
        server.spawn();
    }
    assert!(mid_way >= 2, "only {mid_way} kills landed mid-way");
    wait_for(Duration::from_secs(60), "every message to be processed", || {
        server.count("SELECT count(*) FROM messages WHERE status != 'processed'") == 0
    });
    assert_eq!(server.count("SELECT count(*) FROM observations"), (SESSIONS * EACH) as i64);
    assert_index_in_step(&server);
    let (_, answer) = search(&server, &[("q", "manatee"), ("kind", "observation"), ("limit", "100")]);
    assert_eq!(answer["hits"].as_array().unwrap().len(), 100);
}

#[test]
fn the_search_command_asks_the_server_or_reads_the_database() {
    let mut server = TestServer::start(&[]);
    init(&server, "c", "ledger", "tune the <private>secret</private> capybara cache");
    server.post("/api/sessions/observations", &tool("c", "c1", "Bash", json!({"command": "cargo run --bin capybara"})));
    server.wait_idle(Duration::from_secs(20));

    let run = |server: &TestServer, args: &[&str]| {
        let out = server.command("search").args(args).output().expect("memtray search");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, served, _) = run(&server, &["capybara", "--json"]);
    assert!(ok);
    let served: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(served["hits"].as_array().unwrap().len(), 2, "{served}");
    let (ok, text, _) = run(&server, &["capybara", "--kind", "prompt"]);
    assert!(ok);
    assert!(
        text.starts_with("prompt") && text.contains("tune the capybara cache") && text.contains("*capybara*"),
        "{text}"
    );
    assert!(!text.contains("secret"));
    let (ok, _, err) = run(&server, &["((( ---"]);
    assert!(!ok);
    assert!(err.contains("no words"), "{err}");

    // No server: the same hits, read from the database.
    server.stop();
    let (ok, direct, err) = run(&server, &["capybara", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&direct).unwrap(), served);
    let (ok, text, err) = run(&server, &["capybara", "--project", "ledger"]);
    assert!(ok && text.contains("capybara"), "{text}");
    assert!(err.contains("reading the database directly"), "{err}");
    let (ok, text, _) = run(&server, &["capybara", "--project", "atlas"]);
    assert!(ok && text.contains("no memory matches"), "{text}");
}
