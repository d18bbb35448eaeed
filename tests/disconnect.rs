//! Work a request started finishes when the client goes away: a hook killed at its deadline, an HTTP hook
//! timing out. Requests are written whole on a raw socket that is closed at many points after (not one lucky
//! timing); afterwards every session is either untouched (the server dropped the request before taking it
//! in: nothing was acknowledged) or complete, and the status never says processing while nothing runs.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};

/// How long after writing the request the client hangs up, in ms.
const HANG_UPS: [u64; 12] = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144];
/// Tool uses in each Stop's transcript that memtray has not seen: the Stop must queue them all.
const BACKFILL: usize = 3000;

/// Writes a whole POST on a fresh connection, waits `hang_up_ms`, and closes it without reading the answer.
fn post_and_hang_up(server: &TestServer, path: &str, body: &Value, hang_up_ms: u64) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.port,
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(hang_up_ms));
    drop(stream);
}

/// A transcript of one prompt with `n` tool uses, each with its result.
fn transcript(dir: &Path, session: &str, n: usize) -> String {
    let mut text = String::new();
    text.push_str(&json!({"type": "user", "message": {"role": "user", "content": "Do many things"}}).to_string());
    text.push('\n');
    for i in 0..n {
        let id = format!("toolu_{session}_{i}");
        let used = json!({"type": "assistant", "message": {"id": format!("msg_{i}"), "role": "assistant", "content": [
            {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": format!("echo {i}")}}]}});
        let result = json!({"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": format!("{i}")}]}, "toolUseResult": {"stdout": format!("{i}")}});
        text.push_str(&format!("{used}\n{result}\n"));
    }
    let done = json!({"type": "assistant", "message": {"role": "assistant", "stop_reason": "end_turn", "content": [
        {"type": "text", "text": "All done."}]}});
    text.push_str(&format!("{done}\n"));
    let path = dir.join(format!("{session}.jsonl"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn session_count(server: &TestServer, sql: &str, session: &str) -> i64 {
    let sql = sql.replace("?S", &format!("(SELECT id FROM sessions WHERE agent_session_id = '{session}')"));
    server.count(&sql)
}

#[test]
fn a_stop_whose_client_hangs_up_still_backfills_and_summarizes() {
    let server = TestServer::start(&[]);
    let sessions: Vec<String> = HANG_UPS.iter().map(|ms| format!("stop-{ms}")).collect();
    for (session, ms) in sessions.iter().zip(HANG_UPS) {
        let path = transcript(server.dir.path(), session, BACKFILL);
        let stop = json!({
            "session_id": session, "hook_event_name": "Stop", "cwd": "/home/dev/projects/ledger",
            "transcript_path": path, "last_assistant_message": "All done.",
        });
        post_and_hang_up(&server, "/hooks/claude-code", &stop, ms);
    }
    // A session memtray took in must be finished whenever the client hung up; one it did not take in must
    // hold nothing.
    let taken_in = |s: &String| session_count(&server, "SELECT count(*) FROM sessions WHERE id = ?S", s) == 1;
    let complete = |s: &String| {
        session_count(&server, "SELECT count(*) FROM summaries WHERE session_id = ?S", s) == 1
            && session_count(&server, "SELECT count(*) FROM observations WHERE session_id = ?S", s) == BACKFILL as i64
    };
    wait_for(Duration::from_secs(120), "every Stop's work to finish", || {
        sessions.iter().filter(|s| taken_in(s)).all(complete)
    });
    let taken: Vec<&String> = sessions.iter().filter(|s| taken_in(s)).collect();
    assert!(taken.len() >= HANG_UPS.len() / 2, "most requests were taken in before the hang-up: {taken:?}");
    server.wait_idle(Duration::from_secs(30));
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status != 'processed'"), 0);
    let (_, status) = server.get("/api/processing-status");
    assert_eq!(status, json!({"isProcessing": false, "queueDepth": 0}));
}

#[test]
fn an_observation_whose_client_hangs_up_is_still_processed() {
    let server = TestServer::start(&[]);
    for (i, ms) in HANG_UPS.iter().enumerate() {
        for session in [format!("obs-{i}-claude-mem"), format!("obs-{i}-hook")] {
            if session.ends_with("claude-mem") {
                let body = observation(&session, &format!("toolu_{session}"), "Bash");
                post_and_hang_up(&server, "/api/sessions/observations", &body, *ms);
            } else {
                let body = json!({
                    "session_id": session, "hook_event_name": "PostToolUse", "cwd": "/home/dev/projects/ledger",
                    "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_response": {"stdout": "a"},
                    "tool_use_id": format!("toolu_{session}"),
                });
                post_and_hang_up(&server, "/hooks/claude-code", &body, *ms);
            }
        }
    }
    // Each session taken in has its one message, and it must be processed into its observation.
    wait_for(Duration::from_secs(30), "every observation taken in to be made", || {
        server.count("SELECT count(*) FROM observations") == server.count("SELECT count(*) FROM messages")
    });
    let taken = server.count("SELECT count(*) FROM sessions");
    assert_eq!(server.count("SELECT count(*) FROM messages"), taken, "one message per session taken in");
    assert!(taken >= HANG_UPS.len() as i64, "most requests were taken in before the hang-up: {taken}");
    server.wait_idle(Duration::from_secs(10));
    assert_eq!(server.count("SELECT count(*) FROM messages WHERE status != 'processed'"), 0);
    let (_, status) = server.get("/api/processing-status");
    assert_eq!(status["isProcessing"], false);
}
