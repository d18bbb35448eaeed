//! A fake model API for memtray's providers, speaking both real protocols on one ephemeral loopback port:
//! Anthropic Messages (`POST /v1/messages`, one JSON message or server-sent events) and OpenAI chat
//! completions (`POST /v1/chat/completions`). By default it answers like a model following memtray's prompt
//! (one observation per numbered tool use, a summary for a summary request) with usage counted from the
//! sizes; a script of steps injects faults: an error status with `retry-after`, a slow answer, garbage, a
//! connection dropped mid-body, a call that never answers. Every request is kept with its arrival time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer as a model following the prompt would.
    Answer,
    /// Answer with this text.
    Text(String),
    /// An error status with this body and, when set, a `retry-after` in seconds.
    Status(u16, Value, Option<u32>),
    /// Wait this long, then answer.
    Slow(Duration),
    /// Send part of the body, then drop the connection.
    Drop,
    /// Never answer.
    Hang,
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `anthropic` or `openai`.
    pub protocol: &'static str,
    /// When it arrived.
    pub at: Instant,
    /// The raw body.
    pub body: String,
    /// The body as JSON.
    pub json: Value,
}

impl Received {
    /// The user material (the prompt memtray built).
    pub fn material(&self) -> String {
        // Both protocols: the last user message (OpenAI's system prompt is a message of its own).
        let user = self.json["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
        let Some(content) = user.map(|m| &m["content"]) else { return String::new() };
        // A string, or (as Claude Code sends it) a list of content blocks.
        match content.as_str() {
            Some(text) => text.to_string(),
            None => content
                .as_array()
                .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default(),
        }
    }

    /// How many tool uses it asks about.
    pub fn tool_uses(&self) -> usize {
        self.material().matches("<tool_use number=").count()
    }

    /// True when it asks for a summary.
    pub fn is_summary(&self) -> bool {
        self.material().contains("Write the summary.")
    }
}

struct Shared {
    script: VecDeque<Step>,
    received: Vec<Received>,
    /// The key requests must carry (`x-api-key` or a bearer token); `None` takes any.
    key: Option<String>,
    /// Every answer waits this long first.
    latency: Duration,
}

/// The running fake; stops when dropped.
pub struct FakeLlm {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeLlm {
    /// Starts on a free port; requests must carry `key` when it is set.
    pub fn start(key: Option<&str>) -> FakeLlm {
        let shared = Arc::new(Mutex::new(Shared {
            script: VecDeque::new(),
            received: Vec::new(),
            key: key.map(str::to_string),
            latency: Duration::ZERO,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, port) = std::sync::mpsc::channel();
        let app = Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/v1/chat/completions", post(openai))
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap().port()).unwrap();
                let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
                // A hanging request must not hold the shutdown: give up on it.
                let _ = tokio::time::timeout(Duration::from_secs(3600), serve).await;
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        let port = port.recv().unwrap();
        FakeLlm { port, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The Anthropic base URL (memtray adds `/v1/messages`).
    pub fn anthropic_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The OpenAI base URL (memtray adds `/chat/completions`).
    pub fn openai_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Adds steps to the end of the script; an empty script answers.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared.lock().unwrap().script.extend(steps);
    }

    /// Sets the key requests must carry.
    pub fn require_key(&self, key: &str) {
        self.shared.lock().unwrap().key = Some(key.to_string());
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().received.len()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one request gets: the step, after the key check and the latency.
async fn take(
    shared: &Arc<Mutex<Shared>>,
    protocol: &'static str,
    headers: &HeaderMap,
    body: String,
) -> Result<(Step, Value), Response> {
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (step, latency, key) = {
        let mut shared = shared.lock().unwrap();
        shared.received.push(Received { protocol, at: Instant::now(), body, json: json.clone() });
        (shared.script.pop_front().unwrap_or(Step::Answer), shared.latency, shared.key.clone())
    };
    if let Some(key) = key {
        let sent = match protocol {
            "anthropic" => headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_string),
            _ => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string),
        };
        if sent.as_deref() != Some(key.as_str()) {
            let body = match protocol {
                "anthropic" => {
                    json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
                }
                _ => {
                    json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
                }
            };
            return Err((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
        }
    }
    tokio::time::sleep(latency).await;
    Ok((step, json))
}

/// The text a model following memtray's prompt would answer with.
fn answer_text(request: &Received) -> String {
    if request.is_summary() {
        return "<summary><request>Fix the login bug</request><investigated>src/auth.rs</investigated>\
                <learned>The password check ran after hashing</learned><completed>Reordered the check</completed>\
                <next_steps>Add a regression test</next_steps><notes>none</notes></summary>"
            .to_string();
    }
    let material = request.material();
    let mut out = String::from("Here is what is worth keeping.\n");
    for n in 1..=request.tool_uses() {
        // The tool's name, read back from the material, makes each observation recognisable.
        let tool = material
            .split(&format!("<tool_use number=\"{n}\">\n<tool>"))
            .nth(1)
            .and_then(|rest| rest.split("</tool>").next())
            .unwrap_or("tool");
        out.push_str(&format!(
            "<observation><about>{n}</about><type>discovery</type><title>Model saw {tool} #{n}</title>\
             <subtitle>from the fake model</subtitle><facts><fact>fact {n}</fact></facts>\
             <narrative>The agent used {tool}; this is why it matters.</narrative>\
             <concepts><concept>how-it-works</concept></concepts>\
             <files_read><file>src/auth.rs</file></files_read><files_modified></files_modified></observation>\n"
        ));
    }
    out
}

fn tokens(text: &str) -> u64 {
    (text.len() / 4).max(1) as u64
}

async fn anthropic(State(shared): State<Arc<Mutex<Shared>>>, headers: HeaderMap, body: String) -> Response {
    let (step, json) = match take(&shared, "anthropic", &headers, body.clone()).await {
        Ok(taken) => taken,
        Err(refused) => return refused,
    };
    let received = Received { protocol: "anthropic", at: Instant::now(), body: body.clone(), json: json.clone() };
    let stream = json["stream"] == true;
    let text = match step {
        Step::Answer => answer_text(&received),
        Step::Text(t) => t,
        Step::Status(code, body, retry_after) => return status(code, body, retry_after),
        Step::Slow(wait) => {
            tokio::time::sleep(wait).await;
            answer_text(&received)
        }
        Step::Hang => std::future::pending().await,
        Step::Drop => return dropped(stream),
    };
    let model = json["model"].as_str().unwrap_or("claude-fake").to_string();
    let (input, output) = (tokens(&body), tokens(&text));
    if stream {
        let mut events = vec![
            sse(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
            ),
            sse(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            sse("ping", json!({"type": "ping"})),
        ];
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(64) {
            let piece: String = chunk.iter().collect();
            events.push(sse(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(sse("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.push(sse("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output}})));
        events.push(sse("message_stop", json!({"type": "message_stop"})));
        return ([(header::CONTENT_TYPE, "text/event-stream")], events.concat()).into_response();
    }
    axum::Json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }))
    .into_response()
}

async fn openai(State(shared): State<Arc<Mutex<Shared>>>, headers: HeaderMap, body: String) -> Response {
    let (step, json) = match take(&shared, "openai", &headers, body.clone()).await {
        Ok(taken) => taken,
        Err(refused) => return refused,
    };
    let received = Received { protocol: "openai", at: Instant::now(), body: body.clone(), json: json.clone() };
    let text = match step {
        Step::Answer => answer_text(&received),
        Step::Text(t) => t,
        Step::Status(code, body, retry_after) => return status(code, body, retry_after),
        Step::Slow(wait) => {
            tokio::time::sleep(wait).await;
            answer_text(&received)
        }
        Step::Hang => std::future::pending().await,
        Step::Drop => return dropped(false),
    };
    axum::Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000, "model": json["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens(&body), "completion_tokens": tokens(&text), "total_tokens": tokens(&body) + tokens(&text)},
    }))
    .into_response()
}

fn sse(event: &str, data: Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn status(code: u16, body: Value, retry_after: Option<u32>) -> Response {
    let mut response = (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// A 200 whose body stops part way: the connection is cut after the first piece.
fn dropped(stream: bool) -> Response {
    let first = if stream {
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}\n\n"
    } else {
        "{\"id\":\"msg_fake\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"<observ"
    };
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(first.as_bytes())), Err(std::io::Error::other("connection dropped mid-body"))];
    let body = Body::from_stream(futures_util::stream::iter(pieces));
    let content_type = if stream { "text/event-stream" } else { "application/json" };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
