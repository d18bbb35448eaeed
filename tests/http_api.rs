//! The intake API against the real binary: bad input changes nothing, privacy and skip rules, idempotency,
//! a full database, the event stream, port conflicts, `memtray status` and graceful shutdown.

mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};

const STORED: &str = "SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM messages)
                            + (SELECT count(*) FROM user_prompts)";

#[test]
fn bad_input_gets_a_json_error_and_changes_nothing() {
    let server = TestServer::start(&[("MEMTRAY_MAX_BODY_BYTES", "2048")]);
    let valid = serde_json::to_vec(&observation("s1", "t1", "Bash")).unwrap();
    let big = serde_json::to_vec(&json!({
        "claudeSessionId": "s1", "tool_name": "Bash", "tool_response": {"stdout": "x".repeat(4096)}
    }))
    .unwrap();
    // (what, content type, body, status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no content type", None, valid.clone(), 415, "unsupported_media_type"),
        ("text/plain", Some("text/plain"), valid.clone(), 415, "unsupported_media_type"),
        ("broken JSON", Some("application/json"), b"{\"claudeSessionId\": ".to_vec(), 400, "invalid_json"),
        ("missing session id", Some("application/json"), br#"{"tool_name":"Bash"}"#.to_vec(), 422, "invalid_fields"),
        ("missing tool name", Some("application/json"), br#"{"claudeSessionId":"s1"}"#.to_vec(), 422, "invalid_fields"),
        (
            "mistyped tool name",
            Some("application/json"),
            br#"{"claudeSessionId":"s1","tool_name":5}"#.to_vec(),
            422,
            "invalid_fields",
        ),
        (
            "empty session id",
            Some("application/json"),
            br#"{"claudeSessionId":" ","tool_name":"Bash"}"#.to_vec(),
            422,
            "invalid_fields",
        ),
        ("over the body limit", Some("application/json"), big, 413, "body_too_large"),
    ];
    for (name, content_type, body, status, code) in cases {
        let (got, answer, _) = server.post_raw("/api/sessions/observations", content_type, &body);
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{name}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {answer}");
    }
    let (got, answer, _) = server.post_raw("/api/sessions/init", Some("application/json"), b"[1,2]");
    assert_eq!((got, answer["error"]["code"].as_str()), (422, Some("invalid_fields")));
    assert_eq!(server.count(STORED), 0, "a rejected request must store nothing");
    // The same request, well-formed, is accepted: the rejections above were about the input.
    let (got, _, _) = server.post_raw("/api/sessions/observations", Some("application/json"), &valid);
    assert_eq!(got, 200);
    assert_eq!(server.count("SELECT count(*) FROM messages"), 1);
}

#[test]
fn private_content_never_reaches_the_database() {
    let server = TestServer::start(&[]);
    let (_, init) = server.post(
        "/api/sessions/init",
        &json!({"claudeSessionId": "p1", "project": "ledger", "prompt": "fix it <private>api key sk-123</private> now"}),
    );
    assert_eq!((init["promptNumber"].as_i64(), init["skipped"].as_bool()), (Some(1), Some(false)), "{init}");
    let mut obs = observation("p1", "t1", "Bash");
    obs["tool_input"] =
        json!({"command": "curl -H 'auth: <private>sk-123</private>' x", "note": "<private>unclosed sk-123"});
    obs["tool_response"] = json!({"stdout": "ok <private>sk-123</private>"});
    assert_eq!(server.post("/api/sessions/observations", &obs).1["status"], "queued");
    // An entirely private prompt: counted, nothing stored, and its tool uses skipped.
    let (_, init) = server.post(
        "/api/sessions/init",
        &json!({"claudeSessionId": "p1", "project": "ledger", "prompt": "<private>my whole secret prompt</private>"}),
    );
    assert_eq!((init["promptNumber"].as_i64(), init["skipped"].as_bool()), (Some(2), Some(true)), "{init}");
    let (_, skipped) = server.post("/api/sessions/observations", &observation("p1", "t2", "Bash"));
    assert_eq!((skipped["status"].as_str(), skipped["reason"].as_str()), (Some("skipped"), Some("private")));
    server.wait_idle(Duration::from_secs(10));

    let dump = std::process::Command::new("sqlite3").arg(server.database()).arg(".dump").output();
    let text = match dump {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        // No sqlite3 CLI: read every text column we store instead.
        _ => all_text(&server),
    };
    assert!(!text.contains("sk-123"), "a private value reached the database");
    assert!(!text.contains("whole secret"), "a private prompt reached the database");
    assert!(text.contains("fix it"), "the public part of the prompt is kept");
    assert_eq!(server.count("SELECT count(*) FROM user_prompts"), 1);
    assert_eq!(server.count("SELECT count(*) FROM observations"), 1);
}

fn all_text(server: &TestServer) -> String {
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let mut out = String::new();
    for sql in [
        "SELECT coalesce(payload, '') FROM messages",
        "SELECT text FROM user_prompts",
        "SELECT coalesce(current_prompt, '') FROM sessions",
        "SELECT title || subtitle || facts || files_read FROM observations",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        for row in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            out.push_str(&row.unwrap());
        }
    }
    out
}

#[test]
fn skip_listed_tools_are_answered_and_not_stored() {
    let server = TestServer::start(&[("MEMTRAY_SKIP_TOOLS", "TodoWrite,Secret")]);
    for tool in ["TodoWrite", "Secret"] {
        let (status, answer) = server.post("/api/sessions/observations", &observation("s", tool, tool));
        assert_eq!(
            (status, answer["status"].as_str(), answer["reason"].as_str()),
            (200, Some("skipped"), Some("skip_tool"))
        );
    }
    assert_eq!(server.count(STORED), 0);
    assert_eq!(server.post("/api/sessions/observations", &observation("s", "x", "Read")).1["status"], "queued");
}

#[test]
fn the_same_event_delivered_three_times_concurrently_is_stored_once() {
    let server = TestServer::start(&[]);
    let url = server.url("/api/sessions/observations");
    let answers: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent = support::http();
                    let mut answers = Vec::new();
                    // Workers 0-2 all deliver the even events, 3-5 the odd ones, in the same order: each of the
                    // 200 events arrives three times, nearly at once.
                    for i in (0..200).filter(|i| i % 2 == w / 3) {
                        let body = observation(&format!("s{}", i % 7), &format!("toolu_{i}"), "Bash");
                        let mut r = agent.post(&url).send_json(&body).unwrap();
                        let v: Value = r.body_mut().read_json().unwrap();
                        answers.push(v["status"].as_str().unwrap().to_string());
                    }
                    answers
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let queued = answers.iter().filter(|a| *a == "queued").count();
    let duplicate = answers.iter().filter(|a| *a == "duplicate").count();
    assert_eq!(server.count("SELECT count(*) FROM messages"), 200);
    assert_eq!(queued, 200, "each event is queued exactly once");
    assert_eq!(queued + duplicate, answers.len(), "every other delivery answers duplicate: {answers:?}");
    assert!(answers.len() >= 600, "{} deliveries", answers.len());

    // An explicit Idempotency-Key works for events without a tool_use_id.
    let agent = support::http();
    let mut body = observation("k", "", "Read");
    body.as_object_mut().unwrap().remove("tool_use_id");
    let statuses: Vec<String> = (0..3)
        .map(|_| {
            let mut r = agent
                .post(&server.url("/api/sessions/observations"))
                .header("Idempotency-Key", "evt-42")
                .send_json(&body)
                .unwrap();
            r.body_mut().read_json::<Value>().unwrap()["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(statuses, ["queued", "duplicate", "duplicate"]);
    server.wait_idle(Duration::from_secs(20));
    assert_eq!(server.count("SELECT count(*) FROM observations"), 201);
}

#[test]
fn a_full_database_answers_503_and_acknowledges_nothing() {
    let server =
        TestServer::start(&[("MEMTRAY_MAX_DB_BYTES", "262144"), ("MEMTRAY_FAULT_PROVIDER_DELAY_MS", "100000")]);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        let mut body = observation("full", &format!("t{i}"), "Bash");
        body["tool_response"] = json!({"stdout": format!("{i:04}").repeat(1000)});
        let (status, answer, retry_after) = server.post_raw(
            "/api/sessions/observations",
            Some("application/json"),
            &serde_json::to_vec(&body).unwrap(),
        );
        match status {
            200 => acknowledged.push(format!("t{i}")),
            503 => {
                refused = Some((i, answer, retry_after));
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let (i, answer, retry_after) = refused.expect("a 256 KiB database must fill up");
    assert_eq!(answer["error"]["code"], "storage_unavailable", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("full"), "{answer}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(!acknowledged.is_empty());
    let stored = server.count("SELECT count(*) FROM messages");
    assert_eq!(stored as usize, acknowledged.len(), "exactly the acknowledged messages are stored");
    assert_eq!(server.count(&format!("SELECT count(*) FROM messages WHERE idempotency_key = 't{i}'")), 0);
}

#[test]
fn the_event_stream_reports_queueing_and_memory() {
    let server = TestServer::start(&[]);
    let agent = support::http();
    let response = agent.get(&server.url("/stream")).header("x-memtray-token", server.secret()).call().unwrap();
    assert_eq!(response.headers().get("content-type").unwrap(), "text/event-stream");
    // (event name, data) pairs as they arrive.
    let (tx, rx) = std::sync::mpsc::channel::<(String, Value)>();
    std::thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        let mut name = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ")
                && tx.send((name.clone(), serde_json::from_str(data).unwrap_or(Value::Null))).is_err()
            {
                break;
            }
        }
    });
    let (first, status) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first, "processing_status", "a new subscriber first gets the current status");
    assert_eq!(status["queueDepth"], 0);
    server.post("/api/sessions/init", &json!({"claudeSessionId": "live", "project": "ledger", "prompt": "go"}));
    server.post("/api/sessions/observations", &observation("live", "t1", "Bash"));
    server.post("/api/sessions/summarize", &json!({"claudeSessionId": "live", "last_assistant_message": "done"}));
    let mut seen: Vec<(String, Value)> = Vec::new();
    let has = |seen: &[(String, Value)], name: &str| seen.iter().any(|(n, _)| n == name);
    wait_for(Duration::from_secs(10), "events on the stream", || {
        seen.extend(rx.try_iter());
        ["session_started", "observation_queued", "new_observation", "new_summary"].iter().all(|e| has(&seen, e))
            // The status follows too (debounced): the new session counts as active.
            && seen.iter().any(|(n, d)| n == "processing_status" && d["activeSessions"] == 1)
    });
    let observation = &seen.iter().find(|(n, _)| n == "new_observation").unwrap().1;
    assert_eq!(observation["observation"]["tool_name"], "Bash", "{observation}");
    let summary = &seen.iter().find(|(n, _)| n == "new_summary").unwrap().1;
    assert_eq!(summary["summary"]["project"], "ledger", "{summary}");
}

#[test]
fn a_taken_port_is_reported_clearly() {
    let server = TestServer::start(&[]);
    let out = server.command("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memtray") && err.contains("already running"), "{err}");

    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let out = server.command("serve").env("MEMTRAY_PORT", port.to_string()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another program"), "{err}");
}

#[test]
fn status_summarizes_a_running_server_and_fails_clearly_without_one() {
    let mut server = TestServer::start(&[("MEMTRAY_FAULT_FAIL_TOOLS", "Poison"), ("MEMTRAY_MAX_ATTEMPTS", "1")]);
    server.post("/api/sessions/init", &json!({"claudeSessionId": "st", "project": "ledger", "prompt": "go"}));
    server.post("/api/sessions/observations", &observation("st", "t1", "Poison"));
    wait_for(Duration::from_secs(10), "the poison message to fail", || server.get("/api/stats").1["failed"] == 1);
    let out = server.command("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    assert!(text.contains("ledger"), "{text}");
    assert!(text.contains("injected fault"), "the failed message's error is shown: {text}");

    assert!(server.stop().success());
    let out = server.command("status").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no memtray server is running"));
}

#[test]
fn sigterm_leaves_nothing_processing() {
    let mut server = TestServer::start(&[("MEMTRAY_FAULT_PROVIDER_DELAY_MS", "60000")]);
    for i in 0..5 {
        server.post("/api/sessions/observations", &observation(&format!("s{i}"), &format!("t{i}"), "Bash"));
    }
    wait_for(Duration::from_secs(5), "messages to be claimed", || server.get("/api/stats").1["processing"] == 5);
    let started = std::time::Instant::now();
    assert!(server.stop().success());
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waits for no provider call");
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'processing'"), 0);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"), 5);
}

#[test]
fn config_prints_the_effective_values_and_paths() {
    let server = TestServer::start(&[("MEMTRAY_LINGER_MS", "1234")]);
    let out = server.command("config").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("linger_ms = 1234"), "{text}");
    assert!(text.contains(&server.dir.path().join("memtray.db").display().to_string()), "{text}");
}

#[test]
fn health_readiness_version_and_processing_status() {
    let server = TestServer::start(&[]);
    let (status, health) = server.get("/api/health");
    assert_eq!((status, health["service"].as_str()), (200, Some("memtray")));
    assert_eq!(server.get("/api/readiness").0, 200);
    assert_eq!(server.get("/api/version").1["version"], env!("CARGO_PKG_VERSION"));
    let (_, ps) = server.get("/api/processing-status");
    assert_eq!(ps, json!({"isProcessing": false, "queueDepth": 0}));
}

#[test]
fn the_inspector_api_lists_sessions_queues_and_memory() {
    let server = TestServer::start(&[("MEMTRAY_FAULT_FAIL_TOOLS", "Poison"), ("MEMTRAY_MAX_ATTEMPTS", "1")]);
    for s in ["alpha", "beta"] {
        server
            .post("/api/sessions/init", &json!({"claudeSessionId": s, "project": s, "prompt": format!("work on {s}")}));
        for i in 0..3 {
            server.post("/api/sessions/observations", &observation(s, &format!("{s}-{i}"), "Read"));
        }
    }
    server.post("/api/sessions/observations", &observation("beta", "beta-poison", "Poison"));
    server.post("/api/sessions/summarize", &json!({"claudeSessionId": "alpha", "last_assistant_message": "done"}));
    wait_for(Duration::from_secs(10), "work to settle", || {
        let (_, stats) = server.get("/api/stats");
        stats["queueDepth"] == 0 && stats["failed"] == 1
    });

    let (_, list) = server.get("/api/sessions");
    assert_eq!(list["total"], 2);
    let beta = list["sessions"].as_array().unwrap().iter().find(|s| s["project"] == "beta").unwrap();
    assert_eq!((beta["queue"]["processed"].as_i64(), beta["queue"]["failed"].as_i64()), (Some(3), Some(1)), "{beta}");
    let (_, only_alpha) = server.get("/api/sessions?project=alpha&limit=1");
    assert_eq!((only_alpha["total"].as_i64(), only_alpha["sessions"].as_array().unwrap().len()), (Some(1), 1));
    assert_eq!(server.get("/api/sessions?status=bogus").0, 422);

    let alpha_id =
        list["sessions"].as_array().unwrap().iter().find(|s| s["project"] == "alpha").unwrap()["id"].as_i64().unwrap();
    let (_, detail) = server.get(&format!("/api/sessions/{alpha_id}"));
    assert_eq!(detail["prompts"][0]["text"], "work on alpha");
    assert_eq!(detail["observations"].as_array().unwrap().len(), 3);
    assert_eq!(detail["summaries"].as_array().unwrap().len(), 1);
    assert_eq!(detail["messages"].as_array().unwrap().len(), 4);
    assert_eq!(server.get("/api/sessions/999999").0, 404);

    let (_, queue) = server.get("/api/queue");
    assert_eq!(queue["counts"]["failed"], 1);
    let failed = &queue["messages"][0];
    assert_eq!((failed["status"].as_str(), failed["tool_name"].as_str()), (Some("failed"), Some("Poison")));
    assert!(failed["last_error"].as_str().unwrap().contains("injected fault"));
    let id = failed["id"].as_i64().unwrap();
    // Retry sends it back (it fails again here, the fault is permanent); abort removes it.
    assert_eq!(server.post(&format!("/api/queue/{id}/retry"), &json!({})).0, 200);
    wait_for(Duration::from_secs(10), "the retried message to fail again", || {
        server.get("/api/stats").1["failed"] == 1
    });
    assert_eq!(server.post(&format!("/api/queue/{id}/abort"), &json!({})).0, 200);
    assert_eq!(server.post(&format!("/api/queue/{id}/abort"), &json!({})).0, 404);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status = 'failed'"), 0);

    let (_, page) = server.get("/api/observations?limit=2&offset=1");
    assert_eq!((page["total"].as_i64(), page["items"].as_array().unwrap().len()), (Some(6), 2));
    let (_, summaries) = server.get("/api/summaries?project=alpha");
    assert_eq!(summaries["items"][0]["request"], "work on alpha");
    assert_eq!(server.get("/api/summaries?project=beta").1["total"], 0);
}

#[test]
fn sessions_sort_by_a_whitelisted_column_and_refuse_anything_else() {
    let server = TestServer::start(&[]);
    // (session, project, prompts), started in this order.
    for (s, project, prompts) in [("s1", "ledger", 3), ("s2", "Atlas", 1), ("s3", "zebra", 2)] {
        for _ in 0..prompts {
            server.post("/api/sessions/init", &json!({"claudeSessionId": s, "project": project, "prompt": "go"}));
        }
    }
    // s1 is active again last.
    server.post("/api/sessions/observations", &observation("s1", "t1", "Read"));
    let order = |query: &str| -> Vec<String> {
        let (status, page) = server.get(&format!("/api/sessions{query}"));
        assert_eq!(status, 200, "{query}: {page}");
        page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["agent_session_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(order(""), ["s1", "s3", "s2"], "most recently active first by default");
    assert_eq!(order("?sort=last_activity&order=asc"), ["s2", "s3", "s1"]);
    assert_eq!(order("?sort=started"), ["s3", "s2", "s1"]);
    assert_eq!(order("?sort=started&order=asc"), ["s1", "s2", "s3"]);
    assert_eq!(order("?sort=project&order=asc"), ["s2", "s1", "s3"], "case-insensitive");
    assert_eq!(order("?sort=prompts&order=desc"), ["s1", "s3", "s2"]);
    assert_eq!(order("?sort=prompts&order=asc&limit=1&offset=1"), ["s3"]);
    for bad in ["sort=bogus", "sort=project;DROP%20TABLE%20sessions", "order=sideways", "sort=", "limit=many"] {
        let (status, answer) = server.get(&format!("/api/sessions?{bad}"));
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_query")), "{bad}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{bad}: {answer}");
    }
    assert_eq!(server.count("SELECT count(*) FROM sessions"), 3);

    let (_, projects) = server.get("/api/projects");
    assert_eq!(
        projects,
        json!({"projects": [
            {"project": "Atlas", "sessions": 1}, {"project": "ledger", "sessions": 1}, {"project": "zebra", "sessions": 1}
        ]})
    );
}

#[test]
fn the_inspector_page_and_its_files_are_served_with_a_strict_policy() {
    let server = TestServer::start(&[]);
    let agent = support::http();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/sessions.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let mut response = agent.get(&server.url(path)).call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(header("content-type").as_deref(), Some(content_type), "{path}");
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"), "{path}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        let csp = header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        let body = response.body_mut().read_to_string().unwrap();
        assert!(!body.is_empty(), "{path}");
    }
    for path in ["/ui/nope.js", "/ui/..%2FCargo.toml", "/ui/"] {
        let (status, answer) = server.get(path);
        assert_eq!(status, 404, "{path}");
        if path != "/ui/" {
            assert_eq!(answer["error"]["code"], "not_found", "{path}: {answer}");
        }
    }
}
