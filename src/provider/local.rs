//! The embedded offline provider (placeholder until the full rules land).

use super::{Provider, ProviderError, SessionContext};
use crate::memory::{NewObservation, NewSummary};
use crate::queue::{SummaryRequest, ToolUse};

/// Deterministic, offline: reads the tool use and writes down what it shows.
pub struct LocalProvider;

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn observe(&self, _ctx: &SessionContext, tool: &ToolUse) -> Result<Vec<NewObservation>, ProviderError> {
        Ok(vec![NewObservation { kind: "discovery".into(), title: tool.tool_name.clone(), ..Default::default() }])
    }

    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<NewSummary, ProviderError> {
        Ok(NewSummary { request: ctx.prompts.join("\n"), completed: request.last_assistant_message.clone(), ..Default::default() })
    }
}
