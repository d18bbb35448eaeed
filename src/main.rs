//! The `memtray` command: the headless server and the tools around it. Thin glue over the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use memtray::client::Client;
use memtray::config::Config;
use memtray::server::Server;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(),
        Command::Status { json } => status(json),
        Command::Config => config(),
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
        .init();
    let (config, paths) = Config::load()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let server = Server::start(&config).await?;
        let addr = server.local_addr();
        tracing::info!(database = %paths.database.display(), "serving");
        // One stable line on stdout for scripts and tests.
        println!("memtray: ready on http://{addr}");
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn status(json: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load()?;
    let client = Client::new(config.port);
    let stats = client.get("/api/stats")?;
    let sessions = client.get("/api/sessions?status=active&limit=10")?;
    let queue = client.get("/api/queue?limit=10")?;
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
