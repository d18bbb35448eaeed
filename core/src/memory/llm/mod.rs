//! Model-backed providers: one prompt format (`prompt`) and one reply parser (`reply`) for every model, over
//! a [`Transport`] per protocol: the Anthropic Messages API (`anthropic`), OpenAI-compatible chat completions
//! (`openai`: Ollama, LM Studio, vLLM, llama.cpp, OpenRouter) and the user's own `claude -p` (`claude_cli`).
//! `http` classifies HTTP failures the same way for the two HTTP protocols.

pub mod anthropic;
pub mod claude_cli;
mod http;
pub mod openai;
pub mod prompt;
pub mod reply;

use crate::config::Config;
use crate::memory::provider::{Batching, Made, Observed, Provider, ProviderError, SessionContext, Summarized, Usage};
use crate::queue::message::{SummaryRequest, ToolUse};

/// One request to a model: instructions and the material.
#[derive(Debug, Clone)]
pub struct Request {
    /// The instructions (the system prompt).
    pub system: String,
    /// The material: the session's context and what to remember.
    pub user: String,
    /// The most tokens the answer may take.
    pub max_output_tokens: u32,
}

/// A model's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Its text.
    pub text: String,
    /// What it spent.
    pub usage: Usage,
}

/// Carries a request to a model and its answer back, classifying failures as the protocol reports them.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The provider's name.
    fn name(&self) -> &'static str;
    /// Where requests go, for `memtray config`.
    fn destination(&self) -> String;
    /// Asks.
    async fn complete(&self, request: &Request) -> Result<Completion, ProviderError>;
}

/// A provider over a transport: builds the prompt, asks, parses the reply.
pub struct Llm<T> {
    transport: T,
    batching: Batching,
    max_output_tokens: u32,
}

impl<T: Transport> Llm<T> {
    /// A provider over `transport` with the configured batching.
    pub fn new(transport: T, config: &Config) -> Llm<T> {
        Llm {
            transport,
            batching: Batching { max_items: config.batch_max_items.max(1), max_tokens: config.batch_max_tokens.max(1) },
            max_output_tokens: config.max_output_tokens.max(256),
        }
    }

    async fn ask(&self, system: String, user: String) -> Result<Completion, ProviderError> {
        self.transport.complete(&Request { system, user, max_output_tokens: self.max_output_tokens }).await
    }
}

/// A reply that parsed into nothing usable, with the tokens it cost.
fn unreadable(error: reply::ReplyError, usage: Usage) -> ProviderError {
    ProviderError::Unreadable { error: Box::new(error), usage }
}

#[async_trait::async_trait]
impl<T: Transport> Provider for Llm<T> {
    fn name(&self) -> &str {
        self.transport.name()
    }

    fn destination(&self) -> Option<String> {
        Some(self.transport.destination())
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn wants_span(&self) -> bool {
        true
    }

    async fn observe(&self, ctx: &SessionContext, tools: &[ToolUse]) -> Result<Observed, ProviderError> {
        let answer = self.ask(prompt::OBSERVE_SYSTEM.to_string(), prompt::observe(ctx, tools)).await?;
        match reply::observations(&answer.text, tools.len()) {
            Ok(memory) => Ok(Made { memory, usage: answer.usage }),
            Err(e) => Err(unreadable(e, answer.usage)),
        }
    }

    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<Summarized, ProviderError> {
        let answer = self.ask(prompt::SUMMARIZE_SYSTEM.to_string(), prompt::summarize(ctx, request)).await?;
        match reply::summary(&answer.text) {
            Ok(memory) => Ok(Made { memory, usage: answer.usage }),
            Err(e) => Err(unreadable(e, answer.usage)),
        }
    }
}
