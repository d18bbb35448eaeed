//! A fake Anthropic Messages API for the real Claude Code CLI: `POST /v1/messages` answered from a script of
//! assistant turns as server-sent events (`message_start`, `content_block_start` / `_delta` / `_stop` with
//! `text_delta` and `input_json_delta`, `message_delta` with the stop reason, `message_stop`), every request
//! body kept for the test to read. A request with tools takes the next scripted turn; any other gets a short
//! text. Runs on its own thread and runtime, on an ephemeral loopback port.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One content block of a scripted assistant turn.
#[derive(Debug, Clone)]
pub enum Block {
    /// Text.
    Text(String),
    /// A tool call: id, tool name, input.
    Tool(String, String, Value),
}

/// A text block.
pub fn text(t: &str) -> Block {
    Block::Text(t.to_string())
}

/// A tool-use block.
pub fn tool(id: &str, name: &str, input: Value) -> Block {
    Block::Tool(id.to_string(), name.to_string(), input)
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Vec<Block>>,
    requests: Vec<Value>,
    served: u64,
}

/// The running fake; stops when dropped.
pub struct FakeAnthropic {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAnthropic {
    pub fn start() -> FakeAnthropic {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, port) = std::sync::mpsc::channel();
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .fallback(|| async { StatusCode::OK })
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = port.recv().unwrap();
        FakeAnthropic { port, shared, stop: Some(stop), thread: Some(thread) }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds turns to the end of the script.
    pub fn script(&self, turns: Vec<Vec<Block>>) {
        self.shared.lock().unwrap().script.extend(turns);
    }

    /// Scripted turns not yet served.
    pub fn left(&self) -> usize {
        self.shared.lock().unwrap().script.len()
    }

    /// Every request body received so far.
    #[allow(dead_code, reason = "not every test binary that includes this module looks at the requests")]
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn messages(State(shared): State<Arc<Mutex<Shared>>>, body: String) -> Response {
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let (blocks, id) = {
        let mut shared = shared.lock().unwrap();
        shared.requests.push(request.clone());
        shared.served += 1;
        let turn = if has_tools { shared.script.pop_front() } else { None };
        (turn.unwrap_or_else(|| vec![text("Done.")]), format!("msg_fake_{}", shared.served))
    };
    let model = request["model"].as_str().unwrap_or("claude-fake").to_string();
    if request["stream"] == true {
        let body = sse(&id, &model, &blocks);
        ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
    } else {
        axum::Json(message(&id, &model, &blocks)).into_response()
    }
}

fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::Tool(..))) { "tool_use" } else { "end_turn" }
}

fn usage() -> Value {
    json!({"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

/// The whole answer as one non-streaming message.
fn message(id: &str, model: &str, blocks: &[Block]) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => json!({"type": "text", "text": t}),
            Block::Tool(id, name, input) => json!({"type": "tool_use", "id": id, "name": name, "input": input}),
        })
        .collect();
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(blocks), "stop_sequence": null, "usage": usage(),
    })
}

/// The answer as the server-sent events of a streamed message.
fn sse(id: &str, model: &str, blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(),
        }}),
    );
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = match block {
            Block::Text(t) => (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": t})),
            Block::Tool(id, name, input) => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            ),
        };
        event("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": start}));
        event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}));
        event("content_block_stop", json!({"type": "content_block_stop", "index": index}));
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}
