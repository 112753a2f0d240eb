//! The hot-update API desktop hosts use: restart-flow answers, the
//! in-process switch under traffic, key validation, access rules, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use llm_link_gateway::config::CliInput;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

fn single(mock: &Mock, model: &str) -> llm_link_gateway::config::Config {
    let cli = CliInput {
        provider: Some("openai-compatible".into()),
        base_url: Some(format!("{}/v1", mock.base)),
        model: Some(model.into()),
        api_key: Some("key-a".into()),
        ..Default::default()
    };
    config_with(cli, "", &[])
}

#[tokio::test]
async fn restart_flow_answers() {
    let a = mock().await;
    let gw = gateway(single(&a, "model-a")).await;
    let health: Value = gw.get("/api/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider"], "openai-compatible");
    assert_eq!(health["model"], "model-a");
    let id = health["instance_id"].as_u64().unwrap();

    let cur: Value = gw.get("/api/config/current").await.json().await.unwrap();
    assert_eq!(
        cur,
        json!({"provider": "openai-compatible", "model": "model-a", "has_api_key": true, "has_base_url": true})
    );
    let pid: Value = gw.get("/api/config/pid").await.json().await.unwrap();
    assert_eq!(pid["pid"], std::process::id());

    let r: Value = gw
        .post(
            "/api/config/update",
            json!({"provider": "zhipu", "api_key": "zk-new"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success");
    assert_eq!(r["restart_required"], true);
    assert_eq!(r["current_instance_id"], id);
    assert_eq!(r["env_vars"], json!({"ZHIPU_API_KEY": "zk-new"}));
    assert_eq!(
        r["cli_args"],
        json!({"provider": "zhipu", "model": "glm-4-flash"})
    );
    // Nothing changed in this process.
    let cur: Value = gw.get("/api/config/current").await.json().await.unwrap();
    assert_eq!(cur["model"], "model-a");

    let resp = gw
        .post(
            "/api/config/update",
            json!({"provider": "warp-drive", "api_key": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("zhipu"),
        "{body}"
    );
    let resp = gw
        .post(
            "/api/config/update",
            json!({"provider": "volcengine", "api_key": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400, "volcengine needs a model");
    let resp = gw
        .post(
            "/api/config/update",
            json!({"provider": "zhipu", "api_kee": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    // A key is never shown back by current.
    assert!(!gw
        .get("/api/config/current")
        .await
        .text()
        .await
        .unwrap()
        .contains("key-a"));
}

/// Waits (at most 20 s) until a mock has served `n` requests.
async fn until_hits(m: &Mock, n: usize) {
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while m.hits() < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("traffic stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_switch_under_traffic() {
    let a = mock().await;
    let b = mock().await;
    let gw = gateway(single(&a, "model-a")).await;
    let id = gw.state.instance_id;
    let chat = json!({"model": "anything", "messages": [{"role": "user", "content": "hi"}]});

    // 8 clients send requests back to back until told to stop; the switch
    // happens once A has served some, and they stop once B has too, so
    // requests are in flight on both sides of the switch.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let client = gw.client.clone();
        let url = format!("{}/v1/chat/completions", gw.base);
        let body = chat.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "worker {w} request {i}");
                let v: Value = r.json().await.unwrap();
                out.push(
                    v["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
                i += 1;
            }
            out
        }));
    }
    until_hits(&a, 40).await;
    let r: Value = gw
        .post("/api/config/switch", json!({"provider": "openai-compatible", "api_key": "key-b", "base_url": format!("{}/v1", b.base), "model": "model-b"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["restart_required"], false);
    assert_eq!(r["current_instance_id"], id);
    until_hits(&b, 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for t in tasks {
        for content in t.await.unwrap() {
            assert_eq!(content, "Hello from mock");
            sent += 1;
        }
    }
    // Each request went wholly to one provider, with that provider's key.
    assert!(a
        .requests()
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some("Bearer key-a")));
    assert!(b
        .requests()
        .iter()
        .all(|r| r.header("authorization").as_deref() == Some("Bearer key-b")));
    assert_eq!(a.hits() + b.hits(), sent);
    assert!(b.hits() > 0 && a.hits() > 0);
    let health: Value = gw.get("/api/health").await.json().await.unwrap();
    assert_eq!(health["model"], "model-b");
    assert_eq!(health["instance_id"].as_u64(), Some(id));
    // After the switch, new requests go to B only.
    let before = a.hits();
    assert_eq!(
        gw.post("/v1/chat/completions", chat.clone()).await.status(),
        200
    );
    assert_eq!(a.hits(), before);

    // update with apply=true is the same switch.
    let r: Value = gw
        .post("/api/config/update", json!({"provider": "openai-compatible", "base_url": format!("{}/v1", a.base), "model": "model-a2", "apply": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["restart_required"], false);
    let health: Value = gw.get("/api/health").await.json().await.unwrap();
    assert_eq!(health["model"], "model-a2");
}

#[tokio::test]
async fn validate_calls_the_upstream_for_real() {
    let a = mock().await;
    let gw = gateway(single(&a, "model-a")).await;
    let base = format!("{}/v1", a.base);
    let v: Value = gw
        .post(
            "/api/config/validate",
            json!({"provider": "openai-compatible", "api_key": "good-key", "base_url": base}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "valid", "{v}");
    assert_eq!(v["models"], json!(["up-model-a", "up-model-b"]));
    assert_eq!(a.last().path, "/v1/models");
    assert_eq!(
        a.last().header("authorization").as_deref(),
        Some("Bearer good-key")
    );

    let v: Value = gw
        .post(
            "/api/config/validate",
            json!({"provider": "openai-compatible", "api_key": "bad-key", "base_url": base}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "invalid");
    assert!(v["message"].as_str().unwrap().contains("rejected"), "{v}");
    assert!(!v.to_string().contains("bad-key"));

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let v: Value = gw
        .post("/api/config/validate", json!({"provider": "openai-compatible", "api_key": "k", "base_url": format!("http://{dead}/v1")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "invalid");
    assert!(
        v["message"].as_str().unwrap().contains("could not connect"),
        "{v}"
    );
    let v: Value = gw
        .post("/api/config/validate", json!({"provider": "zhipu"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "invalid", "a missing key is invalid: {v}");
}

#[tokio::test]
async fn mutating_endpoints_need_loopback_or_the_admin_token() {
    let a = mock().await;
    let mut cfg = single(&a, "model-a");
    cfg.admin_token = Some(llm_link_gateway::config::Secret::new("admin-t"));
    let state = llm_link_server::AppState::new(&cfg).unwrap();
    let app = llm_link_server::app(state.clone());
    let remote: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    let req = |token: Option<&str>, from: SocketAddr| {
        let mut b = axum::http::Request::post("/api/config/update")
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let mut r = b
            .body(Body::from(r#"{"provider":"zhipu","api_key":"k"}"#))
            .unwrap();
        r.extensions_mut().insert(ConnectInfo(from));
        r
    };
    assert_eq!(
        app.clone()
            .oneshot(req(None, remote))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        app.clone()
            .oneshot(req(Some("wrong"), remote))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        app.clone()
            .oneshot(req(Some("admin-t"), remote))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.clone()
            .oneshot(req(None, "127.0.0.1:5".parse().unwrap()))
            .await
            .unwrap()
            .status(),
        200
    );
    // Reads stay open.
    let mut r = axum::http::Request::get("/api/config/current")
        .body(Body::empty())
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(remote));
    assert_eq!(app.clone().oneshot(r).await.unwrap().status(), 200);
    // No CORS headers unless origins are configured.
    let mut r = axum::http::Request::get("/api/config/current")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(remote));
    let resp = app.oneshot(r).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_origins_are_configurable() {
    let a = mock().await;
    let mut cfg = single(&a, "model-a");
    cfg.cors_origins = vec!["http://localhost:5173".into()];
    let app = llm_link_server::app(llm_link_server::AppState::new(&cfg).unwrap());
    let r = axum::http::Request::get("/api/config/current")
        .header("origin", "http://localhost:5173")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(r).await.unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "http://localhost:5173"
    );
}

#[tokio::test]
async fn shutdown_lets_a_stream_finish_and_refuses_new_connections() {
    let a = mock().await;
    let gw = gateway(single(&a, "model-a")).await;
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "slow-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("slow"));

    // Shut down through the API on a separate connection.
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api/config/shutdown", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success");
    assert!(gw.state.shutdown.is_cancelled());

    // New connections are refused once the listener is closed (bounded poll).
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "listener still accepting after shutdown");

    // The stream in flight still runs to its end.
    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("[DONE]"), "{rest}");
}
