//! The async client of a running memtray: its requests and its event stream, used by the command line
//! (`memtray status`, `memtray search`), the hook's server path (`memtray hook`), the server's "who holds the port" check and
//! the desktop when another memtray serves the port. With this user's secret it sends it on every request,
//! but only to a server that first proved it knows it ([`Client::verify`]).
//!
//! HTTP through `reqwest`; the event stream (`/stream`) read with `eventsource-stream` into [`Event`]s.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::events::Event;
use crate::secret::{self, Secret};

/// How long a connection attempt may take (loopback: anything longer means nothing is there).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking to a memtray server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the port (or not in time).
    #[error("no memtray server is running on 127.0.0.1:{port} (start one with `memtray serve` or `make run`)")]
    NotRunning {
        /// The port tried.
        port: u16,
    },
    /// The server refused the request (4xx): sending it again will not help.
    #[error("memtray refused the request ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server could not do it now (5xx): nothing was stored; later may work.
    #[error("memtray could not do it now ({status} {code}): {message}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server on the port is a memtray that cannot prove it knows this user's secret: another account's,
    /// or one started with another state folder. Nothing was sent to it.
    #[error(
        "the memtray on 127.0.0.1:{port} is not this user's (it cannot prove it knows this user's secret); \
         nothing was sent to it"
    )]
    Foreign {
        /// The port.
        port: u16,
    },
    /// Something answered, but not as memtray does.
    #[error("the server on 127.0.0.1:{port} answered unexpectedly: {source}")]
    Unexpected {
        /// The port.
        port: u16,
        /// The cause.
        source: reqwest::Error,
    },
}

/// What `GET /api/health` says of the server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// `memtray` for a memtray server.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Its process id.
    pub pid: u64,
}

/// A client of the API on one loopback port; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// The limit for one ordinary request.
    timeout: Duration,
    /// This user's secret, sent with every request once the server proved it knows it.
    secret: Option<Secret>,
}

impl Client {
    /// A client of `127.0.0.1:port` with the usual timeouts.
    pub fn new(port: u16) -> Client {
        Client::with_timeout(port, REQUEST_TIMEOUT)
    }

    /// A client whose requests (connecting included) give up after `timeout`.
    pub fn with_timeout(port: u16, timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .no_proxy()
            .build()
            .expect("a plain HTTP client always builds");
        Client { http, port, base: format!("http://127.0.0.1:{port}"), timeout, secret: None }
    }

    /// The same client, sending `secret` with every request. Call [`Client::verify`] before the first one.
    pub fn with_secret(mut self, secret: Secret) -> Client {
        self.secret = Some(secret);
        self
    }

    /// Asks the server to prove it knows this client's secret (`GET /api/whoami` with a fresh nonce, no
    /// secret sent). [`ClientError::Foreign`] when it cannot; `Ok` without a secret to check.
    pub async fn verify(&self) -> Result<(), ClientError> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let nonce = secret::nonce().map_err(|_| ClientError::Foreign { port: self.port })?;
        let request = self.http.get(self.url(&format!("/api/whoami?nonce={nonce}")));
        let answer = self.send_plain(request).await;
        let proof = match &answer {
            Ok(value) => value["proof"].as_str().unwrap_or_default(),
            // A memtray too old to know `/api/whoami` is no proof either.
            Err(ClientError::Refused { .. }) => "",
            Err(_) => return answer.map(drop),
        };
        if secret.verify(&nonce, proof) { Ok(()) } else { Err(ClientError::Foreign { port: self.port }) }
    }

    /// `GET /api/health`: who holds the port.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let value = self.get("/api/health").await?;
        serde_json::from_value(value).map_err(|_| ClientError::NotRunning { port: self.port })
    }

    /// GETs an API path and returns its JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GETs an API path with a query string made from `query` (pairs, or a struct) and returns its JSON.
    pub async fn get_with<Q: serde::Serialize + ?Sized>(&self, path: &str, query: &Q) -> Result<Value, ClientError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    /// POSTs JSON to an API path and returns the answer's JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `POST /api/queue/retry-stuck`: retries every stuck and failed message.
    pub async fn retry_stuck(&self) -> Result<(), ClientError> {
        self.post("/api/queue/retry-stuck", &serde_json::json!({})).await.map(drop)
    }

    /// `POST /api/processing`: pauses or resumes processing.
    pub async fn set_paused(&self, paused: bool) -> Result<(), ClientError> {
        self.post("/api/processing", &serde_json::json!({ "paused": paused })).await.map(drop)
    }

    /// `POST /hooks/claude-code` with a hook's raw JSON body, as Claude Code's http hooks send it.
    /// Returns the server's answer: `{}`, or for this user's SessionStart the context it should start with.
    pub async fn claude_code_hook(&self, body: Vec<u8>) -> Result<Value, ClientError> {
        let request = self
            .http
            .post(self.url("/hooks/claude-code"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request).await
    }

    /// Follows `/stream`: the current status first, then every event as it happens, until the server ends
    /// the stream or goes away (then the stream ends, with an error item if it broke). Events this client
    /// does not know (a newer server) are skipped.
    pub async fn updates(&self) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + use<>, ClientError> {
        let port = self.port;
        let response = self
            .authorized(self.http.get(self.url("/stream")))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let response = check(response).await?;
        let events = eventsource_stream::Eventsource::eventsource(response.bytes_stream()).filter_map(move |item| {
            std::future::ready(match item {
                Ok(sse) => match serde_json::from_str::<Event>(&sse.data) {
                    Ok(event) => Some(Ok(event)),
                    Err(e) => {
                        tracing::debug!(event = %sse.event, error = %e, "skipping an event this client does not know");
                        None
                    }
                },
                Err(eventsource_stream::EventStreamError::Transport(source)) => {
                    Some(Err(ClientError::Unexpected { port, source }))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable server-sent event");
                    None
                }
            })
        });
        Ok(events)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        self.send_plain(self.authorized(request)).await
    }

    /// The request with this client's secret, if it has one.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.secret {
            Some(secret) => request.header(secret::HEADER, secret.expose()),
            None => request,
        }
    }

    async fn send_plain(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request.timeout(self.timeout).send().await.map_err(|e| self.transport(e))?;
        let response = check(response).await?;
        response.json().await.map_err(|source| ClientError::Unexpected { port: self.port, source })
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() {
            ClientError::NotRunning { port: self.port }
        } else {
            ClientError::Unexpected { port: self.port, source: e }
        }
    }
}

/// Turns an error answer into the error it reports in the API's `{"error": {"code", "message"}}` format.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let text = |key: &str| body["error"][key].as_str().unwrap_or_default().to_string();
    let (code, message) = (text("code"), text("message"));
    Err(if status.is_client_error() {
        ClientError::Refused { status: status.as_u16(), code, message }
    } else {
        ClientError::Unavailable { status: status.as_u16(), code, message }
    })
}
