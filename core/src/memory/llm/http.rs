//! HTTP failures as provider errors, the same for both HTTP protocols: 429 and "overloaded" with a
//! `retry-after` wait that long; 5xx, 408 and transport failures retry with backoff; 401, 403 and 404 (a bad
//! key, no permission, no such model or endpoint) mean the configuration is wrong; any other 4xx refuses
//! this request, so retrying it cannot help.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::memory::provider::{ProviderConfigError, ProviderError};

/// The longest wait a `retry-after` is taken at.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// How long to connect before giving up on this attempt.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure reported by (or on the way to) a provider's HTTP API.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct HttpFailure {
    /// Which provider.
    pub provider: &'static str,
    /// What happened, with the API's own words when it sent any.
    pub message: String,
}

/// The client every HTTP provider uses: connect timeout, no proxy surprises beyond the environment's.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a client without custom TLS settings always builds")
}

/// `base` + `path`, checked to be an http(s) URL.
pub(super) fn endpoint(provider: &'static str, base: &str, path: &str) -> Result<String, ProviderConfigError> {
    let base = base.trim().trim_end_matches('/');
    let url = format!("{base}{path}");
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(url),
        _ => Err(ProviderConfigError::Invalid { provider, reason: format!("base_url {base:?} is not an http(s) URL") }),
    }
}

/// A request that did not get an answer (connection refused or dropped, a body cut short).
pub(super) fn transport(provider: &'static str, error: reqwest::Error) -> ProviderError {
    let message = if error.is_connect() {
        format!("cannot connect: {error}")
    } else if error.is_timeout() {
        format!("timed out: {error}")
    } else if error.is_body() || error.is_decode() {
        format!("the answer was cut short or malformed: {error}")
    } else {
        format!("request failed: {error}")
    };
    ProviderError::Retry(Box::new(HttpFailure { provider, message }))
}

/// An error status with its body, classified.
pub(super) fn status(provider: &'static str, status: StatusCode, headers: &HeaderMap, body: &str) -> ProviderError {
    let detail = api_error(body);
    let message = match &detail {
        Some((kind, text)) => format!("{} {kind}: {text}", status.as_u16()),
        None => format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error")),
    };
    let failure = Box::new(HttpFailure { provider, message });
    let overloaded = detail.as_ref().is_some_and(|(kind, _)| kind.contains("overloaded"));
    match status.as_u16() {
        code if overloaded || matches!(code, 429 | 503 | 529) => match retry_after(headers) {
            Some(after) => ProviderError::RetryAfter { after, source: failure },
            None => ProviderError::Retry(failure),
        },
        401 | 403 | 404 => ProviderError::Misconfigured(failure),
        408 | 409 => ProviderError::Retry(failure),
        400..=499 => ProviderError::GiveUp(failure),
        _ => ProviderError::Retry(failure),
    }
}

/// An error the API sent inside a successful stream (Anthropic's `error` event), classified by its type.
pub(super) fn in_stream(provider: &'static str, kind: &str, text: &str) -> ProviderError {
    let failure = Box::new(HttpFailure { provider, message: format!("{kind}: {text}") });
    match kind {
        "authentication_error" | "permission_error" | "not_found_error" => ProviderError::Misconfigured(failure),
        "invalid_request_error" | "request_too_large" => ProviderError::GiveUp(failure),
        _ => ProviderError::Retry(failure),
    }
}

/// The API's error type and message from an error body: Anthropic's `{"type":"error","error":{"type",
/// "message"}}` and OpenAI's `{"error":{"type"|"code","message"}}`.
fn api_error(body: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    if let Some(text) = error.as_str() {
        return Some(("error".into(), text.to_string()));
    }
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| error.get("code").and_then(Value::as_str))
        .unwrap_or("error");
    let text = error.get("message").and_then(Value::as_str).unwrap_or_default();
    Some((kind.to_string(), text.to_string()))
}

/// `retry-after-ms` (milliseconds) or `retry-after` (seconds, possibly fractional), capped.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let wait = match read("retry-after-ms") {
        Some(ms) => ms / 1000.0,
        None => read("retry-after")?,
    };
    (wait.is_finite() && wait >= 0.0).then(|| Duration::from_secs_f64(wait).min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified_as_the_protocols_mean_them() {
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let e = status("anthropic", StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", "7")]), body);
        assert!(matches!(e, ProviderError::RetryAfter { after, .. } if after == Duration::from_secs(7)), "{e:?}");
        assert!(e.to_string().contains("429 rate_limit_error: slow down"), "{e}");
        let e = status("openai", StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after-ms", "1500")]), "");
        assert!(matches!(e, ProviderError::RetryAfter { after, .. } if after == Duration::from_millis(1500)));
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        let e = status("anthropic", StatusCode::from_u16(529).unwrap(), &headers(&[("retry-after", "2")]), overloaded);
        assert!(matches!(e, ProviderError::RetryAfter { .. }));
        assert!(matches!(status("a", StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), ""), ProviderError::Retry(_)));
        assert!(matches!(
            status("a", StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), ""),
            ProviderError::Retry(_)
        ));
        assert!(matches!(status("a", StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""), ProviderError::Retry(_)));
        assert!(matches!(
            status("a", StatusCode::UNAUTHORIZED, &HeaderMap::new(), ""),
            ProviderError::Misconfigured(_)
        ));
        assert!(matches!(status("a", StatusCode::FORBIDDEN, &HeaderMap::new(), ""), ProviderError::Misconfigured(_)));
        assert!(matches!(status("a", StatusCode::NOT_FOUND, &HeaderMap::new(), ""), ProviderError::Misconfigured(_)));
        let invalid = r#"{"error":{"message":"bad field","type":"invalid_request_error"}}"#;
        let e = status("openai", StatusCode::BAD_REQUEST, &HeaderMap::new(), invalid);
        assert!(matches!(e, ProviderError::GiveUp(_)) && e.to_string().contains("bad field"), "{e}");
    }
}
