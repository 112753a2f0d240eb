//! The admin API over the store, on both engines: CRUD round trips for
//! providers, keys, the model catalog and app mappings; validation errors
//! that name the field; masked secrets; live apply to the request path;
//! file vs database precedence; the admin token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use common::*;
use llm_link_store::crypto::MasterKey;
use serde_json::{json, Value};
use store_common::{chat, Admin, Engine, TestDb};

fn file_provider(mock: &Mock) -> String {
    format!(
        r#"
[[providers]]
name = "filep"
kind = "openai-compatible"
base_url = "{}/v1"
api_key = "file-secret-key-1234"
models = ["file-model"]
"#,
        mock.base
    )
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

fn last_auth(m: &Mock) -> String {
    m.last().header("authorization").unwrap_or_default()
}

both!(providers_and_keys);
async fn providers_and_keys(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let mock = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from(&file_provider(&mock), &[]), store, layer).await;
    let admin = Admin::new(&gw);

    // Create, with a key, a renamed model, timeouts, limits and a header.
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({
                "name": "alpha", "kind": "openai", "base_url": format!("{}/v1", mock.base),
                "api_key": "sk-alpha-secret-0001",
                "models": ["alpha-model", {"id": "alpha-fast", "upstream": "real-fast"}],
                "priority": 5, "weight": 3,
                "timeouts": {"connect": "5s", "first_byte": 30},
                "limits": {"rpm": 60},
                "headers": {"X-Team": "research-header-value"},
            }),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_i64().unwrap();
    assert_eq!(p["source"], "database");
    assert_eq!(p["active"], true);
    assert_eq!(p["priority"], 5);
    assert_eq!(p["weight"], 3);
    assert_eq!(p["timeouts"]["connect"], "5s");
    assert_eq!(p["timeouts"]["first_byte"], "30s");
    assert_eq!(p["limits"]["rpm"], 60);
    assert_eq!(p["keys"][0]["key"], "sk-…0001");
    assert_eq!(p["headers"]["X-Team"], "res…alue");
    let text = p.to_string();
    assert!(!text.contains("sk-alpha-secret-0001") && !text.contains("research-header-value"));

    // Live at once: the next request is served by it, with its key and header.
    let r = gw.post("/v1/chat/completions", chat("alpha-model")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_auth(&mock), "Bearer sk-alpha-secret-0001");
    assert_eq!(
        mock.last().header("x-team").as_deref(),
        Some("research-header-value")
    );
    gw.post("/v1/chat/completions", chat("alpha-fast")).await;
    assert_eq!(mock.last().json()["model"], "real-fast");
    let models: Value = gw.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"alpha-model") && ids.contains(&"file-model"),
        "{ids:?}"
    );

    // List with filters; the file provider is listed read-only.
    let (s, l) = admin.get("/api/providers").await;
    assert_eq!(s, 200);
    assert_eq!(l["total"], 2);
    let filep = l["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "filep")
        .unwrap();
    assert_eq!(filep["source"], "file");
    assert_eq!(filep["read_only"], true);
    assert_eq!(filep["keys"][0]["key"], "fil…1234");
    assert!(!l.to_string().contains("file-secret-key-1234"));
    assert_eq!(
        admin.get("/api/providers?source=database").await.1["total"],
        1
    );
    assert_eq!(
        admin.get("/api/providers?kind=openai-compatible").await.1["total"],
        1
    );
    assert_eq!(admin.get("/api/providers?type=openai").await.1["total"], 1);
    assert_eq!(
        admin.get("/api/providers?enabled=false").await.1["total"],
        0
    );
    assert_eq!(admin.get("/api/providers?name=ALP").await.1["total"], 1);
    let (s, e) = admin.get("/api/providers?colour=red").await;
    assert_eq!((s, field(&e)), (400, "query.colour"));

    // Read by id and by name.
    assert_eq!(
        admin.get(&format!("/api/providers/{id}")).await.1["name"],
        "alpha"
    );
    assert_eq!(admin.get("/api/providers/alpha").await.1["id"], id);
    assert_eq!(admin.get("/api/providers/filep").await.1["source"], "file");
    assert_eq!(admin.get("/api/providers/nope").await.0, 404);

    // Update: disable, then re-enable with new priority and weight.
    let (s, p) = admin
        .put("/api/providers/alpha", json!({"enabled": false}))
        .await;
    assert_eq!(
        (s, p["enabled"].clone(), p["active"].clone()),
        (200, json!(false), json!(false))
    );
    let r = gw.post("/v1/chat/completions", chat("alpha-model")).await;
    assert_eq!(r.status(), 404, "a disabled provider serves nothing");
    let (s, p) = admin
        .call(
            "PATCH",
            &format!("/api/providers/{id}"),
            Some(
                json!({"enabled": true, "priority": 9, "weight": 2, "timeouts": {"connect": null}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (p["priority"].as_i64(), p["weight"].as_i64()),
        (Some(9), Some(2))
    );
    assert_eq!(p["timeouts"]["connect"], Value::Null);
    assert_eq!(p["timeouts"]["first_byte"], "30s");
    assert_eq!(
        gw.post("/v1/chat/completions", chat("alpha-model"))
            .await
            .status(),
        200
    );

    // Keys as a sub-resource.
    let kid1 = p["keys"][0]["id"].as_i64().unwrap();
    let (s, k2) = admin
        .post(
            &format!("/api/providers/{id}/keys"),
            json!({"key": "sk-alpha-second-0002", "label": "second"}),
        )
        .await;
    assert_eq!(s, 201, "{k2}");
    assert_eq!(k2["key"], "sk-…0002");
    assert_eq!(k2["status"], "enabled");
    let kid2 = k2["id"].as_i64().unwrap();
    let (_, ks) = admin.get(&format!("/api/providers/{id}/keys")).await;
    assert_eq!(ks["total"], 2);
    let (s, k) = admin
        .put(
            &format!("/api/providers/{id}/keys/{kid1}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!((s, k["status"].clone()), (200, json!("disabled")));
    gw.post("/v1/chat/completions", chat("alpha-model")).await;
    assert_eq!(last_auth(&mock), "Bearer sk-alpha-second-0002");
    assert_eq!(
        admin
            .delete(&format!("/api/providers/{id}/keys/{kid2}"))
            .await
            .0,
        200
    );
    let (_, p) = admin.get("/api/providers/alpha").await;
    assert_eq!(p["active"], false, "{p}");
    assert_eq!(p["inactive_reason"], "no enabled key");
    assert_eq!(
        gw.post("/v1/chat/completions", chat("alpha-model"))
            .await
            .status(),
        404
    );
    admin
        .put(
            &format!("/api/providers/{id}/keys/{kid1}"),
            json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(
        gw.post("/v1/chat/completions", chat("alpha-model"))
            .await
            .status(),
        200
    );
    assert_eq!(
        admin
            .get(&format!("/api/providers/{id}/keys/999999"))
            .await
            .0,
        404
    );
    let (s, e) = admin
        .put(
            &format!("/api/providers/{id}/keys/{kid1}"),
            json!({"status": "asleep"}),
        )
        .await;
    assert_eq!((s, field(&e)), (400, "status"));

    // The upstream test, for real: the good key lists models, a bad one is recorded.
    let (s, t) = admin.post("/api/providers/alpha/test", json!({})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["models"], json!(["up-model-a", "up-model-b"]));
    let (_, bad) = admin
        .post(
            &format!("/api/providers/{id}/keys"),
            json!({"key": "bad-key-0000000009", "status": "disabled"}),
        )
        .await;
    let bad_id = bad["id"].as_i64().unwrap();
    let (_, t) = admin
        .post("/api/providers/alpha/test", json!({"key_id": bad_id}))
        .await;
    assert_eq!(t["ok"], false, "{t}");
    assert_eq!(t["code"], "upstream_auth_failed");
    assert!(!t.to_string().contains("bad-key-0000000009"));
    let (_, k) = admin
        .get(&format!("/api/providers/{id}/keys/{bad_id}"))
        .await;
    assert!(
        k["last_error"].as_str().unwrap().contains("rejected"),
        "{k}"
    );
    let (_, t) = admin.post("/api/providers/filep/test", json!({})).await;
    assert_eq!(t["ok"], true, "{t}");

    // Validation names the field.
    let cases = [
        (
            json!({"name": "bad name", "kind": "openai", "api_key": "k"}),
            400,
            "name",
        ),
        (json!({"kind": "openai", "api_key": "k"}), 400, "name"),
        (json!({"name": "x", "kind": "warp-drive"}), 400, "kind"),
        (
            json!({"name": "x", "kind": "openai-compatible", "models": ["m"]}),
            400,
            "base_url",
        ),
        (
            json!({"name": "x", "kind": "openai", "nmae": 1}),
            400,
            "nmae",
        ),
        (
            json!({"name": "x", "kind": "openai", "priority": "high"}),
            400,
            "priority",
        ),
        (
            json!({"name": "x", "kind": "openai", "weight": -1}),
            400,
            "weight",
        ),
        (
            json!({"name": "x", "kind": "openai", "timeouts": {"connect": "soon"}}),
            400,
            "timeouts.connect",
        ),
        (
            json!({"name": "x", "kind": "openai", "limits": {"rpm": 0}}),
            400,
            "limits.rpm",
        ),
        (
            json!({"name": "x", "kind": "openai", "headers": {"Bad Header": "v"}}),
            400,
            "headers.Bad Header",
        ),
        (
            json!({"name": "x", "kind": "openai", "keys": [{"key": "sk-ключ-1234"}]}),
            400,
            "keys[0].key",
        ),
        (
            json!({"name": "x", "kind": "openai", "keys": [{"label": "no key"}]}),
            400,
            "keys[0].key",
        ),
        (
            json!({"name": "x", "kind": "openai", "base_url": "ftp://x"}),
            400,
            "base_url",
        ),
        (
            json!({"name": "x", "kind": "openai", "base_url": gw.base.clone()}),
            400,
            "base_url",
        ),
        (
            json!({"name": "alpha", "kind": "openai", "api_key": "k"}),
            409,
            "name",
        ),
        (
            json!({"name": "filep", "kind": "openai", "api_key": "k"}),
            409,
            "name",
        ),
    ];
    for (body, status, f) in cases {
        let (s, e) = admin.post("/api/providers", body.clone()).await;
        assert_eq!((s, field(&e)), (status, f), "{body} -> {e}");
        assert!(e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (s, e) = admin
        .put("/api/providers/filep", json!({"priority": 1}))
        .await;
    assert_eq!((s, e["error"]["type"].as_str()), (409, Some("read_only")));
    let (s, _) = admin.call("POST", "/api/providers", None).await;
    assert_eq!(s, 400, "an empty body lacks the required fields");

    // The admin token is required; both header forms work.
    let r = gw
        .client
        .get(format!("{}/api/providers", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .client
        .get(format!("{}/api/providers", gw.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .client
        .get(format!("{}/api/providers", gw.base))
        .header("x-admin-token", store_common::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Delete.
    let (s, _) = admin.delete("/api/providers/alpha").await;
    assert_eq!(s, 200);
    assert_eq!(admin.get("/api/providers/alpha").await.0, 404);
    assert_eq!(
        gw.post("/v1/chat/completions", chat("alpha-model"))
            .await
            .status(),
        404
    );
    assert_eq!(admin.delete("/api/providers/filep").await.0, 409);

    // The audit log says who did what, and never a secret.
    let (s, a) = admin.get("/api/audit?limit=50").await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "provider.create",
        "provider.update",
        "provider_key.create",
        "provider_key.update",
        "provider_key.delete",
        "provider.delete",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    assert!(a["entries"][0]["actor"]
        .as_str()
        .unwrap()
        .starts_with("admin@"));
    let text = a.to_string();
    for secret in [
        "sk-alpha-secret-0001",
        "sk-alpha-second-0002",
        "research-header-value",
        "bad-key-0000000009",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    assert_eq!(admin.get("/api/audit?limit=0").await.0, 400);
}

both!(model_catalog);
async fn model_catalog(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let mock = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store, layer).await;
    let admin = Admin::new(&gw);

    // The record exactly as the seed back end sends it (plus prices and limits).
    let (s, m) = admin
        .post(
            "/api/v1/llm-models",
            json!({
                "name": "GPT-4 Turbo",
                "model_id": "gpt-4-turbo",
                "provider": "openai",
                "type": "生文",
                "description": "最新的 GPT-4 模型",
                "base_url": format!("{}/v1", mock.base),
                "auth_type": "api_key",
                "key_usage_mode": "single",
                "api_keys": [{"key": "sk-model-key-777777", "status": "enabled"}],
                "supports_vision": true,
                "max_tokens": 4096,
                "context_window": 128000,
                "input_price": 10.0,
                "output_price": 30.5,
                "cached_input_price": 2.5,
                "rpm_limit": 100
            }),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let mid = m["id"].as_i64().unwrap();
    assert_eq!(m["type"], "生文");
    assert_eq!(m["status"], "enabled");
    assert_eq!(m["supports_vision"], true);
    assert_eq!(m["supports_tools"], false);
    assert_eq!(m["context_window"], 128000);
    assert_eq!(m["output_price"], 30.5);
    assert_eq!(m["cached_input_price"], 2.5);
    assert_eq!(m["api_keys"][0]["key"], "sk-…7777");
    assert_eq!(m["served_by"], format!("catalog-{mid}"));
    assert!(!m.to_string().contains("sk-model-key-777777"));
    let r = gw.post("/v1/chat/completions", chat("gpt-4-turbo")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(last_auth(&mock), "Bearer sk-model-key-777777");
    assert_eq!(mock.last().json()["model"], "gpt-4-turbo");
    let cat = gw.state.runtime().catalog.clone();
    let entry = cat.model("gpt-4-turbo").unwrap();
    assert_eq!(entry.input_price, Some(10.0));
    assert_eq!(entry.cached_input_price, Some(2.5));
    assert_eq!(entry.context_window, Some(128000));

    // A model served by a database provider (no keys or URL of its own).
    let (s, _) = admin
        .post(
            "/api/providers",
            json!({"name": "beta", "kind": "openai-compatible", "base_url": format!("{}/v1", mock.base), "api_key": "sk-beta-key-424242", "models": ["beta-model"]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, m2) = admin
        .post(
            "/api/v1/llm-models",
            json!({"name": "Beta Extra", "model_id": "beta-extra", "provider": "beta", "type": "chat", "supports_tools": true}),
        )
        .await;
    assert_eq!(s, 201, "{m2}");
    assert_eq!(m2["served_by"], "beta");
    gw.post("/v1/chat/completions", chat("beta-extra")).await;
    assert_eq!(last_auth(&mock), "Bearer sk-beta-key-424242");

    // Filters.
    assert_eq!(admin.get("/api/v1/llm-models").await.1["total"], 2);
    assert_eq!(
        admin.get("/api/v1/llm-models?provider=openai").await.1["total"],
        1
    );
    assert_eq!(
        admin
            .get("/api/v1/llm-models?type=%E7%94%9F%E6%96%87&status=enabled")
            .await
            .1["total"],
        1
    );
    assert_eq!(
        admin.get("/api/v1/llm-models?status=disabled").await.1["total"],
        0
    );
    let (s, e) = admin.get("/api/v1/llm-models?status=gone").await;
    assert_eq!((s, field(&e)), (400, "query.status"));

    // Update as in the seed: disable and replace the keys.
    let (s, u) = admin
        .put(
            &format!("/api/v1/llm-models/{mid}"),
            json!({"status": "disabled", "api_keys": [{"key": "sk-new-key-888888"}]}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["status"], "disabled");
    assert_eq!(u["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(u["api_keys"][0]["key"], "sk-…8888");
    assert_eq!(
        gw.post("/v1/chat/completions", chat("gpt-4-turbo"))
            .await
            .status(),
        404
    );
    let (_, u) = admin
        .put(
            &format!("/api/v1/llm-models/{mid}"),
            json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(
        u["api_keys"][0]["key"], "sk-…8888",
        "keys stay when not given"
    );
    assert_eq!(
        gw.post("/v1/chat/completions", chat("gpt-4-turbo"))
            .await
            .status(),
        200
    );
    assert_eq!(last_auth(&mock), "Bearer sk-new-key-888888");
    // Keep a key by id (and change its status); add a second.
    let kid = u["api_keys"][0]["id"].as_i64().unwrap();
    let (s, u) = admin
        .put(
            &format!("/api/v1/llm-models/{mid}"),
            json!({"api_keys": [{"id": kid, "status": "disabled"}, {"key": "sk-third-key-999999"}], "key_usage_mode": "round-robin"}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["key_usage_mode"], "round_robin");
    assert_eq!(u["api_keys"][0]["id"], kid);
    assert_eq!(u["api_keys"][0]["status"], "disabled");
    gw.post("/v1/chat/completions", chat("gpt-4-turbo")).await;
    assert_eq!(last_auth(&mock), "Bearer sk-third-key-999999");

    // The cached price: kept when not given, refused when negative (the
    // record unchanged), changed, then cleared by null.
    let item = format!("/api/v1/llm-models/{mid}");
    assert_eq!(admin.get(&item).await.1["cached_input_price"], 2.5);
    let (s, e) = admin.put(&item, json!({"cached_input_price": -0.5})).await;
    assert_eq!((s, field(&e)), (400, "cached_input_price"), "{e}");
    assert_eq!(admin.get(&item).await.1["cached_input_price"], 2.5);
    let (s, u) = admin.put(&item, json!({"cached_input_price": 1.25})).await;
    assert_eq!((s, &u["cached_input_price"]), (200, &json!(1.25)), "{u}");
    assert_eq!(
        gw.state
            .runtime()
            .catalog
            .model("gpt-4-turbo")
            .unwrap()
            .cached_input_price,
        Some(1.25)
    );
    let (s, u) = admin.put(&item, json!({"cached_input_price": null})).await;
    assert_eq!((s, &u["cached_input_price"]), (200, &Value::Null), "{u}");
    assert_eq!(u["input_price"], 10.0, "the other prices stay");
    assert_eq!(admin.get(&item).await.1["cached_input_price"], Value::Null);
    assert_eq!(
        gw.state
            .runtime()
            .catalog
            .model("gpt-4-turbo")
            .unwrap()
            .cached_input_price,
        None
    );

    // Validation names the field.
    let cases = [
        (json!({"name": "n", "provider": "openai"}), 400, "model_id"),
        (json!({"model_id": "m", "provider": "openai"}), 400, "name"),
        (
            json!({"name": "n", "model_id": "m", "provider": "nope"}),
            400,
            "provider",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "status": "gone"}),
            400,
            "status",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "input_price": -1}),
            400,
            "input_price",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "cached_input_price": -1}),
            400,
            "cached_input_price",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "cached_input_price": "cheap"}),
            400,
            "cached_input_price",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "context_window": "big"}),
            400,
            "context_window",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "beta", "auth_type": "magic"}),
            400,
            "auth_type",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "openai", "api_keys": [{"status": "enabled"}]}),
            400,
            "api_keys[0].key",
        ),
        (
            json!({"name": "n", "model_id": "m", "provider": "openai-compatible", "api_keys": [{"key": "k"}]}),
            400,
            "base_url",
        ),
        (
            json!({"name": "dup", "model_id": "beta-extra", "provider": "beta"}),
            409,
            "model_id",
        ),
    ];
    for (body, status, f) in cases {
        let (s, e) = admin.post("/api/v1/llm-models", body.clone()).await;
        assert_eq!((s, field(&e)), (status, f), "{body} -> {e}");
    }

    // Delete.
    assert_eq!(
        admin.delete(&format!("/api/v1/llm-models/{mid}")).await.0,
        200
    );
    assert_eq!(admin.get(&format!("/api/v1/llm-models/{mid}")).await.0, 404);
    assert_eq!(
        gw.post("/v1/chat/completions", chat("gpt-4-turbo"))
            .await
            .status(),
        404
    );
    assert_eq!(admin.get("/api/v1/llm-models").await.1["total"], 1);
}

both!(app_mappings);
async fn app_mappings(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let gw = store_common::gateway(config_from("", &[]), store, layer).await;
    let admin = Admin::new(&gw);
    let (s, a) = admin
        .post(
            "/api/apps",
            json!({"name": "zed", "routing_rule": "round_robin", "targets": ["alpha/alpha-model", "beta"],
                   "fallback_chain": ["gpt-4o", "glm-4-flash"], "retry": {"max_retries": 2, "backoff_ms": 500}}),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["retry"], json!({"max_retries": 2, "backoff_ms": 500}));
    let app = gw.state.runtime().catalog.app("zed").cloned().unwrap();
    assert_eq!(app.routing_rule, "round_robin");
    assert_eq!(app.fallback_chain, ["gpt-4o", "glm-4-flash"]);
    assert_eq!(app.retry.max_retries, 2);
    let id = a["id"].as_i64().unwrap();
    assert_eq!(admin.get("/api/apps/zed").await.1["id"], id);
    assert_eq!(admin.get("/api/apps").await.1["total"], 1);
    let (s, e) = admin
        .put("/api/apps/zed", json!({"routing_rule": "fastest"}))
        .await;
    assert_eq!((s, field(&e)), (400, "routing_rule"));
    let (s, e) = admin
        .put("/api/apps/zed", json!({"retry": {"max_retries": 99}}))
        .await;
    assert_eq!((s, field(&e)), (400, "retry.max_retries"));
    let (s, e) = admin.put("/api/apps/zed", json!({"targets": [""]})).await;
    assert_eq!((s, field(&e)), (400, "targets[0]"));
    let (s, a) = admin
        .put(
            &format!("/api/apps/{id}"),
            json!({"enabled": false, "routing_rule": "least-connections"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(a["routing_rule"], "least_connections");
    assert!(gw.state.runtime().catalog.app("zed").is_none());
    assert_eq!(admin.get("/api/apps?enabled=false").await.1["total"], 1);
    assert_eq!(admin.post("/api/apps", json!({"name": "zed"})).await.0, 409);
    // PostgreSQL text cannot hold a NUL: the caller's mistake, not a 500.
    let (s, e) = admin
        .put("/api/apps/zed", json!({"description": "a\u{0}b"}))
        .await;
    assert_eq!((s, field(&e)), (400, "description"), "{e}");
    let (s, e) = admin
        .put("/api/apps/zed", json!({"targets": ["ok", "a\u{0}b"]}))
        .await;
    assert_eq!((s, field(&e)), (400, "targets[1]"), "{e}");
    assert_eq!(admin.get("/api/apps/z%00d").await.0, 404);
    assert_eq!(admin.get("/api/providers/z%00d").await.0, 404);
    assert_eq!(admin.delete("/api/apps/zed").await.0, 200);
    assert_eq!(admin.get("/api/apps/zed").await.0, 404);
}

both!(file_and_database_together);
async fn file_and_database_together(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let mock = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    // An auto-detected provider (from a key variable): `deepseek`.
    let cfg = config_from("", &[("DEEPSEEK_API_KEY", "sk-env-deepseek-5555")]);
    assert_eq!(cfg.providers[0].name, "deepseek");
    let gw = store_common::gateway(cfg, store.clone(), layer).await;
    let admin = Admin::new(&gw);
    // A database provider of the same name wins over the auto-detected one.
    let (s, p) = admin
        .post(
            "/api/providers",
            json!({"name": "deepseek", "kind": "openai-compatible", "base_url": format!("{}/v1", mock.base),
                   "api_key": "sk-db-deepseek-6666", "models": ["deepseek-chat"]}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    gw.post("/v1/chat/completions", chat("deepseek-chat")).await;
    assert_eq!(last_auth(&mock), "Bearer sk-db-deepseek-6666");
    let (_, l) = admin.get("/api/providers?source=env").await;
    assert_eq!(l["providers"][0]["active"], false);

    // A config file declaring a database provider's name is refused, naming the field.
    let file: llm_link_gateway::config::FileConfig = toml::from_str(&format!(
        "[[providers]]\nname = \"x\"\nkind = \"openai-compatible\"\nbase_url = \"{0}/v1\"\nmodels = [\"m\"]\n\n[[providers]]\nname = \"deepseek\"\nkind = \"openai-compatible\"\nbase_url = \"{0}/v1\"\nmodels = [\"m2\"]\n",
        mock.base
    ))
    .unwrap();
    let e = llm_link_gateway::snapshot::check_file_names(&file, &gw.state.layers.db()).unwrap_err();
    assert_eq!(e.field, "providers[1].name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_token_is_stored_hashed() {
    let db = TestDb::sqlite().await;
    let key = MasterKey::generate();
    let (store, _) = db.open(&key).await;
    let tk = store.secrets.token_key;
    let (token, hash) = llm_link_store::token::ensure(&store.db, &tk).await.unwrap();
    let token = token.unwrap();
    let hash = hash.unwrap();
    // A high-entropy token: a keyed hash, not argon2.
    assert!(hash.starts_with("hmac:"), "{hash}");
    assert!(!hash.contains(&token));
    // A second start generates nothing.
    let (again, _) = llm_link_store::token::ensure(&store.db, &tk).await.unwrap();
    assert!(again.is_none());
    drop(store);
    let (store, layer) = db.open(&key).await;
    let mut cfg = config_from("", &[]);
    cfg.admin_token = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    let state = llm_link_server::AppState::with_store(&cfg, Some(store), layer).unwrap();
    tokio::spawn(llm_link_server::serve_on(listener, state));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/providers");
    for _ in 0..2 {
        let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client
        .get(&url)
        .bearer_auth("lla_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A flood of wrong tokens is checked a few at a time: each is refused
    // (or told to retry), never a 500, and the right token still works.
    let flood: Vec<_> = (0..12)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                client
                    .get(&url)
                    .bearer_auth(format!("lla_wrong_{i}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for f in flood {
        let s = f.await.unwrap();
        assert!(s == 401 || s == 429, "{s}");
    }
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // And the file holds no trace of it.
    let bytes = std::fs::read(db.dir.path().join("llm-link.db")).unwrap_or_default();
    let wal = std::fs::read(db.dir.path().join("llm-link.db-wal")).unwrap_or_default();
    for b in [bytes, wal] {
        assert!(!b.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

/// An install from before the keyed hash holds an argon2 hash of its admin
/// token: it still works, and the first success replaces it with the keyed
/// hash (so later checks cost no argon2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_argon2_admin_token_is_upgraded() {
    let db = TestDb::sqlite().await;
    let key = MasterKey::generate();
    let (store, _) = db.open(&key).await;
    let token = llm_link_store::token::generate();
    let legacy = llm_link_store::token::hash(&token).unwrap();
    assert!(legacy.starts_with("$argon2id$"));
    let mut tx = store.db.begin().await.unwrap();
    tx.set_setting(llm_link_store::token::SETTING, &legacy)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(store);
    let (store, layer) = db.open(&key).await;
    let mut cfg = config_from("", &[]);
    cfg.admin_token = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    let state = llm_link_server::AppState::with_store(&cfg, Some(store.clone()), layer).unwrap();
    tokio::spawn(llm_link_server::serve_on(listener, state));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/providers");
    let r = client
        .get(&url)
        .bearer_auth("lla_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut tx = store.db.begin_read().await.unwrap();
    let now = tx
        .setting(llm_link_store::token::SETTING)
        .await
        .unwrap()
        .unwrap();
    let log = tx.audit_log(10, None).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        now,
        llm_link_store::token::keyed(&store.secrets.token_key, &token)
    );
    assert!(log.iter().any(|a| a.action == "admin_token.rehash"));
    assert!(!store.admin.is_legacy());
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(&url)
        .bearer_auth("lla_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_the_admin_api_says_so() {
    let gw = gateway(config_from("", &[])).await;
    let r = gw
        .client
        .get(format!("{}/api/providers", gw.base))
        .send()
        .await
        .unwrap();
    // No token configured, no database: a clear 503 either way.
    assert_eq!(r.status(), 503);
}

both!(app_mapping_routes_requests_from_that_app);
async fn app_mapping_routes_requests_from_that_app(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let a = mock().await;
    let b = mock().await;
    let key = MasterKey::generate();
    let (store, layer) = db.open(&key).await;
    let cfg = config_from(
        &format!(
            "[[providers]]\nname = \"alpha\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"alpha-model\"]\n\n[[providers]]\nname = \"beta\"\nkind = \"openai-compatible\"\nbase_url = \"{}/v1\"\nmodels = [\"beta-model\"]\n",
            a.base, b.base
        ),
        &[],
    );
    let gw = store_common::gateway(cfg, store, layer).await;
    let admin = Admin::new(&gw);
    let (s, body) = admin
        .post("/api/apps", json!({"name": "myapp", "routing_rule": "priority", "targets": ["beta/beta-model"], "fallback_chain": ["alpha-model"]}))
        .await;
    assert_eq!(s, 201, "{body}");
    // From the app: its mapping decides, whatever model was asked for.
    let r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("x-llm-link-app", "myapp")
        .json(&chat("alpha-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-llm-link-route"], "beta/beta-model#0=ok");
    assert_eq!(b.last().json()["model"], "beta-model");
    // Without it: the model's own route.
    assert_eq!(
        gw.post("/v1/chat/completions", chat("alpha-model"))
            .await
            .status(),
        200
    );
    assert_eq!(a.last().json()["model"], "alpha-model");
}
