//! Replays of real agent traffic: every request recorded from Claude Code,
//! Codex, OpenCode and Qwen Code (and built from Zed's source) in
//! `tests/e2e/fixtures/agents/*.json` is sent, body verbatim except `model`,
//! through the real router to each upstream format (OpenAI chat, Anthropic,
//! Ollama). The mock upstream validates every request like the real API
//! would (roles, tool results answering a preceding call, image encodings,
//! tool shapes); the answers are read event by event the way each agent
//! parses them. Where the recording shows a tool round (the agent's next
//! request carries the result of a call), the mock answers with a call of
//! the same tool and arguments, so tool-call streaming is replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{config_from, gateway, Gateway};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const MODELS: [&str; 3] = ["m-openai", "m-anthropic", "m-ollama"];

// ------------------------------------------------------------------ fixtures

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

fn fixture(name: &str) -> Vec<Recorded> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/e2e/fixtures/agents")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .map(|r| Recorded {
            method: r["method"].as_str().unwrap().into(),
            path: r["path"].as_str().unwrap().into(),
            headers: r["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            body: r["body"].clone(),
        })
        .collect()
}

/// The client protocol a recorded request speaks, from its path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Surface {
    Chat,
    Responses,
    Anthropic,
    Ollama,
}

fn surface(path: &str) -> Surface {
    let p = path.split('?').next().unwrap();
    match p {
        "/v1/chat/completions" => Surface::Chat,
        "/v1/responses" => Surface::Responses,
        "/v1/messages" => Surface::Anthropic,
        _ if p.starts_with("/api/") => Surface::Ollama,
        _ => panic!("no surface for {path}"),
    }
}

/// A tool call: name and arguments as a JSON object.
type Call = (String, Value);

fn parse_args(s: &Value) -> Value {
    match s {
        Value::String(s) if s.is_empty() => json!({}),
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    }
}

/// The call a request's conversation ends by answering, if it ends with a
/// tool result: what the previous answer must have been.
fn answered_call(s: Surface, body: &Value) -> Option<Call> {
    match s {
        Surface::Anthropic => {
            let msgs = body["messages"].as_array()?;
            let last = msgs.last()?;
            let tr = last["content"]
                .as_array()?
                .iter()
                .find(|b| b["type"] == "tool_result")?;
            let id = &tr["tool_use_id"];
            msgs.iter()
                .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                .find(|b| b["type"] == "tool_use" && &b["id"] == id)
                .map(|b| (b["name"].as_str().unwrap().into(), b["input"].clone()))
        }
        Surface::Chat => {
            let msgs = body["messages"].as_array()?;
            let last = msgs.last()?;
            if last["role"] != "tool" {
                return None;
            }
            msgs.iter()
                .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
                .find(|c| c["id"] == last["tool_call_id"])
                .map(|c| {
                    (
                        c["function"]["name"].as_str().unwrap().into(),
                        parse_args(&c["function"]["arguments"]),
                    )
                })
        }
        Surface::Responses => {
            let items = body["input"].as_array()?;
            let last = items.last()?;
            if last["type"] != "function_call_output" {
                return None;
            }
            items
                .iter()
                .find(|i| i["type"] == "function_call" && i["call_id"] == last["call_id"])
                .map(|i| {
                    let name = match i["namespace"].as_str() {
                        Some(ns) => format!("{ns}__{}", i["name"].as_str().unwrap()),
                        None => i["name"].as_str().unwrap().into(),
                    };
                    (name, parse_args(&i["arguments"]))
                })
        }
        Surface::Ollama => {
            let msgs = body["messages"].as_array()?;
            if msgs.last()?["role"] != "tool" {
                return None;
            }
            msgs.iter()
                .rev()
                .find_map(|m| m["tool_calls"].as_array().and_then(|c| c.first().cloned()))
                .map(|c| {
                    (
                        c["function"]["name"].as_str().unwrap().into(),
                        c["function"]["arguments"].clone(),
                    )
                })
        }
    }
}

/// The text of the tool result a request ends with, as the agent sent it.
fn result_text(s: Surface, body: &Value) -> Option<String> {
    let text_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    match s {
        Surface::Anthropic => body["messages"].as_array()?.last()?["content"]
            .as_array()?
            .iter()
            .find(|b| b["type"] == "tool_result")
            .map(|b| text_of(&b["content"])),
        Surface::Chat | Surface::Ollama => {
            let last = body["messages"].as_array()?.last()?;
            (last["role"] == "tool").then(|| text_of(&last["content"]))
        }
        Surface::Responses => {
            let last = body["input"].as_array()?.last()?;
            (last["type"] == "function_call_output").then(|| text_of(&last["output"]))
        }
    }
}

/// Every base64 image payload in a request, whatever its format.
fn images(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("url" | "image_url", Value::String(u)) if u.starts_with("data:image/") => {
                        out.push(u.split_once(',').unwrap().1.to_string())
                    }
                    ("images", Value::Array(list)) => {
                        out.extend(list.iter().filter_map(|i| i.as_str().map(String::from)))
                    }
                    ("source", s) if s["type"] == "base64" => {
                        out.push(s["data"].as_str().unwrap().to_string())
                    }
                    _ => images(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| images(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------- the mock

/// What the mock answers next.
#[derive(Debug, Clone)]
enum Script {
    Text(String),
    Call(Call),
}

#[derive(Default)]
struct Mock {
    next: Mutex<Option<Script>>,
    /// (path, body, headers) of every upstream request.
    seen: Mutex<Vec<(String, Value, HeaderMap)>>,
    calls: Mutex<u32>,
}

fn bad(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": msg, "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

/// OpenAI Chat Completions, as api.openai.com judges a request.
fn validate_openai(v: &Value) -> Result<(), String> {
    let msgs = v["messages"].as_array().ok_or("messages is required")?;
    check(!msgs.is_empty(), || "messages is empty".into())?;
    check(
        v.get("stream_options").is_none() || v["stream"] == true,
        || "stream_options is only allowed when stream is true".into(),
    )?;
    let mut pending: Vec<String> = vec![];
    let mut known: HashSet<String> = HashSet::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().ok_or(format!("messages[{i}].role"))?;
        if role != "tool" {
            check(pending.is_empty(), || {
                format!("messages[{i}]: an assistant message with tool_calls must be followed by tool messages responding to each tool_call_id: {pending:?}")
            })?;
        }
        match role {
            "system" | "developer" | "user" => match &m["content"] {
                Value::String(_) => {}
                Value::Array(parts) => {
                    for p in parts {
                        match p["type"].as_str() {
                            Some("text") => check(p["text"].is_string(), || {
                                format!("messages[{i}]: text part without text: {p}")
                            })?,
                            Some("image_url") if role == "user" => {
                                check(p["image_url"]["url"].is_string(), || {
                                    format!("messages[{i}]: image_url.url: {p}")
                                })?
                            }
                            _ => return Err(format!("messages[{i}]: bad content part {p}")),
                        }
                    }
                }
                c => return Err(format!("messages[{i}].content: {c}")),
            },
            "assistant" => {
                check(
                    m["content"].is_string() || m["content"].is_null() || m["content"].is_array(),
                    || format!("messages[{i}].content"),
                )?;
                for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
                    let id = c["id"].as_str().ok_or(format!("messages[{i}]: call id"))?;
                    check(c["type"] == "function", || format!("call type: {c}"))?;
                    check(c["function"]["name"].is_string(), || format!("name: {c}"))?;
                    let args = c["function"]["arguments"]
                        .as_str()
                        .ok_or(format!("arguments must be a string: {c}"))?;
                    serde_json::from_str::<Value>(args)
                        .map_err(|e| format!("arguments are not JSON ({e}): {c}"))?;
                    pending.push(id.into());
                    known.insert(id.into());
                }
            }
            "tool" => {
                let id = m["tool_call_id"]
                    .as_str()
                    .ok_or(format!("messages[{i}]: tool message without tool_call_id"))?;
                check(known.contains(id), || {
                    format!("messages[{i}]: tool_call_id {id} matches no preceding tool call")
                })?;
                pending.retain(|p| p != id);
                check(m["content"].is_string() || m["content"].is_array(), || {
                    format!("messages[{i}]: tool content")
                })?;
            }
            r => return Err(format!("messages[{i}]: unknown role {r}")),
        }
    }
    for t in v["tools"].as_array().cloned().unwrap_or_default() {
        check(t["type"] == "function", || format!("tool type: {t}"))?;
        let name = t["function"]["name"].as_str().ok_or(format!("tool: {t}"))?;
        check(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            || format!("invalid tool name {name:?}"),
        )?;
    }
    Ok(())
}

/// Anthropic Messages, as api.anthropic.com judges a request. `system`
/// messages inside `messages` pass only with the per-turn-control beta.
fn validate_anthropic(v: &Value, headers: &HeaderMap) -> Result<(), String> {
    check(v["max_tokens"].as_u64().is_some(), || {
        "max_tokens is required".into()
    })?;
    let beta = headers
        .get("anthropic-beta")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let all = v["messages"].as_array().ok_or("messages is required")?;
    let msgs: Vec<&Value> = all
        .iter()
        .filter(|m| !(m["role"] == "system" && beta.contains("per-turn-control")))
        .collect();
    check(!msgs.is_empty() && msgs[0]["role"] == "user", || {
        "the first message must use the user role".into()
    })?;
    let mut prev_uses: Vec<String> = vec![];
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        check(role == "user" || role == "assistant", || {
            format!("messages[{i}]: unexpected role {role:?}")
        })?;
        if i > 0 {
            check(msgs[i - 1]["role"] != m["role"], || {
                format!("messages[{i}]: roles must alternate")
            })?;
        }
        let blocks = match &m["content"] {
            Value::String(s) => {
                check(!s.is_empty() || i == msgs.len() - 1, || {
                    format!("messages[{i}]: content must be non-empty")
                })?;
                vec![]
            }
            Value::Array(b) => b.clone(),
            c => return Err(format!("messages[{i}].content: {c}")),
        };
        let mut uses = vec![];
        let mut results = vec![];
        for b in &blocks {
            match b["type"].as_str().unwrap_or("") {
                "text" => check(b["text"].as_str().is_some_and(|t| !t.is_empty()), || {
                    format!("messages[{i}]: text content blocks must be non-empty")
                })?,
                "image" => {
                    let s = &b["source"];
                    check(
                        (s["type"] == "base64"
                            && s["data"].is_string()
                            && s["media_type"]
                                .as_str()
                                .is_some_and(|t| t.starts_with("image/")))
                            || (s["type"] == "url" && s["url"].is_string()),
                        || format!("messages[{i}]: image source: {s}"),
                    )?
                }
                "tool_use" if role == "assistant" => {
                    check(b["input"].is_object() && b["name"].is_string(), || {
                        format!("messages[{i}]: tool_use {b}")
                    })?;
                    uses.push(b["id"].as_str().ok_or("tool_use id")?.to_string())
                }
                "tool_result" if role == "user" => {
                    results.push(b["tool_use_id"].as_str().ok_or("tool_use_id")?.to_string())
                }
                "thinking" | "redacted_thinking" if role == "assistant" => {}
                "document" => {}
                t => return Err(format!("messages[{i}]: unexpected block {t:?} for {role}")),
            }
        }
        if role == "user" {
            for r in &results {
                check(prev_uses.contains(r), || {
                    format!("messages[{i}]: tool_use_id {r} matches no tool_use block in the previous message")
                })?;
            }
            for u in &prev_uses {
                check(results.contains(u), || {
                    format!("messages[{i}]: tool_use ids were found without tool_result blocks immediately after: {u}")
                })?;
            }
        }
        prev_uses = uses;
    }
    for t in v["tools"].as_array().cloned().unwrap_or_default() {
        check(t["name"].is_string(), || format!("tool without name: {t}"))?;
        check(
            t["input_schema"]["type"] == "object"
                || t.get("type").is_some_and(|ty| ty != "custom")
                || t["defer_loading"] == true,
            || format!("tools: input_schema: Field required: {t}"),
        )?;
    }
    match &v["system"] {
        Value::Null | Value::String(_) => {}
        Value::Array(b) => check(b.iter().all(|b| b["type"] == "text"), || {
            "system blocks must be text".into()
        })?,
        s => return Err(format!("system: {s}")),
    }
    Ok(())
}

/// Ollama `/api/chat`, as Ollama's Go types decode it.
fn validate_ollama(v: &Value) -> Result<(), String> {
    let msgs = v["messages"].as_array().ok_or("messages is required")?;
    let mut called = false;
    for (i, m) in msgs.iter().enumerate() {
        check(m["content"].is_string() || m["content"].is_null(), || {
            format!("messages[{i}]: json: cannot unmarshal into Message.content of type string")
        })?;
        for img in m["images"].as_array().cloned().unwrap_or_default() {
            let s = img.as_str().ok_or("images must be strings")?;
            check(
                !s.starts_with("data:")
                    && !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
                || format!("messages[{i}]: illegal base64 image data"),
            )?;
        }
        match m["role"].as_str().unwrap_or("") {
            "system" | "user" => {}
            "assistant" => {
                for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
                    check(
                        c["function"]["name"].is_string() && c["function"]["arguments"].is_object(),
                        || format!("messages[{i}]: tool call arguments must be an object: {c}"),
                    )?;
                    called = true;
                }
            }
            "tool" => check(called, || {
                format!("messages[{i}]: tool result without a preceding tool call")
            })?,
            r => return Err(format!("messages[{i}]: unknown role {r:?}")),
        }
    }
    for t in v["tools"].as_array().cloned().unwrap_or_default() {
        check(
            t["type"] == "function" && t["function"]["name"].is_string(),
            || format!("tool: {t}"),
        )?;
    }
    Ok(())
}

fn sse(events: Vec<String>) -> Response {
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

fn pieces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(5).map(|c| c.iter().collect()).collect()
}

/// Arguments as JSON text, in three fragments.
fn frags(args: &Value) -> Vec<String> {
    let s = args.to_string();
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len().div_ceil(3).max(1);
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn openai_answer(model: &str, script: &Script, id: &str, stream: bool) -> Response {
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16});
    if !stream {
        let (message, finish) = match script {
            Script::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
            Script::Call((n, a)) => (
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": n, "arguments": a.to_string()}}]}),
                "tool_calls",
            ),
        };
        return axum::Json(json!({"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}))
        .into_response();
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
    match script {
        Script::Text(t) => {
            for p in pieces(t) {
                ev.push(chunk(json!({"content": p}), Value::Null));
            }
            ev.push(chunk(json!({}), json!("stop")));
        }
        Script::Call((n, a)) => {
            ev.push(chunk(json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": n, "arguments": ""}}]}), Value::Null));
            for f in frags(a) {
                ev.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}),
                    Value::Null,
                ));
            }
            ev.push(chunk(json!({}), json!("tool_calls")));
        }
    }
    ev.push(format!("data: {}\n\n", json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})));
    ev.push("data: [DONE]\n\n".into());
    sse(ev)
}

fn anthropic_answer(model: &str, script: &Script, id: &str, stream: bool) -> Response {
    let stop = match script {
        Script::Text(_) => "end_turn",
        Script::Call(_) => "tool_use",
    };
    if !stream {
        let content = match script {
            Script::Text(t) => json!([{"type": "text", "text": t}]),
            Script::Call((n, a)) => json!([{"type": "tool_use", "id": id, "name": n, "input": a}]),
        };
        return axum::Json(json!({"id": "msg_up", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 5}}))
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    match script {
        Script::Text(t) => {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            for p in pieces(t) {
                out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})));
            }
        }
        Script::Call((n, a)) => {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": id, "name": n, "input": {}}})));
            for f in frags(a) {
                out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": f}})));
            }
        }
    }
    out.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(out)
}

fn ollama_answer(model: &str, script: &Script, stream: bool) -> Response {
    let line = |message: Value, done: bool| {
        let mut v = json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": message, "done": done});
        if done {
            for (k, x) in [
                ("done_reason", json!("stop")),
                ("total_duration", json!(1000)),
                ("load_duration", json!(0)),
                ("prompt_eval_count", json!(11)),
                ("prompt_eval_duration", json!(10)),
                ("eval_count", json!(5)),
                ("eval_duration", json!(10)),
            ] {
                v[k] = x;
            }
        }
        v
    };
    let messages: Vec<Value> = match script {
        Script::Text(t) => pieces(t)
            .into_iter()
            .map(|p| json!({"role": "assistant", "content": p}))
            .collect(),
        Script::Call((n, a)) => vec![
            json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": n, "arguments": a}}]}),
        ],
    };
    if !stream {
        let mut last = line(json!({"role": "assistant", "content": ""}), true);
        match script {
            Script::Text(t) => last["message"]["content"] = json!(t),
            Script::Call(_) => last["message"] = messages[0].clone(),
        }
        return axum::Json(last).into_response();
    }
    let mut lines: Vec<String> = messages
        .into_iter()
        .map(|m| format!("{}\n", line(m, false)))
        .collect();
    lines.push(format!(
        "{}\n",
        line(json!({"role": "assistant", "content": ""}), true)
    ));
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

async fn upstream(State(mock): State<Arc<Mock>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    mock.seen
        .lock()
        .unwrap()
        .push((path.clone(), v.clone(), headers.clone()));
    let model = v["model"].as_str().unwrap_or("").to_string();
    let script = mock
        .next
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(Script::Text("unscripted".into()));
    let id = {
        let mut n = mock.calls.lock().unwrap();
        *n += 1;
        *n
    };
    match path.as_str() {
        "/v1/chat/completions" => {
            if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer oa-key") {
                return (StatusCode::UNAUTHORIZED, "bad key").into_response();
            }
            match validate_openai(&v) {
                Ok(()) => openai_answer(
                    &model,
                    &script,
                    &format!("call_up{id}"),
                    v["stream"] == true,
                ),
                Err(e) => bad(e),
            }
        }
        "/v1/messages" => {
            if headers.get("x-api-key").and_then(|h| h.to_str().ok()) != Some("an-key")
                || headers.get("anthropic-version").is_none()
            {
                return (StatusCode::UNAUTHORIZED, "bad key").into_response();
            }
            match validate_anthropic(&v, &headers) {
                Ok(()) => anthropic_answer(
                    &model,
                    &script,
                    &format!("toolu_up{id}"),
                    v["stream"] == true,
                ),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": e}})),
                )
                    .into_response(),
            }
        }
        "/api/chat" => match validate_ollama(&v) {
            Ok(()) => ollama_answer(&model, &script, v["stream"] != false),
            Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response(),
        },
        _ => (StatusCode::NOT_FOUND, "no").into_response(),
    }
}

async fn setup() -> (Gateway, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let app = Router::new().fallback(upstream).with_state(mock.clone());
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
    (gateway(cfg).await, mock)
}

// ------------------------------------------------------------------ readers

/// What an agent got from one answer.
#[derive(Debug, Default)]
struct Got {
    text: String,
    calls: Vec<Call>,
    /// (input, output) tokens as the agent reads them.
    usage: Option<(u64, u64)>,
}

fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            (name, data)
        })
        .collect()
}

/// Claude Code: message_start … message_stop, balanced content blocks.
fn read_anthropic(text: &str) -> Got {
    let events: Vec<(String, Value)> = sse_events(text)
        .into_iter()
        .map(|(n, d)| {
            let v: Value =
                serde_json::from_str(&d).unwrap_or_else(|e| panic!("unparsable {d:?}: {e}"));
            assert_eq!(v["type"], n.as_str(), "event name and type agree: {text}");
            (n, v)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert_eq!(
        names.iter().filter(|n| **n == "message_delta").count(),
        1,
        "{text}"
    );
    let start = &events[0].1["message"];
    assert!(
        start["id"].is_string() && start["role"] == "assistant" && start["content"].is_array(),
        "{text}"
    );
    let mut got = Got::default();
    let mut open: Option<u64> = None;
    let mut next = 0;
    let mut args: Vec<(String, String)> = vec![];
    for (name, v) in &events {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "block opened inside a block: {text}");
                assert_eq!(v["index"].as_u64(), Some(next), "{text}");
                open = Some(next);
                next += 1;
                let b = &v["content_block"];
                match b["type"].as_str().unwrap() {
                    "text" => assert!(b["text"].is_string(), "{text}"),
                    "tool_use" => {
                        assert!(b["id"].is_string() && b["input"].is_object(), "{text}");
                        args.push((b["name"].as_str().unwrap().into(), String::new()));
                    }
                    "thinking" => {}
                    t => panic!("unexpected block {t}: {text}"),
                }
            }
            "content_block_delta" => {
                assert_eq!(v["index"].as_u64(), open, "delta outside its block: {text}");
                match v["delta"]["type"].as_str().unwrap() {
                    "text_delta" => got.text.push_str(v["delta"]["text"].as_str().unwrap()),
                    "input_json_delta" => args
                        .last_mut()
                        .unwrap()
                        .1
                        .push_str(v["delta"]["partial_json"].as_str().unwrap()),
                    "thinking_delta" | "signature_delta" => {}
                    t => panic!("unexpected delta {t}: {text}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open, "{text}");
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with an open block: {text}");
                let stop = v["delta"]["stop_reason"].as_str().unwrap();
                let want = if args.is_empty() {
                    "end_turn"
                } else {
                    "tool_use"
                };
                assert_eq!(stop, want, "{text}");
                let input = v["usage"]["input_tokens"]
                    .as_u64()
                    .filter(|i| *i > 0)
                    .or(start["usage"]["input_tokens"].as_u64());
                got.usage = Some((
                    input.unwrap(),
                    v["usage"]["output_tokens"].as_u64().unwrap(),
                ));
            }
            "message_start" | "message_stop" | "ping" => {}
            "error" => panic!("error event: {v}"),
            n => panic!("unknown event {n}: {text}"),
        }
    }
    got.calls = args
        .into_iter()
        .map(|(n, a)| (n, parse_args(&json!(a))))
        .collect();
    got
}

/// Codex: response.created first, consecutive sequence numbers, every
/// output_item.added closed by its done, response.completed last and its
/// output equal to what the deltas said.
fn read_responses(text: &str) -> Got {
    let events: Vec<Value> = sse_events(text)
        .into_iter()
        .map(|(n, d)| {
            let v: Value =
                serde_json::from_str(&d).unwrap_or_else(|e| panic!("unparsable {d:?}: {e}"));
            if !n.is_empty() {
                assert_eq!(v["type"], n.as_str(), "event name and type agree: {text}");
            }
            v
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{text}");
    assert!(events[0]["response"]["id"].is_string(), "{text}");
    assert_eq!(types.last(), Some(&"response.completed"), "{text}");
    assert!(!types.contains(&"response.failed"), "{text}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], json!(i), "sequence numbers: {text}");
    }
    let mut open: HashMap<u64, String> = HashMap::new();
    let mut done_items: Vec<Value> = vec![];
    let mut deltas = String::new();
    let mut args: HashMap<String, String> = HashMap::new();
    for e in &events {
        match e["type"].as_str().unwrap() {
            "response.output_item.added" => {
                let idx = e["output_index"].as_u64().unwrap();
                let id = e["item"]["id"].as_str().unwrap_or_default().to_string();
                assert!(open.insert(idx, id).is_none(), "item added twice: {text}");
            }
            "response.output_item.done" => {
                let idx = e["output_index"].as_u64().unwrap();
                let id = open.remove(&idx).expect("done without added");
                assert_eq!(e["item"]["id"].as_str().unwrap_or_default(), id, "{text}");
                done_items.push(e["item"].clone());
            }
            "response.output_text.delta" => {
                assert!(open.contains_key(&e["output_index"].as_u64().unwrap()));
                deltas.push_str(e["delta"].as_str().unwrap())
            }
            "response.function_call_arguments.delta" => args
                .entry(e["item_id"].as_str().unwrap().into())
                .or_default()
                .push_str(e["delta"].as_str().unwrap()),
            _ => {}
        }
    }
    assert!(open.is_empty(), "items never done: {open:?}: {text}");
    let last = &events.last().unwrap()["response"];
    assert_eq!(last["status"], "completed", "{text}");
    assert!(last["id"].is_string(), "{text}");
    let u = &last["usage"];
    for k in ["input_tokens", "output_tokens", "total_tokens"] {
        assert!(u[k].is_u64(), "usage.{k}: {text}");
    }
    let usage = Some((
        u["input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
    ));
    let output = last["output"].as_array().unwrap();
    assert_eq!(output, &done_items, "final output = the items done: {text}");
    let mut got = Got {
        usage,
        ..Got::default()
    };
    for item in output {
        match item["type"].as_str().unwrap() {
            "message" => {
                for c in item["content"].as_array().unwrap() {
                    assert_eq!(c["type"], "output_text");
                    got.text.push_str(c["text"].as_str().unwrap());
                }
            }
            "function_call" => {
                let a = item["arguments"].as_str().unwrap();
                if let Some(streamed) = args.get(item["id"].as_str().unwrap_or_default()) {
                    assert_eq!(streamed, a, "argument deltas add up: {text}");
                }
                assert!(item["call_id"].is_string(), "{text}");
                got.calls
                    .push((item["name"].as_str().unwrap().into(), parse_args(&json!(a))));
            }
            "reasoning" => {}
            t => panic!("unexpected output item {t}: {text}"),
        }
    }
    assert_eq!(deltas, got.text, "the deltas add up to the final text");
    got
}

/// OpenCode / Qwen Code (AI SDK, openai-node): chunks then [DONE], one id.
fn read_chat(text: &str) -> Got {
    let data: Vec<String> = sse_events(text).into_iter().map(|e| e.1).collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let mut ids = HashSet::new();
    let mut got = Got::default();
    let mut calls: Vec<(String, String, String)> = vec![];
    let mut finish = None;
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("unparsable {d:?}: {e}"));
        assert!(v.get("error").is_none(), "{v}");
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            got.usage = Some((
                u["prompt_tokens"].as_u64().unwrap(),
                u["completion_tokens"].as_u64().unwrap(),
            ));
        }
        let choices = v["choices"].as_array().expect("choices");
        let Some(c) = choices.first() else { continue };
        if let Some(f) = c["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
        let delta = &c["delta"];
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
    assert_eq!(ids.len(), 1, "one id across all chunks: {text}");
    let want = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    assert_eq!(finish.as_deref(), Some(want), "{text}");
    for (id, name, _) in &calls {
        assert!(!id.is_empty() && !name.is_empty(), "{text}");
    }
    got.calls = calls
        .into_iter()
        .map(|(_, n, a)| (n, parse_args(&json!(a))))
        .collect();
    got
}

/// Zed: NDJSON lines its serde types accept, the last one done:true.
fn read_ollama(text: &str) -> Got {
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("unparsable {l:?}: {e}")))
        .collect();
    let mut got = Got::default();
    for v in &lines {
        assert!(v.get("error").is_none(), "{v}");
        assert!(v["model"].is_string() && v["created_at"].is_string(), "{v}");
        assert!(v["done"].is_boolean(), "{v}");
        let m = &v["message"];
        assert_eq!(m["role"], "assistant", "{v}");
        assert!(
            m["content"].is_string(),
            "Zed requires message.content: {v}"
        );
        got.text.push_str(m["content"].as_str().unwrap());
        for c in m["tool_calls"].as_array().cloned().unwrap_or_default() {
            assert!(c["function"]["arguments"].is_object(), "{c}");
            got.calls.push((
                c["function"]["name"].as_str().unwrap().into(),
                c["function"]["arguments"].clone(),
            ));
        }
        for k in ["prompt_eval_count", "eval_count"] {
            assert!(v[k].is_null() || v[k].is_u64(), "{v}");
        }
    }
    let last = lines.last().expect("no lines");
    assert_eq!(last["done"], true, "{text}");
    got.usage = Some((
        last["prompt_eval_count"].as_u64().unwrap(),
        last["eval_count"].as_u64().unwrap(),
    ));
    assert_eq!(
        lines.iter().filter(|l| l["done"] == true).count(),
        1,
        "{text}"
    );
    got
}

// ------------------------------------------------------------------ replay

/// Request headers worth replaying: the agent's own, not transport or keys.
fn replay_header(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "authorization"
            | "x-api-key"
            | "host"
            | "content-length"
            | "accept-encoding"
            | "connection"
            | "content-encoding"
            | "transfer-encoding"
    )
}

fn upstream_path(model: &str) -> &'static str {
    match model {
        "m-openai" => "/v1/chat/completions",
        "m-anthropic" => "/v1/messages",
        _ => "/api/chat",
    }
}

async fn replay(gw: &Gateway, mock: &Mock, name: &str) {
    let reqs = fixture(name);
    let mut images_seen = 0;
    for model in MODELS {
        for (i, r) in reqs.iter().enumerate() {
            let ctx = format!("{name} #{i} {} {} → {model}", r.method, r.path);
            let s = surface(&r.path);
            let url = format!("{}{}", gw.base, r.path);
            let mut rb = if r.method == "GET" {
                gw.client.get(&url)
            } else {
                gw.client.post(&url)
            };
            for (k, v) in &r.headers {
                if replay_header(k) && !(k.eq_ignore_ascii_case("upgrade")) {
                    rb = rb.header(k, v);
                }
            }
            let websocket = r.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("upgrade") && v.eq_ignore_ascii_case("websocket")
            });
            if websocket {
                // Codex's prewarm: refused with 426 so it falls back to HTTP.
                let resp = rb
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 426, "{ctx}");
                continue;
            }
            let mut body = r.body.clone();
            if body.get("model").is_some() {
                body["model"] = json!(model);
            }
            // Discovery calls (Zed): answered by the gateway itself.
            if r.path == "/api/tags" || r.path == "/api/show" {
                let resp = rb.json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{ctx}");
                let v: Value = resp.json().await.unwrap();
                if r.path == "/api/tags" {
                    let models = v["models"].as_array().unwrap();
                    assert!(
                        models
                            .iter()
                            .any(|m| m["name"].as_str().unwrap().starts_with(model)),
                        "{ctx}: {v}"
                    );
                    for m in models {
                        assert!(m["modified_at"].is_string() && m["size"].is_u64(), "{m}");
                        assert!(m["digest"].is_string(), "{m}");
                        for k in ["format", "family", "parameter_size", "quantization_level"] {
                            assert!(m["details"][k].is_string(), "{ctx}: details.{k}: {m}");
                        }
                    }
                } else {
                    let caps = v["capabilities"].as_array().unwrap();
                    assert!(caps.contains(&json!("tools")), "{ctx}: {v}");
                }
                continue;
            }
            // The answer the recording implies: a call of the tool whose
            // result the next request carries, else text.
            let next_call = reqs
                .get(i + 1)
                .filter(|n| n.method == "POST" && surface(&n.path) == s)
                .and_then(|n| answered_call(s, &n.body));
            let script = match &next_call {
                Some(c) => Script::Call(c.clone()),
                None => Script::Text(format!("Answer {i} from {model}.")),
            };
            *mock.next.lock().unwrap() = Some(script.clone());
            let before = mock.seen.lock().unwrap().len();
            let resp = rb.json(&body).send().await.unwrap();
            let status = resp.status();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 200, "{ctx}: {text}");
            let stream =
                body["stream"] == true || (s == Surface::Ollama && body["stream"] != false);
            assert!(stream, "{ctx}: the agents all stream");
            let got = match s {
                Surface::Anthropic => read_anthropic(&text),
                Surface::Responses => read_responses(&text),
                Surface::Chat => read_chat(&text),
                Surface::Ollama => read_ollama(&text),
            };
            let want_type = if s == Surface::Ollama {
                "application/x-ndjson"
            } else {
                "text/event-stream"
            };
            assert!(ctype.starts_with(want_type), "{ctx}: content-type {ctype}");
            match &script {
                Script::Text(t) => {
                    assert_eq!(&got.text, t, "{ctx}");
                    assert!(got.calls.is_empty(), "{ctx}: {got:?}");
                }
                Script::Call(c) => assert_eq!(got.calls, vec![c.clone()], "{ctx}"),
            }
            // The mock's usage (11 in, 5 out) reaches the agent; Chat
            // Completions clients get it when they ask (include_usage, as
            // OpenCode and Qwen Code do).
            if s != Surface::Chat || body["stream_options"]["include_usage"] == true {
                assert_eq!(got.usage, Some((11, 5)), "{ctx}: usage");
            }
            // Upstream: one request, in its own format (validated there),
            // carrying the agent's images and tool result.
            let seen = mock.seen.lock().unwrap();
            assert_eq!(seen.len(), before + 1, "{ctx}: one upstream call");
            let (path, up, _) = seen.last().unwrap();
            assert_eq!(path, upstream_path(model), "{ctx}");
            assert_eq!(up["model"], model, "{ctx}");
            let native = matches!(
                (s, model),
                (Surface::Anthropic, "m-anthropic")
                    | (Surface::Chat, "m-openai")
                    | (Surface::Ollama, "m-ollama")
            );
            if native {
                assert_eq!(up, &body, "{ctx}: passthrough keeps the agent's body");
            }
            let up_text = up.to_string();
            let mut imgs = vec![];
            images(&body, &mut imgs);
            images_seen += imgs.len();
            for img in &imgs {
                assert!(up_text.contains(img.as_str()), "{ctx}: image not carried");
            }
            if let Some(result) = result_text(s, &body) {
                let escaped = serde_json::to_string(&result).unwrap();
                assert!(
                    up_text.contains(escaped.trim_matches('"')),
                    "{ctx}: tool result {result:?} not carried: {up_text}"
                );
            }
        }
    }
    if name.contains("image") {
        assert!(images_seen > 0, "{name}: no image replayed");
    }
}

macro_rules! replays {
    ($($test:ident => $file:literal,)*) => {$(
        #[tokio::test]
        async fn $test() {
            let (gw, mock) = setup().await;
            replay(&gw, &mock, $file).await;
        }
    )*};
}

replays! {
    claude_code_plain => "claude_code_plain.json",
    claude_code_tool => "claude_code_tool.json",
    codex_plain => "codex_plain.json",
    codex_tool => "codex_tool.json",
    codex_ws_fallback => "codex_ws_fallback.json",
    opencode_plain => "opencode_plain.json",
    opencode_tool => "opencode_tool.json",
    opencode_image => "opencode_image.json",
    qwen_code_plain => "qwen_code_plain.json",
    qwen_code_tool => "qwen_code_tool.json",
    qwen_code_image => "qwen_code_image.json",
    zed_tool => "zed_tool.json",
    zed_image => "zed_image.json",
}

/// Every fixture in the directory is replayed by a test above.
#[test]
fn every_fixture_is_replayed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/fixtures/agents");
    let src = include_str!("replays.rs");
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(
                src.contains(&format!("\"{name}\"")),
                "{name} is not replayed"
            );
        }
    }
}
