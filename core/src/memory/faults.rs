//! Fault injection around a real provider, for crash tests, poison-message tests and demos: a fixed delay
//! before every call (so processing can be caught mid-way) and tools whose observations always fail.
//! Off unless `fault_provider_delay_ms` or `fault_fail_tools` is set.

use std::sync::Arc;
use std::time::Duration;

use super::provider::{Batching, Observed, Provider, ProviderError, SessionContext, Summarized};
use crate::config::Config;
use crate::queue::message::{SummaryRequest, ToolUse};

/// The error an injected failure reports (and that ends up in the message's `last_error`).
#[derive(Debug, thiserror::Error)]
#[error("injected fault: observations of tool {0} always fail")]
pub struct InjectedFault(pub String);

/// A provider wrapped with the configured faults.
pub struct Faults {
    inner: Arc<dyn Provider>,
    delay: Duration,
    fail_tools: Vec<String>,
}

impl Faults {
    /// Wraps `inner` when the configuration injects anything; returns it untouched otherwise.
    pub fn wrap(inner: Arc<dyn Provider>, config: &Config) -> Arc<dyn Provider> {
        if config.fault_provider_delay_ms == 0 && config.fault_fail_tools.is_empty() {
            return inner;
        }
        Arc::new(Faults {
            inner,
            delay: Duration::from_millis(config.fault_provider_delay_ms),
            fail_tools: config.fault_fail_tools.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Faults {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn destination(&self) -> Option<String> {
        self.inner.destination()
    }

    fn batching(&self) -> Batching {
        self.inner.batching()
    }

    fn wants_span(&self) -> bool {
        self.inner.wants_span()
    }

    async fn observe(&self, ctx: &SessionContext, tools: &[ToolUse]) -> Result<Observed, ProviderError> {
        tokio::time::sleep(self.delay).await;
        if let Some(tool) = tools.iter().find(|t| self.fail_tools.contains(&t.tool_name)) {
            return Err(ProviderError::Retry(Box::new(InjectedFault(tool.tool_name.clone()))));
        }
        self.inner.observe(ctx, tools).await
    }

    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<Summarized, ProviderError> {
        tokio::time::sleep(self.delay).await;
        self.inner.summarize(ctx, request).await
    }
}
