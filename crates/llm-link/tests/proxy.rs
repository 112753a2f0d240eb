//! Upstreams behind an HTTP proxy named by the environment go through it
//! (its own test binary: the proxy variables are process-wide).

mod common;

use serde_json::json;

#[tokio::test]
async fn a_provider_behind_a_proxy_is_reached_through_it() {
    // The mock answers absolute-form requests too, so it can play the proxy.
    let proxy = common::mock().await;
    std::env::set_var("HTTP_PROXY", &proxy.base);
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    let text = r#"
[[providers]]
name = "far"
kind = "openai-compatible"
base_url = "http://upstream.invalid/v1"
api_key = "upstream-secret-key"
models = ["mock-model"]
"#;
    let gw = common::gateway(common::config_from(text, &[])).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let seen = proxy.last();
    assert_eq!(seen.header("host").as_deref(), Some("upstream.invalid"));
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer upstream-secret-key")
    );
    assert_eq!(proxy.hits(), 1);
}
