//! The localhost surface against hostile input, with the real binary: held half-requests (slowloris) under a
//! soft open-files limit of 1024 and at the connection cap, a huge `cwd`, private text and secrets on every
//! path to the disk (the hook's inbox fallback included), a deleted session's text in the files, a damaged
//! database at start, the data folder deleted while running, and JSON errors for unknown routes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Options, TestServer, observation, wait_for};

// -------------------------------------------------------------------------------------------------------------
// Slowloris
// -------------------------------------------------------------------------------------------------------------

/// This test process's soft open-files limit, raised to its hard one (it holds thousands of connections).
fn raise_own_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }).expect("setrlimit");
    limit.maximum.unwrap_or(u64::MAX)
}

/// The soft and hard "Max open files" of a process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/<pid>/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

/// Opens `n` connections that each send part of a request head and then nothing.
fn hold_half_requests(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            stream
                .write_all(b"POST /api/sessions/observations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
                .unwrap();
            stream
        })
        .collect()
}

/// True once the server has closed `stream` (end of file or a reset, after any answer it sent).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_under_a_soft_limit_of_1024_neither_starves_hooks_nor_lasts() {
    const HELD: usize = 2_000;
    let hard = raise_own_open_files_limit();
    if hard < 4 * 1024 {
        eprintln!("skipped: the hard open-files limit is {hard}; the test needs room for {HELD} connections");
        return;
    }
    let server = TestServer::start_with(
        // Durability normal: this is about connections, not about a loaded disk's fsync.
        &[("MEMTRAY_HEADER_READ_TIMEOUT_MS", "10000"), ("MEMTRAY_DURABILITY", "normal")],
        Options { soft_open_files: Some(1024), ..Options::default() },
    );
    // Started under 1024, the server raised its soft limit to the hard one.
    let (soft, hard_seen) = open_files_limits(server.pid());
    assert_eq!(soft, hard_seen, "the server's soft open-files limit is raised to the hard one");
    assert_ne!(soft, "1024");

    let started = Instant::now();
    let mut held = hold_half_requests(server.port, HELD);
    eprintln!("held {HELD} half-requests in {:?}", started.elapsed());
    // Observation posts are served while every half-request is still held: before the header-read timeout
    // could have freed anything (without the guards they all timed out).
    for i in 0..20 {
        let body = observation("slow-s", &format!("t{i}"), "Bash");
        let mut answer =
            support::http().post(&server.url("/api/sessions/observations")).send_json(&body).expect("POST");
        assert_eq!(answer.status(), 200, "post {i}: {}", answer.body_mut().read_to_string().unwrap_or_default());
    }
    eprintln!("20 posts done {:?} after the first connection", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "the posts ran past the header-read timeout");
    let still_open = held.iter_mut().map(|s| !closed_by_server(s)).filter(|open| *open).count();
    assert_eq!(still_open, HELD, "the posts did not need the held connections to be dropped first");
    assert_eq!(server.count("SELECT count(*) FROM messages"), 20);

    // After the header-read timeout every half-open connection is dropped.
    wait_for(Duration::from_secs(30), "the held connections to be dropped", || held.iter_mut().all(closed_by_server));
    eprintln!("all dropped {:?} after the first connection", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(9_500), "dropped before the timeout: {:?}", started.elapsed());
    let (status, health) = server.get("/api/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[test]
fn at_the_connection_cap_a_newcomer_waits_and_is_served() {
    let server = TestServer::start(&[("MEMTRAY_MAX_CONNECTIONS", "16"), ("MEMTRAY_HEADER_READ_TIMEOUT_MS", "1500")]);
    let held = hold_half_requests(server.port, 16);
    let sent = Instant::now();
    // The newcomer is neither refused nor reset: it waits in the backlog until the cap frees a slot.
    let (status, answer) = server.post("/api/sessions/observations", &observation("cap-s", "t1", "Bash"));
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")), "{answer}");
    assert!(sent.elapsed() >= Duration::from_millis(1_000), "served before a slot was free: {:?}", sent.elapsed());
    drop(held);
}

// -------------------------------------------------------------------------------------------------------------
// A long cwd
// -------------------------------------------------------------------------------------------------------------

#[test]
fn a_long_cwd_is_named_from_its_last_folder_while_health_keeps_answering() {
    let server = TestServer::start(&[]);
    let port = server.port;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = {
        let done = done.clone();
        std::thread::spawn(move || {
            let agent = support::http();
            let (mut answered, mut slowest) = (0, Duration::ZERO);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                let status = agent.get(&format!("http://127.0.0.1:{port}/api/health")).call().map(|r| r.status());
                assert_eq!(status.ok().map(|s| s.as_u16()), Some(200));
                slowest = slowest.max(sent.elapsed());
                answered += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (answered, slowest)
        })
    };
    let cwds = [
        (format!("{}/ledger", "/a".repeat(130_000)), "ledger"),
        (format!("{}/billing", "/b".repeat(512 * 1024)), "billing"),
        (format!("/home/dev/{}", "n".repeat(300 * 1024)), ""),
    ];
    let hooks: Vec<_> = cwds
        .iter()
        .enumerate()
        .map(|(i, (cwd, _))| {
            let (url, cwd) = (server.url("/hooks/claude-code"), cwd.clone());
            std::thread::spawn(move || {
                let event = json!({
                    "session_id": format!("long-cwd-{i}"), "hook_event_name": "PostToolUse", "cwd": cwd,
                    "tool_name": "Bash", "tool_use_id": format!("toolu_long_{i}"),
                    "tool_input": {"command": "ls"}, "tool_response": {"stdout": "ok"},
                });
                support::http().post(&url).send_json(&event).map(|r| r.status().as_u16()).expect("POST")
            })
        })
        .collect();
    let mem = {
        let mut body = observation("long-cwd-mem", "toolu_long_mem", "Bash");
        body["cwd"] = format!("{}/inventory", "/c".repeat(200_000)).into();
        server.post("/api/sessions/observations", &body)
    };
    for hook in hooks {
        assert_eq!(hook.join().unwrap(), 200);
    }
    assert_eq!(mem.0, 200, "{}", mem.1);
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, slowest) = health.join().unwrap();
    assert!(answered > 0, "health was asked while the hooks ran");
    // A bound on stalls, not a speed target: the quadratic walk held health for 12.5 s.
    assert!(slowest < Duration::from_secs(2), "health stalled for {slowest:?}");

    // Stored, each with a sensible project: the last folder of the cwd (cut to a folder name's length).
    for (i, (_, project)) in cwds.iter().enumerate() {
        let sql = format!("SELECT project FROM sessions WHERE agent_session_id = 'long-cwd-{i}'");
        let conn = rusqlite::Connection::open(server.database()).unwrap();
        let stored: String = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
        if project.is_empty() {
            assert_eq!(stored, "n".repeat(255));
        } else {
            assert_eq!(stored, *project);
        }
    }
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let stored: String = conn
        .query_row("SELECT project FROM sessions WHERE agent_session_id = 'long-cwd-mem'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, "inventory");
    assert_eq!(server.count("SELECT count(*) FROM messages"), 4);
}

// -------------------------------------------------------------------------------------------------------------
// Private text and secrets
// -------------------------------------------------------------------------------------------------------------

/// One secret of each built-in shape, assembled at run time (no literal secret in the source), each unique to
/// `tag`, with the part that must never reach the disk.
fn secrets(tag: &str) -> Vec<(String, String)> {
    let t = tag.to_ascii_uppercase();
    let tl = tag.to_ascii_lowercase();
    let r = |body: &str, n: usize| body.repeat(n);
    let whole = |s: String| (s.clone(), s);
    vec![
        whole(format!("AKIA{t}{}", &r("Q7ZX", 4)[..16 - t.len()])),
        whole(format!("ghp_{tl}{}", &r("aB3d", 9)[..36 - tl.len()])),
        whole(format!("gho_{tl}{}", &r("aB3d", 9)[..36 - tl.len()])),
        whole(format!("ghs_{tl}{}", &r("aB3d", 9)[..36 - tl.len()])),
        whole(format!("github_pat_11{t}{}", r("Zq9_x", 6))),
        whole(format!("sk-ant-api03-{tl}{}", r("Kp2-w", 8))),
        whole(format!("sk-proj-{tl}{}", r("Tz8_q", 8))),
        whole(format!("sk-{tl}{}", r("M4nQ", 10))),
        whole(format!("xoxb-4821-{tl}{}", r("Rv7t", 4))),
        whole(format!("AIza{tl}{}", &r("Sy_3d", 8)[..35 - tl.len()])),
        whole(format!("sk_live_{tl}{}", r("Wm5p", 6))),
        whole(format!("eyJhbGciOiJIUzI1NiJ9.eyJ{tl}{}.Sfl{tl}KxwRJSMeKKF2QT4fwp", r("zdWI", 4))),
        (format!("Authorization: Bearer tok{tl}{}", r("9x8y", 5)), format!("tok{tl}{}", r("9x8y", 5))),
        (format!("https://deploy:pw{tl}Hunter2@git.example.com/r.git"), format!("pw{tl}Hunter2")),
        (
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{tl}{}\n-----END OPENSSH PRIVATE KEY-----",
                r("QUFB", 12)
            ),
            format!("b3Bl{tl}{}", r("QUFB", 12)),
        ),
        (format!("DB_PASSWORD=pass{tl}Word77"), format!("pass{tl}Word77")),
        (format!("secret: \"sec{tl}Val99\""), format!("sec{tl}Val99")),
        (format!("curl 'https://api.example.com/x?token=tkn{tl}Q42&y=1'"), format!("tkn{tl}Q42")),
    ]
}

/// Text with every kind of private part around markers unique to `tag`, and the markers.
fn private_text(tag: &str) -> (String, Vec<String>) {
    let m: Vec<String> = (1..=5).map(|i| format!("PRIV{i}-{tag}-XYZZY")).collect();
    let text = format!(
        "keep <private>{}</private> keep <private >{}</private > keep <private reason=\"x\">{}</PRIVATE> keep \
         <Private\treason='y'>{}</private> keep <private>{}",
        m[0], m[1], m[2], m[3], m[4]
    );
    (text, m)
}

/// Tool input, response and error text carrying every secret and private part for `tag`; the strings that must
/// not reach the disk.
fn loaded(tag: &str) -> (Value, Value, String, Vec<String>) {
    let secrets = secrets(tag);
    let (private, mut forbidden) = private_text(tag);
    let key_marker = format!("PRIVKEY-{tag}-XYZZY");
    forbidden.push(key_marker.clone());
    forbidden.extend(secrets.iter().map(|(_, s)| s.clone()));
    let all: Vec<String> = secrets.iter().map(|(s, _)| s.clone()).collect();
    let input = json!({
        "command": format!("deploy {}", all.join(" ")),
        "note": private,
        format!("<private>{key_marker}</private>"): "value under a private key",
        "env": {"API_TOKEN": format!("envtok{tag}Zz91")},
    });
    forbidden.push(format!("envtok{tag}Zz91"));
    let response = json!({"stdout": all.join("\n"), "stderr": private_text(tag).0});
    let error = format!("failed with {} and {}", all[0], private_text(tag).0);
    (input, response, error, forbidden)
}

/// Every file of the data and state folders, and the server's log: `(name, bytes)`.
fn files_on_disk(server: &TestServer, log: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![server.dir.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.push((path, bytes));
            }
        }
    }
    if let Ok(bytes) = std::fs::read(log) {
        files.push((log.to_path_buf(), bytes));
    }
    files
}

fn assert_nothing_on_disk(server: &TestServer, log: &Path, forbidden: &[String], when: &str) {
    let files = files_on_disk(server, log);
    let names: Vec<String> = files.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n == "memtray.db"), "{when}: no database among {names:?}");
    for (path, bytes) in &files {
        for secret in forbidden {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{when}: {secret:?} is in {}", path.display());
        }
    }
}

/// A transcript with a prompt and a tool use memtray never saw over a hook: the backfill path.
fn write_transcript(path: &Path, session: &str, tag: &str) -> Vec<String> {
    let (input, response, _, forbidden) = loaded(tag);
    let (prompt, _) = private_text(tag);
    let lines = [
        json!({"type": "user", "sessionId": session, "promptId": "tp-1", "cwd": "/home/dev/projects/ledger",
               "message": {"role": "user", "content": format!("backfilled prompt {} {prompt}", secrets(tag)[0].0)}}),
        json!({"type": "assistant", "sessionId": session, "message": {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_tr_1", "name": "Bash", "input": input}]}}),
        json!({"type": "user", "sessionId": session, "promptId": "tp-1", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_tr_1", "content": "see toolUseResult"}]},
               "toolUseResult": response}),
        json!({"type": "assistant", "sessionId": session, "message": {"role": "assistant", "content": [
            {"type": "text", "text": format!("done {}", secrets(tag)[1].0)}]}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
    forbidden
}

fn hook_event(session: &str, name: &str, tag: &str, n: usize) -> Value {
    let (input, response, error, _) = loaded(tag);
    let (private, _) = private_text(tag);
    let mut event = json!({
        "session_id": session, "hook_event_name": name, "cwd": "/home/dev/projects/ledger",
        "transcript_path": "/nonexistent/transcript.jsonl", "prompt_id": format!("p-{tag}-{n}"),
    });
    match name {
        "UserPromptSubmit" => event["prompt"] = format!("fix it {} {private}", secrets(tag)[2].0).into(),
        "PostToolUse" => {
            event["tool_name"] = "Bash".into();
            event["tool_use_id"] = format!("toolu_{tag}_{n}").into();
            event["tool_input"] = input;
            event["tool_response"] = response;
        }
        "PostToolUseFailure" => {
            event["tool_name"] = "Bash".into();
            event["tool_use_id"] = format!("toolu_{tag}_{n}").into();
            event["tool_input"] = input;
            event["error"] = error.into();
        }
        "Stop" => event["last_assistant_message"] = format!("finished {} {private}", secrets(tag)[3].0).into(),
        _ => {}
    }
    event
}

fn texts(server: &TestServer, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, Option<String>>(0)).unwrap().map(|r| r.unwrap().unwrap_or_default()).collect()
}

fn set_paused(server: &TestServer, paused: bool) {
    assert_eq!(server.post("/api/processing", &json!({ "paused": paused })).0, 200);
}

#[test]
fn private_text_and_secrets_never_reach_the_disk_on_any_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = TestServer::start_with(
        &[("MEMTRAY_LOG", "debug"), ("MEMTRAY_LINGER_MS", "200")],
        Options { stderr_to: Some(log.clone()), ..Options::default() },
    );
    // Paused first, so the stored payloads can be read before processing drops them.
    set_paused(&server, true);
    let mut forbidden = Vec::new();
    // 1. Claude Code's http hooks.
    for (n, name) in ["UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "Stop"].into_iter().enumerate() {
        let (status, answer) = server.post("/hooks/claude-code", &hook_event("cc-http", name, "ht", n));
        assert_eq!(status, 200, "{name}: {answer}");
    }
    forbidden.extend(loaded("ht").3);
    // 2. The claude-mem endpoints.
    let (private, markers) = private_text("cm");
    forbidden.extend(markers);
    let (input, response, _, more) = loaded("cm");
    forbidden.extend(more);
    let prompt = format!("do {} {private}", secrets("cm")[4].0);
    let init = json!({"claudeSessionId": "cm-1", "project": "ledger", "prompt": prompt});
    assert_eq!(server.post("/api/sessions/init", &init).0, 200);
    let mut obs = observation("cm-1", "toolu_cm_1", "Bash");
    obs["tool_input"] = input;
    obs["tool_response"] = response;
    assert_eq!(server.post("/api/sessions/observations", &obs).0, 200);
    let mut stringified = observation("cm-1", "toolu_cm_2", "Bash");
    stringified["tool_response"] = loaded("cm").1.to_string().into();
    assert_eq!(server.post("/api/sessions/observations", &stringified).0, 200);
    let summarize = json!({"claudeSessionId": "cm-1", "last_user_message": private,
                           "last_assistant_message": format!("done {} {private}", secrets("cm")[5].0)});
    assert_eq!(server.post("/api/sessions/summarize", &summarize).0, 200);
    // 3. Backfill from a transcript that holds what no hook brought.
    let transcript = dir.path().join("transcript.jsonl");
    forbidden.extend(write_transcript(&transcript, "cc-tr", "tr"));
    let mut stop = hook_event("cc-tr", "Stop", "tr", 9);
    stop["transcript_path"] = transcript.display().to_string().into();
    stop["last_assistant_message"] = Value::Null;
    assert_eq!(server.post("/hooks/claude-code", &stop).0, 200);
    let backfilled = "SELECT count(*) FROM messages WHERE session_id = \
                      (SELECT id FROM sessions WHERE agent_session_id = 'cc-tr')";
    assert!(server.count(backfilled) >= 2, "the transcript's tool use and turn were backfilled");
    assert_nothing_on_disk(&server, &log, &forbidden, "as stored");

    // What was kept is kept: the public words, the markers, and the metadata as sent.
    let all = texts(&server, "SELECT payload FROM messages").join("\n");
    for marker in ["[REDACTED:aws_access_key]", "[REDACTED:private_key]", "[REDACTED:jwt]", "[REDACTED:url_password]"] {
        assert!(all.contains(marker), "{marker}: {all}");
    }
    assert!(all.contains("keep  keep  keep  keep "), "the public text around private parts stays: {all}");
    assert!(!all.contains("value under a private key"), "an entirely private key takes its value with it");
    assert!(all.contains("https://deploy:"), "the user of a URL is kept: {all}");
    assert!(all.contains("\"cwd\":\"/home/dev/projects/ledger\""), "{all}");
    let keys = texts(&server, "SELECT idempotency_key FROM messages").join(" ");
    for id in ["toolu_ht_1", "toolu_ht_2", "toolu_cm_1", "toolu_cm_2", "toolu_tr_1"] {
        assert!(keys.contains(id), "{id} is kept: {keys}");
    }
    let prompts = texts(&server, "SELECT text FROM user_prompts").join("|");
    assert!(prompts.contains("fix it [REDACTED:github_token] keep  keep "), "{prompts}");
    assert!(prompts.contains("do [REDACTED:github_token] keep  keep "), "{prompts}");
    assert!(prompts.contains("backfilled prompt [REDACTED:aws_access_key] keep  keep "), "{prompts}");

    // Processed: what memory makes of it holds none of it either.
    set_paused(&server, false);
    server.wait_idle(Duration::from_secs(20));
    assert_nothing_on_disk(&server, &log, &forbidden, "after processing");

    // 4. `memtray hook` with the server down: the inbox, before and after the replay.
    assert!(server.stop().success());
    for (n, name) in ["UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "Stop"].into_iter().enumerate() {
        let mut hook = server.command("hook").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let event = hook_event("cc-inbox", name, "ib", n);
        hook.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
        assert!(hook.wait().unwrap().success());
    }
    forbidden.extend(loaded("ib").3);
    let inbox = texts(&server, "SELECT body FROM hook_inbox");
    assert_eq!(inbox.len(), 4, "the events wait in the inbox");
    for body in &inbox {
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["session_id"], "cc-inbox");
        assert_eq!(event["cwd"], "/home/dev/projects/ledger");
        assert_eq!(event["transcript_path"], "/nonexistent/transcript.jsonl");
    }
    assert!(inbox.iter().any(|b| b.contains("\"tool_use_id\":\"toolu_ib_1\"") && b.contains("[REDACTED:")));
    let hook_log = std::fs::read_to_string(server.dir.path().join("state/hook.log")).unwrap();
    assert!(hook_log.contains("kept for its next start"), "{hook_log}");
    assert_nothing_on_disk(&server, &log, &forbidden, "in the inbox");
    server.spawn();
    server.wait_idle(Duration::from_secs(20));
    assert_eq!(server.count("SELECT count(*) FROM hook_inbox"), 0);
    let replayed = "SELECT count(*) FROM messages WHERE session_id = \
                    (SELECT id FROM sessions WHERE agent_session_id = 'cc-inbox')";
    assert_eq!(server.count(replayed), 3, "the replay stored the tool use, the failure and the summary");
    let keys = texts(&server, "SELECT idempotency_key FROM messages").join(" ");
    assert!(keys.contains("toolu_ib_1") && keys.contains("toolu_ib_2"), "{keys}");
    assert_nothing_on_disk(&server, &log, &forbidden, "after the replay");
    assert!(server.stop().success());
    assert_nothing_on_disk(&server, &log, &forbidden, "after a clean stop");
}

// -------------------------------------------------------------------------------------------------------------
// What the files keep
// -------------------------------------------------------------------------------------------------------------

fn database_files(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    ["memtray.db", "memtray.db-wal", "memtray.db-shm"]
        .iter()
        .filter_map(|name| std::fs::read(server.dir.path().join(name)).ok().map(|b| (name.to_string(), b)))
        .collect()
}

fn in_files(files: &[(String, Vec<u8>)], needle: &str) -> Vec<String> {
    files
        .iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn a_deleted_sessions_text_is_gone_from_the_database_and_its_wal() {
    let server = TestServer::start(&[("MEMTRAY_LINGER_MS", "200")]);
    let marker = "FORGET-ME-2b7c-lighthouse";
    let init = json!({"claudeSessionId": "del-1", "project": "ledger", "prompt": format!("{marker} prompt")});
    let (_, answer) = server.post("/api/sessions/init", &init);
    let id = answer["sessionDbId"].as_i64().unwrap();
    let mut obs = observation("del-1", "toolu_del_1", "Bash");
    obs["tool_response"] = json!({"stdout": format!("{marker} {}", "output ".repeat(2000))});
    assert_eq!(server.post("/api/sessions/observations", &obs).0, 200);
    server.post("/api/sessions/init", &json!({"claudeSessionId": "keep-1", "project": "ledger", "prompt": "kept"}));
    server.wait_idle(Duration::from_secs(10));
    assert!(!in_files(&database_files(&server), marker).is_empty(), "the text is in the files before the delete");

    let response = support::http()
        .delete(&server.url(&format!("/api/sessions/{id}")))
        .header("x-memtray-token", server.secret())
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let found = in_files(&database_files(&server), marker);
    assert!(found.is_empty(), "the deleted session's text is still in {found:?}");
    assert_eq!(server.count("SELECT count(*) FROM sessions"), 1);
}

#[test]
fn a_database_with_damaged_pages_is_refused_at_start() {
    let mut server = TestServer::start(&[]);
    for i in 0..300 {
        let mut obs = observation("dmg-1", &format!("toolu_dmg_{i}"), "Bash");
        obs["tool_response"] = json!({"stdout": format!("{i} {}", "line of output\n".repeat(60))});
        assert_eq!(server.post("/api/sessions/observations", &obs).0, 200);
    }
    assert!(server.stop().success());
    let path = server.database();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 4096, "a real database of many pages: {} bytes", bytes.len());
    // Overwrite the middle page (not the header), as a failing disk or a stray write would.
    let page = 4096;
    let middle = (bytes.len() / 2) / page * page;
    bytes[middle..middle + page].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 % 251) as u8);
    std::fs::write(&path, &bytes).unwrap();

    let mut child = server.serve_command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "memtray serve did not exit on a damaged database");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(!stdout.contains("ready"), "it must not report ready: {stdout}");
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "the message says where the file is: {stderr}");
    assert!(stderr.contains(".recover") && stderr.contains("mv memtray.db"), "and how to recover: {stderr}");
}

#[test]
fn a_deleted_data_folder_stops_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = TestServer::start_with(&[], Options { stderr_to: Some(log.clone()), ..Options::default() });
    assert_eq!(server.post("/api/sessions/observations", &observation("gone-1", "t-before", "Bash")).0, 200);
    std::fs::remove_dir_all(server.dir.path()).unwrap();

    for (path, body) in [
        ("/api/sessions/observations", observation("gone-1", "t-after", "Bash")),
        ("/api/sessions/init", json!({"claudeSessionId": "gone-2", "project": "p", "prompt": "hello"})),
        (
            "/hooks/claude-code",
            json!({"session_id": "gone-3", "hook_event_name": "PostToolUse", "cwd": "/p", "tool_name": "Bash",
                   "tool_use_id": "t-hook", "tool_input": {}, "tool_response": {}}),
        ),
    ] {
        let (status, answer) = server.post(path, &body);
        assert_eq!((status, answer["error"]["code"].as_str()), (503, Some("database_missing")), "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("deleted") && message.contains("restart"), "{message}");
    }
    // `memtray hook` hears 503 and keeps its event in a new database at the same place.
    let mut hook = server.command("hook").stdin(Stdio::piped()).spawn().unwrap();
    let event = json!({"session_id": "gone-4", "hook_event_name": "PostToolUse", "cwd": "/p", "tool_name": "Bash",
                       "tool_use_id": "t-spooled", "tool_input": {}, "tool_response": {}});
    hook.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
    assert!(hook.wait().unwrap().success());
    assert_eq!(server.post("/api/sessions/observations", &observation("gone-1", "t-later", "Bash")).0, 503);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("deleted or replaced"), "the server says so: {logged}");

    // At the next start nothing acknowledged after the deletion was lost: nothing was acknowledged; the
    // spooled event is there.
    assert!(server.stop().success());
    server.spawn();
    server.wait_idle(Duration::from_secs(10));
    let keys = server.count("SELECT count(*) FROM messages WHERE idempotency_key IN ('t-after', 't-hook', 't-later')");
    assert_eq!(keys, 0);
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE idempotency_key = 't-spooled'"), 1);
}

// -------------------------------------------------------------------------------------------------------------
// Errors for what has no route
// -------------------------------------------------------------------------------------------------------------

#[test]
fn unknown_routes_bad_ids_and_wrong_methods_answer_json_errors() {
    let server = TestServer::start(&[]);
    let agent = support::http();
    let cases: Vec<(&str, &str, u16, &str, Option<&str>)> = vec![
        ("GET", "/nope", 404, "no_route", None),
        ("POST", "/api/nothing/here", 404, "no_route", None),
        ("GET", "/api/sessions/abc", 400, "invalid_path", None),
        ("DELETE", "/api/sessions/99999999999999999999", 400, "invalid_path", None),
        ("POST", "/api/queue/x1/retry", 400, "invalid_path", None),
        ("POST", "/api/queue/1.5/abort", 400, "invalid_path", None),
        ("DELETE", "/api/stats", 405, "method_not_allowed", Some("GET")),
        ("POST", "/api/health", 405, "method_not_allowed", Some("GET")),
        ("GET", "/hooks/claude-code", 405, "method_not_allowed", Some("POST")),
        ("PUT", "/api/sessions/1", 405, "method_not_allowed", Some("DELETE")),
    ];
    for (method, path, status, code, allow) in cases {
        // With this user's secret: without it, anything that is not intake or health is a 401 before routing.
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(server.url(path))
            .header("x-memtray-token", server.secret())
            .body(())
            .unwrap();
        let mut response = agent.run(request).expect("request");
        let what = format!("{method} {path}");
        assert_eq!(response.status().as_u16(), status, "{what}");
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
        if let Some(allow) = allow {
            let header = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            assert!(header.contains(allow), "{what}: Allow is {header:?}");
        }
        let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    }
}
