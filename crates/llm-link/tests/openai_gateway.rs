//! The real router against mock upstreams on ephemeral ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llm_link_gateway::config::CliInput;
use serde_json::{json, Value};
use std::time::Duration;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].is_string(),
        "not an OpenAI error: {body}"
    );
    assert!(
        body["error"]["type"].is_string(),
        "not an OpenAI error: {body}"
    );
    assert!(
        body["error"].get("code").is_some(),
        "not an OpenAI error: {body}"
    );
    (status, body)
}

#[tokio::test]
async fn passthrough_rewrites_only_the_model_and_keeps_unknown_fields() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;
    let sent = r#"{"model": "renamed", "messages": [{"role": "user", "content": "hi"}], "x_client_extra": {"n": 1.50}, "logit_bias": {"50256": -100}}"#;
    let resp = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-not-for-upstream")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("server-timing").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["x_mock_extra"]["kept"], true,
        "unknown response field dropped: {body}"
    );
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from mock");

    let up = mock.last();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(
        up.header("authorization").as_deref(),
        Some("Bearer upstream-secret-key")
    );
    // Byte for byte, except the model name.
    assert_eq!(
        String::from_utf8_lossy(&up.body),
        sent.replace("\"renamed\"", "\"real-upstream-name\"")
    );
}

#[tokio::test]
async fn streamed_passthrough_arrives_whole() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-model", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello from mock");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 10);
}

/// Each preset's URL and auth shape: the base URL joined with the path once,
/// the key as a Bearer token.
#[tokio::test]
async fn every_openai_preset_reaches_its_path_with_its_key() {
    let mock = mock().await;
    let presets = [
        ("openai", "/v1"),
        ("zhipu", "/api/paas/v4"),
        ("aliyun", "/compatible-mode/v1"),
        ("volcengine", "/api/v3"),
        ("tencent", "/v1"),
        ("deepseek", "/v1"),
        ("moonshot", "/v1"),
        ("minimax", "/v1"),
        ("openai-compatible", "/custom/v1/"),
    ];
    for (kind, path) in presets {
        let toml_text = format!(
            "[[providers]]\nkind = \"{kind}\"\nbase_url = \"{}{path}\"\napi_key = \"key-{kind}\"\nmodels = [\"m-{kind}\"]\n",
            mock.base
        );
        let gw = gateway(config_from(&toml_text, &[])).await;
        let resp = gw
            .post("/v1/chat/completions", chat(&format!("m-{kind}")))
            .await;
        assert_eq!(resp.status(), 200, "{kind}");
        let up = mock.last();
        let expected = format!("{}/chat/completions", path.trim_end_matches('/'));
        assert_eq!(up.path, expected, "{kind}");
        assert_eq!(
            up.header("authorization"),
            Some(format!("Bearer key-{kind}")),
            "{kind}"
        );
        assert_eq!(up.json()["model"], format!("m-{kind}"));
    }
}

#[tokio::test]
async fn preset_keys_come_from_vendor_env_vars() {
    let mock = mock().await;
    let cfg = config_from(
        &format!(
            "[[providers]]\nkind = \"deepseek\"\nbase_url = \"{}/v1\"\n",
            mock.base
        ),
        &[("DEEPSEEK_API_KEY", "ds-from-env")],
    );
    let gw = gateway(cfg).await;
    // The preset's default model is served without declaring it.
    let resp = gw.post("/v1/chat/completions", chat("deepseek-chat")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.last().header("authorization").as_deref(),
        Some("Bearer ds-from-env")
    );
}

#[tokio::test]
async fn upstream_failures_map_to_clear_statuses() {
    let mock = mock().await;
    // A breaker that never trips here: this test is about status mapping.
    let gw = simple(
        &mock,
        "breaker = { failures = 1000, error_rate = 1.0, window = 1000 }",
    )
    .await;

    let before = mock.hits();
    let (s, b) = error_of(gw.post("/v1/chat/completions", chat("fail-500")).await).await;
    assert_eq!(s, 502);
    // 5xx is retried (3 attempts by default) before the client sees it.
    assert_eq!(mock.hits() - before, 3);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("upstream exploded"));
    let (s, _) = error_of(gw.post("/v1/chat/completions", chat("fail-503")).await).await;
    assert_eq!(s, 502);

    let before = mock.hits();
    let (s, b) = error_of(gw.post("/v1/chat/completions", chat("fail-400")).await).await;
    assert_eq!(s, 400);
    // A client mistake is not retried.
    assert_eq!(mock.hits() - before, 1);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens is too large"));

    let resp = gw.post("/v1/chat/completions", chat("fail-429")).await;
    assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
    let (s, b) = error_of(resp).await;
    assert_eq!(s, 429);
    assert_eq!(b["error"]["type"], "rate_limit_error");

    // The 429 cooled the only key; the 401 case needs a fresh gateway.
    let gw = simple(&mock, "").await;
    let resp = gw.post("/v1/chat/completions", chat("fail-401")).await;
    let raw = resp.text().await.unwrap();
    assert!(!raw.contains("upstream-secret-key"), "key leaked: {raw}");
    let b: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(b["error"]["code"], "upstream_auth_failed");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rejected the API key"),
        "{b}"
    );

    // Nothing listens on a port we just freed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw2 = gateway(config_from(
        &format!("[[providers]]\nname = \"dead\"\nkind = \"openai-compatible\"\nbase_url = \"http://{dead}/v1\"\nmodels = [\"m\"]\n"),
        &[],
    ))
    .await;
    let (s, b) = error_of(gw2.post("/v1/chat/completions", chat("m")).await).await;
    assert_eq!(s, 502);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{b}"
    );
}

#[tokio::test]
async fn timeouts_first_byte_and_between_chunks() {
    let mock = mock().await;
    let gw = simple(
        &mock,
        "timeouts = { first_byte = \"300ms\", idle = \"300ms\" }",
    )
    .await;

    let (s, b) = error_of(gw.post("/v1/chat/completions", chat("slow-headers")).await).await;
    assert_eq!(s, 504);
    assert_eq!(b["error"]["code"], "upstream_timeout");

    // A stream that stalls after its first chunk ends with an in-band error.
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "stall-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert!(data[0].contains("partial"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
    // The gateway let go of the stalled upstream.
    assert!(mock.wait_dropped("stall-stream").await);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;

    // Not streamed: the client gives up while the upstream is still thinking.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/v1/chat/completions", gw.base))
        .json(&chat("hang"))
        .send()
        .await;
    assert!(r.is_err());
    assert!(
        mock.wait_dropped("hang").await,
        "upstream request outlived the client"
    );

    // Streamed: the client reads one chunk and leaves.
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "endless", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let mut s = resp.bytes_stream();
    use futures_util::StreamExt;
    let first = s.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("partial"));
    drop(s);
    assert!(
        mock.wait_dropped("endless").await,
        "upstream stream outlived the client"
    );
}

#[tokio::test]
async fn input_guards() {
    let mock = mock().await;
    let text = format!(
        "[server]\nbody_limit = \"1KiB\"\n[[providers]]\nname = \"mock\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"mock-model\"]\n",
        mock.base
    );
    let gw = gateway(config_from(&text, &[])).await;

    let big =
        json!({"model": "mock-model", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, b) = error_of(gw.post("/v1/chat/completions", big).await).await;
    assert_eq!(s, 413);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--body-limit"));

    let resp = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let (s, b) = error_of(resp).await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    let (s, b) = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "mock-model", "messages": "oops"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "messages");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`messages`"));

    let (s, b) = error_of(
        gw.post("/v1/chat/completions", json!({"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "temperature": "warm"}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "temperature");

    let (s, b) = error_of(gw.post("/v1/chat/completions", chat("no-such-model")).await).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "model_not_found");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /v1/models"));

    let (s, _) = error_of(gw.post("/v1/nothing-here", json!({})).await).await;
    assert_eq!(s, 404);
    // None of the bad requests reached the upstream.
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn client_auth_on_model_endpoints() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;
    let text = format!(
        "[server]\nauth_keys = [\"client-k1\"]\n[[providers]]\nname = \"mock\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"mock-model\"]\n",
        mock.base
    );
    drop(gw);
    let gw = gateway(config_from(&text, &[])).await;
    let url = format!("{}/v1/chat/completions", gw.base);

    let (s, b) = error_of(
        gw.client
            .post(&url)
            .json(&chat("mock-model"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["type"], "authentication_error");
    let (s, _) = error_of(
        gw.client
            .post(&url)
            .bearer_auth("wrong")
            .json(&chat("mock-model"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let ok = gw
        .client
        .post(&url)
        .bearer_auth("client-k1")
        .json(&chat("mock-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = gw
        .client
        .post(&url)
        .header("x-api-key", "client-k1")
        .json(&chat("mock-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let models = gw
        .client
        .get(format!("{}/v1/models", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    // The client key never goes upstream; health needs no key.
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("x-api-key").is_none()
            && r.header("authorization").as_deref() != Some("Bearer client-k1")));
    assert_eq!(gw.get("/health").await.status(), 200);
}

#[tokio::test]
async fn models_list_and_lookup() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;
    let list: Value = gw.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"mock-model") && ids.contains(&"renamed"),
        "{ids:?}"
    );
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(list["data"][0]["owned_by"], "mock");

    let one: Value = gw.get("/v1/models/mock-model").await.json().await.unwrap();
    assert_eq!(one["id"], "mock-model");
    let slashed = gw.get("/v1/models/mock/mock-model").await;
    assert_eq!(slashed.status(), 200);
    let (s, b) = error_of(gw.get("/v1/models/nope").await).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn aliases_and_provider_slash_model() {
    let mock = mock().await;
    let gw = simple(&mock, "[aliases]\n\"gpt-4\" = \"mock/renamed\"\n").await;
    assert_eq!(
        gw.post("/v1/chat/completions", chat("gpt-4"))
            .await
            .status(),
        200
    );
    assert_eq!(mock.last().json()["model"], "real-upstream-name");
    assert_eq!(
        gw.post("/v1/chat/completions", chat("mock/anything-else"))
            .await
            .status(),
        200
    );
    assert_eq!(mock.last().json()["model"], "anything-else");
}

#[tokio::test]
async fn single_provider_mode_forwards_any_model() {
    let mock = mock().await;
    let cli = CliInput {
        provider: Some("openai-compatible".into()),
        base_url: Some(format!("{}/v1", mock.base)),
        model: Some("default-m".into()),
        ..Default::default()
    };
    let gw = gateway(config_with(cli, "", &[])).await;
    assert_eq!(
        gw.post("/v1/chat/completions", chat("whatever-model-9"))
            .await
            .status(),
        200
    );
    assert_eq!(mock.last().json()["model"], "whatever-model-9");
    let health: Value = gw.get("/api/health").await.json().await.unwrap();
    assert_eq!(health["provider"], "openai-compatible");
    assert_eq!(health["model"], "default-m");
    assert!(health["instance_id"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn embeddings_and_legacy_completions() {
    let mock = mock().await;
    let gw = simple(&mock, "").await;
    let r: Value = gw
        .post(
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": ["a", "b"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    assert_eq!(mock.last().path, "/v1/embeddings");
    let (s, b) = error_of(
        gw.post("/v1/embeddings", json!({"model": "mock-embed"}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "input");

    let r: Value = gw
        .post(
            "/v1/completions",
            json!({"model": "mock-model", "prompt": "Say hi"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["text"], "legacy text");
    assert_eq!(mock.last().path, "/v1/completions");
}

/// With pass-through off, requests go through the internal model: inline
/// `<think>` reasoning comes out as `reasoning_content`, never as content.
#[tokio::test]
async fn translated_path_splits_reasoning_and_keeps_one_stream_id() {
    let mock = mock().await;
    let gw = simple(&mock, "passthrough = false").await;

    let r: Value = gw
        .post("/v1/chat/completions", chat("think"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "visible answer");
    assert_eq!(
        r["choices"][0]["message"]["reasoning_content"],
        "secret plan"
    );
    assert_eq!(r["object"], "chat.completion");
    // The translated request asks upstream for usage on streams.
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "think", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    assert!(chunks.iter().all(|c| c["id"] == id));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(content, "visible answer");
    assert_eq!(reasoning, "secret plan");
    assert_eq!(mock.last().json()["stream_options"]["include_usage"], true);

    // A stream that is cut off ends with an in-band error, not a silent end.
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "cut-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let data = sse_data(resp).await;
    assert!(
        data.iter().any(|d| d.contains("ended the stream early")),
        "{data:?}"
    );

    let (s, b) = error_of(gw.post("/v1/chat/completions", chat("garbage")).await).await;
    assert_eq!(s, 502);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed"));
}
