//! Live apply: admin edits under concurrent traffic lose no request; a
//! config file edit is applied without a restart, and a broken edit is
//! rejected (naming the field) while the last good configuration serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use common::*;
use llm_link_gateway::config::CliInput;
use llm_link_store::crypto::MasterKey;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store_common::{chat, Admin, Engine, TestDb};

both!(admin_edits_under_traffic);
async fn admin_edits_under_traffic(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let a = mock().await;
    let b = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store, layer).await;
    let admin = Admin::new(&gw);
    let (s, stable) = admin
        .post(
            "/api/providers",
            json!({"name": "stable", "kind": "openai", "base_url": format!("{}/v1", a.base),
                   "api_key": "sk-stable-key-000001", "models": ["steady"]}),
        )
        .await;
    assert_eq!(s, 201, "{stable}");
    let sid = stable["id"].as_i64().unwrap();

    // Eight clients, plain and streamed, until the admin is done.
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let client = gw.client.clone();
        let url = format!("{}/v1/chat/completions", gw.base);
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) && n < 2000 {
                let mut body = chat("steady");
                let stream = w % 2 == 1;
                if stream {
                    body["stream"] = json!(true);
                }
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "worker {w} request {n}");
                if stream {
                    let events = sse_data(r).await;
                    assert_eq!(
                        events.last().map(String::as_str),
                        Some("[DONE]"),
                        "worker {w} request {n}"
                    );
                } else {
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");
                }
                n += 1;
            }
            n
        }));
    }

    // Meanwhile: every kind of edit, each in effect for the next request.
    for i in 0..6 {
        let name = format!("p{i}");
        let (s, p) = admin
            .post(
                "/api/providers",
                json!({"name": name, "kind": "openai", "base_url": format!("{}/v1", b.base),
                       "api_key": format!("sk-extra-key-{i:06}"), "models": [format!("extra-{i}")]}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let r = gw
            .post("/v1/chat/completions", chat(&format!("extra-{i}")))
            .await;
        assert_eq!(r.status(), 200, "a new provider serves the next request");
        let pid = p["id"].as_i64().unwrap();
        let (s, _) = admin
            .post(
                &format!("/api/providers/{pid}/keys"),
                json!({"key": format!("sk-more-key-{i:06}")}),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = admin
            .put(
                &format!("/api/providers/{sid}"),
                json!({"priority": i, "weight": i + 1, "models": ["steady", format!("steady-{i}")]}),
            )
            .await;
        assert_eq!(s, 200);
        let (s, m) = admin
            .post(
                "/api/v1/llm-models",
                json!({"name": format!("M{i}"), "model_id": format!("cat-{i}"), "provider": "stable"}),
            )
            .await;
        assert_eq!(s, 201, "{m}");
        assert_eq!(
            gw.post("/v1/chat/completions", chat(&format!("cat-{i}")))
                .await
                .status(),
            200
        );
        let (s, _) = admin
            .put(&format!("/api/providers/{pid}"), json!({"enabled": false}))
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            gw.post("/v1/chat/completions", chat(&format!("extra-{i}")))
                .await
                .status(),
            404,
            "a disabled provider serves nothing from the next request on"
        );
        let (s, _) = admin
            .post(
                "/api/apps",
                json!({"name": format!("app-{i}"), "targets": ["stable"]}),
            )
            .await;
        assert_eq!(s, 201);
        if i % 2 == 0 {
            assert_eq!(admin.delete(&format!("/api/providers/{pid}")).await.0, 200);
        }
        let (s, _) = admin
            .post(
                &format!("/api/providers/{sid}/keys"),
                json!({"key": format!("sk-stable-rot-{i:06}")}),
            )
            .await;
        assert_eq!(s, 201);
    }
    done.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    eprintln!("{total} requests during the admin edits");
    assert!(total >= 40, "the clients ran ({total} requests)");
    // Every request reached the stable upstream with one of its keys.
    for r in a
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
    {
        let auth = r.header("authorization").unwrap();
        assert!(auth.starts_with("Bearer sk-stable-"), "{auth}");
    }
}

fn write(path: &std::path::Path, text: &str) {
    // As editors do: write a temporary file, then rename it into place.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn next_outcome(
    rx: &mut tokio::sync::watch::Receiver<llm_link_server::watch::Outcome>,
    after: u64,
) -> llm_link_server::watch::Outcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        {
            let o = rx.borrow_and_update().clone();
            if o.seq > after {
                return o;
            }
        }
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .expect("no reload within 10s")
            .unwrap();
    }
}

async fn model_ids(gw: &Gateway) -> Vec<String> {
    let v: Value = gw.get("/v1/models").await.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_edits_apply_live_and_bad_edits_are_rejected() {
    let db = TestDb::sqlite().await;
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llm-link.toml");
    let provider = |models: &str| {
        format!(
            "[[providers]]\nname = \"filep\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\napi_key = \"file-key-1\"\nmodels = [{models}]\n",
            mock.base
        )
    };
    write(&path, &provider("\"m1\""));
    let cli = CliInput {
        port: Some(0),
        ..CliInput::default()
    };
    let file = llm_link_gateway::config::load_file(&path).unwrap();
    let cfg = llm_link_gateway::config::build(&cli, Some(&file), &|_| None).unwrap();
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(cfg, store, layer).await;
    let admin = Admin::new(&gw);
    // A database provider, which file reloads must leave alone.
    let (s, _) = admin
        .post(
            "/api/providers",
            json!({"name": "dbp", "kind": "openai", "base_url": format!("{}/v1", mock.base),
                   "api_key": "sk-db-key-000000", "models": ["db-model"]}),
        )
        .await;
    assert_eq!(s, 201);
    let watch = llm_link_server::watch::spawn(
        gw.state.clone(),
        path.clone(),
        cli.clone(),
        Duration::from_millis(100),
    )
    .unwrap();
    let mut rx = watch.outcomes.clone();
    assert_eq!(model_ids(&gw).await, ["m1", "db-model"]);

    // A good edit: applied without a restart.
    write(
        &path,
        &provider("\"m2\", { id = \"m3\", upstream = \"up-3\" }"),
    );
    let o = next_outcome(&mut rx, 0).await;
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(model_ids(&gw).await, ["m2", "m3", "db-model"]);
    assert_eq!(
        gw.post("/v1/chat/completions", chat("m3")).await.status(),
        200
    );
    assert_eq!(mock.last().json()["model"], "up-3");
    assert_eq!(
        gw.post("/v1/chat/completions", chat("m1")).await.status(),
        404
    );

    // Broken edits: rejected with the field named; the last good one serves.
    let broken = [
        (
            "[[providers]]\nname = \"filep\"\nkind = \"openai-compatible\"\nmodels = [\"m9\"]\n".to_string(),
            "providers[0].base_url",
        ),
        (provider("\"m9\"").replace("kind = ", "knd = "), "config"),
        (
            format!(
                "{}\n[[providers]]\nname = \"dbp\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"x\"]\n",
                provider("\"m9\""),
                mock.base
            ),
            "providers[1].name",
        ),
        (
            provider("\"m9\"").replace("file-key-1", "${LLM_LINK_TEST_UNSET_VARIABLE}"),
            "providers[0].api_key",
        ),
    ];
    let mut seq = o.seq;
    for (text, field) in broken {
        write(&path, &text);
        let o = next_outcome(&mut rx, seq).await;
        seq = o.seq;
        let e = o.result.expect_err("a broken edit must be rejected");
        assert!(e.field.starts_with(field), "{field}: got {e}");
        assert_eq!(model_ids(&gw).await, ["m2", "m3", "db-model"]);
        assert_eq!(
            gw.post("/v1/chat/completions", chat("m2")).await.status(),
            200
        );
    }
    // Fixed again: applied.
    write(&path, &provider("\"m4\""));
    let o = next_outcome(&mut rx, seq).await;
    assert!(o.result.is_ok(), "{:?}", o.result);
    assert_eq!(model_ids(&gw).await, ["m4", "db-model"]);
}

both!(replicas_share_changes);
/// Two instances on one database (shared mode): a change made through one
/// reaches the other by the revision poll, without a restart.
async fn replicas_share_changes(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let up = mock().await;
    let key = MasterKey::generate();
    let (s1, l1) = db.open(&key).await;
    let (s2, l2) = db.open(&key).await;
    let one = store_common::gateway(config_from("", &[]), s1, l1).await;
    let two = store_common::gateway(config_from("", &[]), s2, l2).await;
    llm_link_server::apply::spawn_poller(two.state.clone(), Duration::from_millis(50));
    let (s, _) = Admin::new(&one)
        .post(
            "/api/providers",
            json!({"name": "shared", "kind": "openai", "base_url": format!("{}/v1", up.base),
                   "api_key": "sk-shared-key-000001", "models": ["shared-model"]}),
        )
        .await;
    assert_eq!(s, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while two
        .post("/v1/chat/completions", chat("shared-model"))
        .await
        .status()
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other instance never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        up.last().header("authorization").as_deref(),
        Some("Bearer sk-shared-key-000001")
    );
    // And a deletion.
    assert_eq!(
        Admin::new(&one).delete("/api/providers/shared").await.0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while two
        .post("/v1/chat/completions", chat("shared-model"))
        .await
        .status()
        == 200
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

both!(refused_keys_are_recorded);
/// A key the upstream refuses (401) is disabled by the request path; the
/// store records that (status and reason) so the admin API shows it.
async fn refused_keys_are_recorded(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let up = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({"name": "k", "kind": "openai", "base_url": format!("{}/v1", up.base),
                   "keys": [{"key": "sk-first-key-111111"}, {"key": "sk-second-key-222222"}],
                   "models": ["fail-401", "fine"]}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let r = gw.post("/v1/chat/completions", chat("fail-401")).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    assert!(!r.text().await.unwrap().contains("sk-first-key-111111"));
    let n = llm_link_server::apply::persist_key_failures(&gw.state, &store)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let (_, keys) = admin.get("/api/providers/k/keys").await;
    for k in keys["keys"].as_array().unwrap() {
        assert_eq!(k["status"], "disabled", "{k}");
        assert!(
            k["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{k}"
        );
    }
    let (_, p) = admin.get("/api/providers/k").await;
    assert_eq!(p["active"], false);
    // Nothing left to record.
    assert_eq!(
        llm_link_server::apply::persist_key_failures(&gw.state, &store)
            .await
            .unwrap(),
        0
    );
    let (_, a) = admin.get("/api/audit").await;
    assert_eq!(a["entries"][0]["action"], "provider_key.auto_disable");
    assert_eq!(a["entries"][0]["actor"], "llm-link");
}

both!(the_responses_setting_of_a_stored_provider);
/// A database provider's `responses` setting: an `openai` provider serves
/// the Responses API itself by default (forwarded to `/responses`); set to
/// false it gets Chat Completions instead; null goes back to the default.
async fn the_responses_setting_of_a_stored_provider(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let up = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({"name": "oa", "kind": "openai", "base_url": format!("{}/v1", up.base),
                   "api_key": "sk-responses-test-1111", "models": ["gpt-x"]}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["responses"], true, "{p}");
    let ask = || json!({"model": "gpt-x", "input": "hi", "store": false});
    assert_eq!(gw.post("/v1/responses", ask()).await.status(), 200);
    assert_eq!(up.last().path, "/v1/responses");
    let (s, p) = admin
        .put("/api/providers/oa", json!({"responses": false}))
        .await;
    assert_eq!((s, &p["responses"]), (200, &json!(false)), "{p}");
    assert_eq!(gw.post("/v1/responses", ask()).await.status(), 200);
    assert_eq!(up.last().path, "/v1/chat/completions");
    let (_, p) = admin
        .put("/api/providers/oa", json!({"responses": null}))
        .await;
    assert_eq!(p["responses"], true, "{p}");
    assert_eq!(gw.post("/v1/responses", ask()).await.status(), 200);
    assert_eq!(up.last().path, "/v1/responses");
}
