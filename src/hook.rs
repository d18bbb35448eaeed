//! `memtray hook`: the command Claude Code runs for each hook event. Reads one event from stdin, hands it to
//! the running server, prints nothing, and is done within a hard budget whatever happens.
//!
//! When no server answers, the event goes straight into the database's hook inbox (safe beside a running
//! server: SQLite orders the writers), and the server dispatches it on its next start. No async runtime, no
//! HTTP library: one blocking request on a loopback socket.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::claude_code::HookEvent;
use crate::config::{Config, Paths};
use crate::store::{self, inbox, now_ms};

/// What became of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server took it.
    Delivered,
    /// No server answered; it waits in the inbox.
    Stored,
    /// Not a hook event; logged and dropped.
    Malformed,
    /// The server refused it or the database could not store it; logged.
    Failed,
}

/// Handles one event from `input`. Never panics on bad input; every outcome but `Delivered` leaves one line
/// in `hook.log` in the state folder.
pub fn run(config: &Config, paths: &Paths, input: impl Read) -> Outcome {
    let deadline = Instant::now() + Duration::from_millis(config.hook_budget_ms.max(50));
    let mut body = Vec::new();
    let limit = config.max_body_bytes as u64;
    if let Err(e) = input.take(limit + 1).read_to_end(&mut body) {
        log(&paths.state_dir, &format!("could not read the hook event from stdin: {e}"));
        return Outcome::Malformed;
    }
    if body.len() as u64 > limit {
        log(&paths.state_dir, &format!("hook event larger than max_body_bytes ({limit}); dropped"));
        return Outcome::Malformed;
    }
    let event = match HookEvent::parse(&body) {
        Ok(event) => event,
        Err(e) => {
            log(&paths.state_dir, &format!("malformed hook event dropped: {e}"));
            return Outcome::Malformed;
        }
    };
    match post(config.port, &body, deadline) {
        Ok(status) if (200..300).contains(&status) => return Outcome::Delivered,
        Ok(status) if (400..500).contains(&status) => {
            log(&paths.state_dir, &format!("server refused {} event ({status})", event.hook_event_name));
            return Outcome::Failed;
        }
        // 5xx (storage unavailable, shutting down) or no answer: keep it ourselves.
        Ok(_) | Err(_) => {}
    }
    match store_in_inbox(config, &body, deadline) {
        Ok(()) => {
            log(
                &paths.state_dir,
                &format!("server not reachable; {} event kept for its next start", event.hook_event_name),
            );
            Outcome::Stored
        }
        Err(e) => {
            log(&paths.state_dir, &format!("server not reachable and the database refused the event: {e}"));
            Outcome::Failed
        }
    }
}

/// One `POST /hooks/claude-code`; returns the status code.
fn post(port: u16, body: &[u8], deadline: Instant) -> std::io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline, 0.5)?)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(remaining(deadline, 0.6)?))?;
    stream.set_read_timeout(Some(remaining(deadline, 0.6)?))?;
    let head = format!(
        "POST /hooks/claude-code HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut answer[read..])? {
            0 => break,
            n => read += n,
        }
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&answer[..read])
        .ok()
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}

/// What is left of the budget, keeping `reserve` of it (a fraction) for the fallback.
fn remaining(deadline: Instant, share: f64) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now()).mul_f64(share);
    if left.is_zero() { Err(std::io::ErrorKind::TimedOut.into()) } else { Ok(left) }
}

fn store_in_inbox(config: &Config, body: &[u8], deadline: Instant) -> Result<(), store::StoreError> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    let conn = store::open_direct(config, left)?;
    let body = String::from_utf8_lossy(body);
    inbox::push(&conn, &body, now_ms())?;
    Ok(())
}

/// Appends one line to `hook.log`. Logging must not fail the hook: errors are ignored.
fn log(state_dir: &Path, message: &str) {
    let _ = std::fs::create_dir_all(state_dir);
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(state_dir.join("hook.log")) {
        let _ = writeln!(file, "{} memtray hook: {message}", now_ms());
    }
}
