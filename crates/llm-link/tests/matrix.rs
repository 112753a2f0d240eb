//! The translation matrix: OpenAI, Anthropic and Ollama clients × OpenAI,
//! Anthropic and Ollama upstreams, streamed and not, each with plain text, a
//! tool round (call → result → answer) and an image. The mock upstream
//! speaks each wire format natively and, like the real APIs, rejects tool
//! results whose ids do not match a preceding call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{config_from, gateway, Gateway};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const RESULT: &str = "18C and sunny";

#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(String, Value)>>,
}

/// What the conversation asks for, read from any wire format.
#[derive(Debug, PartialEq)]
enum Ask {
    Text,
    ToolCall,
    ToolResult(String),
    Image,
}

fn bad(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": msg, "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn ask_openai(v: &Value) -> Result<Ask, String> {
    let msgs = v["messages"].as_array().ok_or("no messages")?;
    let last = msgs.last().ok_or("empty")?;
    if last["role"] == "tool" {
        let id = last["tool_call_id"]
            .as_str()
            .ok_or("tool message without tool_call_id")?;
        let known = msgs.iter().any(|m| {
            m["tool_calls"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == id && c["type"] == "function"))
        });
        if !known {
            return Err(format!("tool_call_id {id} matches no assistant tool call"));
        }
        return Ok(Ask::ToolResult(
            last["content"].as_str().unwrap_or_default().to_string(),
        ));
    }
    if let Some(parts) = last["content"].as_array() {
        if parts.iter().any(|p| {
            p["type"] == "image_url"
                && p["image_url"]["url"] == format!("data:image/png;base64,{PNG}")
        }) {
            return Ok(Ask::Image);
        }
    }
    if v["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "get_weather"))
    {
        return Ok(Ask::ToolCall);
    }
    Ok(Ask::Text)
}

fn ask_anthropic(v: &Value) -> Result<Ask, String> {
    if v["max_tokens"].as_u64().is_none() {
        return Err("max_tokens is required".into());
    }
    let msgs = v["messages"].as_array().ok_or("no messages")?;
    for pair in msgs.windows(2) {
        if pair[0]["role"] == pair[1]["role"] {
            return Err("roles must alternate".into());
        }
    }
    let last = msgs.last().ok_or("empty")?;
    let blocks = match &last["content"] {
        Value::Array(b) => b.clone(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        _ => return Err("bad content".into()),
    };
    if let Some(tr) = blocks.iter().find(|b| b["type"] == "tool_result") {
        let id = tr["tool_use_id"].as_str().ok_or("no tool_use_id")?;
        let prev = &msgs[msgs.len() - 2];
        let known = prev["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_use" && b["id"] == id));
        if !known {
            return Err(format!(
                "tool_use_id {id} matches no tool_use block in the previous message"
            ));
        }
        let text = match &tr["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        return Ok(Ask::ToolResult(text));
    }
    if blocks.iter().any(|b| {
        b["type"] == "image"
            && b["source"]["type"] == "base64"
            && b["source"]["data"] == PNG
            && b["source"]["media_type"] == "image/png"
    }) {
        return Ok(Ask::Image);
    }
    if v["tools"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["name"] == "get_weather" && t["input_schema"].is_object())
    }) {
        return Ok(Ask::ToolCall);
    }
    Ok(Ask::Text)
}

fn ask_ollama(v: &Value) -> Result<Ask, String> {
    let msgs = v["messages"].as_array().ok_or("no messages")?;
    let last = msgs.last().ok_or("empty")?;
    if last["role"] == "tool" {
        let called = msgs.iter().any(|m| {
            m["tool_calls"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["function"]["arguments"].is_object()))
        });
        if !called {
            return Err("tool result without a preceding tool call with object arguments".into());
        }
        return Ok(Ask::ToolResult(
            last["content"].as_str().unwrap_or_default().to_string(),
        ));
    }
    if last["images"]
        .as_array()
        .is_some_and(|i| i.iter().any(|i| i == PNG))
    {
        return Ok(Ask::Image);
    }
    if v["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "get_weather"))
    {
        return Ok(Ask::ToolCall);
    }
    Ok(Ask::Text)
}

fn answer_text(ask: &Ask) -> String {
    match ask {
        Ask::Text => "Hello from the mock".into(),
        Ask::Image => "I see an image".into(),
        Ask::ToolResult(r) => format!("The weather is: {r}"),
        Ask::ToolCall => String::new(),
    }
}

fn pieces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

fn sse_body(events: Vec<String>) -> Response {
    let body = Body::from_stream(futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(e))),
    ));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn openai_answer(model: &str, ask: &Ask, stream: bool) -> Response {
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16});
    if !stream {
        let message = if *ask == Ask::ToolCall {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_up1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        } else {
            json!({"role": "assistant", "content": answer_text(ask)})
        };
        let finish = if *ask == Ask::ToolCall {
            "tool_calls"
        } else {
            "stop"
        };
        return axum::Json(json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})).into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut ev = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if *ask == Ask::ToolCall {
        ev.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_up1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), Value::Null));
        for frag in ["{\"ci", "ty\":\"Pa", "ris\"}"] {
            ev.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}),
                Value::Null,
            ));
        }
        ev.push(chunk(json!({}), json!("tool_calls")));
    } else {
        for p in pieces(&answer_text(ask)) {
            ev.push(chunk(json!({"content": p}), Value::Null));
        }
        ev.push(chunk(json!({}), json!("stop")));
    }
    ev.push(format!("data: {}\n\n", json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})));
    ev.push("data: [DONE]\n\n".into());
    sse_body(ev)
}

fn anthropic_answer(model: &str, ask: &Ask, stream: bool) -> Response {
    let tool = *ask == Ask::ToolCall;
    if !stream {
        let content = if tool {
            json!([{"type": "tool_use", "id": "toolu_up1", "name": "get_weather", "input": {"city": "Paris"}}])
        } else {
            json!([{"type": "text", "text": answer_text(ask)}])
        };
        return axum::Json(json!({"id": "msg_up", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": if tool { "tool_use" } else { "end_turn" }, "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 5}})).into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}),
    )];
    out.push(ev("ping", json!({"type": "ping"})));
    if tool {
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_up1", "name": "get_weather", "input": {}}})));
        for frag in ["{\"ci", "ty\": \"Pa", "ris\"}"] {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": frag}})));
        }
    } else {
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        for p in pieces(&answer_text(ask)) {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})));
        }
    }
    out.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": if tool { "tool_use" } else { "end_turn" }, "stop_sequence": null}, "usage": {"output_tokens": 5}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    sse_body(out)
}

fn ollama_answer(model: &str, ask: &Ask, stream: bool) -> Response {
    let tool = *ask == Ask::ToolCall;
    let done = |content: &str| {
        json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": content},
        "done_reason": "stop", "done": true, "total_duration": 1000, "load_duration": 0, "prompt_eval_count": 11, "prompt_eval_duration": 10, "eval_count": 5, "eval_duration": 10})
    };
    let tool_msg = json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]});
    if !stream {
        let mut v = done(&answer_text(ask));
        if tool {
            v["message"] = tool_msg;
        }
        return axum::Json(v).into_response();
    }
    let mut lines = Vec::new();
    if tool {
        lines.push(format!("{}\n", json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": tool_msg, "done": false})));
    } else {
        for p in pieces(&answer_text(ask)) {
            lines.push(format!("{}\n", json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": p}, "done": false})));
        }
    }
    lines.push(format!("{}\n", done("")));
    let body = Body::from_stream(futures_util::stream::iter(
        lines
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(e))),
    ));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .unwrap()
}

async fn upstream(State(seen): State<Arc<Seen>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.bodies.lock().unwrap().push((path.clone(), v.clone()));
    let model = v["model"].as_str().unwrap_or("").to_string();
    let stream = v["stream"].as_bool();
    match path.as_str() {
        "/v1/chat/completions" => {
            if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer oa-key") {
                return (StatusCode::UNAUTHORIZED, "bad key").into_response();
            }
            match ask_openai(&v) {
                Ok(ask) => openai_answer(&model, &ask, stream.unwrap_or(false)),
                Err(e) => bad(&e),
            }
        }
        "/v1/messages" => {
            if headers.get("x-api-key").and_then(|h| h.to_str().ok()) != Some("an-key")
                || headers.get("anthropic-version").is_none()
            {
                return (StatusCode::UNAUTHORIZED, "bad key").into_response();
            }
            match ask_anthropic(&v) {
                Ok(ask) => anthropic_answer(&model, &ask, stream.unwrap_or(false)),
                Err(e) => bad(&e),
            }
        }
        "/api/chat" => match ask_ollama(&v) {
            // Ollama streams unless told not to.
            Ok(ask) => ollama_answer(&model, &ask, stream.unwrap_or(true)),
            Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response(),
        },
        _ => (StatusCode::NOT_FOUND, "no").into_response(),
    }
}

async fn setup() -> (Gateway, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new().fallback(upstream).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let cfg = config_from(
        &format!(
            r#"
[[providers]]
name = "oa"
kind = "openai-compatible"
base_url = "{base}/v1"
api_key = "oa-key"
models = ["m-openai"]

[[providers]]
name = "an"
kind = "anthropic"
base_url = "{base}"
api_key = "an-key"
models = ["m-anthropic"]

[[providers]]
name = "ol"
kind = "ollama"
base_url = "{base}"
models = ["m-ollama"]
"#
        ),
        &[],
    );
    (gateway(cfg).await, seen)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    OpenAi,
    Anthropic,
    Ollama,
    /// The OpenAI Responses API (`/v1/responses`).
    Responses,
}

/// What a client got back, whatever its format.
#[derive(Debug, Default)]
struct Got {
    text: String,
    /// (id, name, arguments as JSON)
    calls: Vec<(String, String, Value)>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn tools_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn tools_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

/// The request a client sends for one step of a scenario.
fn request(
    client: Client,
    model: &str,
    stream: bool,
    step: &str,
    call: Option<&(String, String, Value)>,
) -> (String, Value) {
    match client {
        Client::OpenAi => {
            let mut messages = vec![];
            match step {
                "text" => messages.push(json!({"role": "user", "content": "Hello"})),
                "image" => messages.push(json!({"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]})),
                "tool1" => messages.push(json!({"role": "user", "content": "Weather in Paris?"})),
                _ => {
                    let (id, name, args) = call.unwrap();
                    messages.push(json!({"role": "user", "content": "Weather in Paris?"}));
                    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": RESULT}));
                }
            }
            let mut body = json!({"model": model, "messages": messages, "stream": stream});
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            if step.starts_with("tool") {
                body["tools"] = tools_openai();
            }
            ("/v1/chat/completions".into(), body)
        }
        Client::Anthropic => {
            let mut messages = vec![];
            match step {
                "text" => messages.push(json!({"role": "user", "content": "Hello"})),
                "image" => messages.push(json!({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}, {"type": "text", "text": "What is this?"}]})),
                "tool1" => messages.push(json!({"role": "user", "content": "Weather in Paris?"})),
                _ => {
                    let (id, name, args) = call.unwrap();
                    messages.push(json!({"role": "user", "content": "Weather in Paris?"}));
                    messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": args}]}));
                    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": RESULT}]}));
                }
            }
            let mut body =
                json!({"model": model, "max_tokens": 256, "messages": messages, "stream": stream});
            if step.starts_with("tool") {
                body["tools"] = tools_anthropic();
            }
            ("/v1/messages".into(), body)
        }
        Client::Ollama => {
            let mut messages = vec![];
            match step {
                "text" => messages.push(json!({"role": "user", "content": "Hello"})),
                "image" => messages
                    .push(json!({"role": "user", "content": "What is this?", "images": [PNG]})),
                "tool1" => messages.push(json!({"role": "user", "content": "Weather in Paris?"})),
                _ => {
                    let (_, name, args) = call.unwrap();
                    messages.push(json!({"role": "user", "content": "Weather in Paris?"}));
                    messages.push(json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": args}}]}));
                    messages.push(json!({"role": "tool", "content": RESULT, "tool_name": name}));
                }
            }
            let mut body = json!({"model": model, "messages": messages, "stream": stream});
            if step.starts_with("tool") {
                body["tools"] = tools_openai();
            }
            ("/api/chat".into(), body)
        }
        Client::Responses => {
            let input = match step {
                "text" => json!("Hello"),
                "image" => {
                    json!([{"role": "user", "content": [{"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}")}]}])
                }
                "tool1" => {
                    json!([{"type": "message", "role": "user", "content": "Weather in Paris?"}])
                }
                _ => {
                    let (id, name, args) = call.unwrap();
                    json!([
                        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                        {"type": "function_call", "call_id": id, "name": name, "arguments": args.to_string()},
                        {"type": "function_call_output", "call_id": id, "output": RESULT}
                    ])
                }
            };
            let mut body =
                json!({"model": model, "input": input, "stream": stream, "store": false});
            if step.starts_with("tool") {
                body["tools"] = json!([{"type": "function", "name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
            }
            ("/v1/responses".into(), body)
        }
    }
}

/// Reads a Responses answer: the `response` object, or its event stream,
/// checked event by event (order, sequence numbers, balanced items).
async fn read_responses(resp: reqwest::Response, stream: bool) -> Got {
    let mut got = Got::default();
    let final_obj = if !stream {
        resp.json::<Value>().await.unwrap()
    } else {
        let text = resp.text().await.unwrap();
        let mut events: Vec<Value> = vec![];
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(
                v["type"],
                name.as_str(),
                "event name and type agree: {text}"
            );
            events.push(v);
        }
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types[..2],
            ["response.created", "response.in_progress"],
            "{text}"
        );
        assert_eq!(types.last(), Some(&"response.completed"), "{text}");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], json!(i), "{text}");
        }
        let added = types
            .iter()
            .filter(|t| **t == "response.output_item.added")
            .count();
        let done = types
            .iter()
            .filter(|t| **t == "response.output_item.done")
            .count();
        assert_eq!(added, done, "{text}");
        let mut deltas = String::new();
        let mut args = String::new();
        for e in &events {
            match e["type"].as_str().unwrap() {
                "response.output_text.delta" => deltas.push_str(e["delta"].as_str().unwrap()),
                "response.function_call_arguments.delta" => {
                    args.push_str(e["delta"].as_str().unwrap())
                }
                _ => {}
            }
        }
        let last = events.last().unwrap()["response"].clone();
        let text_out: String = last["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|i| i["content"].as_array().unwrap().clone())
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, text_out, "the deltas add up to the final text");
        last
    };
    assert_eq!(final_obj["object"], "response", "{final_obj}");
    assert_eq!(final_obj["status"], "completed", "{final_obj}");
    for item in final_obj["output"].as_array().unwrap() {
        match item["type"].as_str().unwrap() {
            "message" => {
                for c in item["content"].as_array().unwrap() {
                    assert_eq!(c["type"], "output_text");
                    got.text.push_str(c["text"].as_str().unwrap());
                }
            }
            "function_call" => got.calls.push((
                item["call_id"].as_str().unwrap().into(),
                item["name"].as_str().unwrap().into(),
                serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap(),
            )),
            _ => {}
        }
    }
    got.prompt_tokens = final_obj["usage"]["input_tokens"].as_u64().unwrap();
    got.completion_tokens = final_obj["usage"]["output_tokens"].as_u64().unwrap();
    got
}

async fn read_openai(resp: reqwest::Response, stream: bool) -> Got {
    let mut got = Got::default();
    if !stream {
        let v: Value = resp.json().await.unwrap();
        let m = &v["choices"][0]["message"];
        got.text = m["content"].as_str().unwrap_or("").to_string();
        for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
            got.calls.push((
                c["id"].as_str().unwrap().into(),
                c["function"]["name"].as_str().unwrap().into(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            ));
        }
        got.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
        got.completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
        return got;
    }
    let data = common::sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let mut ids = std::collections::HashSet::new();
    let mut calls: Vec<(String, String, String)> = vec![];
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            got.prompt_tokens = u["prompt_tokens"].as_u64().unwrap();
            got.completion_tokens = u["completion_tokens"].as_u64().unwrap();
        }
        let delta = &v["choices"][0]["delta"];
        got.text.push_str(delta["content"].as_str().unwrap_or(""));
        for tc in delta["tool_calls"].as_array().cloned().unwrap_or_default() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = tc["id"].as_str() {
                calls[i].0 = id.into();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                calls[i].1 = n.into();
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(ids.len(), 1, "one id across all chunks");
    got.calls = calls
        .into_iter()
        .map(|(id, n, a)| (id, n, serde_json::from_str(&a).unwrap()))
        .collect();
    got
}

async fn read_anthropic(resp: reqwest::Response, stream: bool) -> Got {
    let mut got = Got::default();
    if !stream {
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "message", "{v}");
        for b in v["content"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "text" => got.text.push_str(b["text"].as_str().unwrap()),
                "tool_use" => got.calls.push((
                    b["id"].as_str().unwrap().into(),
                    b["name"].as_str().unwrap().into(),
                    b["input"].clone(),
                )),
                _ => {}
            }
        }
        got.prompt_tokens = v["usage"]["input_tokens"].as_u64().unwrap();
        got.completion_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
        return got;
    }
    let text = resp.text().await.unwrap();
    let mut events: Vec<(String, Value)> = vec![];
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["type"], name.as_str(), "event name and type agree");
        events.push((name, v));
    }
    // The exact sequence: message_start first, balanced blocks with
    // consecutive indices, one message_delta, message_stop last.
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some("message_start"),
        "{text}"
    );
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("message_stop"),
        "{text}"
    );
    assert_eq!(
        events.iter().filter(|e| e.0 == "message_delta").count(),
        1,
        "{text}"
    );
    let mut open: Option<u64> = None;
    let mut next_index = 0;
    let mut calls: Vec<(String, String, String)> = vec![];
    for (name, v) in &events {
        match name.as_str() {
            "message_start" => {
                got.prompt_tokens = v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0)
            }
            "content_block_start" => {
                assert!(open.is_none(), "block opened inside a block: {text}");
                let i = v["index"].as_u64().unwrap();
                assert_eq!(i, next_index, "{text}");
                open = Some(i);
                next_index += 1;
                if v["content_block"]["type"] == "tool_use" {
                    calls.push((
                        v["content_block"]["id"].as_str().unwrap().into(),
                        v["content_block"]["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
            }
            "content_block_delta" => {
                assert_eq!(Some(v["index"].as_u64().unwrap()), open, "{text}");
                match v["delta"]["type"].as_str().unwrap() {
                    "text_delta" => got.text.push_str(v["delta"]["text"].as_str().unwrap()),
                    "input_json_delta" => calls
                        .last_mut()
                        .unwrap()
                        .2
                        .push_str(v["delta"]["partial_json"].as_str().unwrap()),
                    _ => {}
                }
            }
            "content_block_stop" => {
                assert_eq!(Some(v["index"].as_u64().unwrap()), open, "{text}");
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with an open block: {text}");
                got.completion_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
                if let Some(i) = v["usage"]["input_tokens"].as_u64() {
                    if i > 0 {
                        got.prompt_tokens = i;
                    }
                }
            }
            "error" => panic!("error event: {v}"),
            _ => {}
        }
    }
    got.calls = calls
        .into_iter()
        .map(|(id, n, a)| {
            (
                id,
                n,
                serde_json::from_str(if a.is_empty() { "{}" } else { &a }).unwrap(),
            )
        })
        .collect();
    got
}

async fn read_ollama(resp: reqwest::Response, stream: bool) -> Got {
    let mut got = Got::default();
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if !stream {
        assert_eq!(lines.len(), 1, "{text}");
    }
    for v in &lines {
        assert!(v.get("error").is_none(), "{v}");
        got.text
            .push_str(v["message"]["content"].as_str().unwrap_or(""));
        for c in v["message"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            assert!(
                c["function"]["arguments"].is_object(),
                "Ollama tool arguments must be objects: {c}"
            );
            got.calls.push((
                String::new(),
                c["function"]["name"].as_str().unwrap().into(),
                c["function"]["arguments"].clone(),
            ));
        }
        if v["done"] == true {
            got.prompt_tokens = v["prompt_eval_count"].as_u64().unwrap_or(0);
            got.completion_tokens = v["eval_count"].as_u64().unwrap_or(0);
            assert!(v["done_reason"].is_string(), "{v}");
        }
    }
    assert_eq!(
        lines.last().map(|l| l["done"].clone()),
        Some(json!(true)),
        "{text}"
    );
    got
}

async fn call(
    gw: &Gateway,
    client: Client,
    model: &str,
    stream: bool,
    step: &str,
    prev: Option<&(String, String, Value)>,
) -> Got {
    let (path, body) = request(client, model, stream, step, prev);
    let mut rb = gw.client.post(format!("{}{path}", gw.base)).json(&body);
    if client == Client::Anthropic {
        rb = rb.header("anthropic-version", "2023-06-01");
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    if !status.is_success() {
        panic!(
            "{client:?} → {model} stream={stream} {step}: HTTP {status}: {}",
            resp.text().await.unwrap()
        );
    }
    match client {
        Client::OpenAi => read_openai(resp, stream).await,
        Client::Anthropic => read_anthropic(resp, stream).await,
        Client::Ollama => read_ollama(resp, stream).await,
        Client::Responses => read_responses(resp, stream).await,
    }
}

#[tokio::test]
async fn every_client_against_every_upstream() {
    let (gw, seen) = setup().await;
    for client in [
        Client::OpenAi,
        Client::Anthropic,
        Client::Ollama,
        Client::Responses,
    ] {
        for model in ["m-openai", "m-anthropic", "m-ollama"] {
            for stream in [false, true] {
                let ctx = format!("{client:?} → {model} stream={stream}");

                let got = call(&gw, client, model, stream, "text", None).await;
                assert_eq!(got.text, "Hello from the mock", "{ctx}");
                assert_eq!(
                    (got.prompt_tokens, got.completion_tokens),
                    (11, 5),
                    "{ctx}: usage"
                );

                let got = call(&gw, client, model, stream, "image", None).await;
                assert_eq!(got.text, "I see an image", "{ctx}: image");

                let got = call(&gw, client, model, stream, "tool1", None).await;
                assert_eq!(got.calls.len(), 1, "{ctx}: tool call {got:?}");
                let c = &got.calls[0];
                assert_eq!(c.1, "get_weather", "{ctx}");
                assert_eq!(c.2, json!({"city": "Paris"}), "{ctx}");
                if client != Client::Ollama {
                    assert!(!c.0.is_empty(), "{ctx}: tool call id");
                }
                let got = call(&gw, client, model, stream, "tool2", Some(c)).await;
                assert_eq!(
                    got.text,
                    format!("The weather is: {RESULT}"),
                    "{ctx}: tool round"
                );
                assert_eq!(
                    (got.prompt_tokens, got.completion_tokens),
                    (11, 5),
                    "{ctx}: usage"
                );
            }
        }
    }
    // Every upstream was reached on its native path with its model.
    let bodies = seen.bodies.lock().unwrap();
    for (path, model) in [
        ("/v1/chat/completions", "m-openai"),
        ("/v1/messages", "m-anthropic"),
        ("/api/chat", "m-ollama"),
    ] {
        assert!(
            bodies.iter().any(|(p, v)| p == path && v["model"] == model),
            "{path}"
        );
    }
}

#[tokio::test]
async fn what_a_target_cannot_express_is_a_clear_400() {
    let (gw, _) = setup().await;
    // n > 1 cannot go to Anthropic.
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m-anthropic", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains('n'), "{v}");
    // An image by URL cannot go to Ollama, which needs inline bytes.
    let r = gw
        .post("/v1/chat/completions", json!({"model": "m-ollama", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}))
        .await;
    assert_eq!(r.status(), 400);
    // Anthropic requires max_tokens from its own clients.
    let r = gw
        .post(
            "/v1/messages",
            json!({"model": "m-openai", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );
    // Errors come back in each caller's protocol.
    let r = gw
        .post(
            "/api/chat",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let r = gw.post("/v1/messages", json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
}

/// Claude Code's own request shape reaches an Anthropic upstream as sent:
/// `/v1/messages?beta=true` with a `system` message inside `messages` and
/// top-level fields llm-link does not model (`thinking`,
/// `context_management`, `output_config`). The light check of a forwarded
/// body judges no role: the upstream does.
#[tokio::test]
async fn claude_code_requests_pass_through_to_anthropic() {
    let (gw, seen) = setup().await;
    let body = json!({
        "model": "m-anthropic",
        "max_tokens": 32000,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "system", "content": "<system-reminder>keep it short</system-reminder>"},
            {"role": "user", "content": "Hello"}
        ],
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "metadata": {"user_id": "user_abc"},
        "stream": false
    });
    let r = gw
        .client
        .post(format!("{}/v1/messages?beta=true", gw.base))
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    {
        let bodies = seen.bodies.lock().unwrap();
        let (path, sent) = bodies.last().unwrap();
        assert_eq!(path, "/v1/messages");
        assert_eq!(
            sent, &body,
            "the upstream gets the body as the client sent it"
        );
    }
    // Translated for an OpenAI upstream, the reminder stays a system
    // message in its place.
    let mut translated = body.clone();
    translated["model"] = json!("m-openai");
    let r = gw.post("/v1/messages?beta=true", translated).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let bodies = seen.bodies.lock().unwrap();
    let (path, sent) = bodies.last().unwrap();
    assert_eq!(path, "/v1/chat/completions");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "system", "user"], "{sent}");
}

/// `count_tokens` for a model an OpenAI upstream serves: an estimate over the
/// body as Claude Code sends it (`?beta=true`, a PDF document, thinking and
/// tool blocks, a mid-conversation system message), never a 400 for a block
/// that cannot be translated and never a fake 0.
#[tokio::test]
async fn count_tokens_estimates_every_block_type() {
    let (gw, _seen) = setup().await;
    let pdf = "JVBERi0xLjQK".repeat(20_000);
    let body = json!({
        "model": "m-openai",
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
                {"type": "text", "text": "Summarise this."}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/tmp/a"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "contents"}]},
            {"role": "system", "content": "<system-reminder>short</system-reminder>"}
        ],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}]
    });
    let r = gw.post("/v1/messages/count_tokens?beta=true", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-llm-link-token-count"], "estimate");
    let v: Value = r.json().await.unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    // 180 KB of PDF at one token per 5 bytes dominates.
    assert!((30_000..40_000).contains(&n), "{v}");
}
