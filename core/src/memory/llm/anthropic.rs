//! The Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`,
//! answered as one JSON message or, with `stream = true`, as server-sent events (`message_start` carries the
//! input tokens, `content_block_delta` the text, `message_delta` the output tokens, `message_stop` the end;
//! an `error` event or a stream that stops before `message_stop` is a failure).

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Completion, Request, Transport, http};
use crate::config::{AnthropicConfig, Config};
use crate::memory::provider::{ProviderConfigError, ProviderError, Usage};

const NAME: &str = "anthropic";
/// The API version every request names.
const VERSION: &str = "2023-06-01";

/// The Messages API as a transport.
pub struct Anthropic {
    client: reqwest::Client,
    settings: AnthropicConfig,
    endpoint: String,
}

/// A key that is missing is the configuration's fault, found at the first call (so fixing the file later
/// resumes processing without a restart).
#[derive(Debug, thiserror::Error)]
#[error("anthropic: no API key (set anthropic.api_key in the config file or ANTHROPIC_API_KEY)")]
struct NoKey;

impl Anthropic {
    /// From the `[anthropic]` table.
    pub fn from_config(config: &Config) -> Result<Anthropic, ProviderConfigError> {
        let settings = config.anthropic.clone();
        let endpoint = http::endpoint(NAME, &settings.base_url, "/v1/messages")?;
        if settings.model.trim().is_empty() {
            return Err(ProviderConfigError::Invalid { provider: NAME, reason: "anthropic.model is empty".into() });
        }
        Ok(Anthropic { client: http::client(), settings, endpoint })
    }

    fn usage(&self, usage: &Value, model: Option<&str>) -> Usage {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            model: Some(model.unwrap_or(&self.settings.model).to_string()),
            input_tokens: n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens"),
            output_tokens: n("output_tokens"),
        }
    }

    async fn read_stream(&self, response: reqwest::Response) -> Result<Completion, ProviderError> {
        let mut events = response.bytes_stream().eventsource();
        let (mut text, mut usage, mut model) = (String::new(), Value::Null, None::<String>);
        let mut output_tokens = 0;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| {
                let message = format!("the event stream broke off: {e}");
                ProviderError::Retry(Box::new(http::HttpFailure { provider: NAME, message }))
            })?;
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            match event.event.as_str() {
                "message_start" => {
                    usage = data["message"]["usage"].clone();
                    model = data["message"]["model"].as_str().map(str::to_string);
                }
                "content_block_delta" if data["delta"]["type"] == "text_delta" => {
                    text.push_str(data["delta"]["text"].as_str().unwrap_or_default());
                }
                "message_delta" => {
                    output_tokens = data["usage"]["output_tokens"].as_u64().unwrap_or(output_tokens);
                }
                "message_stop" => {
                    let mut usage = self.usage(&usage, model.as_deref());
                    usage.output_tokens = usage.output_tokens.max(output_tokens);
                    return Ok(Completion { text, usage });
                }
                "error" => {
                    let kind = data["error"]["type"].as_str().unwrap_or("error");
                    return Err(http::in_stream(NAME, kind, data["error"]["message"].as_str().unwrap_or_default()));
                }
                _ => {}
            }
        }
        let message = "the event stream ended before message_stop".to_string();
        Err(ProviderError::Retry(Box::new(http::HttpFailure { provider: NAME, message })))
    }
}

#[async_trait::async_trait]
impl Transport for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn destination(&self) -> String {
        format!("{} (model {})", self.endpoint, self.settings.model)
    }

    async fn complete(&self, request: &Request) -> Result<Completion, ProviderError> {
        let key = self.settings.api_key.trim();
        if key.is_empty() {
            return Err(ProviderError::Misconfigured(Box::new(NoKey)));
        }
        let body = json!({
            "model": self.settings.model,
            "max_tokens": request.max_output_tokens,
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
            "stream": self.settings.stream,
        });
        let response = self
            .client
            .post(&self.endpoint)
            .header("x-api-key", key)
            .header("anthropic-version", VERSION)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport(NAME, e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(http::status(NAME, status, &headers, &body));
        }
        if self.settings.stream {
            return self.read_stream(response).await;
        }
        let message: Value = response.json().await.map_err(|e| http::transport(NAME, e))?;
        let text = message["content"]
            .as_array()
            .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join(""))
            .unwrap_or_default();
        Ok(Completion { text, usage: self.usage(&message["usage"], message["model"].as_str()) })
    }
}
