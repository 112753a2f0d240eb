//! Usage metering end to end, on both engines: requests through each client
//! format (streamed and not, forwarded and translated, embeddings), a
//! failing upstream, a client that disconnects mid-stream, then
//! `GET /api/v1/llm/usage` returns the rows, sums, groups and filters; the
//! client key itself is never stored or shown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{config_from, Gateway};
use futures_util::StreamExt;
use llm_link_store::crypto::MasterKey;
use serde_json::{json, Value};
use std::time::Duration;
use store_common::{Admin, Engine, TestDb};

const CLIENT_KEY: &str = "client-secret-key-5f1e2d";

// ---- a mock upstream speaking all three formats -----------------------------

fn stream_of(parts: Vec<String>, content_type: &'static str, gap: Option<Duration>) -> Response {
    let s = futures_util::stream::iter(parts).then(move |p| async move {
        if let Some(g) = gap {
            tokio::time::sleep(g).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(p))
    });
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(s))
        .unwrap()
}

fn openai_chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-m", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

async fn upstream(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = v["model"].as_str().unwrap_or("").to_string();
    let stream = v["stream"].as_bool().unwrap_or(false);
    match path.as_str() {
        "/v1/chat/completions" => {
            if model == "fail-500" {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": {"message": "boom", "type": "server_error"}})),
                )
                    .into_response();
            }
            if model == "endless" {
                let mut parts = vec![openai_chunk(
                    &model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )];
                parts
                    .extend((0..3000).map(|_| openai_chunk(&model, json!({"content": "."}), None)));
                return stream_of(parts, "text/event-stream", Some(Duration::from_millis(20)));
            }
            // `gpt-cached*`: 1000 prompt tokens, 400 of them from the cache.
            let usage = if model.starts_with("gpt-cached") {
                json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                    "prompt_tokens_details": {"cached_tokens": 400}})
            } else {
                json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
            };
            if !stream {
                return axum::Json(json!({"id": "chatcmpl-m", "object": "chat.completion", "created": 1, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                    "usage": usage}))
                .into_response();
            }
            let mut parts = vec![
                openai_chunk(
                    &model,
                    json!({"role": "assistant", "content": "Hello"}),
                    None,
                ),
                openai_chunk(&model, json!({}), Some("stop")),
            ];
            if v["stream_options"]["include_usage"] == true {
                let u = json!({"id": "chatcmpl-m", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [], "usage": usage});
                parts.push(format!("data: {u}\n\n"));
            }
            parts.push("data: [DONE]\n\n".into());
            stream_of(parts, "text/event-stream", None)
        }
        "/v1/embeddings" => axum::Json(json!({"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}}))
        .into_response(),
        "/v1/messages" => {
            // `claude-cached`: 100 uncached input tokens, 800 read from the
            // cache and 100 written to it (Anthropic counts them apart).
            let usage = if model == "claude-cached" {
                json!({"input_tokens": 100, "cache_read_input_tokens": 800,
                    "cache_creation_input_tokens": 100, "output_tokens": 50})
            } else {
                json!({"input_tokens": 10, "output_tokens": 5})
            };
            if !stream {
                return axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": usage}))
                .into_response();
            }
            let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
            stream_of(
                vec![
                    ev(
                        "message_start",
                        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
                    ),
                    ev(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                    ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
                    ),
                    ev(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ),
                    ev(
                        "message_delta",
                        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
                    ),
                    ev("message_stop", json!({"type": "message_stop"})),
                ],
                "text/event-stream",
                None,
            )
        }
        "/api/chat" => {
            let last = json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": if stream { "" } else { "Hello" }},
                "done": true, "done_reason": "stop", "total_duration": 1, "prompt_eval_count": 12, "eval_count": 6});
            if !stream {
                return axum::Json(last).into_response();
            }
            let first = json!({"model": model, "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": "Hello"}, "done": false});
            stream_of(
                vec![format!("{first}\n"), format!("{last}\n")],
                "application/x-ndjson",
                None,
            )
        }
        "/api/embed" => {
            axum::Json(json!({"model": model, "embeddings": [[0.1, 0.2]], "prompt_eval_count": 3}))
                .into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

async fn start_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback(upstream))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

fn config(up: &str) -> llm_link_gateway::config::Config {
    config_from(
        &format!(
            r#"
[server]
auth_keys = ["{CLIENT_KEY}"]

[[providers]]
name = "oa"
kind = "openai-compatible"
base_url = "{up}/v1"
api_key = "upstream-openai-key-1"
models = ["gpt-x", "fail-500", "endless", "text-embed"]

[[providers]]
name = "an"
kind = "anthropic"
base_url = "{up}"
api_key = "upstream-anthropic-key-1"
models = ["claude-x"]

[[providers]]
name = "ol"
kind = "ollama"
base_url = "{up}"
models = ["llama-x", "ollama-embed"]
"#
        ),
        &[],
    )
}

async fn post(gw: &Gateway, path: &str, body: Value) -> reqwest::Response {
    gw.client
        .post(format!("{}{path}", gw.base))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Posts and reads the whole answer; the status must be `want`.
async fn call(gw: &Gateway, path: &str, body: Value, want: u16) -> String {
    let r = post(gw, path, body.clone()).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "{path} {body}: {text}");
    text
}

/// Flushes and polls (bounded) until the store holds `n` rows.
async fn wait_rows(gw: &Gateway, admin: &Admin<'_>, n: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        gw.state.usage.flush().await;
        let (s, v) = admin.get("/api/v1/llm/usage?limit=1000").await;
        assert_eq!(s, 200, "{v}");
        if v["summary"]["requests"].as_u64() == Some(n) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} usage rows, have {}",
            v["summary"]["requests"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn msgs() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

/// The row of a request, found by (protocol, endpoint, model, stream).
fn row<'a>(rows: &'a [Value], protocol: &str, model: &str, stream: bool) -> &'a Value {
    let found: Vec<&Value> = rows
        .iter()
        .filter(|r| r["protocol"] == protocol && r["model"] == model && r["stream"] == stream)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{protocol} {model} stream={stream}: {rows:?}"
    );
    found[0]
}

fn tokens(r: &Value) -> (i64, i64) {
    (
        r["input_tokens"].as_i64().unwrap_or(-1),
        r["output_tokens"].as_i64().unwrap_or(-1),
    )
}

both!(every_surface_is_metered);
async fn every_surface_is_metered(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let up = start_upstream().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config(&up), store, layer).await;
    let admin = Admin::new(&gw);
    // A catalog price for one model (per million tokens).
    let (s, m) = admin
        .post(
            "/api/v1/llm-models",
            json!({"name": "Priced", "model_id": "gpt-priced", "provider": "oa", "type": "chat",
                   "input_price": 10.0, "output_price": 30.0}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let admin_rows_before = wait_rows(&gw, &admin, 0).await;
    assert_eq!(admin_rows_before["data"], json!([]));

    let chat =
        |model: &str, stream: bool| json!({"model": model, "messages": msgs(), "stream": stream});
    let anth = |model: &str, stream: bool| json!({"model": model, "max_tokens": 64, "messages": msgs(), "stream": stream});
    // OpenAI clients: forwarded (with and without include_usage) and translated.
    call(&gw, "/v1/chat/completions", chat("gpt-x", false), 200).await;
    let mut b = chat("gpt-x", true);
    b["stream_options"] = json!({"include_usage": true});
    call(&gw, "/v1/chat/completions", b, 200).await;
    call(&gw, "/v1/chat/completions", chat("claude-x", false), 200).await;
    call(&gw, "/v1/chat/completions", chat("claude-x", true), 200).await;
    call(&gw, "/v1/chat/completions", chat("gpt-priced", false), 200).await;
    // Anthropic clients: forwarded and translated.
    call(&gw, "/v1/messages", anth("claude-x", false), 200).await;
    call(&gw, "/v1/messages", anth("claude-x", true), 200).await;
    call(&gw, "/v1/messages", anth("gpt-x", true), 200).await;
    // Ollama clients: forwarded and translated, with an app header.
    call(&gw, "/api/chat", chat("llama-x", false), 200).await;
    let r = gw
        .client
        .post(format!("{}/api/chat", gw.base))
        .bearer_auth(CLIENT_KEY)
        .header("x-llm-link-app", "my-editor")
        .json(&chat("llama-x", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    r.text().await.unwrap();
    call(&gw, "/api/chat", chat("gpt-x", false), 200).await;
    // Embeddings, forwarded on both surfaces.
    call(
        &gw,
        "/v1/embeddings",
        json!({"model": "text-embed", "input": "hi"}),
        200,
    )
    .await;
    call(
        &gw,
        "/api/embed",
        json!({"model": "ollama-embed", "input": "hi"}),
        200,
    )
    .await;
    // A failing upstream and a request rejected before routing.
    call(&gw, "/v1/chat/completions", chat("fail-500", false), 502).await;
    call(
        &gw,
        "/v1/chat/completions",
        json!({"model": "nope", "messages": msgs()}),
        404,
    )
    .await;
    // A client that goes away mid-stream.
    let r = post(&gw, "/v1/chat/completions", chat("endless", true)).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(body.next().await.unwrap().is_ok());
    drop(body);
    // A rejected client key records nothing.
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth("wrong-key")
        .json(&chat("gpt-x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let v = wait_rows(&gw, &admin, 16).await;
    let rows = v["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 16);
    let kid = llm_link_gateway::meter::key_id(CLIENT_KEY);
    assert_eq!(kid.len(), 8);
    for r in &rows {
        assert_eq!(r["key_id"], kid.as_str(), "{r}");
        assert!(
            r["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
        assert!(r["ts"].as_i64().unwrap() > 1_700_000_000_000);
        assert!(r["latency_ms"].as_i64().unwrap() >= 0);
    }

    let r = row(&rows, "openai", "gpt-x", false);
    assert_eq!(tokens(r), (7, 3));
    assert_eq!(
        (r["provider"].as_str(), r["upstream_model"].as_str()),
        (Some("oa"), Some("gpt-x"))
    );
    assert_eq!(
        (r["status"].as_i64(), r["attempts"].as_i64()),
        (Some(200), Some(1))
    );
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["endpoint"], "chat/completions");
    assert!(r["ttfb_ms"].as_i64().is_some());
    assert_eq!(r["cost"], Value::Null);
    assert_eq!(tokens(row(&rows, "openai", "gpt-x", true)), (7, 3));
    let r = row(&rows, "openai", "claude-x", false);
    assert_eq!(tokens(r), (10, 5));
    assert_eq!(r["provider"], "an");
    assert_eq!(tokens(row(&rows, "openai", "claude-x", true)), (10, 5));
    let r = row(&rows, "openai", "gpt-priced", false);
    assert_eq!(tokens(r), (7, 3));
    let cost = r["cost"].as_f64().unwrap();
    assert!(
        (cost - (7.0 * 10.0 + 3.0 * 30.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(tokens(row(&rows, "anthropic", "claude-x", false)), (10, 5));
    let r = row(&rows, "anthropic", "claude-x", true);
    assert_eq!(tokens(r), (10, 5));
    assert_eq!(r["endpoint"], "messages");
    assert_eq!(tokens(row(&rows, "anthropic", "gpt-x", true)), (7, 3));
    assert_eq!(tokens(row(&rows, "ollama", "llama-x", false)), (12, 6));
    let r = row(&rows, "ollama", "llama-x", true);
    assert_eq!(tokens(r), (12, 6));
    assert_eq!(r["app"], "my-editor");
    assert_eq!(tokens(row(&rows, "ollama", "gpt-x", false)), (7, 3));
    let r = row(&rows, "openai", "text-embed", false);
    assert_eq!(
        (r["endpoint"].as_str(), r["input_tokens"].as_i64()),
        (Some("embeddings"), Some(4))
    );
    let r = row(&rows, "ollama", "ollama-embed", false);
    assert_eq!(
        (r["endpoint"].as_str(), r["input_tokens"].as_i64()),
        (Some("embed"), Some(3))
    );
    let r = row(&rows, "openai", "fail-500", false);
    assert_eq!(
        (r["status"].as_i64(), r["error"].as_str()),
        (Some(502), Some("upstream_failed"))
    );
    assert_eq!(r["provider"], "oa");
    assert!(r["attempts"].as_i64().unwrap() >= 1);
    assert_eq!(r["input_tokens"], Value::Null);
    // Rejected before routing: the model is not known to the finalizer.
    let r = row(&rows, "openai", "", false);
    assert_eq!(
        (r["status"].as_i64(), r["error"].as_str()),
        (Some(404), Some("model_not_found"))
    );
    let r = row(&rows, "openai", "endless", true);
    assert_eq!(
        (r["status"].as_i64(), r["error"].as_str()),
        (Some(200), Some("client_disconnected"))
    );

    // Summary over every row.
    let s = &v["summary"];
    assert_eq!(s["requests"], 16);
    // 7+7+10+10+7+10+10+7+12+12+7+4+3 input, 3+3+5+5+3+5+5+3+6+6+3 output.
    assert_eq!(s["input_tokens"], 106);
    assert_eq!(s["output_tokens"], 47);
    assert_eq!(s["errors"], 3);
    assert!((s["cost"].as_f64().unwrap() - cost).abs() < 1e-12);
    assert_eq!(v["recorder"]["dropped"], 0);

    // Filters and groups.
    let (_, f) = admin.get("/api/v1/llm/usage?model=claude-x").await;
    assert_eq!(f["summary"]["requests"], 4);
    assert_eq!(f["data"].as_array().unwrap().len(), 4);
    let (_, f) = admin
        .get("/api/v1/llm/usage?provider=ol&app=my-editor")
        .await;
    assert_eq!(f["summary"]["requests"], 1);
    let (_, f) = admin
        .get(&format!("/api/v1/llm/usage?key={kid}&limit=2"))
        .await;
    assert_eq!(f["summary"]["requests"], 16);
    assert_eq!(f["data"].as_array().unwrap().len(), 2);
    let (_, f) = admin.get("/api/v1/llm/usage?key=00000000").await;
    assert_eq!(f["summary"]["requests"], 0);
    let (_, f) = admin.get("/api/v1/llm/usage?to=1000").await;
    assert_eq!(f["summary"]["requests"], 0);
    let (_, f) = admin
        .get("/api/v1/llm/usage?from=2020-01-01T00:00:00Z")
        .await;
    assert_eq!(f["summary"]["requests"], 16);
    let (_, g) = admin.get("/api/v1/llm/usage?group_by=provider").await;
    let groups = g["data"].as_array().unwrap();
    let an = groups.iter().find(|x| x["provider"] == "an").unwrap();
    assert_eq!(
        (
            an["requests"].as_i64(),
            an["input_tokens"].as_i64(),
            an["output_tokens"].as_i64()
        ),
        (Some(4), Some(40), Some(20))
    );
    // The 404 was never routed: its group has no provider.
    assert!(groups
        .iter()
        .any(|x| x["provider"].is_null() && x["requests"] == 1));
    let (_, g) = admin.get("/api/v1/llm/usage?group_by=day").await;
    let days = g["data"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{g}");
    assert_eq!(days[0]["requests"], 16);
    assert_eq!(days[0]["day"].as_str().unwrap().len(), 10);
    let (_, g) = admin.get("/api/v1/llm/usage?group_by=key").await;
    assert_eq!(g["data"][0]["key"], kid.as_str());
    let (_, g) = admin.get("/api/v1/llm/usage?group_by=model&limit=1").await;
    assert_eq!(g["data"].as_array().unwrap().len(), 1);
    // claude-x and gpt-x tie at four; ties go by name.
    assert_eq!(g["data"][0]["model"], "claude-x");
    assert_eq!(g["data"][0]["requests"], 4);

    // Bad filters name the parameter.
    for (q, field) in [
        ("from=yesterday", "query.from"),
        ("to=2024-13-01", "query.to"),
        ("limit=0", "query.limit"),
        ("limit=x", "query.limit"),
        ("group_by=colour", "query.group_by"),
        ("user=ann", "query.user"),
        ("format=xml", "query.format"),
        ("colour=red", "query.colour"),
        ("model=", "query.model"),
        ("from=2024-05-02&to=2024-05-01", "query.to"),
    ] {
        let (s, e) = admin.get(&format!("/api/v1/llm/usage?{q}")).await;
        assert_eq!(s, 400, "{q}: {e}");
        assert_eq!(e["error"]["field"], field, "{q}: {e}");
    }
    // The admin token is required.
    let r = gw.get("/api/v1/llm/usage").await;
    assert_eq!(r.status(), 401);

    // The key itself is nowhere: not in the answers, not in the database.
    let (_, all) = admin.get("/api/v1/llm/usage?limit=1000").await;
    assert!(!all.to_string().contains(CLIENT_KEY));
    if engine == Engine::Sqlite {
        let mut bytes = Vec::new();
        for f in std::fs::read_dir(db.dir.path()).unwrap() {
            let p = f.unwrap().path();
            if p.to_string_lossy().contains("llm-link.db") {
                bytes.extend(std::fs::read(&p).unwrap());
            }
        }
        assert!(!bytes.is_empty());
        assert!(bytes
            .windows(CLIENT_KEY.len())
            .all(|w| w != CLIENT_KEY.as_bytes()));
        // Rows did reach the file (sanity check of the search).
        assert!(bytes.windows(kid.len()).any(|w| w == kid.as_bytes()));
    }
}

both!(cached_tokens_are_billed_at_the_cached_price);
async fn cached_tokens_are_billed_at_the_cached_price(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let up = start_upstream().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config(&up), store, layer).await;
    let admin = Admin::new(&gw);
    // Per million tokens: input 2, cached 0.5, output 8; one model without
    // a cached price (its cached tokens cost the input price).
    for (name, model_id, provider, cached) in [
        ("Cached", "gpt-cached", "oa", json!(0.5)),
        ("Cached, unpriced", "gpt-cached-full", "oa", Value::Null),
        ("Claude cached", "claude-cached", "an", json!(0.5)),
    ] {
        let (s, m) = admin
            .post(
                "/api/v1/llm-models",
                json!({"name": name, "model_id": model_id, "provider": provider, "type": "chat",
                       "input_price": 2.0, "output_price": 8.0, "cached_input_price": cached}),
            )
            .await;
        assert_eq!(s, 201, "{m}");
        assert_eq!(m["cached_input_price"], cached);
    }

    let chat =
        |model: &str, stream: bool| json!({"model": model, "messages": msgs(), "stream": stream});
    let anth = |model: &str| json!({"model": model, "max_tokens": 64, "messages": msgs()});
    // OpenAI, forwarded whole and streamed (with its usage chunk).
    call(&gw, "/v1/chat/completions", chat("gpt-cached", false), 200).await;
    let mut b = chat("gpt-cached", true);
    b["stream_options"] = json!({"include_usage": true});
    call(&gw, "/v1/chat/completions", b, 200).await;
    call(
        &gw,
        "/v1/chat/completions",
        chat("gpt-cached-full", false),
        200,
    )
    .await;
    // Anthropic, forwarded and translated for an OpenAI client.
    call(&gw, "/v1/messages", anth("claude-cached"), 200).await;
    call(
        &gw,
        "/v1/chat/completions",
        chat("claude-cached", false),
        200,
    )
    .await;

    let v = wait_rows(&gw, &admin, 5).await;
    let rows = v["data"].as_array().unwrap().clone();
    let cost = |r: &Value| r["cost"].as_f64().unwrap_or(f64::NAN);
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // (prompt − cached) × input + cached × cached price + completion × output.
    let openai = ((1000.0 - 400.0) * 2.0 + 400.0 * 0.5 + 500.0 * 8.0) / 1e6;
    for stream in [false, true] {
        let r = row(&rows, "openai", "gpt-cached", stream);
        assert_eq!(tokens(r), (1000, 500), "{r}");
        assert_eq!(r["cached_tokens"], 400, "{r}");
        assert!(near(cost(r), openai), "stream={stream}: {r}");
    }
    let r = row(&rows, "openai", "gpt-cached-full", false);
    assert_eq!(r["cached_tokens"], 400, "{r}");
    assert!(near(cost(r), (1000.0 * 2.0 + 500.0 * 8.0) / 1e6), "{r}");
    // Anthropic: prompt = input + cache reads + cache writes = 1000, of
    // which the 800 cache reads are cached; the writes cost the input price.
    let anthropic = ((1000.0 - 800.0) * 2.0 + 800.0 * 0.5 + 50.0 * 8.0) / 1e6;
    for protocol in ["anthropic", "openai"] {
        let r = row(&rows, protocol, "claude-cached", false);
        assert_eq!(tokens(r), (1000, 50), "{r}");
        assert_eq!(r["cached_tokens"], 800, "{r}");
        assert!(near(cost(r), anthropic), "{protocol}: {r}");
    }
    let total = 2.0 * openai + 2.0 * anthropic + (1000.0 * 2.0 + 500.0 * 8.0) / 1e6;
    assert!(near(v["summary"]["cost"].as_f64().unwrap(), total), "{v}");
}
