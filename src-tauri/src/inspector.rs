//! The inspector, the server's web UI, in a process of its own (`memtray-desktop --inspector URL`, run by
//! [`window`](crate::window)), so closing it gives back everything its webview took. This side spawns it, tells it
//! where to go over its stdin, and reaps it; it is ended at Quit and ends itself when the tray app dies.
//!
//! The protocol is one line per message: [`Command`]s on the process's stdin, [`Reply`]s on its stdout.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tauri::{AppHandle, Manager};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use memtray_core::secret::Secret;

/// The argument that makes `memtray-desktop` the inspector process; the address follows it.
pub const ARG: &str = "--inspector";
/// The environment variable the inspector process gets this user's secret in.
pub const TOKEN_ENV: &str = "MEMTRAY_INSPECTOR_TOKEN";

/// How long an inspector process let go of gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(1200);
/// How long a command may take to be written before the process is taken for stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Open requests waiting for the supervisor; more than this at once are dropped (and logged).
const QUEUED: usize = 16;

/// What the tray tells the inspector process, one line on its stdin. Its stdin closing means: close and exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Load this address in the window, then raise it.
    Navigate(String),
    /// Raise the window as it is.
    Focus,
}

impl Command {
    /// The line, without its newline.
    pub fn line(&self) -> String {
        match self {
            Command::Navigate(address) => format!("navigate {address}"),
            Command::Focus => "focus".into(),
        }
    }

    /// Reads a line; `None` for one this version does not know.
    pub fn parse(line: &str) -> Option<Command> {
        let line = line.trim();
        match line.split_once(' ') {
            Some(("navigate", address)) if !address.trim().is_empty() => {
                Some(Command::Navigate(address.trim().to_string()))
            }
            None if line == "focus" => Some(Command::Focus),
            _ => None,
        }
    }
}

/// What the inspector process tells the tray, one line on its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A command was carried out.
    Done,
    /// The window is closing: the process is on its way out and carries out no more commands.
    Closing,
}

impl Reply {
    /// The line, without its newline.
    pub fn line(self) -> &'static str {
        match self {
            Reply::Done => "done",
            Reply::Closing => "closing",
        }
    }

    /// Reads a line; `None` for anything else the process prints.
    pub fn parse(line: &str) -> Option<Reply> {
        match line.trim() {
            "done" => Some(Reply::Done),
            "closing" => Some(Reply::Closing),
            _ => None,
        }
    }
}

/// Errors of talking to an inspector process.
#[derive(Debug, thiserror::Error)]
pub enum InspectorError {
    /// The process could not be started.
    #[error("cannot start the inspector process: {0}")]
    Spawn(#[source] std::io::Error),
    /// Its stdin is closed: it has exited or is exiting.
    #[error("the inspector process does not listen: {0}")]
    Write(#[source] std::io::Error),
    /// It has not read its stdin for a long while.
    #[error("the inspector process did not take a command within {WRITE_TIMEOUT:?}")]
    Stuck,
}

/// One request to show the inspector.
struct Request {
    /// The full address, for a new process (or to navigate to).
    address: String,
    /// Whether an open window goes there, or is only raised.
    navigate: bool,
}

/// A cheap handle, managed state: open requests go to the task that owns the inspector process.
#[derive(Clone)]
pub struct Inspector {
    /// To the supervisor, which holds the receiver and ends at the shell's cancel (then sends fail, harmlessly).
    requests: mpsc::Sender<Request>,
}

impl Inspector {
    /// Starts the supervisor; it and every inspector process's reaper stop at `cancel`, under `tracker`.
    /// `secret` goes to each inspector process in its environment (never its arguments, which other accounts
    /// can read), for the page's sign-in.
    pub fn start(cancel: &CancellationToken, tracker: &TaskTracker, secret: Secret) -> Inspector {
        let (requests, rx) = mpsc::channel(QUEUED);
        let (cancel, reapers) = (cancel.clone(), tracker.clone());
        let launcher = Launcher::this_app(secret);
        tauri::async_runtime::spawn(tracker.track_future(supervise(rx, launcher, cancel, reapers)));
        Inspector { requests }
    }

    fn open(&self, request: Request) {
        if let Err(e) = self.requests.try_send(request) {
            tracing::warn!(error = %e, "the inspector request was dropped");
        }
    }
}

/// Shows the inspector, at a session when one is given: raises the open window (going to the session) or starts
/// an inspector process.
pub fn open(app: &AppHandle, base_url: &str, session_id: Option<i64>) {
    let (address, navigate) = match session_id {
        Some(id) => (format!("{base_url}/#/sessions/{id}"), true),
        None => (format!("{base_url}/"), false),
    };
    match app.try_state::<Inspector>() {
        Some(inspector) => inspector.open(Request { address, navigate }),
        None => tracing::error!("the inspector is not set up"),
    }
}

/// What starts an inspector process: this executable with [`ARG`], or in tests a stand-in.
struct Launcher {
    /// `None`: this executable.
    program: Option<PathBuf>,
    /// Before the address.
    args: Vec<OsString>,
    /// Handed over in [`TOKEN_ENV`].
    secret: Option<Secret>,
}

impl Launcher {
    fn this_app(secret: Secret) -> Launcher {
        Launcher { program: None, args: vec![ARG.into()], secret: Some(secret) }
    }

    fn command(&self, address: &str) -> std::io::Result<tokio::process::Command> {
        let program = match &self.program {
            Some(program) => program.clone(),
            None => std::env::current_exe()?,
        };
        let mut command = tokio::process::Command::new(program);
        command.args(&self.args).arg(address);
        if let Some(secret) = &self.secret {
            command.env(TOKEN_ENV, secret.expose());
        }
        Ok(command)
    }
}

/// The running inspector process, as the tray sees it. Dropping it closes the process's stdin (it closes and
/// exits) and tells its reaper to kill it if it has not after [`EXIT_GRACE`].
struct Running {
    /// Commands go here.
    stdin: ChildStdin,
    /// Replies come from here.
    replies: Lines<BufReader<ChildStdout>>,
    /// Commands written and not yet done.
    unanswered: u32,
    /// The address the newest command was for: a process that leaves before doing it is replaced by one there.
    wanted: String,
    /// Cancels the reaper's wait on drop.
    _let_go: DropGuard,
}

impl Running {
    /// Starts `memtray-desktop --inspector <address>` and a reaper for it.
    fn spawn(
        launcher: &Launcher,
        address: &str,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Running, InspectorError> {
        let mut child = launcher
            .command(address)
            .map_err(InspectorError::Spawn)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(InspectorError::Spawn)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both are piped");
        };
        tracing::info!(pid = child.id(), %address, "inspector process started");
        let let_go = cancel.child_token();
        // On the supervisor's runtime, which owns the child's reaping.
        tracker.spawn(reap(child, let_go.clone()));
        Ok(Running {
            stdin,
            replies: BufReader::new(stdout).lines(),
            unanswered: 0,
            wanted: address.to_string(),
            _let_go: let_go.drop_guard(),
        })
    }

    async fn send(&mut self, command: &Command, address: &str) -> Result<(), InspectorError> {
        let line = format!("{}\n", command.line());
        let write = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(InspectorError::Write(e)),
            Err(_) => return Err(InspectorError::Stuck),
        }
        self.unanswered += 1;
        self.wanted = address.to_string();
        Ok(())
    }
}

/// Owns the inspector process: at most one at a time takes commands (one that is leaving may still be exiting).
async fn supervise(
    mut requests: mpsc::Receiver<Request>,
    launcher: Launcher,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let mut running: Option<Running> = None;
    loop {
        tokio::select! {
            // Dropping `running` lets the process go; its reaper, cancelled too, makes sure it ends.
            _ = cancel.cancelled() => return,
            request = requests.recv() => {
                let Some(request) = request else { return };
                if let Some(process) = running.as_mut() {
                    let command = if request.navigate {
                        Command::Navigate(request.address.clone())
                    } else {
                        Command::Focus
                    };
                    match process.send(&command, &request.address).await {
                        Ok(()) => {
                            tracing::debug!(command = %command.line(), "sent to the inspector process");
                            continue;
                        }
                        Err(e) => tracing::info!(error = %e, "starting another inspector process"),
                    }
                }
                running = start(&launcher, &request.address, &cancel, &tracker);
            }
            reply = async { running.as_mut().expect("running").replies.next_line().await }, if running.is_some() => {
                match reply {
                    Ok(Some(line)) => match Reply::parse(&line).inspect(|r| tracing::debug!(reply = r.line(), "the inspector process replied")) {
                        Some(Reply::Done) => {
                            if let Some(process) = running.as_mut() {
                                process.unanswered = process.unanswered.saturating_sub(1);
                            }
                            continue;
                        }
                        Some(Reply::Closing) => {}
                        None => {
                            tracing::debug!(%line, "the inspector process said");
                            continue;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read the inspector process"),
                }
                // Closing or gone: a command it took and did not do goes to a new process.
                let Some(left) = running.take() else { continue };
                if left.unanswered > 0 {
                    running = start(&launcher, &left.wanted, &cancel, &tracker);
                }
            }
        }
    }
}

fn start(launcher: &Launcher, address: &str, cancel: &CancellationToken, tracker: &TaskTracker) -> Option<Running> {
    match Running::spawn(launcher, address, cancel, tracker) {
        Ok(process) => Some(process),
        Err(e) => {
            tracing::error!(error = %e, "could not open the inspector");
            None
        }
    }
}

/// Waits for an inspector process to exit; once the tray lets go of it, gives it [`EXIT_GRACE`], then kills it.
async fn reap(mut child: Child, let_go: CancellationToken) {
    let pid = child.id();
    let status = tokio::select! {
        status = child.wait() => status,
        _ = let_go.cancelled() => match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(pid, "the inspector process did not exit; killing it");
                match child.kill().await {
                    Ok(()) => child.wait().await,
                    Err(e) => Err(e),
                }
            }
        },
    };
    match status {
        Ok(status) => tracing::info!(pid, %status, "inspector process ended"),
        Err(e) => tracing::warn!(pid, error = %e, "could not wait for the inspector process"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_replies_read_back_as_written() {
        for command in [Command::Navigate("http://127.0.0.1:37777/#/sessions/4".into()), Command::Focus] {
            assert_eq!(Command::parse(&command.line()), Some(command.clone()));
            assert_eq!(Command::parse(&format!("{}\r\n", command.line())), Some(command));
        }
        for reply in [Reply::Done, Reply::Closing] {
            assert_eq!(Reply::parse(reply.line()), Some(reply));
        }
        assert_eq!(Command::parse("navigate"), None);
        assert_eq!(Command::parse("navigate  "), None);
        assert_eq!(Command::parse("jump http://x"), None);
        assert_eq!(Reply::parse("Gtk-WARNING something"), None);
    }

    /// A supervisor over a shell script standing in for the inspector process.
    #[cfg(unix)]
    struct StandIn {
        log: std::path::PathBuf,
        requests: mpsc::Sender<Request>,
        cancel: CancellationToken,
        tracker: TaskTracker,
        _dir: tempfile::TempDir,
    }

    #[cfg(unix)]
    impl StandIn {
        /// `script` gets the address as `$1` and `$LOG` as a file to write to.
        fn start(script: &str) -> StandIn {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("log");
            let launcher = Launcher {
                program: Some("sh".into()),
                args: vec!["-c".into(), format!("LOG='{}'\n{script}", log.display()).into(), "stand-in".into()],
                secret: None,
            };
            let (requests, rx) = mpsc::channel(QUEUED);
            let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
            tracker.spawn(supervise(rx, launcher, cancel.clone(), tracker.clone()));
            StandIn { log, requests, cancel, tracker, _dir: dir }
        }

        async fn open(&self, address: &str, navigate: bool) {
            self.requests.send(Request { address: address.into(), navigate }).await.unwrap();
        }

        async fn log_once(&self, lines: usize) -> Vec<String> {
            for _ in 0..500 {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                let got: Vec<String> = text.lines().map(str::to_string).collect();
                if got.len() >= lines {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the stand-in wrote {:?}", std::fs::read_to_string(&self.log));
        }

        async fn stop(self) {
            self.cancel.cancel();
            self.tracker.close();
            let waited = tokio::time::timeout(EXIT_GRACE + Duration::from_secs(3), self.tracker.wait()).await;
            assert!(waited.is_ok(), "the supervisor and the reapers stop");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn commands_go_to_the_open_process_and_one_it_left_undone_to_a_new_one() {
        let stand_in = StandIn::start(
            r#"echo "start $1" >> "$LOG"
while read -r cmd; do
  echo "$cmd" >> "$LOG"
  case "$cmd" in *leave*) echo closing; exit 0;; esac
  echo done
done"#,
        );
        stand_in.open("http://a/", false).await;
        assert_eq!(stand_in.log_once(1).await, ["start http://a/"]);
        stand_in.open("http://a/", false).await;
        stand_in.open("http://a/#/sessions/2", true).await;
        assert_eq!(stand_in.log_once(3).await[1..], ["focus", "navigate http://a/#/sessions/2"]);
        // This one closes instead of doing it: a new process is started there.
        stand_in.open("http://a/#/leave", true).await;
        assert_eq!(stand_in.log_once(5).await[3..], ["navigate http://a/#/leave", "start http://a/#/leave"]);
        stand_in.stop().await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_process_that_does_not_exit_when_let_go_is_killed() {
        let stand_in = StandIn::start(r#"echo "$$" >> "$LOG"; exec sleep 60"#);
        stand_in.open("http://a/", false).await;
        let pid = stand_in.log_once(1).await[0].clone();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        stand_in.stop().await;
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");
    }
}
