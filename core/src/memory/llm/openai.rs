//! Any OpenAI-compatible chat-completions endpoint (`POST {base_url}/chat/completions`): Ollama, LM Studio,
//! vLLM, llama.cpp's server, OpenRouter. The key is optional (local servers need none); the answer is
//! `choices[0].message.content` and the tokens `usage.prompt_tokens` / `completion_tokens` (a server that
//! sends no usage costs nothing by this count).

use serde_json::{Value, json};

use super::{Completion, Request, Transport, http};
use crate::config::{Config, OpenAiConfig};
use crate::memory::provider::{ProviderConfigError, ProviderError, Usage};

const NAME: &str = "openai";

/// Chat completions as a transport.
pub struct OpenAi {
    client: reqwest::Client,
    settings: OpenAiConfig,
    endpoint: String,
}

impl OpenAi {
    /// From the `[openai]` table.
    pub fn from_config(config: &Config) -> Result<OpenAi, ProviderConfigError> {
        let settings = config.openai.clone();
        let endpoint = http::endpoint(NAME, &settings.base_url, "/chat/completions")?;
        if settings.model.trim().is_empty() {
            let reason = "openai.model is empty (the model to ask, e.g. \"llama3.2\" for Ollama)".to_string();
            return Err(ProviderConfigError::Invalid { provider: NAME, reason });
        }
        Ok(OpenAi { client: http::client(), settings, endpoint })
    }
}

#[async_trait::async_trait]
impl Transport for OpenAi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn destination(&self) -> String {
        format!("{} (model {})", self.endpoint, self.settings.model)
    }

    async fn complete(&self, request: &Request) -> Result<Completion, ProviderError> {
        let body = json!({
            "model": self.settings.model,
            "max_tokens": request.max_output_tokens,
            "temperature": 0.2,
            "stream": false,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
        });
        let mut call = self.client.post(&self.endpoint).json(&body);
        let key = self.settings.api_key.trim();
        if !key.is_empty() {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|e| http::transport(NAME, e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(http::status(NAME, status, &headers, &body));
        }
        let answer: Value = response.json().await.map_err(|e| http::transport(NAME, e))?;
        let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
        let n = |k: &str| answer["usage"][k].as_u64().unwrap_or(0);
        let model = answer["model"].as_str().unwrap_or(&self.settings.model).to_string();
        Ok(Completion {
            text,
            usage: Usage {
                model: Some(model),
                input_tokens: n("prompt_tokens"),
                output_tokens: n("completion_tokens"),
            },
        })
    }
}
