//! Providers turn queued messages into memory: a tool use into observations, a stop into a summary.
//!
//! The trait is async and object-safe (`Arc<dyn Provider>`). Callers cancel a call by dropping its future
//! and bound it with a timeout; a provider's error says whether to give up, retry, or retry after a time.
//! `local` is the embedded offline default; `faults` wraps any provider for tests and demos.

use std::sync::Arc;
use std::time::Duration;

use crate::memory::{NewObservation, NewSummary, faults, local};
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
    /// The number of the prompt the message belongs to.
    pub prompt_number: i64,
    /// The user's prompts in the span being worked on (for a summary: since the previous summary), oldest
    /// first, private parts already removed.
    pub prompts: Vec<String>,
    /// Observations already made in that span, oldest first.
    pub observations: Vec<NewObservation>,
    /// For a summary: the tool uses of the same span, oldest first, as far as the store still holds them (a
    /// message pruned by retention takes its tool use with it; its observations stay). Empty for a tool use.
    pub tool_uses: Vec<ToolUse>,
}

/// Why a provider call did not produce memory, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Trying again cannot help (malformed input, refused content): the message fails now.
    #[error("{0}")]
    GiveUp(#[source] BoxError),
    /// A passing failure: retry with the usual backoff.
    #[error("{0}")]
    Retry(#[source] BoxError),
    /// The provider was told when to come back (rate limit).
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
}

/// Any error a provider wants to report.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Turns messages into memory.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and `memtray config`.
    fn name(&self) -> &str;

    /// Observations for one tool use (the local provider makes exactly one).
    async fn observe(&self, ctx: &SessionContext, tool: &ToolUse) -> Result<Vec<NewObservation>, ProviderError>;

    /// A summary of the session span in `ctx`, given the request's last messages.
    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<NewSummary, ProviderError>;
}

/// Errors choosing a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// The configured name matches no provider.
    #[error("unknown provider {0:?}; available: local")]
    Unknown(String),
}

/// Builds the configured provider, wrapped with fault injection when the configuration asks for it.
pub fn from_config(config: &crate::config::Config) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    let base: Arc<dyn Provider> = match config.provider.as_str() {
        "local" => Arc::new(local::LocalProvider),
        other => return Err(ProviderConfigError::Unknown(other.to_string())),
    };
    Ok(faults::Faults::wrap(base, config))
}
