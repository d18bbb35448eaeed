//! Shared by the integration tests: the real `memtray` binary on an ephemeral loopback port with its own
//! data dir, a small HTTP client, and read-only looks into the real SQLite file.

#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `memtray serve` child process.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    env: Vec<(String, String)>,
    options: Options,
    child: Option<Child>,
    /// This user's secret, read once the server made it (it outlives a deleted data folder).
    secret: std::sync::OnceLock<String>,
}

/// How a [`TestServer`] runs, beyond its environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run `memtray serve` under this soft open-files limit (the hard limit is left as it is).
    pub soft_open_files: Option<u64>,
    /// Append the server's stderr to this file instead of the test's stderr.
    pub stderr_to: Option<PathBuf>,
    /// The config file's text, written before the first start.
    pub config: Option<String>,
}

impl TestServer {
    /// Starts a server on a free port with its own data dir and the given extra environment.
    pub fn start(env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(env, Options::default())
    }

    /// Starts a server as [`TestServer::start`] does, run as `options` say.
    pub fn start_with(env: &[(&str, &str)], options: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(text) = &options.config {
            std::fs::write(dir.path().join("config.toml"), text).expect("write the config file");
        }
        let mut server = TestServer { dir, port: 0, env, options, child: None, secret: std::sync::OnceLock::new() };
        server.spawn();
        server
    }

    /// The `memtray serve` command as [`TestServer::spawn`] runs it (under the soft open-files limit, if
    /// one is set, through `sh -c 'ulimit -Sn N; exec memtray serve'`: the same process).
    pub fn serve_command(&self) -> Command {
        let mut cmd = match self.options.soft_open_files {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c").arg(format!("ulimit -Sn {limit} && exec \"$0\" serve")).arg(env!("CARGO_BIN_EXE_memtray"));
                self.configure(&mut sh);
                sh
            }
            None => self.command("serve"),
        };
        let stderr = match &self.options.stderr_to {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the server's log"),
            ),
            None => Stdio::inherit(),
        };
        cmd.env("MEMTRAY_PORT", self.port.to_string()).stderr(stderr);
        cmd
    }

    /// Starts (again) on the port it had, or on a free one the first time.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = self.serve_command();
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn memtray serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read ready line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no ready line from memtray serve, got {line:?}"));
        self.port = port;
        // Read at every start: a start after the state folder was lost makes a new one.
        self.secret = std::sync::OnceLock::new();
        self.secret();
        self.child = Some(child);
    }

    /// A `memtray` command with this server's data dir, config and environment.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
        cmd.arg(subcommand);
        self.configure(&mut cmd);
        cmd
    }

    /// This server's data dir, config and environment on `cmd`.
    fn configure(&self, cmd: &mut Command) {
        cmd.env_remove("MEMTRAY_PORT")
            .env("MEMTRAY_DATA_DIR", self.dir.path())
            .env("MEMTRAY_CONFIG", self.dir.path().join("config.toml"))
            .env("MEMTRAY_STATE_DIR", self.dir.path().join("state"))
            .env("MEMTRAY_LOG", "warn")
            .env("MEMTRAY_PORT", self.port.to_string());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// Sets (or replaces) an environment variable for the next `spawn` and `command`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        child.wait().expect("wait")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// This user's secret, which the server made in its state folder at start.
    pub fn secret(&self) -> String {
        self.secret
            .get_or_init(|| {
                let token = std::fs::read_to_string(self.dir.path().join("state/token"));
                token.expect("the server made its secret").trim().into()
            })
            .clone()
    }

    /// GETs with this user's secret, as the inspector and `memtray status` do.
    pub fn get(&self, path: &str) -> (u16, Value) {
        http().get(&self.url(path)).header("x-memtray-token", self.secret()).call().map(read).expect("GET")
    }

    /// POSTs with this user's secret.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        http().post(&self.url(path)).header("x-memtray-token", self.secret()).send_json(body).map(read).expect("POST")
    }

    /// GETs without the secret, as any other program on the machine could.
    pub fn get_anonymous(&self, path: &str) -> (u16, Value) {
        http().get(&self.url(path)).call().map(read).expect("GET")
    }

    /// POSTs raw bytes with a content type (or none).
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value, Option<String>) {
        let mut request = http().post(&self.url(path));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let mut response = request.send(body).expect("POST");
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let status = response.status().as_u16();
        let body = response.body_mut().read_json().unwrap_or(Value::Null);
        (status, body, retry_after)
    }

    /// Replaces the config file (the running server reads it where it re-reads it at all).
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.dir.path().join("config.toml"), text).expect("write the config file");
    }

    /// Pauses or resumes processing through the API.
    pub fn set_paused(&self, paused: bool) {
        let (status, _) = self.post("/api/processing", &serde_json::json!({ "paused": paused }));
        assert_eq!(status, 200);
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("memtray.db")
    }

    /// One number from the real database file.
    pub fn count(&self, sql: &str) -> i64 {
        db_count(&self.database(), sql)
    }

    /// Waits until the database holds no pending or processing message and the server's status (which
    /// follows the database a few milliseconds behind) says so too, or panics after `limit`.
    pub fn wait_idle(&self, limit: Duration) {
        wait_for(limit, "the queue to drain", || {
            let unfinished = self.count("SELECT count(*) FROM messages WHERE status IN ('pending', 'processing')");
            let (_, stats) = self.get("/api/stats");
            unfinished == 0 && stats["queueDepth"] == 0 && stats["isProcessing"] == false
        });
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal by name (`TERM`, `KILL`) with the system's `kill`, as a user would.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid} failed");
}

/// An HTTP agent that returns 4xx/5xx answers instead of erroring on them.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap_or(Value::Null))
}

pub fn db_count(path: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Polls `check` every 10 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A claude-mem observation body.
pub fn observation(session: &str, tool_use_id: &str, tool: &str) -> Value {
    serde_json::json!({
        "claudeSessionId": session,
        "tool_name": tool,
        "tool_input": {"command": format!("echo {tool_use_id}")},
        "tool_response": {"stdout": tool_use_id, "stderr": ""},
        "cwd": "/home/dev/projects/ledger",
        "tool_use_id": tool_use_id,
    })
}
