//! The effective configuration: defaults, then one TOML file, then `MEMTRAY_*` environment variables.
//!
//! Owns where things live (config file, data dir, database) and every tunable the core reads.
//! It does not watch the file: a change takes effect on the next start, except that a provider refusing
//! its configuration (a bad key) re-reads the file until it works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: toml::de::Error,
    },
    /// An environment variable holds a value of the wrong shape.
    #[error("invalid value {value:?} for environment variable {name}: expected {expected}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An extra redaction pattern is not a valid regular expression.
    #[error("invalid pattern {pattern:?} in redact_patterns: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why it does not compile.
        source: Box<regex::Error>,
    },
    /// No home directory could be found to derive the default paths from.
    #[error("no home directory: set MEMTRAY_DATA_DIR and MEMTRAY_CONFIG")]
    NoHome,
    /// A pattern of `exclude_projects` is not a glob.
    #[error("invalid pattern in exclude_projects: {0}")]
    Glob(#[from] globset::Error),
    /// A pattern of `[team] share` uses what SQLite's GLOB lacks (`{a,b}`, `**`).
    #[error("invalid pattern {0:?} in [team] share: use *, ? and [abc] only")]
    SharePattern(String),
    /// `[team] url` is set without a `key`, or the other way round.
    #[error("[team] url and key go together: set both or neither")]
    TeamHalfSet,
}

/// How hard the commit that acknowledges a message is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every commit is fsynced: an acknowledged message survives power loss.
    Full,
    /// WAL without fsync per commit: survives a process crash, not a power loss.
    Normal,
}

/// Everything memtray can be told. Field names are the TOML keys; each has a `MEMTRAY_<NAME>` override.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Loopback port of the intake API and inspector.
    pub port: u16,
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// `full` (fsync each acknowledging commit) or `normal`.
    pub durability: Durability,
    /// Cap on the database size in bytes (0 = no cap). A full database answers 503 and stores nothing.
    pub max_db_bytes: u64,
    /// Processed messages (their rows, not their observations) are deleted after this many days.
    pub retention_days: u32,
    /// How long an idle session consumer waits for new messages before it exits.
    pub linger_ms: u64,
    /// Attempts before a message is `failed`.
    pub max_attempts: u32,
    /// First retry delay; it doubles per attempt, capped at 5 minutes.
    pub retry_backoff_ms: u64,
    /// A message `processing` longer than this is reported as stuck.
    pub stuck_after_secs: u64,
    /// A provider call longer than this is abandoned and retried.
    pub provider_timeout_secs: u64,
    /// Global cap on concurrent provider calls.
    pub max_concurrent_provider_calls: usize,
    /// Which provider turns messages into memory: `local` (embedded, offline), `anthropic`, `openai` (any
    /// OpenAI-compatible endpoint: Ollama, LM Studio, vLLM, llama.cpp, OpenRouter) or `claude-cli`.
    pub provider: String,
    /// The most tool uses one provider call takes (1 = no batching).
    pub batch_max_items: usize,
    /// The most input tokens (estimated) of tool uses one provider call takes.
    pub batch_max_tokens: usize,
    /// The most tokens a model's answer may take.
    pub max_output_tokens: u32,
    /// Tokens (input + output) a day, UTC, after which memory is made by `local` until the next day (0 = no
    /// ceiling).
    pub max_tokens_per_day: u64,
    /// While the provider refuses its configuration (a bad key), how often it is tried again (and the
    /// config file re-read).
    pub provider_probe_secs: u64,
    /// Consecutive failed calls (no answer, 5xx, rate limits) that open the circuit breaker.
    pub circuit_failures: u32,
    /// How long an open circuit rests before one call tries the provider again (doubling while it fails,
    /// up to 10 minutes).
    pub circuit_cooldown_secs: u64,
    /// The `anthropic` provider.
    pub anthropic: AnthropicConfig,
    /// The `openai` provider.
    pub openai: OpenAiConfig,
    /// The `claude-cli` provider.
    pub claude_cli: ClaudeCliConfig,
    /// Tools whose events are answered `skipped` and never stored.
    pub skip_tools: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `memtray hook` exits within this budget whatever happens.
    pub hook_budget_ms: u64,
    /// Projects (glob patterns on the project name) memtray neither captures nor gives context for.
    pub exclude_projects: Vec<String>,
    /// The most characters of context a session start gets (Claude Code caps hook output at 10,000).
    pub context_chars: usize,
    /// On each prompt, add the best matches of its words among the project's older memory as context.
    pub prompt_context: bool,
    /// Hook intake needs this user's secret too (Claude Code's http hooks carry it once `install-hooks` put
    /// it there; claude-mem's hooks do not, so this is off by default).
    pub intake_requires_secret: bool,
    /// Fault injection for tests and demos: every provider call first sleeps this long.
    pub fault_provider_delay_ms: u64,
    /// Fault injection for tests and demos: observations of these tools always fail.
    pub fault_fail_tools: Vec<String>,
    /// Desktop notifications when a summary is ready or a message fails (the desktop app only; its tray
    /// checkbox overrides this once used).
    pub notifications: bool,
    /// Replace well-known secret shapes (API keys, tokens, passwords, private keys) with `[REDACTED:kind]`
    /// before anything is stored.
    pub redact: bool,
    /// Extra regular expressions to redact (`[REDACTED:custom]`); a group named `secret` limits the
    /// replacement to that part of the match.
    pub redact_patterns: Vec<String>,
    /// A connection that has not sent a whole request head within this is closed (slowloris); so is an idle
    /// keep-alive connection.
    pub header_read_timeout_ms: u64,
    /// Cap on open connections (further ones wait in the kernel's backlog until one closes); lowered to fit
    /// the open-files limit.
    pub max_connections: usize,
    /// Team memory: the team server's side (`database_url`, `listen`) and this machine's link to one (`url`,
    /// `key`, `share`).
    pub team: TeamConfig,
}

/// The `[team]` table. Nothing is shared unless `url`, `key` and a matching `share` pattern are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamConfig {
    /// The team server this machine pushes to and pulls from (`https://memory.example.com`).
    pub url: String,
    /// This member's key, as `memtray team add-member` printed it.
    pub key: String,
    /// Projects whose memory is shared (patterns on the project name: `*`, `?`, `[abc]`).
    pub share: Vec<String>,
    /// How often the outbox is pushed and teammates' memory pulled.
    pub sync_ms: u64,
    /// `memtray serve --team`: the PostgreSQL database of shared memory (`postgres://user:pass@host/db`).
    pub database_url: String,
    /// `memtray serve --team`: where the team server listens (put TLS in front: see the README).
    pub listen: String,
    /// `memtray serve --team`: connections kept to PostgreSQL.
    pub pool_size: usize,
}

impl Default for TeamConfig {
    fn default() -> Self {
        TeamConfig {
            url: String::new(),
            key: String::new(),
            share: Vec::new(),
            sync_ms: 2_000,
            database_url: String::new(),
            listen: "127.0.0.1:37780".into(),
            pool_size: 16,
        }
    }
}

impl TeamConfig {
    /// True when this machine has a team server to talk to.
    pub fn linked(&self) -> bool {
        !self.url.is_empty() && !self.key.is_empty()
    }

    /// The sync period as a duration (at least 10 ms).
    pub fn sync_every(&self) -> Duration {
        Duration::from_millis(self.sync_ms.max(10))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.url.is_empty() != self.key.is_empty() {
            return Err(ConfigError::TeamHalfSet);
        }
        for pattern in &self.share {
            if pattern.is_empty() || pattern.contains('{') || pattern.contains("**") {
                return Err(ConfigError::SharePattern(pattern.clone()));
            }
        }
        Ok(())
    }
}

/// The Anthropic Messages API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    /// The API key (`x-api-key`); empty takes `ANTHROPIC_API_KEY` from the environment.
    pub api_key: String,
    /// Where the API is.
    pub base_url: String,
    /// The model: a small fast one by default.
    pub model: String,
    /// Ask for server-sent events instead of one JSON answer.
    pub stream: bool,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            api_key: String::new(),
            base_url: "https://api.anthropic.com".into(),
            model: "claude-haiku-4-5".into(),
            stream: false,
        }
    }
}

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API's base (the part before `/chat/completions`): Ollama's by default.
    pub base_url: String,
    /// The key, sent as a bearer token when set (local servers need none).
    pub api_key: String,
    /// The model to ask.
    pub model: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig { base_url: "http://127.0.0.1:11434/v1".into(), api_key: String::new(), model: "llama3.2".into() }
    }
}

/// The user's `claude -p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeCliConfig {
    /// The executable (looked up on `PATH` unless a path).
    pub command: String,
    /// The model (`--model`); empty leaves Claude Code's default.
    pub model: String,
    /// The most runs at once.
    pub max_concurrent: usize,
}

impl Default for ClaudeCliConfig {
    fn default() -> Self {
        ClaudeCliConfig { command: "claude".into(), model: "haiku".into(), max_concurrent: 2 }
    }
}

/// The tools skipped by default: bookkeeping tools whose events carry no memory.
pub const DEFAULT_SKIP_TOOLS: &[&str] =
    &["ListMcpResourcesTool", "SlashCommand", "Skill", "TodoWrite", "AskUserQuestion"];

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 37777,
            data_dir: PathBuf::new(),
            durability: Durability::Full,
            max_db_bytes: 0,
            retention_days: 7,
            linger_ms: 5_000,
            max_attempts: 3,
            retry_backoff_ms: 1_000,
            stuck_after_secs: 300,
            provider_timeout_secs: 120,
            max_concurrent_provider_calls: 4,
            provider: "local".into(),
            batch_max_items: 10,
            batch_max_tokens: 12_000,
            max_output_tokens: 2_048,
            max_tokens_per_day: 0,
            provider_probe_secs: 30,
            circuit_failures: 5,
            circuit_cooldown_secs: 30,
            anthropic: AnthropicConfig::default(),
            openai: OpenAiConfig::default(),
            claude_cli: ClaudeCliConfig::default(),
            skip_tools: DEFAULT_SKIP_TOOLS.iter().map(|s| s.to_string()).collect(),
            max_body_bytes: 4 * 1024 * 1024,
            hook_budget_ms: 2_000,
            intake_requires_secret: false,
            exclude_projects: Vec::new(),
            context_chars: 6_000,
            prompt_context: false,
            fault_provider_delay_ms: 0,
            fault_fail_tools: Vec::new(),
            notifications: true,
            redact: true,
            redact_patterns: Vec::new(),
            header_read_timeout_ms: 10_000,
            max_connections: 4096,
            team: TeamConfig::default(),
        }
    }
}

/// Where the configuration came from.
#[derive(Debug, Clone, Serialize)]
pub struct Paths {
    /// The TOML file (it need not exist).
    pub config_file: PathBuf,
    /// The SQLite database.
    pub database: PathBuf,
    /// Where `memtray hook` and friends write their log lines.
    pub state_dir: PathBuf,
}

/// Claude Code's cap on the text a hook adds to the context.
pub const CONTEXT_CHARS_MAX: usize = 10_000;

/// Makes every file and folder this process creates private to its user (umask 077: folders 0700, files
/// 0600) from the first one on. The binaries call it before anything else.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

impl Paths {
    /// Makes what an older memtray created with looser modes private now: the data and state folders 0700;
    /// the database, its journal files, the hook log and the secret 0600. What does not exist is skipped.
    pub fn restrict_existing(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if let Some(data_dir) = self.database.parent() {
            set(data_dir, 0o700)?;
        }
        set(&self.state_dir, 0o700)?;
        let database = self.database.to_string_lossy();
        for file in [format!("{database}"), format!("{database}-wal"), format!("{database}-shm")] {
            set(Path::new(&file), 0o600)?;
        }
        set(&self.state_dir.join("hook.log"), 0o600)?;
        set(&self.state_dir.join(crate::secret::FILE), 0o600)
    }
}

impl Config {
    /// Loads defaults, the config file and the process environment.
    pub fn load() -> Result<(Config, Paths), ConfigError> {
        Self::load_from(|name| std::env::var(name).ok())
    }

    /// Loads with an explicit environment lookup (tests pass a map).
    pub fn load_from(env: impl Fn(&str) -> Option<String>) -> Result<(Config, Paths), ConfigError> {
        let dirs = directories::ProjectDirs::from("", "", "memtray");
        let config_file = match env("MEMTRAY_CONFIG") {
            Some(p) => PathBuf::from(p),
            None => dirs.as_ref().ok_or(ConfigError::NoHome)?.config_dir().join("config.toml"),
        };
        let mut config = Self::read_file(&config_file)?;
        config.apply_env(&env)?;
        crate::project::exclusions(&config.exclude_projects)?;
        config.team.check()?;
        config.context_chars = config.context_chars.min(CONTEXT_CHARS_MAX);
        for pattern in &config.redact_patterns {
            regex::Regex::new(pattern)
                .map_err(|source| ConfigError::Pattern { pattern: pattern.clone(), source: Box::new(source) })?;
        }
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir = dirs.as_ref().ok_or(ConfigError::NoHome)?.data_dir().to_path_buf();
        }
        let state_dir = match env("MEMTRAY_STATE_DIR") {
            Some(p) => PathBuf::from(p),
            None => dirs
                .as_ref()
                .and_then(|d| d.state_dir().map(Path::to_path_buf))
                .unwrap_or_else(|| config.data_dir.join("log")),
        };
        let paths = Paths { database: config.data_dir.join("memtray.db"), config_file, state_dir };
        Ok((config, paths))
    }

    fn read_file(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path: path.to_path_buf(), source }),
        }
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            slot: &mut T,
        ) -> Result<(), ConfigError> {
            if let Some(value) = env(name) {
                *slot =
                    value.trim().parse().map_err(|_| ConfigError::Env { name, value, expected: "a whole number" })?;
            }
            Ok(())
        }
        fn list(env: &impl Fn(&str) -> Option<String>, name: &str, slot: &mut Vec<String>) {
            if let Some(value) = env(name) {
                *slot = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            }
        }
        fn flag(env: &impl Fn(&str) -> Option<String>, name: &'static str, slot: &mut bool) -> Result<(), ConfigError> {
            if let Some(value) = env(name) {
                *slot = match value.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "on" | "yes" => true,
                    "0" | "false" | "off" | "no" => false,
                    _ => return Err(ConfigError::Env { name, value, expected: "true or false" }),
                };
            }
            Ok(())
        }
        num(env, "MEMTRAY_PORT", &mut self.port)?;
        if let Some(dir) = env("MEMTRAY_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(value) = env("MEMTRAY_DURABILITY") {
            self.durability = match value.trim().to_ascii_lowercase().as_str() {
                "full" => Durability::Full,
                "normal" => Durability::Normal,
                _ => {
                    return Err(ConfigError::Env { name: "MEMTRAY_DURABILITY", value, expected: "full or normal" });
                }
            };
        }
        num(env, "MEMTRAY_MAX_DB_BYTES", &mut self.max_db_bytes)?;
        num(env, "MEMTRAY_RETENTION_DAYS", &mut self.retention_days)?;
        num(env, "MEMTRAY_LINGER_MS", &mut self.linger_ms)?;
        num(env, "MEMTRAY_MAX_ATTEMPTS", &mut self.max_attempts)?;
        num(env, "MEMTRAY_RETRY_BACKOFF_MS", &mut self.retry_backoff_ms)?;
        num(env, "MEMTRAY_STUCK_AFTER_SECS", &mut self.stuck_after_secs)?;
        num(env, "MEMTRAY_PROVIDER_TIMEOUT_SECS", &mut self.provider_timeout_secs)?;
        num(env, "MEMTRAY_MAX_CONCURRENT_PROVIDER_CALLS", &mut self.max_concurrent_provider_calls)?;
        if let Some(p) = env("MEMTRAY_PROVIDER") {
            self.provider = p;
        }
        num(env, "MEMTRAY_BATCH_MAX_ITEMS", &mut self.batch_max_items)?;
        num(env, "MEMTRAY_BATCH_MAX_TOKENS", &mut self.batch_max_tokens)?;
        num(env, "MEMTRAY_MAX_OUTPUT_TOKENS", &mut self.max_output_tokens)?;
        num(env, "MEMTRAY_MAX_TOKENS_PER_DAY", &mut self.max_tokens_per_day)?;
        num(env, "MEMTRAY_PROVIDER_PROBE_SECS", &mut self.provider_probe_secs)?;
        num(env, "MEMTRAY_CIRCUIT_FAILURES", &mut self.circuit_failures)?;
        num(env, "MEMTRAY_CIRCUIT_COOLDOWN_SECS", &mut self.circuit_cooldown_secs)?;
        let text = |name: &str, slot: &mut String| {
            if let Some(value) = env(name) {
                *slot = value;
            }
        };
        text("MEMTRAY_ANTHROPIC_API_KEY", &mut self.anthropic.api_key);
        text("MEMTRAY_ANTHROPIC_BASE_URL", &mut self.anthropic.base_url);
        text("MEMTRAY_ANTHROPIC_MODEL", &mut self.anthropic.model);
        flag(env, "MEMTRAY_ANTHROPIC_STREAM", &mut self.anthropic.stream)?;
        if self.anthropic.api_key.is_empty() {
            text("ANTHROPIC_API_KEY", &mut self.anthropic.api_key);
        }
        text("MEMTRAY_OPENAI_BASE_URL", &mut self.openai.base_url);
        text("MEMTRAY_OPENAI_API_KEY", &mut self.openai.api_key);
        text("MEMTRAY_OPENAI_MODEL", &mut self.openai.model);
        text("MEMTRAY_CLAUDE_CLI_COMMAND", &mut self.claude_cli.command);
        text("MEMTRAY_CLAUDE_CLI_MODEL", &mut self.claude_cli.model);
        num(env, "MEMTRAY_CLAUDE_CLI_MAX_CONCURRENT", &mut self.claude_cli.max_concurrent)?;
        list(env, "MEMTRAY_SKIP_TOOLS", &mut self.skip_tools);
        num(env, "MEMTRAY_MAX_BODY_BYTES", &mut self.max_body_bytes)?;
        num(env, "MEMTRAY_HOOK_BUDGET_MS", &mut self.hook_budget_ms)?;
        num(env, "MEMTRAY_FAULT_PROVIDER_DELAY_MS", &mut self.fault_provider_delay_ms)?;
        list(env, "MEMTRAY_FAULT_FAIL_TOOLS", &mut self.fault_fail_tools);
        flag(env, "MEMTRAY_NOTIFICATIONS", &mut self.notifications)?;
        flag(env, "MEMTRAY_INTAKE_REQUIRES_SECRET", &mut self.intake_requires_secret)?;
        list(env, "MEMTRAY_EXCLUDE_PROJECTS", &mut self.exclude_projects);
        num(env, "MEMTRAY_CONTEXT_CHARS", &mut self.context_chars)?;
        flag(env, "MEMTRAY_PROMPT_CONTEXT", &mut self.prompt_context)?;
        flag(env, "MEMTRAY_REDACT", &mut self.redact)?;
        if let Some(value) = env("MEMTRAY_REDACT_PATTERNS") {
            // One pattern per line: a pattern may hold commas.
            self.redact_patterns = value.lines().map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        num(env, "MEMTRAY_HEADER_READ_TIMEOUT_MS", &mut self.header_read_timeout_ms)?;
        num(env, "MEMTRAY_MAX_CONNECTIONS", &mut self.max_connections)?;
        let text = |name: &str, slot: &mut String| {
            if let Some(value) = env(name) {
                *slot = value.trim().to_string();
            }
        };
        text("MEMTRAY_TEAM_URL", &mut self.team.url);
        text("MEMTRAY_TEAM_KEY", &mut self.team.key);
        text("MEMTRAY_TEAM_DATABASE_URL", &mut self.team.database_url);
        text("MEMTRAY_TEAM_LISTEN", &mut self.team.listen);
        list(env, "MEMTRAY_TEAM_SHARE", &mut self.team.share);
        num(env, "MEMTRAY_TEAM_SYNC_MS", &mut self.team.sync_ms)?;
        num(env, "MEMTRAY_TEAM_POOL_SIZE", &mut self.team.pool_size)?;
        Ok(())
    }

    /// The linger timeout as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// The header-read timeout as a duration (at least 1 ms).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    /// The stuck threshold as a duration.
    pub fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.stuck_after_secs)
    }

    /// A configuration for tests and embedding: defaults with the given data dir.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config { data_dir: data_dir.into(), ..Config::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, file).unwrap();
        let mut env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.insert("MEMTRAY_CONFIG".into(), path.display().to_string());
        env.entry("MEMTRAY_DATA_DIR".into()).or_insert_with(|| "/tmp/memtray-test".into());
        Config::load_from(|k| env.get(k).cloned()).map(|(c, _)| c)
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let c = load("port = 4000\nlinger_ms = 10\n", &[("MEMTRAY_PORT", "5000")]).unwrap();
        assert_eq!(c.port, 5000);
        assert_eq!(c.linger_ms, 10);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.durability, Durability::Full);
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = load("", &[("MEMTRAY_PORT", "lots")]).unwrap_err();
        assert!(err.to_string().contains("MEMTRAY_PORT"), "{err}");
        let err = load("prot = 1\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = load("", &[("MEMTRAY_DURABILITY", "extreme")]).unwrap_err();
        assert!(err.to_string().contains("full or normal"), "{err}");
    }

    #[test]
    fn redaction_is_on_by_default_and_its_patterns_are_checked() {
        let c = load("", &[]).unwrap();
        assert!(c.redact);
        assert!(c.redact_patterns.is_empty());
        let c = load("redact_patterns = [\"acme-[0-9]{6}\"]\n", &[("MEMTRAY_REDACT", "0")]).unwrap();
        assert!(!c.redact);
        assert_eq!(c.redact_patterns, ["acme-[0-9]{6}"]);
        let err = load("redact_patterns = [\"(unclosed\"]\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Pattern { .. }), "{err}");
        assert!(err.to_string().contains("(unclosed"), "{err}");
        let err = load("", &[("MEMTRAY_REDACT", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("MEMTRAY_REDACT"), "{err}");
    }

    #[test]
    fn the_team_table_is_read_and_checked() {
        let c = load("[team]\nurl = \"http://t\"\nkey = \"k\"\nshare = [\"ledger*\"]\n", &[]).unwrap();
        assert!(c.team.linked());
        assert_eq!(c.team.share, ["ledger*"]);
        let c = load("", &[("MEMTRAY_TEAM_SHARE", "a,b"), ("MEMTRAY_TEAM_DATABASE_URL", "postgres://x")]).unwrap();
        assert_eq!((c.team.share.len(), c.team.database_url.as_str(), c.team.linked()), (2, "postgres://x", false));
        assert!(matches!(load("[team]\nurl = \"http://t\"\n", &[]), Err(ConfigError::TeamHalfSet)));
        let err = load("", &[("MEMTRAY_TEAM_SHARE", "{a,b}")]).unwrap_err();
        assert!(matches!(err, ConfigError::SharePattern(_)), "{err}");
    }

    #[test]
    fn lists_split_on_commas() {
        let c = load("", &[("MEMTRAY_SKIP_TOOLS", "A, B,,C")]).unwrap();
        assert_eq!(c.skip_tools, ["A", "B", "C"]);
    }
}
