//! Fault injection around a real provider, for crash tests, poison-message tests and demos: a fixed delay
//! before every call (so processing can be caught mid-way) and tools whose observations always fail.
//! Off unless `fault_provider_delay_ms` or `fault_fail_tools` is set.

use std::sync::Arc;
use std::time::Duration;

use super::provider::{Provider, ProviderError, SessionContext};
use crate::config::Config;
use crate::memory::{NewObservation, NewSummary};
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

    async fn observe(&self, ctx: &SessionContext, tool: &ToolUse) -> Result<Vec<NewObservation>, ProviderError> {
        tokio::time::sleep(self.delay).await;
        if self.fail_tools.contains(&tool.tool_name) {
            return Err(ProviderError::Retry(Box::new(InjectedFault(tool.tool_name.clone()))));
        }
        self.inner.observe(ctx, tool).await
    }

    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<NewSummary, ProviderError> {
        tokio::time::sleep(self.delay).await;
        self.inner.summarize(ctx, request).await
    }
}
