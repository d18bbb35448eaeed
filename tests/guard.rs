//! The localhost surface against what the audit tried, on the real binary: foreign `Host` values (DNS
//! rebinding), a real Chromium page on another origin posting to every state-changing route, a second local
//! account (created and removed here when the tests run as root), another account's memtray on the port,
//! and `/dev/zero`, a FIFO and a huge file as a transcript, across a restart.

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};
use webdriver::Browser;

/// Sends one request on a raw socket with exactly these headers; returns the status and the body.
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A session with one pending message (processing is paused), so that every admin route has a target.
fn seeded(env: &[(&str, &str)]) -> (TestServer, i64, i64) {
    let server = TestServer::start(env);
    let (status, _) = server.post("/api/processing", &json!({"paused": true}));
    assert_eq!(status, 200);
    let (status, queued) = server.post("/api/sessions/observations", &observation("victim", "toolu_v1", "Bash"));
    assert_eq!(status, 200, "{queued}");
    (server, queued["sessionDbId"].as_i64().unwrap(), queued["messageId"].as_i64().unwrap())
}

/// What an attacker would change, read straight from the database.
fn state(server: &TestServer) -> (i64, i64, i64, i64) {
    (
        server.count("SELECT count(*) FROM sessions"),
        server.count("SELECT count(*) FROM messages WHERE status = 'pending'"),
        server.count("SELECT count(*) FROM messages"),
        server.count("SELECT count(*) FROM user_prompts"),
    )
}

#[test]
fn a_host_that_is_not_loopback_is_refused_and_changes_nothing() {
    let (server, session, message) = seeded(&[]);
    let secret = server.secret();
    let before = state(&server);
    let hook =
        json!({"session_id": "rebind", "hook_event_name": "UserPromptSubmit", "prompt": "injected", "cwd": "/x"});
    let port = server.port.to_string();
    for host in [
        "evil.example.com".to_string(),
        format!("evil.example.com:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("attacker.localhost.evil.com:{port}"),
        format!("127.0.0.1:{}", server.port + 1),
    ] {
        // Even with the secret (a rebinding page has no cookie, but the Host alone must be enough).
        let headers =
            [("Host", host.as_str()), ("X-Memtray-Token", secret.as_str()), ("Content-Type", "application/json")];
        for (method, path, body) in [
            ("GET", "/api/sessions".to_string(), None),
            ("GET", format!("/api/sessions/{session}"), None),
            ("DELETE", format!("/api/sessions/{session}"), None),
            ("POST", "/api/processing".to_string(), Some(json!({"paused": false}))),
            ("POST", format!("/api/queue/{message}/abort"), None),
            ("POST", "/hooks/claude-code".to_string(), Some(hook.clone())),
            ("GET", "/".to_string(), None),
        ] {
            let (status, answer) = raw(server.port, method, &path, &headers, body.as_ref());
            assert_eq!(status, 403, "{method} {path} with Host {host}: {answer}");
            assert_eq!(answer["error"]["code"], "forbidden_host", "{answer}");
        }
    }
    assert_eq!(state(&server), before, "nothing changed");
    let (_, stats) = server.get("/api/stats");
    assert_eq!(stats["paused"], true, "still paused");

    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), "localhost".into()]
    {
        let headers = [("Host", host.as_str()), ("X-Memtray-Token", secret.as_str())];
        let (status, answer) = raw(server.port, "GET", &format!("/api/sessions/{session}"), &headers, None);
        assert_eq!(status, 200, "Host {host}: {answer}");
    }
}

#[test]
fn reading_memory_and_administering_need_this_users_secret() {
    let (server, session, message) = seeded(&[]);
    let before = state(&server);
    for (method, path) in [
        ("GET", "/api/sessions".to_string()),
        ("GET", format!("/api/sessions/{session}")),
        ("GET", "/api/observations".to_string()),
        ("GET", "/api/queue".to_string()),
        ("GET", "/stream".to_string()),
        ("DELETE", format!("/api/sessions/{session}")),
        ("POST", format!("/api/queue/{message}/abort")),
        ("POST", "/api/queue/retry-stuck".to_string()),
    ] {
        let host = format!("127.0.0.1:{}", server.port);
        for token in ["", "0000000000000000000000000000000000000000000000000000000000000000"] {
            let (status, answer) =
                raw(server.port, method, &path, &[("Host", &host), ("X-Memtray-Token", token)], None);
            assert_eq!(status, 401, "{method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(state(&server), before);
    // Intake and health stay open: claude-mem's hooks send no secret.
    let (status, _) = server.get_anonymous("/api/health");
    assert_eq!(status, 200);
    let host = format!("127.0.0.1:{}", server.port);
    let (status, answer) = raw(
        server.port,
        "POST",
        "/api/sessions/observations",
        &[("Host", &host), ("Content-Type", "application/json")],
        Some(&observation("open-intake", "toolu_o1", "Bash")),
    );
    assert_eq!(status, 200, "{answer}");

    // The inspector is handed the secret once, as a cookie the page cannot read, and the address loses it.
    let (status, _) = raw(server.port, "GET", "/?token=wrong", &[("Host", &host)], None);
    assert_eq!(status, 200, "the page itself is served without a cookie");
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(stream, "GET /?token={} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", server.secret()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nlocation: /\r\n"), "{answer}");
    let cookie = answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let value = cookie.split_once(':').unwrap().1.trim().split(';').next().unwrap();
    let (status, _) = raw(server.port, "GET", "/api/sessions", &[("Host", &host), ("Cookie", value)], None);
    assert_eq!(status, 200, "the cookie signs requests in");

    // `memtray status` reads the secret from the state folder.
    let out = server.command("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Serves `page` on its own port: another origin than memtray's.
fn serve_page(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

#[test]
fn a_page_on_another_origin_cannot_change_anything() {
    let (server, session, message) = seeded(&[]);
    // The browser holds the inspector's cookie, as a user's would: SameSite=Strict must keep it home, and the
    // origin checks must hold even for a request that carried it.
    let browser = Browser::start(&[]);
    browser.goto(&server.url(&format!("/?token={}", server.secret())));
    let before = state(&server);
    let target = format!("http://127.0.0.1:{}", server.port);
    let routes = [
        format!("/api/queue/{message}/abort"),
        format!("/api/queue/{message}/retry"),
        "/api/queue/retry-stuck".to_string(),
        "/api/processing".to_string(),
        "/api/sessions/init".to_string(),
        "/api/sessions/observations".to_string(),
        "/hooks/claude-code".to_string(),
    ];
    let forms: String = routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "<form id=f{i} method=post action='{target}{r}' target=sink{i} enctype=text/plain>\
                 <input name='{{\"paused\":false,\"claudeSessionId\":\"x\",\"tool_name\":\"Bash\",\"session_id\":\"x\",\"hook_event_name\":\"Stop\",\"a\":\"' value='\"}}'></form>\
                 <iframe name=sink{i}></iframe>"
            )
        })
        .collect();
    let attack = format!(
        "<!doctype html><body>{forms}<script>
        const routes = {routes};
        const body = JSON.stringify({{paused: false, claudeSessionId: 'x', tool_name: 'Bash', session_id: 'x', hook_event_name: 'Stop'}});
        window.done = (async () => {{
          for (const r of routes) {{
            navigator.sendBeacon('{target}' + r, body);
            navigator.sendBeacon('{target}' + r, new Blob([body], {{type: 'application/json'}}));
            try {{ await fetch('{target}' + r, {{method: 'POST', mode: 'no-cors', credentials: 'include', body}}); }} catch (e) {{}}
            try {{ await fetch('{target}' + r, {{method: 'POST', mode: 'no-cors', credentials: 'include',
                     headers: {{'content-type': 'text/plain'}}, body}}); }} catch (e) {{}}
          }}
          try {{ await fetch('{target}/api/sessions/{session}', {{method: 'DELETE', credentials: 'include'}}); }} catch (e) {{}}
          for (const f of document.forms) f.submit();
          await new Promise(r => setTimeout(r, 1500));
          window.finished = true;
        }})();
        </script></body>",
        routes = serde_json::to_string(&routes).unwrap(),
    );
    let page = serve_page(attack);
    browser.goto(&format!("http://127.0.0.1:{page}/"));
    browser.wait_for(Duration::from_secs(20), "the attack page to finish", "window.finished === true");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&server), before, "no form, beacon or no-cors fetch changed anything");
    let (_, stats) = server.get("/api/stats");
    assert_eq!(stats["paused"], true, "processing is still paused");
    let (status, _) = server.get(&format!("/api/sessions/{session}"));
    assert_eq!(status, 200, "the session is still there");
    // The same browser on memtray's own page can still act.
    browser.goto(&server.url("/"));
    let result = browser.execute(
        "return fetch('/api/processing', {method: 'POST', headers: {'content-type': 'application/json'}, \
         body: JSON.stringify({paused: false})}).then(r => r.status)",
        &[],
    );
    assert_eq!(result, 200, "same origin works");
}

fn run_as(user: &str, script: &str) -> std::process::Output {
    Command::new("su").args(["-s", "/bin/sh", user, "-c", script]).stdin(Stdio::null()).output().unwrap()
}

/// A throwaway local account, removed when dropped.
struct Account(String);

impl Account {
    fn create() -> Option<Account> {
        if rustix::process::geteuid().is_root() {
            let name = format!("mt{}", std::process::id());
            let ok = Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", &name]).status();
            if ok.is_ok_and(|s| s.success()) {
                return Some(Account(name));
            }
        }
        eprintln!("skipping the second-account checks: creating a local account needs root and useradd");
        None
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[test]
fn another_account_can_neither_read_the_files_nor_use_the_api() {
    let Some(other) = Account::create() else { return };
    let (server, session, _) = seeded(&[]);
    // The temp folder itself is traversable, as a home folder's parent is: only memtray's modes protect it.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, _) = server
        .post("/api/sessions/init", &json!({"claudeSessionId": "victim", "project": "p", "prompt": "secret plan"}));
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let state_dir = server.dir.path().join("state");
    assert_eq!(mode(&state_dir).unwrap(), 0o700);
    for file in ["memtray.db", "memtray.db-wal", "memtray.db-shm"] {
        assert_eq!(mode(&server.dir.path().join(file)).unwrap(), 0o600, "{file}");
    }
    assert_eq!(mode(&state_dir.join("token")).unwrap(), 0o600);
    for file in ["memtray.db", "memtray.db-wal", "state/token"] {
        let out = run_as(&other.0, &format!("cat '{}'", server.dir.path().join(file).display()));
        assert!(!out.status.success() && out.stdout.is_empty(), "{} read {file}", other.0);
    }
    let script = format!(
        "python3 -c \"import urllib.request, urllib.error, sys
for method, path in [('GET', '/api/sessions/{session}'), ('POST', '/api/queue/retry-stuck'), ('DELETE', '/api/sessions/{session}')]:
    try:
        urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{port}' + path, method=method, data=b'{{}}' if method == 'POST' else None, headers={{'Content-Type': 'application/json'}}))
        print('served', path)
    except urllib.error.HTTPError as e:
        print(e.code, path)
\"",
        port = server.port
    );
    let out = run_as(&other.0, &script);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("401").count(), 3, "{said}{}", String::from_utf8_lossy(&out.stderr));
    let (status, _) = server.get(&format!("/api/sessions/{session}"));
    assert_eq!(status, 200);
}

#[test]
fn hooks_do_not_send_to_a_memtray_that_is_not_this_users() {
    // "Theirs" holds the port: a memtray with its own state folder, so its own secret (as another account's
    // would have). Ours is not running; our hook must keep the event in our inbox and say why.
    let theirs = TestServer::start(&[]);
    let ours = tempfile::tempdir().unwrap();
    let memtray = |dir: &Path, sub: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
        cmd.arg(sub)
            .env("MEMTRAY_DATA_DIR", dir)
            .env("MEMTRAY_CONFIG", dir.join("none.toml"))
            .env("MEMTRAY_STATE_DIR", dir.join("state"))
            .env("MEMTRAY_PORT", theirs.port.to_string());
        cmd
    };
    let event =
        json!({"session_id": "mine", "hook_event_name": "UserPromptSubmit", "prompt": "my secret plan", "cwd": "/x"});
    let mut hook = memtray(ours.path(), "hook").stdin(Stdio::piped()).spawn().unwrap();
    hook.stdin.take().unwrap().write_all(event.to_string().as_bytes()).unwrap();
    assert!(hook.wait().unwrap().success());
    assert_eq!(theirs.count("SELECT count(*) FROM sessions"), 0, "nothing reached the other memtray");
    assert_eq!(support::db_count(&ours.path().join("memtray.db"), "SELECT count(*) FROM hook_inbox"), 1, "kept");
    let log = std::fs::read_to_string(ours.path().join("state/hook.log")).unwrap();
    assert!(log.contains("not this user's"), "{log}");
    // And our server will not start on their port, saying why.
    let out = memtray(ours.path(), "serve").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not this user's"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `memtray status` refuses to read it too.
    let out = memtray(ours.path(), "status").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn devices_fifos_and_huge_files_as_transcripts_are_survived_across_a_restart() {
    let mut server = TestServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let huge = dir.path().join("huge.jsonl");
    // A sparse 2 GiB file of zero bytes: no line breaks at all.
    std::fs::File::create(&huge).unwrap().set_len(2 << 30).unwrap();
    // Each Stop reads its transcript: a device is refused at once, a FIFO without blocking; the huge file is
    // read only up to the limit.
    let paths = [("/dev/zero".to_string(), 20), (fifo.display().to_string(), 100), (huge.display().to_string(), 2)];
    let stops: i64 = paths.iter().map(|(_, n)| n).sum();
    for (i, (path, stops)) in paths.iter().enumerate() {
        let session = format!("odd-{i}");
        let start = json!({"session_id": session, "hook_event_name": "SessionStart", "source": "startup",
            "cwd": "/home/dev/projects/ledger", "transcript_path": path});
        let (status, answer) = server.post("/hooks/claude-code", &start);
        assert_eq!(status, 200, "{answer}");
        for n in 0..*stops {
            let stop = json!({"session_id": session, "hook_event_name": "Stop", "prompt_id": format!("p{n}"),
                "cwd": "/home/dev/projects/ledger", "transcript_path": path, "last_assistant_message": "Done."});
            let (status, answer) = server.post("/hooks/claude-code", &stop);
            assert_eq!(status, 200, "{path}: {answer}");
        }
    }
    server.wait_idle(Duration::from_secs(60));
    assert_eq!(server.count("SELECT count(*) FROM summaries"), stops, "every Stop was still summarized");
    let (status, _) = server.get("/api/health");
    assert_eq!(status, 200);
    // The transcripts are remembered; a restart reads none of them forever.
    assert_eq!(server.stop().code(), Some(0), "shutdown does not hang");
    server.spawn();
    wait_for(Duration::from_secs(10), "health after the restart", || server.get("/api/health").0 == 200);
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        .unwrap();
    assert!(rss_kib < 512 * 1024, "the server did not read a device or a huge file into memory: {rss_kib} KiB");
}
