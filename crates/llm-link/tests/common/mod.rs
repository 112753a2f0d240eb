//! Test harness: a scriptable mock upstream and an in-process gateway, both
//! on ephemeral ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use llm_link_gateway::config::{self, CliInput, Config, FileConfig};
use llm_link_server::AppState;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Signals when a request's handler (or its response stream) is dropped:
/// that is how the mock notices a gateway that gave up on it.
struct DropSignal(mpsc::UnboundedSender<String>, String);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(self.1.clone());
    }
}

pub struct MockInner {
    pub requests: Mutex<Vec<Recorded>>,
    dropped_tx: mpsc::UnboundedSender<String>,
}

pub struct Mock {
    pub base: String,
    pub inner: Arc<MockInner>,
    dropped_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl Mock {
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }
    pub fn last(&self) -> Recorded {
        self.requests()
            .last()
            .cloned()
            .expect("the mock received no request")
    }
    pub fn hits(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }
    /// Waits (bounded) until the mock sees a request of `model` abandoned.
    pub async fn wait_dropped(&self, model: &str) -> bool {
        let mut rx = self.dropped_rx.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) if m == model => return true,
                Ok(Some(_)) => continue,
                _ => return false,
            }
        }
    }
}

pub fn chat_json(model: &str, content: &str) -> Value {
    json!({
        "id": "chatcmpl-mock1",
        "object": "chat.completion",
        "created": 1731000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        "x_mock_extra": {"kept": true}
    })
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-mockstream", "object": "chat.completion.chunk", "created": 1731000000, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

fn err(status: u16, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "mock_error", "code": null}});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn handle(State(inner): State<Arc<MockInner>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    inner.requests.lock().unwrap().push(Recorded {
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = v["model"].as_str().unwrap_or("").to_string();
    let stream = v["stream"].as_bool().unwrap_or(false);

    if path.ends_with("/models") {
        let auth = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if auth.contains("bad-key") {
            return err(401, "Incorrect API key provided");
        }
        return axum::Json(json!({"object": "list", "data": [
            {"id": "up-model-a", "object": "model", "created": 0, "owned_by": "mock"},
            {"id": "up-model-b", "object": "model", "created": 0, "owned_by": "mock"}]}))
        .into_response();
    }
    if path.ends_with("/embeddings") {
        let n = match &v["input"] {
            Value::Array(a) => a.len(),
            _ => 1,
        };
        let data: Vec<Value> = (0..n)
            .map(
                |i| json!({"object": "embedding", "index": i, "embedding": [i as f32, 0.5, -0.25]}),
            )
            .collect();
        return axum::Json(json!({"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": 4, "total_tokens": 4}})).into_response();
    }
    if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
        return axum::Json(json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
            "choices": [{"text": "legacy text", "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}})).into_response();
    }
    if path.ends_with("/responses") {
        // A host that serves the Responses API itself.
        let usage = json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12});
        let item = json!({"type": "message", "id": "msg_up", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "native responses", "annotations": []}]});
        let done = json!({"id": "resp_upstream", "object": "response", "status": "completed",
            "model": model, "output": [item], "usage": usage});
        if !stream {
            return axum::Json(done).into_response();
        }
        let body = format!(
            "event: response.created\ndata: {}\n\nevent: response.output_text.delta\ndata: {}\n\nevent: response.completed\ndata: {}\n\n",
            json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_upstream", "status": "in_progress"}}),
            json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "native responses"}),
            json!({"type": "response.completed", "sequence_number": 2, "response": done}),
        );
        return ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response();
    }
    if !path.ends_with("/chat/completions") {
        return err(404, "no such path");
    }

    match model.as_str() {
        "fail-500" => return err(500, "upstream exploded"),
        "fail-503" => return err(503, "overloaded"),
        "fail-400" => return err(400, "max_tokens is too large for this model"),
        "fail-401" => {
            // Some upstreams echo the key they were given: it must never reach the client.
            let key = headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .replace("Bearer ", "");
            return err(401, &format!("Incorrect API key provided: {key}"));
        }
        "fail-429" => {
            let mut r = err(429, "Rate limit reached");
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            return r;
        }
        "garbage" => return (StatusCode::OK, "this is not json").into_response(),
        "slow-headers" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return err(500, "too late");
        }
        "hang" => {
            let _guard = DropSignal(inner.dropped_tx.clone(), model.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => {}
    }

    if !stream {
        let content = match model.as_str() {
            "think" => "<think>secret plan</think>\n\nvisible answer".to_string(),
            _ => "Hello from mock".to_string(),
        };
        return axum::Json(chat_json(&model, &content)).into_response();
    }

    let include_usage = v["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let dropped = inner.dropped_tx.clone();
    let m = model.clone();
    tokio::spawn(async move {
        let _guard = DropSignal(dropped, m.clone());
        let send = |s: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(s))).await.is_ok() }
        };
        match m.as_str() {
            "stall-stream" | "endless" => {
                if !send(chunk(
                    &m,
                    json!({"role": "assistant", "content": "partial"}),
                    None,
                ))
                .await
                {
                    return;
                }
                if m == "endless" {
                    // One chunk every 20 ms until the reader goes away (bounded).
                    for _ in 0..3000 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if !send(chunk(&m, json!({"content": "."}), None)).await {
                            return;
                        }
                    }
                    return;
                }
                // Stall: hold the connection open, send nothing.
                tx.closed().await;
            }
            "slow-stream" => {
                send(chunk(
                    &m,
                    json!({"role": "assistant", "content": "slow"}),
                    None,
                ))
                .await;
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if !send(chunk(&m, json!({"content": "."}), None)).await {
                        return;
                    }
                }
                send(chunk(&m, json!({}), Some("stop"))).await;
                send("data: [DONE]\n\n".into()).await;
            }
            "cut-stream" => {
                let _ = send(chunk(
                    &m,
                    json!({"role": "assistant", "content": "partial"}),
                    None,
                ))
                .await;
                // Then the connection just ends, without a finish or [DONE].
            }
            "think" => {
                for piece in [
                    "<think>",
                    "secret ",
                    "plan</think>",
                    "\n\nvisible",
                    " answer",
                ] {
                    send(chunk(&m, json!({"content": piece}), None)).await;
                }
                send(chunk(&m, json!({}), Some("stop"))).await;
                send("data: [DONE]\n\n".into()).await;
            }
            _ => {
                send(chunk(&m, json!({"role": "assistant", "content": ""}), None)).await;
                for piece in ["Hello", " from", " mock"] {
                    send(chunk(&m, json!({"content": piece}), None)).await;
                }
                send(chunk(&m, json!({}), Some("stop"))).await;
                if include_usage {
                    let u = json!({"id": "chatcmpl-mockstream", "object": "chat.completion.chunk", "created": 1731000000, "model": m,
                        "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}});
                    send(format!("data: {u}\n\n")).await;
                }
                send("data: [DONE]\n\n".into()).await;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Starts the mock on an ephemeral port.
pub async fn mock() -> Mock {
    let (dropped_tx, dropped_rx) = mpsc::unbounded_channel();
    let inner = Arc::new(MockInner {
        requests: Mutex::new(Vec::new()),
        dropped_tx,
    });
    let app = Router::new().fallback(handle).with_state(inner.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Mock {
        base: format!("http://{addr}"),
        inner,
        dropped_rx: tokio::sync::Mutex::new(dropped_rx),
    }
}

pub struct Gateway {
    pub base: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
}

impl Gateway {
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

/// Starts the real router for a config on an ephemeral port.
pub async fn gateway(cfg: Config) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = cfg;
    cfg.port = addr.port();
    let state = AppState::new(&cfg).unwrap();
    let st = state.clone();
    tokio::spawn(async move {
        llm_link_server::serve_on(listener, st).await.unwrap();
    });
    Gateway {
        base: format!("http://{addr}"),
        state,
        client: reqwest::Client::new(),
    }
}

/// A config from TOML text, with an environment.
pub fn config_from(toml_text: &str, env: &[(&str, &str)]) -> Config {
    config_with(CliInput::default(), toml_text, env)
}

pub fn config_with(cli: CliInput, toml_text: &str, env: &[(&str, &str)]) -> Config {
    let file: FileConfig = toml::from_str(toml_text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cli = cli;
    cli.port = Some(0);
    config::build(&cli, Some(&file), &move |k: &str| env.get(k).cloned()).unwrap()
}

/// A gateway with one openai-compatible provider `mock` in front of `mock`.
pub async fn simple(mock: &Mock, extra: &str) -> Gateway {
    let text = format!(
        r#"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{}/v1"
api_key = "upstream-secret-key"
models = ["mock-model", "mock-embed", "fail-500", "fail-503", "fail-400", "fail-401", "fail-429", "garbage", "slow-headers", "hang", "stall-stream", "cut-stream", "endless", "slow-stream", "think", {{ id = "renamed", upstream = "real-upstream-name" }}]
{extra}
"#,
        mock.base
    );
    gateway(config_from(&text, &[])).await
}

/// Reads an SSE body into its `data:` payloads.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let ev: String = buf.drain(..pos + 2).collect();
            for line in ev.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    out.push(d.to_string());
                }
            }
        }
    }
    out
}
