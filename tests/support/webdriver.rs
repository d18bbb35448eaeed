//! A small W3C WebDriver client for the browser tests and the inspector benchmark: starts `chromedriver` on a
//! free loopback port in its own process group, opens one headless Chromium session with a fresh profile,
//! and speaks the protocol's JSON over HTTP. Dropping the `Browser` ends the session, then the whole group.
//!
//! Chromium and chromedriver come from the system (`/usr/bin/chromium`, `/usr/bin/chromedriver`; Debian's
//! `chromium` and `chromium-driver` packages); `MEMTRAY_CHROMIUM` and `MEMTRAY_CHROMEDRIVER` name others.

#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags every session gets: headless, quiet, no network chatter of its own, a fixed window.
const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
];

/// WebDriver key codes.
pub mod key {
    pub const ENTER: &str = "\u{E007}";
    pub const SPACE: &str = "\u{E00D}";
    pub const TAB: &str = "\u{E004}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// A reference to an element in the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Element {
    /// As a script argument.
    pub fn arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// A running chromedriver with one Chromium session.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    agent: ureq::Agent,
    /// The Chromium profile and the driver's log; removed on drop.
    dir: tempfile::TempDir,
}

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found at {}: the browser tests need Chromium and chromedriver (Debian packages `chromium` and \
         `chromium-driver`); `make test` installs them (or set {env})",
        Path::new(default).file_name().unwrap().to_string_lossy(),
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with the base flags plus `extra_args`. Panics with a clear
    /// message when either program is missing.
    pub fn start(extra_args: &[&str]) -> Browser {
        let chromium = binary("MEMTRAY_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("MEMTRAY_CHROMEDRIVER", "/usr/bin/chromedriver");
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(dir.path().join("chromedriver.stderr")).expect("stderr file")))
            // Its own process group, so drop can end chromedriver and every Chromium process it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser { driver, session: String::new(), agent, dir };
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready =
                browser.agent.get(&format!("{base}/status")).call().ok().and_then(|mut r| {
                    r.body_mut().read_json::<Value>().ok().and_then(|v| v["value"]["ready"].as_bool())
                });
            if ready == Some(true) {
                break;
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited with {status} before it was ready: {}", browser.driver_log());
            }
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver not ready after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut args: Vec<String> = BASE_ARGS.iter().map(|a| (*a).to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_args.iter().map(|a| (*a).to_string()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let answer = browser.raw("POST", &format!("{base}/session"), Some(&capabilities));
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_string();
        browser.session = format!("{base}/session/{id}");
        browser.command("POST", "/timeouts", Some(&json!({ "script": 30_000, "pageLoad": 60_000, "implicit": 0 })));
        browser
    }

    fn driver_log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let text = format!("{}{}", read("chromedriver.stderr"), read("chromedriver.log"));
        let skip = text.chars().count().saturating_sub(4000);
        text.chars().skip(skip).collect()
    }

    fn raw(&self, method: &str, url: &str, body: Option<&Value>) -> Value {
        let response = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, Some(body)) => self.agent.post(url).send_json(body),
            (_, None) => self.agent.post(url).send_json(json!({})),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        if status != 200 {
            let error = &answer["value"];
            panic!("WebDriver {method} {url} failed ({status}): {} {}", error["error"], error["message"]);
        }
        answer["value"].clone()
    }

    /// One command on this session (`path` is relative to `/session/ID`); returns the answer's `value`.
    pub fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.raw(method, &format!("{}{path}", self.session), body)
    }

    /// Navigates and waits for the load event.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The browser's Back button.
    pub fn back(&self) {
        self.command("POST", "/back", None);
    }

    /// Runs `script` (a function body: use `return`) with `arguments`; returns its result.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.command("POST", "/execute/sync", Some(&json!({ "script": script, "args": args })))
    }

    /// Evaluates one JavaScript expression.
    pub fn eval(&self, expression: &str) -> Value {
        self.execute(&format!("return ({expression});"), &[])
    }

    /// Polls `expression` every 20 ms until it is truthy and returns it; panics after `limit` with `what`,
    /// the last value, and the page's console output.
    pub fn wait_for(&self, limit: Duration, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if started.elapsed() >= limit {
                panic!(
                    "timed out after {limit:?} waiting for {what} ({expression} = {value})\nbrowser console:\n{}",
                    self.console().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first element matching a CSS selector; panics when there is none.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css).unwrap_or_else(|| panic!("no element matches {css}"))
    }

    /// The first element matching a CSS selector, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.session);
        let body = json!({ "using": "css selector", "value": css });
        let mut response = self.agent.post(&url).send_json(&body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
        if response.status().as_u16() == 404 {
            return None;
        }
        let answer: Value = response.body_mut().read_json().expect("JSON from chromedriver");
        let id = answer["value"][ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("find {css}: {answer}"));
        Some(Element(id.to_string()))
    }

    /// Clicks like a user: scrolls the element into view and clicks its centre (fails if something covers it).
    pub fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), None);
    }

    /// Types into an element (WebDriver key codes from [`key`] allowed).
    pub fn send_keys(&self, element: &Element, text: &str) {
        self.command("POST", &format!("/element/{}/value", element.0), Some(&json!({ "text": text })));
    }

    /// Presses keys on whatever has focus.
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({ "type": "keyDown", "value": c.to_string() }),
                    json!({ "type": "keyUp", "value": c.to_string() }),
                ]
            })
            .collect();
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.command("POST", "/actions", Some(&body));
        self.command("DELETE", "/actions", None);
    }

    /// The rendered text of an element.
    pub fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), None).as_str().unwrap_or_default().to_string()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None);
        base64_decode(encoded.as_str().expect("base64 screenshot")).expect("valid base64 from chromedriver")
    }

    /// A Chrome DevTools Protocol command through chromedriver (e.g. media emulation).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command("POST", "/goog/cdp/execute", Some(&json!({ "cmd": cmd, "params": params })))
    }

    /// The page's console output since the last call.
    pub fn console(&self) -> Vec<String> {
        let url = format!("{}/se/log", self.session);
        let Ok(mut response) = self.agent.post(&url).send_json(json!({ "type": "browser" })) else {
            return Vec::new();
        };
        let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        answer["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        format!("[{}] {}", e["level"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or(""))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The process ids of chromedriver's descendants (the Chromium processes), from /proc.
    pub fn processes(&self) -> Vec<u32> {
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid ...`; comm may contain spaces, so read after the last ')'.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
        let mut family = vec![self.driver.id()];
        let mut i = 0;
        while i < family.len() {
            let parent = family[i];
            family.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
            i += 1;
        }
        family.remove(0);
        family
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let console = self.console();
            if !console.is_empty() {
                eprintln!("browser console:\n{}", console.join("\n"));
            }
        }
        if !self.session.is_empty() {
            let _ = self.agent.delete(&self.session).call();
        }
        // The group holds chromedriver and every Chromium process it started (its id is chromedriver's). The
        // `--` matters: procps `kill -KILL -1234` reads `-1234` as options and signals group 1 instead.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = clean.strip_suffix(b"==").or_else(|| clean.strip_suffix(b"=")).unwrap_or(&clean);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}
