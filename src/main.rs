//! The `memtray` command: the headless server and the tools around it. Thin glue over `memtray-core`; the
//! only crate that carries the command line's dependencies (clap, anyhow, tracing-subscriber). One tokio
//! runtime per process, built here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claude_settings::HookMode;
use memtray_core::agents::claude_code::{self, settings as claude_settings};
use memtray_core::client::Client;
use memtray_core::config::Config;
use memtray_core::server::Server;
use serde_json::Value;

#[derive(Parser)]
#[command(name = "memtray", version, about = "Catches coding-agent hook events and turns them into memory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the headless server (intake API, processing, inspector API) until SIGINT or SIGTERM.
    Serve,
    /// Show a one-screen summary from the running server.
    Status {
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration and the file paths.
    Config,
    /// Claude Code command hook: read one hook event on stdin and hand it to memtray. Prints nothing and
    /// always exits 0 within the hook budget.
    Hook,
    /// Add memtray's hooks to Claude Code's settings (keeps every other hook and setting).
    InstallHooks {
        /// `http`: Claude Code posts to memtray directly (SessionStart and SessionEnd run `memtray hook`, so
        /// they are kept while memtray is down); `command`: it runs `memtray hook` for every event.
        #[arg(long, value_enum, default_value_t = Mode::Http)]
        mode: Mode,
        /// Install into this project's `.claude/settings.json` instead of `~/.claude/settings.json`.
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        /// Show what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove exactly memtray's hooks from Claude Code's settings.
    UninstallHooks {
        /// The project whose `.claude/settings.json` to edit.
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        /// Show what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Http,
    Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(),
        Command::Status { json } => status(json),
        Command::Config => config(),
        Command::Hook => {
            hook();
            Ok(())
        }
        Command::InstallHooks { mode, project, dry_run } => install_hooks(mode, project, dry_run),
        Command::UninstallHooks { project, dry_run } => uninstall_hooks(project, dry_run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memtray: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMTRAY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Many held connections must not starve the database of file descriptors: the soft limit goes to the hard.
    match memtray_core::server::raise_open_files_limit() {
        Ok((before, after)) if before != after => tracing::debug!(?before, ?after, "raised the open-files limit"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    let (config, paths) = Config::load()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        // Handlers first: a signal that arrives as soon as "ready" is printed must already shut down cleanly.
        let stop = shutdown_signal()?;
        let server = Server::start(&config).await?;
        let addr = server.local_addr();
        tracing::info!(database = %paths.database.display(), "serving");
        // One stable line on stdout for scripts and tests.
        println!("memtray: ready on http://{addr}");
        stop.await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// Registers SIGINT and SIGTERM handlers now; the future resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// A small runtime for the commands that talk to a server.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")
}

fn status(json: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load()?;
    let client = Client::with_timeout(config.port, std::time::Duration::from_secs(3));
    let (stats, sessions, queue) = client_runtime()?.block_on(async {
        anyhow::Ok((
            client.get("/api/stats").await?,
            client.get("/api/sessions?status=active&limit=10").await?,
            client.get("/api/queue?limit=10").await?,
        ))
    })?;
    if json {
        println!("{}", serde_json::json!({ "stats": stats, "sessions": sessions, "queue": queue }));
        return Ok(());
    }
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let state = if stats["paused"] == true {
        "paused".to_string()
    } else if stats["isProcessing"] == true {
        format!("processing {} messages in {} sessions", n(&stats, "queueDepth"), n(&stats, "sessionsWithWork"))
    } else {
        "idle".to_string()
    };
    println!("memtray on 127.0.0.1:{}: {state}", config.port);
    println!(
        "queue: {} pending, {} processing, {} stuck, {} failed; {} processed in the last hour",
        n(&stats, "pending"),
        n(&stats, "processing"),
        n(&stats, "stuck"),
        n(&stats, "failed"),
        n(&stats, "processedLastHour")
    );
    println!("active sessions: {}", n(&stats, "activeSessions"));
    for s in sessions["sessions"].as_array().into_iter().flatten() {
        let q = &s["queue"];
        println!(
            "  {:<20} {:<12} prompts {:<3} pending {:<4} processing {:<2} failed {}",
            s["project"].as_str().unwrap_or(""),
            s["agent_session_id"].as_str().unwrap_or("").chars().take(12).collect::<String>(),
            n(s, "prompt_counter"),
            n(q, "pending"),
            n(q, "processing"),
            n(q, "failed")
        );
    }
    let troubled: Vec<&Value> = queue["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["status"] == "failed" || m["stuck"] == true)
        .collect();
    if !troubled.is_empty() {
        println!("needs attention:");
        for m in troubled {
            println!(
                "  #{} {} {} {} after {} attempts: {}",
                n(m, "id"),
                m["project"].as_str().unwrap_or(""),
                m["tool_name"].as_str().unwrap_or(m["kind"].as_str().unwrap_or("")),
                if m["stuck"] == true { "stuck" } else { "failed" },
                n(m, "attempts"),
                m["last_error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn config() -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    println!("# config file: {}", paths.config_file.display());
    println!("# database:    {}", paths.database.display());
    println!("# log folder:  {}", paths.state_dir.display());
    println!("# every key can be overridden by MEMTRAY_<KEY> (e.g. MEMTRAY_PORT)");
    print!("{}", toml::to_string_pretty(&config).context("cannot render the configuration")?);
    Ok(())
}

/// Never fails and never prints: Claude Code must not wait for or hear from memtray.
fn hook() {
    match Config::load() {
        Ok((config, paths)) => {
            if let Ok(runtime) = client_runtime() {
                runtime.block_on(claude_code::hook::run(&config, &paths, std::io::stdin().lock()));
            }
        }
        Err(_) => {
            // Without a readable configuration there is nowhere to deliver to; drop the event quietly.
        }
    }
}

fn settings_path(project: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match project {
        Some(dir) => dir.join(".claude").join("settings.json"),
        None => {
            let home = directories::BaseDirs::new().context("no home directory")?.home_dir().to_path_buf();
            home.join(".claude").join("settings.json")
        }
    })
}

fn install_hooks(mode: Mode, project: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load()?;
    let program = std::env::current_exe().context("cannot tell where the memtray binary is")?;
    let mode = match mode {
        Mode::Http => HookMode::Http { port: config.port, program },
        Mode::Command => HookMode::Command { program },
    };
    let path = settings_path(project)?;
    let change = claude_settings::install(&path, &mode, dry_run)?;
    report(&change, dry_run, "installed memtray's hooks in");
    Ok(())
}

fn uninstall_hooks(project: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let path = settings_path(project)?;
    let change = claude_settings::uninstall(&path, dry_run)?;
    report(&change, dry_run, "removed memtray's hooks from");
    Ok(())
}

fn report(change: &claude_settings::Change, dry_run: bool, done: &str) {
    let path = change.path.display();
    if !change.changed {
        println!("{path}: no change");
    } else if dry_run {
        println!("{path} would change (dry run, nothing written):\n{}", claude_settings::describe(change));
    } else {
        println!("{done} {path}\n{}", claude_settings::describe(change));
    }
}
