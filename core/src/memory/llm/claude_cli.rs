//! The user's own Claude Code as a model: `claude -p --output-format json`, the material on stdin, no tools,
//! no session kept, hooks off. Each run is its own process group, killed with the group when the call ends
//! however it ends (answer, timeout, cancel, shutdown), so nothing it started outlives it; a semaphore caps
//! how many run at once. The environment is rebuilt from a short list (plus `MEMTRAY_DISABLED=1`) and the
//! run happens in an empty folder of memtray's, so a memory session never records itself.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::{Completion, Request, Transport};
use crate::config::{ClaudeCliConfig, Config};
use crate::memory::provider::{ProviderConfigError, ProviderError, Usage};

const NAME: &str = "claude-cli";
/// Variables a run keeps from memtray's environment: where home and config are, locale, proxies and
/// certificates, and Claude Code's and Anthropic's own settings.
const KEPT: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "IS_SANDBOX",
];
/// Prefixes of variables a run keeps.
const KEPT_PREFIXES: &[&str] = &["ANTHROPIC_", "CLAUDE_", "DISABLE_"];
/// Settings layered over the user's for a run: no hooks at all (memtray's included).
const SETTINGS: &str = r#"{"disableAllHooks": true}"#;
/// The most bytes of stderr quoted in an error.
const STDERR_QUOTED: usize = 600;

/// `claude -p` as a transport.
pub struct ClaudeCli {
    settings: ClaudeCliConfig,
    /// The empty folder runs start in.
    workdir: PathBuf,
    running: Semaphore,
}

/// What went wrong running the command.
#[derive(Debug, thiserror::Error)]
#[error("claude-cli: {0}")]
struct RunFailure(String);

impl ClaudeCli {
    /// From the `[claude_cli]` table; runs start in `<data_dir>/claude-cli`.
    pub fn from_config(config: &Config) -> Result<ClaudeCli, ProviderConfigError> {
        let settings = config.claude_cli.clone();
        if settings.command.trim().is_empty() {
            return Err(ProviderConfigError::Invalid { provider: NAME, reason: "claude_cli.command is empty".into() });
        }
        Ok(ClaudeCli {
            running: Semaphore::new(settings.max_concurrent.max(1)),
            workdir: config.data_dir.join("claude-cli"),
            settings,
        })
    }

    fn command(&self, request: &Request) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.settings.command);
        command
            .args(["-p", "--output-format", "json", "--no-session-persistence", "--strict-mcp-config"])
            .args(["--tools", ""])
            .args(["--settings", SETTINGS])
            .args(["--system-prompt", &request.system]);
        if !self.settings.model.trim().is_empty() {
            command.args(["--model", self.settings.model.trim()]);
        }
        command.env_clear();
        for (name, value) in std::env::vars_os() {
            let Some(text) = name.to_str() else { continue };
            if KEPT.contains(&text) || KEPT_PREFIXES.iter().any(|p| text.starts_with(p)) {
                command.env(&name, value);
            }
        }
        command
            .env("MEMTRAY_DISABLED", "1")
            .current_dir(&self.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    fn read(&self, stdout: &[u8], stderr: &[u8], exit: std::process::ExitStatus) -> Result<Completion, ProviderError> {
        let quoted =
            || String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_QUOTED)..]).trim().to_string();
        let Ok(answer) = serde_json::from_slice::<Value>(stdout) else {
            let message = format!("no JSON answer ({exit}); stderr: {}", quoted());
            return Err(ProviderError::Retry(Box::new(RunFailure(message))));
        };
        let result = answer["result"].as_str().unwrap_or_default().to_string();
        if answer["is_error"] == true || answer["subtype"].as_str().is_some_and(|s| s != "success") {
            return Err(classify(&result, exit));
        }
        let n = |k: &str| answer["usage"][k].as_u64().unwrap_or(0);
        let model = answer["modelUsage"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .or_else(|| Some(self.settings.model.clone()).filter(|m| !m.is_empty()));
        let usage = Usage {
            model,
            input_tokens: n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens"),
            output_tokens: n("output_tokens"),
        };
        Ok(Completion { text: result, usage })
    }
}

/// An error result of `claude -p`, by its words: a login or key problem is the configuration's.
fn classify(result: &str, exit: std::process::ExitStatus) -> ProviderError {
    let lower = result.to_ascii_lowercase();
    let failure = Box::new(RunFailure(format!("{} ({exit})", if result.is_empty() { "error result" } else { result })));
    let misconfigured = ["login", "api key", "authentication", "401", "403", "not logged in", "permission"];
    if misconfigured.iter().any(|w| lower.contains(w)) {
        ProviderError::Misconfigured(failure)
    } else {
        ProviderError::Retry(failure)
    }
}

/// Kills a run's whole process group when dropped: after its answer, and when the call is abandoned.
struct Group(Option<rustix::process::Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // Gone already (ESRCH) is fine: nothing of the run is left.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait::async_trait]
impl Transport for ClaudeCli {
    fn name(&self) -> &'static str {
        NAME
    }

    fn destination(&self) -> String {
        let model = if self.settings.model.is_empty() {
            "its default model".to_string()
        } else {
            format!("model {}", self.settings.model)
        };
        format!("`{} -p` (the user's Claude Code account, {model})", self.settings.command)
    }

    async fn complete(&self, request: &Request) -> Result<Completion, ProviderError> {
        let _permit = self.running.acquire().await.expect("the semaphore is never closed");
        std::fs::create_dir_all(&self.workdir).map_err(|e| {
            ProviderError::Retry(Box::new(RunFailure(format!("cannot make {}: {e}", self.workdir.display()))))
        })?;
        let mut child = match self.command(request).spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let message = format!("cannot run {:?}: not found (set claude_cli.command)", self.settings.command);
                return Err(ProviderError::Misconfigured(Box::new(RunFailure(message))));
            }
            Err(e) => return Err(ProviderError::Retry(Box::new(RunFailure(format!("cannot start: {e}"))))),
        };
        let mut group = Group(child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let material = request.user.clone();
        let waiting = async {
            // A run that exits without reading its input is judged by its answer, not by this write.
            let _ = stdin.write_all(material.as_bytes()).await;
            let _ = stdin.shutdown().await;
            drop(stdin);
            let status = child.wait().await;
            // What the run left behind holds its output pipes open: the group goes with the run.
            group.kill();
            status
        };
        let reading = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            (out, err)
        };
        let (status, (out, err)) = tokio::join!(waiting, reading);
        let status = status.map_err(|e| ProviderError::Retry(Box::new(RunFailure(format!("lost the run: {e}")))))?;
        self.read(&out, &err, status)
    }
}
