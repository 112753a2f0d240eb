//! Limits shared by replicas through Redis (127.0.0.1:6379 on this machine
//! and in CI): two gateways with `rpm = 3` admit three requests between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

fn minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

#[tokio::test]
async fn two_replicas_share_one_requests_per_minute_limit() {
    if std::env::var("LLM_LINK_SKIP_REDIS").is_ok() {
        return;
    }
    let prefix = format!("llm-link-test-{}-{}", std::process::id(), fastrand_suffix());
    if let Err(e) =
        llm_link_gateway::routing::shared::connect("redis://127.0.0.1:6379/0", &prefix).await
    {
        panic!("Redis at 127.0.0.1:6379 is needed for this test (set LLM_LINK_SKIP_REDIS=1 to skip): {e}");
    }
    let mock = mock().await;
    let cfg = format!("[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"m\"]\nrpm = 3\n", mock.base);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    // A minute boundary in the middle would reset the window: try again then.
    for _ in 0..2 {
        let start = minute();
        let a = gateway(config_from(&cfg, &[])).await;
        let b = gateway(config_from(&cfg, &[])).await;
        let mut statuses = Vec::new();
        for gw in [&a, &b, &a, &b, &a] {
            statuses.push(
                gw.post("/v1/chat/completions", body.clone())
                    .await
                    .status()
                    .as_u16(),
            );
        }
        if minute() != start {
            continue;
        }
        // Each replica alone would admit 3 (its local bucket); together only 3 pass.
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            3,
            "{statuses:?}"
        );
        assert_eq!(statuses[3..], [429, 429], "{statuses:?}");
        return;
    }
    panic!("two minute boundaries in a row");
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}
