//! Thread-per-core serving (`llm_link_server::workers`), as the binary runs it:
//! connections spread over the serving threads, callers' addresses reach
//! the handlers, and a shutdown lets in-flight streams finish.

mod common;

use futures_util::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_threads_answer_spread_and_drain() {
    // This test binary is the only user of the process-wide setting.
    llm_link_gateway::workers::configure(2);
    let mock = common::mock().await;
    let text = format!(
        r#"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{}/v1"
api_key = "upstream-secret-key"
models = ["mock-model", "slow-stream"]
"#,
        mock.base
    );
    let mut cfg = common::config_from(&text, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    let state = llm_link_server::AppState::new(&cfg).unwrap();
    let token = state.shutdown.clone();
    let server = tokio::spawn(llm_link_server::workers::serve(
        listener,
        llm_link_server::app(state.clone()),
        token.clone(),
        cfg.client,
    ));
    let base = format!("http://{addr}");

    // Many clients, each on connections of its own, at once.
    let mut calls = Vec::new();
    for i in 0..40 {
        let base = base.clone();
        calls.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let r = client
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": format!("hi {i}")}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers().contains_key("server-timing"));
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(mock.hits(), 40);

    // Loopback-only endpoints see the caller's address.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/config/validate"))
        .json(&json!({"provider": "no-such-kind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "{:?}", r.text().await);

    // A stream in flight when shutdown starts runs to its end.
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "slow-stream", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("slow"));
    token.cancel();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("[DONE]"), "stream cut at shutdown: {rest}");
    server.await.unwrap().unwrap();

    // New connections are refused once the server is gone.
    assert!(client.get(format!("{base}/health")).send().await.is_err());
}
