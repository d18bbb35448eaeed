//! The `memtray` command: the headless server and the tools around it. Thin glue over `memtray-core`; the
//! only crate that carries the command line's dependencies (clap, anyhow, tracing-subscriber). One tokio
//! runtime per process, built here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use claude_settings::HookMode;
use memtray_core::agents::claude_code::settings::mcp as claude_mcp;
use memtray_core::agents::claude_code::{self, settings as claude_settings};
use memtray_core::client::{Client, ClientError};
use memtray_core::config::{self, Config, Paths};
use memtray_core::recall::dates;
use memtray_core::secret::Secret;
use memtray_core::server::Server;
use memtray_core::store::ReadOnly;
use memtray_core::store::search::{self, Kind, SearchQuery};
use memtray_core::team::members;
use memtray_core::team::server::TeamServer;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "memtray", version, about = "Catches coding-agent hook events and turns them into memory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the headless server (intake API, processing, inspector API) until SIGINT or SIGTERM.
    Serve {
        /// Run the team server instead: shared memory in PostgreSQL (`[team] database_url`), served on
        /// `[team] listen`.
        #[arg(long)]
        team: bool,
    },
    /// Administer the team server's members (run where `[team] database_url` reaches its database).
    Team {
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// Show a one-screen summary from the running server.
    Status {
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration and the file paths.
    Config,
    /// Open the inspector in the browser, signed in (prints the address too).
    Open {
        /// Only print the address.
        #[arg(long)]
        print: bool,
    },
    /// Search memory (observations, summaries, prompts) by words; asks the running server, or reads the
    /// database read-only when none answers.
    Search {
        /// The words to look for (all must appear; the last may start a longer word).
        query: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only observations of this type (change, bugfix, discovery, ...).
        #[arg(long = "type", value_name = "TYPE")]
        observation_type: Option<String>,
        /// Only these kinds, comma-separated: observation, summary, prompt.
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        /// Only memory since this time: ms since the epoch or a UTC date YYYY-MM-DD[THH:MM[:SS]Z].
        #[arg(long)]
        since: Option<String>,
        /// How many hits (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the context a Claude Code session in this project starts with (what the SessionStart hook gives).
    Context {
        /// The project (default: the project of the current folder).
        #[arg(long)]
        project: Option<String>,
        /// At most this many characters (default: `context_chars`).
        #[arg(long)]
        chars: Option<usize>,
    },
    /// Serve memtray's memory to an agent over MCP on stdin/stdout (reads the database read-only).
    Mcp,
    /// Claude Code command hook: read one hook event on stdin and hand it to memtray. Prints nothing and
    /// always exits 0 within the hook budget.
    Hook,
    /// Add memtray's hooks to Claude Code's settings (keeps every other hook and setting) and register its MCP
    /// server.
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
        /// Do not register `memtray mcp` with Claude Code (in `~/.claude.json`, or the project's `.mcp.json`).
        #[arg(long)]
        no_mcp: bool,
    },
    /// Remove exactly memtray's hooks (and its MCP server entry) from Claude Code's settings.
    UninstallHooks {
        /// The project whose `.claude/settings.json` to edit.
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        /// Show what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Add a member and print their key (shown this once; only its hash is stored).
    AddMember {
        /// The member's name: the author of what they share.
        name: String,
        /// A project the member is in (repeat for more).
        #[arg(long = "project", value_name = "PROJECT")]
        projects: Vec<String>,
        /// May pull and search, not push.
        #[arg(long, conflicts_with = "write_only")]
        read_only: bool,
        /// May push, not pull or search (a build machine, say).
        #[arg(long)]
        write_only: bool,
    },
    /// Revoke a member's key: every request with it is refused from now on.
    Revoke {
        /// The member.
        name: String,
    },
    /// Put a member in a project.
    Grant {
        /// The member.
        name: String,
        /// The project.
        project: String,
    },
    /// Take a member out of a project.
    Ungrant {
        /// The member.
        name: String,
        /// The project.
        project: String,
    },
    /// List the members with their scopes and projects.
    List {
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Http,
    Command,
}

fn main() -> ExitCode {
    // Before anything is created: the database, the hook log and the secret are this user's alone.
    config::private_files();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { team: false } => serve(),
        Command::Serve { team: true } => serve_team(),
        Command::Team { command } => team(command),
        Command::Status { json } => status(json),
        Command::Config => config(),
        Command::Open { print } => open(print),
        Command::Search { query, project, observation_type, kind, since, limit, json } => {
            search(query, project, observation_type, kind, since, limit, json)
        }
        Command::Context { project, chars } => context(project, chars),
        Command::Mcp => mcp(),
        Command::Hook => {
            hook();
            Ok(())
        }
        Command::InstallHooks { mode, project, dry_run, no_mcp } => install_hooks(mode, project, dry_run, no_mcp),
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

fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMTRAY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The team server until SIGINT or SIGTERM: no local store, only PostgreSQL.
fn serve_team() -> anyhow::Result<()> {
    log_to_stderr();
    let (config, _) = Config::load()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let stop = shutdown_signal()?;
        let server = TeamServer::bind(&config.team).await?;
        let addr = server.local_addr()?;
        println!("memtray: team server ready on http://{addr}");
        server.run(stop).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

fn team(command: TeamCommand) -> anyhow::Result<()> {
    let (config, _) = Config::load()?;
    client_runtime()?.block_on(async {
        let pool = memtray_core::team::server::connect(&config.team).await?;
        match command {
            TeamCommand::AddMember { name, projects, read_only, write_only } => {
                let key = members::add(&pool, &name, !write_only, !read_only, &projects).await?;
                eprintln!("memtray: added {name}; their key (shown only now) is:");
                println!("{key}");
                eprintln!("memtray: on their machine, put it in [team] key, with url and the projects to share");
            }
            TeamCommand::Revoke { name } => {
                members::revoke(&pool, &name).await?;
                println!("memtray: revoked {name}'s key");
            }
            TeamCommand::Grant { name, project } => {
                members::set_project(&pool, &name, &project, true).await?;
                println!("memtray: {name} is in {project}");
            }
            TeamCommand::Ungrant { name, project } => {
                members::set_project(&pool, &name, &project, false).await?;
                println!("memtray: {name} is no longer in {project}");
            }
            TeamCommand::List { json } => {
                let list = members::list(&pool).await?;
                if json {
                    println!("{}", serde_json::to_string(&list)?);
                }
                for m in list.iter().filter(|_| !json) {
                    let scopes = match (m.read, m.write) {
                        (true, true) => "read, write",
                        (true, false) => "read",
                        (false, true) => "write",
                        (false, false) => "none",
                    };
                    let state = if m.revoked { " (revoked)" } else { "" };
                    println!("{}{state}: {scopes}; projects: {}", m.name, m.projects.join(", "));
                }
            }
        }
        anyhow::Ok(())
    })
}

fn serve() -> anyhow::Result<()> {
    log_to_stderr();
    // Many held connections must not starve the database of file descriptors: the soft limit goes to the hard.
    match memtray_core::server::raise_open_files_limit() {
        Ok((before, after)) if before != after => tracing::debug!(?before, ?after, "raised the open-files limit"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    let (config, paths) = Config::load()?;
    paths.restrict_existing().context("cannot make memtray's files private")?;
    let secret = Secret::load_or_create(&paths.state_dir)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        // Handlers first: a signal that arrives as soon as "ready" is printed must already shut down cleanly.
        let stop = shutdown_signal()?;
        let server = Server::start(&config, secret).await?;
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

/// A client carrying this user's secret; it sends it only once the server proves it knows it
/// ([`Client::verify`]).
fn signed_client(config: &Config, paths: &Paths, timeout_secs: u64) -> anyhow::Result<Client> {
    let secret = Secret::load_or_create(&paths.state_dir)?;
    Ok(Client::with_timeout(config.port, std::time::Duration::from_secs(timeout_secs)).with_secret(secret))
}

/// A client of this user's running server, which has proved it is this user's.
async fn own_server(config: &Config, paths: &Paths) -> anyhow::Result<Client> {
    let client = signed_client(config, paths, 3)?;
    client.verify().await?;
    Ok(client)
}

fn status(json: bool) -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    let (stats, sessions, queue, team) = client_runtime()?.block_on(async {
        let client = own_server(&config, &paths).await?;
        anyhow::Ok((
            client.get("/api/stats").await?,
            client.get("/api/sessions?status=active&limit=10").await?,
            client.get("/api/queue?limit=10").await?,
            client.get("/api/team").await?,
        ))
    })?;
    if json {
        println!("{}", serde_json::json!({ "stats": stats, "sessions": sessions, "queue": queue, "team": team }));
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
    let provider = &stats["provider"];
    let tokens = match provider["maxTokensPerDay"].as_u64() {
        Some(ceiling) if ceiling > 0 => format!("{} of {ceiling} tokens today", n(provider, "tokensToday")),
        _ => format!("{} tokens today", n(provider, "tokensToday")),
    };
    let health = match provider["health"].as_str() {
        Some("ok") | None => String::new(),
        Some(other) => format!(", {other}: {}", provider["reason"].as_str().unwrap_or("")),
    };
    println!("provider: {} ({tokens}{health})", provider["name"].as_str().unwrap_or("?"));
    println!("active sessions: {}", n(&stats, "activeSessions"));
    if team["enabled"] == true {
        let link = match team["unreachableSince"].as_i64() {
            Some(since) => format!("unreachable since {}", dates::format_utc(since)),
            None if team["connected"] == true => "connected".to_string(),
            None => format!("not connected ({})", team["lastError"].as_str().unwrap_or("not yet tried")),
        };
        println!(
            "team {}: {link}; pushing {}, behind by {}",
            team["url"].as_str().unwrap_or(""),
            n(&team, "pushing"),
            n(&team, "behind")
        );
    }
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

/// The inspector's address with this user's secret, which the page turns into its cookie.
fn open(print: bool) -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    client_runtime()?.block_on(own_server(&config, &paths))?;
    let secret = Secret::load_or_create(&paths.state_dir)?;
    let url = format!("http://127.0.0.1:{}/?token={}", config.port, secret.expose());
    println!("{url}");
    if !print {
        let opened = std::process::Command::new("xdg-open").arg(&url).status();
        if !opened.is_ok_and(|s| s.success()) {
            eprintln!("memtray: could not start a browser; open the address above");
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
    // Who would receive data: the one thing a user must be able to see before turning a provider on.
    match memtray_core::memory::provider::from_config(&config) {
        Ok(provider) => match provider.destination() {
            Some(to) => {
                println!(
                    "# provider {}: tool uses and prompts (after <private> removal and redaction) go to {to}",
                    provider.name()
                );
                println!(
                    "#   local stands in when it fails past its attempts, refuses a request, or the day's tokens run out"
                );
            }
            None => println!("# provider {}: nothing leaves this machine", provider.name()),
        },
        Err(e) => println!("# provider: {e}"),
    }
    let mut shown = config.clone();
    for key in [&mut shown.anthropic.api_key, &mut shown.openai.api_key] {
        if !key.is_empty() {
            *key = "(set; not shown)".into();
        }
    }
    if !shown.team.key.is_empty() {
        shown.team.key = "(set; not shown)".into();
    }
    // A password in the database URL (postgres://user:password@host/db) is not shown either.
    if let Some((scheme, rest)) = shown.team.database_url.split_once("://")
        && let Some((credentials, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = credentials.split_once(':')
    {
        shown.team.database_url = format!("{scheme}://{user}:(not shown)@{host}");
    }
    print!("{}", toml::to_string_pretty(&shown).context("cannot render the configuration")?);
    Ok(())
}

/// Never fails and never prints: Claude Code must not wait for or hear from memtray.
fn hook() {
    match Config::load() {
        Ok((config, paths)) => {
            if let Ok(runtime) = client_runtime() {
                let ran = runtime.block_on(claude_code::hook::run(&config, &paths, std::io::stdin().lock()));
                if let Some(line) = ran.output {
                    // The one thing Claude Code reads from memtray: the context, as its hook output.
                    println!("{line}");
                }
            }
        }
        Err(_) => {
            // Without a readable configuration there is nowhere to deliver to; drop the event quietly.
        }
    }
}

fn home() -> anyhow::Result<PathBuf> {
    Ok(directories::BaseDirs::new().context("no home directory")?.home_dir().to_path_buf())
}

fn settings_path(project: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match project {
        Some(dir) => dir.join(".claude").join("settings.json"),
        None => home()?.join(".claude").join("settings.json"),
    })
}

/// Where memtray's MCP server is registered: the project's `.mcp.json`, or `~/.claude.json`.
fn mcp_config_path(project: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match project {
        Some(dir) => claude_mcp::project_config(dir),
        None => claude_mcp::user_config(&home()?),
    })
}

fn install_hooks(mode: Mode, project: Option<PathBuf>, dry_run: bool, no_mcp: bool) -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    let program = std::env::current_exe().context("cannot tell where the memtray binary is")?;
    let mode = match mode {
        Mode::Http => {
            let secret = Secret::load_or_create(&paths.state_dir)?.expose().to_string();
            HookMode::Http { port: config.port, program, secret: Some(secret) }
        }
        Mode::Command => HookMode::Command { program },
    };
    let path = settings_path(project.clone())?;
    let change = claude_settings::install(&path, &mode, dry_run)?;
    report(&change, dry_run, "installed memtray's hooks in");
    if !no_mcp {
        let program = std::env::current_exe().context("cannot tell where the memtray binary is")?;
        let change = claude_mcp::install(&mcp_config_path(project.as_ref())?, &program, dry_run)?;
        report(&change, dry_run, "registered memtray's MCP server in");
    }
    Ok(())
}

fn uninstall_hooks(project: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let mcp_path = mcp_config_path(project.as_ref())?;
    let path = settings_path(project)?;
    let change = claude_settings::uninstall(&path, dry_run)?;
    report(&change, dry_run, "removed memtray's hooks from");
    let change = claude_mcp::uninstall(&mcp_path, dry_run)?;
    report(&change, dry_run, "removed memtray's MCP server from");
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

#[allow(clippy::too_many_arguments)]
/// The session-start context of a project, from the server or, with none, the database itself.
fn context(project: Option<String>, chars: Option<usize>) -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    let project = match project {
        Some(p) => p,
        None => memtray_core::project::from_cwd(&std::env::current_dir()?.to_string_lossy()),
    };
    let chars = chars.unwrap_or(config.context_chars).min(memtray_core::config::CONTEXT_CHARS_MAX);
    let client = signed_client(&config, &paths, 5)?;
    let params = [("project", project.clone()), ("chars", chars.to_string())];
    let asked = client_runtime()?.block_on(async {
        client.verify().await?;
        client.get_with("/api/context", &params).await
    });
    let text = match asked {
        Ok(answer) => answer["context"].as_str().unwrap_or_default().to_string(),
        Err(ClientError::NotRunning { .. }) => ReadOnly::new(&config).read_blocking(|c| {
            memtray_core::recall::context::session_start(
                c,
                &project,
                chars,
                memtray_core::recall::context::Start::Fresh,
            )
        })?,
        Err(e) => return Err(e.into()),
    };
    if text.is_empty() {
        eprintln!("memtray has no memory of project {project:?} yet");
    } else {
        print!("{text}");
    }
    Ok(())
}

fn search(
    text: String,
    project: Option<String>,
    observation_type: Option<String>,
    kind: Vec<String>,
    since: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let (config, paths) = Config::load()?;
    let kinds = kind
        .iter()
        .map(|k| {
            Kind::parse(k.trim()).with_context(|| format!("unknown kind {k:?}: use observation, summary or prompt"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let since = since
        .map(|s| dates::parse_time(&s).with_context(|| format!("--since {s:?}: use ms since the epoch or YYYY-MM-DD")))
        .transpose()?;
    let query = SearchQuery {
        text,
        project,
        observation_type,
        kinds,
        since,
        limit: limit.clamp(1, search::MAX_LIMIT),
        ..Default::default()
    };
    let mut params: Vec<(&str, String)> = vec![("q", query.text.clone()), ("limit", query.limit.to_string())];
    params.extend(query.project.clone().map(|p| ("project", p)));
    params.extend(query.observation_type.clone().map(|t| ("type", t)));
    params.extend(query.since.map(|s| ("since", s.to_string())));
    if !query.kinds.is_empty() {
        params.push(("kind", query.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")));
    }
    let client = signed_client(&config, &paths, 5)?;
    let asked = client_runtime()?.block_on(async {
        client.verify().await?;
        client.get_with("/api/search", &params).await
    });
    let answer = match asked {
        Ok(answer) => answer,
        Err(ClientError::NotRunning { port }) => {
            if !json {
                eprintln!("memtray: no server on 127.0.0.1:{port}; reading the database directly");
            }
            let hits = ReadOnly::new(&config).read_blocking(|c| search::search(c, &query))?;
            json!({ "query": query.text, "hits": hits, "limit": query.limit, "offset": query.offset })
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{answer}");
        return Ok(());
    }
    let hits = answer["hits"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        println!("no memory matches {:?}", query.text);
        return Ok(());
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    for hit in &hits {
        let text = |k: &str| hit[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<11} #{:<6} {}  {:<16} {:<10} {}",
            text("kind"),
            hit["id"].as_i64().unwrap_or(0),
            dates::format_utc(hit["created_at"].as_i64().unwrap_or(0)),
            text("project"),
            hit["type"].as_str().unwrap_or("-"),
            one_line(&text("title"))
        );
        println!("    {}", terminal_snippet(&text("snippet"), tty));
    }
    Ok(())
}

/// An API snippet (HTML-escaped, matches in `<mark>`) for a terminal: bold matches, or `*word*` when
/// stdout is not a terminal.
fn terminal_snippet(snippet: &str, tty: bool) -> String {
    let (open, close) = if tty { ("\x1b[1m", "\x1b[0m") } else { ("*", "*") };
    one_line(
        &snippet
            .replace("<mark>", open)
            .replace("</mark>", close)
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `memtray mcp`: logs go to stderr (stdout carries the protocol).
fn mcp() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMTRAY_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let (config, _) = Config::load()?;
    client_runtime()?.block_on(memtray_core::recall::mcp::serve_stdio(&config))?;
    Ok(())
}
