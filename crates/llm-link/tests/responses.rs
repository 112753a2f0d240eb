//! The Responses surface: forwarded to a host that serves it, translated
//! for any other, stored for `previous_response_id` and the read endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{config_from, gateway, mock, simple};
use serde_json::{json, Value};

/// An `openai` provider serves the Responses API: the body goes through
/// byte for byte (fields llm-link does not model included) to `/responses`;
/// `responses = false` makes it translate to Chat Completions instead.
#[tokio::test]
async fn forwarded_as_is_to_a_host_that_serves_it() {
    let up = mock().await;
    let cfg = |flag: &str| {
        config_from(
            &format!(
                r#"
[[providers]]
name = "oa"
kind = "openai"
base_url = "{}/v1"
api_key = "k"
models = ["gpt-x"]
{flag}
"#,
                up.base
            ),
            &[],
        )
    };
    let gw = gateway(cfg("")).await;
    let body = r#"{"model":"gpt-x","input":"hi","include":["reasoning.encrypted_content"],"client_metadata":{"a":"b"},"prompt_cache_key":"p1","store":false}"#;
    let r = gw
        .client
        .post(format!("{}/v1/responses", gw.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "resp_upstream", "{v}");
    let last = up.last();
    assert_eq!(last.path, "/v1/responses");
    assert_eq!(last.body, body.as_bytes(), "byte for byte");
    // Streamed: the upstream's events as they came.
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "gpt-x", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    assert!(text.contains("resp_upstream"), "{text}");

    let gw = gateway(cfg("responses = false")).await;
    let r = gw
        .post("/v1/responses", json!({"model": "gpt-x", "input": "hi"}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_ne!(v["id"], "resp_upstream");
    assert_eq!(up.last().path, "/v1/chat/completions");
}

fn user_texts(chat: &Value) -> Vec<(String, String)> {
    chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

/// `store: true` (the default) keeps the response: GET returns it,
/// `input_items` lists its input, `previous_response_id` continues it (also
/// right after a streamed answer ends), DELETE removes it. `store: false`
/// keeps nothing.
#[tokio::test]
async fn stored_responses_continue_and_can_be_read_and_deleted() {
    let up = mock().await;
    let gw = simple(&up, "").await;
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "mock-model", "instructions": "Be brief.", "input": "first question", "metadata": {"t": "1"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["instructions"], "Be brief.");
    assert_eq!(first["metadata"], json!({"t": "1"}));
    let answer = first["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();

    let got: Value = gw
        .get(&format!("/v1/responses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, first);
    let items: Value = gw
        .get(&format!("/v1/responses/{id}/input_items"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"].as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items["data"][0]["role"], "user");
    assert!(items["data"][0]["id"].is_string(), "{items}");
    assert_eq!(items["has_more"], false);

    // Streamed continuation, and a follow-up the moment it ends.
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "mock-model", "previous_response_id": id, "input": "second question", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let completed = text
        .split("\n\n")
        .find(|b| b.starts_with("event: response.completed"))
        .unwrap_or_else(|| panic!("{text}"));
    let data: Value = serde_json::from_str(
        completed
            .lines()
            .nth(1)
            .unwrap()
            .strip_prefix("data: ")
            .unwrap(),
    )
    .unwrap();
    let second = data["response"]["id"].as_str().unwrap().to_string();
    let sent = up.last().json();
    assert_eq!(
        user_texts(&sent),
        [
            ("user".to_string(), "first question".to_string()),
            ("assistant".to_string(), answer.clone()),
            ("user".to_string(), "second question".to_string()),
        ],
        "the stored conversation goes upstream, without the earlier instructions: {sent}"
    );
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "mock-model", "previous_response_id": second, "input": "third"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let sent = up.last().json();
    assert_eq!(user_texts(&sent).len(), 5, "{sent}");

    // Delete: gone for reading and for continuing.
    let r = gw
        .client
        .delete(format!("{}/v1/responses/{id}", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"id": id, "object": "response", "deleted": true}));
    let r = gw.get(&format!("/v1/responses/{id}")).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "mock-model", "previous_response_id": id, "input": "x"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "previous_response_id", "{v}");

    // store: false keeps nothing.
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "mock-model", "input": "x", "store": false}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let r = gw
        .get(&format!("/v1/responses/{}", v["id"].as_str().unwrap()))
        .await;
    assert_eq!(r.status(), 404);
}

/// Bad input is a 400 in OpenAI's shape naming the field, before anything
/// reaches the upstream.
#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let up = mock().await;
    let gw = simple(&up, "").await;
    for (body, param) in [
        (json!({"input": "x"}), "model"),
        (json!({"model": "mock-model", "input": 5}), "input"),
        (
            json!({"model": "mock-model", "input": [{"type": "message", "role": "user", "content": [{"type": "bogus"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "mock-model", "input": "x", "temperature": 3}),
            "temperature",
        ),
        (
            json!({"model": "mock-model", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}),
            "tools[0].type",
        ),
    ] {
        let r = gw.post("/v1/responses", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(up.hits(), 0);
}

/// Codex's WebSocket attempt (`GET /v1/responses` with an upgrade) is
/// refused with 426, on which Codex falls back to HTTP at once.
#[tokio::test]
async fn websocket_upgrade_is_refused_with_426() {
    let up = mock().await;
    let gw = simple(&up, "").await;
    let r = gw
        .client
        .get(format!("{}/v1/responses", gw.base))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("openai-beta", "responses_websockets=2026-02-06")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "websocket_not_supported", "{v}");
}

/// A Responses host whose reasoning is encrypted per key: an answer carries
/// `enc-<key>-<n>`, and a request that replays reasoning encrypted by
/// another key is refused with 400, as OpenAI refuses another
/// organisation's. Requests from keys listed in `failing` get 500.
mod per_key_host {
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Host {
        pub seen: Mutex<Vec<(String, Value)>>,
        pub failing: Mutex<Vec<String>>,
        n: Mutex<u32>,
    }

    async fn handle(State(h): State<Arc<Host>>, req: Request) -> Response {
        let key = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start_matches("Bearer ")
            .to_string();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        h.seen.lock().unwrap().push((key.clone(), v.clone()));
        if h.failing.lock().unwrap().contains(&key) {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
        }
        for item in v["input"].as_array().into_iter().flatten() {
            if let Some(enc) = item["encrypted_content"].as_str() {
                if !enc.starts_with(&format!("enc-{key}-")) {
                    let err = json!({"error": {"message": "The encrypted content could not be verified.",
                        "type": "invalid_request_error", "code": "invalid_encrypted_content"}});
                    return (axum::http::StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
                }
            }
        }
        let n = {
            let mut n = h.n.lock().unwrap();
            *n += 1;
            *n
        };
        axum::Json(json!({"id": format!("resp_{n}"), "object": "response", "status": "completed",
            "output": [
                {"type": "reasoning", "id": format!("rs_{n}"), "summary": [], "encrypted_content": format!("enc-{key}-{n}")},
                {"type": "message", "id": format!("msg_{n}"), "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": format!("answer {n}"), "annotations": []}]}
            ],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}))
        .into_response()
    }

    pub async fn start() -> (String, Arc<Host>) {
        let h = Arc::new(Host::default());
        let app = axum::Router::new().fallback(handle).with_state(h.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1"), h)
    }
}

/// Codex with `store: false` replays its encrypted reasoning every turn.
/// Over a pool of keys that rotate, each turn still goes to the key that
/// encrypted it; when that key fails, the next one gets the request without
/// the encrypted content instead of a 400.
#[tokio::test]
async fn encrypted_reasoning_goes_back_to_the_key_that_made_it() {
    let (base, host) = per_key_host::start().await;
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "oa"
kind = "openai"
base_url = "{base}"
api_key = "ka"
keys = ["kb", "kc"]
key_strategy = "round_robin"
models = ["gpt-x"]
"#
        ),
        &[],
    ))
    .await;
    let mut input = vec![json!({"type": "message", "role": "user", "content": "turn 0"})];
    let mut first_key = None;
    for turn in 0..6 {
        let r = gw
            .post(
                "/v1/responses",
                json!({"model": "gpt-x", "input": input, "store": false, "include": ["reasoning.encrypted_content"]}),
            )
            .await;
        assert_eq!(r.status(), 200, "turn {turn}: {:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        let (key, _) = host.seen.lock().unwrap().last().cloned().unwrap();
        match &first_key {
            None => first_key = Some(key),
            Some(k) => assert_eq!(&key, k, "turn {turn} went to another key"),
        }
        for item in v["output"].as_array().unwrap() {
            input.push(item.clone());
        }
        input.push(
            json!({"type": "message", "role": "user", "content": format!("turn {}", turn + 1)}),
        );
    }
    // The key that made it fails: another key gets the turn, without the
    // encrypted reasoning it could not read.
    let k = first_key.unwrap();
    host.failing.lock().unwrap().push(k.clone());
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "gpt-x", "input": input, "store": false}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let seen = host.seen.lock().unwrap();
    let (last_key, last_body) = seen.last().cloned().unwrap();
    assert_ne!(last_key, k);
    assert!(
        last_body["input"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("encrypted_content").is_none()),
        "{last_body}"
    );
    assert!(
        last_body["input"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "reasoning"),
        "the items stay, only their encrypted content goes"
    );
}

/// Reasoning both ways, as Codex has it: a replayed `reasoning` item (its
/// summary, and encrypted content a chat host cannot read) becomes the
/// assistant turn's reasoning, never a 400; a chat host's reasoning comes
/// back as a `reasoning` item with its summary, streamed as
/// `response.reasoning_summary_text.delta` events before the answer text.
#[tokio::test]
async fn reasoning_round_trips_through_a_chat_upstream() {
    let up = mock().await;
    let gw = simple(&up, "").await;
    let input = json!([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "plan it"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should list files."}],
         "encrypted_content": "gAAAAopaque"},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "message", "role": "user", "content": "and now?"}
    ]);
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "think", "input": input, "stream": true, "store": false,
                   "reasoning": {"effort": "high", "summary": "auto"},
                   "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let types: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_string)
        .collect();
    let pos = |t: &str| types.iter().position(|x| x == t);
    let summary =
        pos("response.reasoning_summary_text.delta").unwrap_or_else(|| panic!("{types:?}"));
    let answer = pos("response.output_text.delta").unwrap_or_else(|| panic!("{types:?}"));
    assert!(summary < answer, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    let done: Value = serde_json::from_str(
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap(),
    )
    .unwrap();
    let out = &done["response"]["output"];
    assert_eq!(out[0]["type"], "reasoning", "{out}");
    assert_eq!(out[0]["summary"][0]["text"], "secret plan", "{out}");
    assert_eq!(out[1]["content"][0]["text"], "visible answer", "{out}");
    // Upstream: the replayed turn, the tool round in chat shape, no
    // encrypted content anywhere, reasoning effort carried.
    let sent = up.last().json();
    assert_eq!(sent["reasoning_effort"], "high", "{sent}");
    assert!(!sent.to_string().contains("gAAAAopaque"), "{sent}");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "user"], "{sent}");
}

/// An upstream that dies mid-stream ends the Responses stream in
/// `response.failed`, never in a clean completion.
#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_in_response_failed() {
    let up = mock().await;
    let gw = simple(&up, "").await;
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "cut-stream", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(types.first(), Some(&"response.created"), "{text}");
    assert_eq!(types.last(), Some(&"response.failed"), "{text}");
    assert!(!types.contains(&"response.completed"), "{text}");
    let last: Value = serde_json::from_str(
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["response"]["status"], "failed", "{last}");
    assert!(last["response"]["error"]["message"].is_string(), "{last}");
}
