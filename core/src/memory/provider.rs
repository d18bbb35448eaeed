//! Providers turn queued messages into memory: tool uses into observations, a stop into a summary.
//!
//! The trait is async and object-safe (`Arc<dyn Provider>`). Callers cancel a call by dropping its future
//! and bound it with a timeout; a provider's error says whether to give up, retry, retry after a time, or
//! stop calling it until its configuration is fixed. A provider takes several tool uses in one call when its
//! [`Batching`] allows. `local` is the embedded offline default; `llm` holds the model-backed ones.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::memory::{NewObservation, NewSummary, faults, llm, local};
use crate::queue::message::{SummaryRequest, ToolUse};

/// What a provider knows about the session a message belongs to.
#[derive(Debug, Clone, Default)]
pub struct SessionContext {
    /// The session's row id.
    pub session_id: i64,
    /// The agent's session id.
    pub agent_session_id: String,
    /// The project name.
    pub project: String,
    /// The number of the prompt the message belongs to (for a batch: its last message's).
    pub prompt_number: i64,
    /// The user's prompts in the span being worked on (since the previous summary), oldest first, private
    /// parts already removed.
    pub prompts: Vec<String>,
    /// Observations already made in that span, oldest first (bounded for a tool use).
    pub observations: Vec<NewObservation>,
    /// For a summary: the tool uses of the same span, oldest first, as far as the store still holds them (a
    /// message pruned by retention takes its tool use with it; its observations stay). Empty for tool uses.
    pub tool_uses: Vec<ToolUse>,
}

/// What a call spent, from the API's usage fields (zero for `local`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The model that answered.
    pub model: Option<String>,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// True when the call spent tokens (a model answered).
    pub fn spent(&self) -> bool {
        self.total() > 0
    }
}

/// Memory a call made, and what it spent.
#[derive(Debug, Clone, PartialEq)]
pub struct Made<T> {
    /// The memory.
    pub memory: T,
    /// The tokens.
    pub usage: Usage,
}

impl<T> Made<T> {
    /// Memory that cost nothing (`local`).
    pub fn free(memory: T) -> Made<T> {
        Made { memory, usage: Usage::default() }
    }
}

/// For a batch of tool uses: the observations of each, in the order asked (an entry may be empty: the model
/// found nothing worth keeping in that tool use).
pub type Observed = Made<Vec<Vec<NewObservation>>>;

/// For a summarize: the summary, unless the model said there is nothing to summarize.
pub type Summarized = Made<Option<NewSummary>>;

/// How many tool uses a provider takes in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many (1 = no batching).
    pub max_items: usize,
    /// At most about this many input tokens of tool uses (estimated at 4 bytes a token); the first tool use
    /// goes whatever its size.
    pub max_tokens: usize,
}

impl Batching {
    /// One tool use per call.
    pub const ONE: Batching = Batching { max_items: 1, max_tokens: usize::MAX };
}

/// Why a provider call did not produce memory, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Trying again cannot help (a refused request, malformed input): the message gets fallback memory now.
    #[error("{0}")]
    GiveUp(#[source] BoxError),
    /// A passing failure (5xx, a dropped connection): retry with the usual backoff.
    #[error("{0}")]
    Retry(#[source] BoxError),
    /// The provider was told when to come back (rate limit, overloaded).
    #[error("{source} (retry after {after:?})")]
    RetryAfter {
        /// How long to wait.
        after: Duration,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The call took longer than the configured timeout.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The model answered but its reply is not memory: retry (the tokens were spent).
    #[error("unreadable reply: {error}")]
    Unreadable {
        /// Why it does not parse.
        #[source]
        error: BoxError,
        /// What the call spent.
        usage: Usage,
    },
    /// The provider refuses this configuration (a bad key, no permission, no such model, no executable):
    /// calling again cannot help until the configuration changes. Messages wait; no attempt is spent.
    #[error("{0}")]
    Misconfigured(#[source] BoxError),
}

impl ProviderError {
    /// Tokens a failed call spent.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            ProviderError::Unreadable { usage, .. } => Some(usage),
            _ => None,
        }
    }

    /// A failure of the provider as a service (it did not answer, or answered with an error), as opposed
    /// to one of this message: what the circuit breaker counts.
    pub fn is_outage(&self) -> bool {
        matches!(self, ProviderError::Retry(_) | ProviderError::RetryAfter { .. } | ProviderError::Timeout(_))
    }
}

/// Any error a provider wants to report.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Turns messages into memory.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs, stored memory and `memtray config`.
    fn name(&self) -> &str;

    /// Where this provider sends what it is given (a URL, a command), for `memtray config`; `None` when
    /// nothing leaves the process.
    fn destination(&self) -> Option<String> {
        None
    }

    /// How many tool uses one call takes.
    fn batching(&self) -> Batching {
        Batching::ONE
    }

    /// Whether a call for tool uses wants the span's earlier prompts and observations read from the store.
    fn wants_span(&self) -> bool {
        false
    }

    /// Observations for each of the tool uses (in one call).
    async fn observe(&self, ctx: &SessionContext, tools: &[ToolUse]) -> Result<Observed, ProviderError>;

    /// A summary of the session span in `ctx`, given the request's last messages; `None` when the model
    /// found nothing worth a summary.
    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<Summarized, ProviderError>;
}

/// Errors choosing a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// The configured name matches no provider.
    #[error("unknown provider {0:?}; available: local, anthropic, openai, claude-cli")]
    Unknown(String),
    /// The provider's settings cannot work (no model, a bad URL).
    #[error("provider {provider}: {reason}")]
    Invalid {
        /// The provider.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Builds the configured provider, wrapped with fault injection when the configuration asks for it.
pub fn from_config(config: &Config) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    let base: Arc<dyn Provider> = match config.provider.as_str() {
        "local" => Arc::new(local::LocalProvider),
        "anthropic" => Arc::new(llm::Llm::new(llm::anthropic::Anthropic::from_config(config)?, config)),
        "openai" => Arc::new(llm::Llm::new(llm::openai::OpenAi::from_config(config)?, config)),
        "claude-cli" => Arc::new(llm::Llm::new(llm::claude_cli::ClaudeCli::from_config(config)?, config)),
        other => return Err(ProviderConfigError::Unknown(other.to_string())),
    };
    Ok(faults::Faults::wrap(base, config))
}
