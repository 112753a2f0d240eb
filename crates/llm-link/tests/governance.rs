//! Virtual keys, limits and budgets on the request path (issue 15), driven
//! through the real router against a mock upstream that speaks all three
//! formats and counts what reaches it:
//!
//! * a key authenticates on every surface; wrong, revoked, expired keys and
//!   keys of disabled users get 401, a model outside the key's scope 403,
//!   each in the caller's shape, and nothing reaches the upstream;
//! * rpm, tpm and concurrency per key, per user (across its keys) and per
//!   catalog model answer 429 with `Retry-After`;
//! * 100 concurrent requests against a budget that allows 10 let at most 10
//!   reach the upstream, on one replica and on two sharing Redis;
//! * a stream whose client leaves settles its reservation;
//! * usage rows carry the key and the user; spend is persisted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{config_from, Gateway};
use llm_link_gateway::govern::{Governor, Scope};
use llm_link_gateway::identity::{Budget, Period, TimeZone};
use llm_link_store::crypto::MasterKey;
use llm_link_store::identity::UserRow;
use llm_link_store::Store;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store_common::{Admin, Engine, TestDb};

// ---- the upstream -----------------------------------------------------------

/// Counts requests; holds them at the gate while it is closed.
struct Upstream {
    hits: AtomicUsize,
    gate: tokio::sync::Semaphore,
    closed: std::sync::atomic::AtomicBool,
}

async fn handle(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    up.hits.fetch_add(1, Ordering::SeqCst);
    if up.closed.load(Ordering::SeqCst) {
        // Held until the test opens the gate (permits are never consumed).
        let _p = up.gate.acquire().await.unwrap();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = v["model"].as_str().unwrap_or("").to_string();
    let stream = v["stream"].as_bool().unwrap_or(false);
    match path.as_str() {
        "/v1/chat/completions" if stream => {
            // Endless: a chunk every 10 ms until the reader goes away (bounded).
            let s = futures_util::stream::unfold(0u32, move |i| {
                let m = model.clone();
                async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    (i < 3000).then(|| {
                        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": m,
                            "choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": null}]});
                        (Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\n\n"))), i + 1)
                    })
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(s))
                .unwrap()
        }
        "/v1/chat/completions" => axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response(),
        "/v1/messages" => axum::Json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5}
        }))
        .into_response(),
        "/api/chat" => axum::Json(json!({
            "model": model, "created_at": "2024-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "hi"}, "done": true, "done_reason": "stop",
            "prompt_eval_count": 10, "eval_count": 5
        }))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

async fn upstream() -> (String, Arc<Upstream>) {
    let up = Arc::new(Upstream {
        hits: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(0),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(up.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), up)
}

impl Upstream {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.add_permits(1_000);
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn config(up: &str) -> llm_link_gateway::config::Config {
    config_from(
        &format!(
            r#"
[[providers]]
name = "oa"
kind = "openai-compatible"
base_url = "{up}/v1"
api_key = "upstream-openai-key-1"
models = ["gpt-x", "gpt-y"]

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
models = ["llama-x"]
"#
        ),
        &[],
    )
}

struct Setup {
    gw: Gateway,
    store: Arc<Store>,
    up: Arc<Upstream>,
    _db: TestDb,
}

async fn setup(engine: Engine) -> Option<Setup> {
    let db = TestDb::on(engine).await?;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let (base, up) = upstream().await;
    let gw = store_common::gateway(config(&base), store.clone(), layer).await;
    Some(Setup {
        gw,
        store,
        up,
        _db: db,
    })
}

async fn new_key(admin: &Admin<'_>, body: Value) -> (i64, String) {
    let (s, v) = admin.post("/api/keys", body).await;
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_i64().unwrap(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// Posts `body` to `path` with `auth` as (header, value).
async fn send(gw: &Gateway, path: &str, auth: Option<(&str, String)>, body: Value) -> (u16, Value) {
    let mut r = gw.client.post(format!("{}{path}", gw.base)).json(&body);
    if let Some((h, v)) = auth {
        r = r.header(h, v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

fn bearer(k: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {k}")))
}

fn x_api_key(k: &str) -> Option<(&'static str, String)> {
    Some(("x-api-key", k.to_string()))
}

fn openai_chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic_msg(model: &str) -> Value {
    json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
}

fn ollama_chat(model: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]})
}

/// The error's type in each shape, by path.
fn error_type(path: &str, v: &Value) -> String {
    match path {
        "/v1/messages" => {
            assert_eq!(v["type"], "error", "{v}");
            v["error"]["type"].as_str().unwrap_or("").to_string()
        }
        "/api/chat" => {
            assert!(v["error"].is_string(), "{v}");
            "ollama".into()
        }
        _ => v["error"]["type"].as_str().unwrap_or("").to_string(),
    }
}

fn error_text(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or("")
        .to_string()
}

async fn insert_user(store: &Store, name: &str, disabled: bool, rpm: Option<i64>) -> i64 {
    let now = llm_link_gateway::util::now_ms();
    let mut tx = store.db.begin().await.unwrap();
    tx.bump_identity_revision().await.unwrap();
    let id = tx
        .insert_user(&UserRow {
            id: 0,
            username: name.into(),
            password_hash: "$argon2id$unused".into(),
            role: "member".into(),
            disabled,
            rpm,
            tpm: None,
            max_concurrency: None,
            budget_amount: None,
            budget_period: None,
            failed_logins: 0,
            locked_until: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn reload(s: &Setup) {
    llm_link_server::apply::reload_identities(&s.gw.state, &s.store)
        .await
        .unwrap();
}

// ---- keys and scopes --------------------------------------------------------

both!(keys_and_scopes_on_every_surface);
async fn keys_and_scopes_on_every_surface(engine: Engine) {
    let Some(s) = setup(engine).await else { return };
    let admin = Admin::new(&s.gw);
    // No users, no keys: the desktop case, nothing asks for credentials.
    let (st, v) = send(&s.gw, "/v1/chat/completions", None, openai_chat("gpt-x")).await;
    assert_eq!(st, 200, "{v}");

    let (k1_id, k1) = new_key(
        &admin,
        json!({"name": "all", "models": ["gpt-x", "claude-x", "llama-x"]}),
    )
    .await;
    let (_, k2) = new_key(&admin, json!({"name": "narrow", "models": ["gpt-x"]})).await;
    let before = s.up.hits();

    // Now a credential is needed, in every shape.
    for (path, body) in [
        ("/v1/chat/completions", openai_chat("gpt-x")),
        ("/v1/messages", anthropic_msg("claude-x")),
        ("/api/chat", ollama_chat("llama-x")),
    ] {
        let (st, v) = send(&s.gw, path, None, body.clone()).await;
        assert_eq!(st, 401, "{path}: {v}");
        let t = error_type(path, &v);
        if path != "/api/chat" {
            assert_eq!(t, "authentication_error", "{path}: {v}");
        }
        let (st, v) = send(&s.gw, path, bearer("llk-not-a-real-key"), body.clone()).await;
        assert_eq!(st, 401, "{path}: {v}");
        assert!(!v.to_string().contains("llk-not-a-real-key"), "{v}");
    }
    // A scoped key: 403 naming the model, in each shape.
    for (path, body, auth) in [
        ("/v1/chat/completions", openai_chat("gpt-y"), bearer(&k2)),
        ("/v1/messages", anthropic_msg("claude-x"), x_api_key(&k2)),
        ("/api/chat", ollama_chat("llama-x"), bearer(&k2)),
    ] {
        let model = body["model"].as_str().unwrap().to_string();
        let (st, v) = send(&s.gw, path, auth, body).await;
        assert_eq!(st, 403, "{path}: {v}");
        let t = error_type(path, &v);
        if path != "/api/chat" {
            assert_eq!(t, "permission_error", "{path}: {v}");
        }
        assert!(error_text(&v).contains(&model), "{path}: {v}");
    }
    assert_eq!(
        s.up.hits(),
        before,
        "a refused request reached the upstream"
    );
    // Model lists show a scoped key what it may call, on every surface.
    for (path, auth, field) in [
        ("/v1/models", bearer(&k2), "data"),
        ("/anthropic/v1/models", x_api_key(&k2), "data"),
        ("/api/tags", bearer(&k2), "models"),
    ] {
        let (h, v) = auth.unwrap();
        let r =
            s.gw.client
                .get(format!("{}{path}", s.gw.base))
                .header(h, v)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        let names: Vec<&str> = v[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().or(m["name"].as_str()).unwrap())
            .collect();
        assert_eq!(names, ["gpt-x"], "{path}: {v}");
    }

    // The right key works everywhere: Bearer, x-api-key, Bearer for Ollama.
    for (path, body, auth) in [
        ("/v1/chat/completions", openai_chat("gpt-x"), bearer(&k1)),
        ("/v1/chat/completions", openai_chat("gpt-x"), x_api_key(&k1)),
        ("/v1/messages", anthropic_msg("claude-x"), x_api_key(&k1)),
        ("/api/chat", ollama_chat("llama-x"), bearer(&k1)),
        ("/v1/chat/completions", openai_chat("gpt-x"), bearer(&k2)),
    ] {
        let (st, v) = send(&s.gw, path, auth, body).await;
        assert_eq!(st, 200, "{path}: {v}");
    }
    assert_eq!(s.up.hits(), before + 5);

    // A key of a disabled user, an expired key, a revoked key: 401.
    let uid = insert_user(&s.store, "gone", true, None).await;
    let (_, k3) = new_key(&admin, json!({"name": "of-gone", "user_id": uid})).await;
    let (st, v) = send(
        &s.gw,
        "/v1/chat/completions",
        bearer(&k3),
        openai_chat("gpt-x"),
    )
    .await;
    assert_eq!(st, 401, "{v}");
    assert!(error_text(&v).contains("disabled"), "{v}");

    let (k4_id, k4) = new_key(&admin, json!({"name": "short-lived"})).await;
    {
        let mut tx = s.store.db.begin().await.unwrap();
        let mut row = tx.virtual_key(k4_id).await.unwrap().unwrap();
        row.expires_at = Some(llm_link_gateway::util::now_ms() - 1);
        tx.update_virtual_key(&row).await.unwrap();
        tx.commit().await.unwrap();
    }
    reload(&s).await;
    let (st, v) = send(
        &s.gw,
        "/v1/messages",
        x_api_key(&k4),
        anthropic_msg("claude-x"),
    )
    .await;
    assert_eq!(st, 401, "{v}");
    assert!(error_text(&v).contains("expired"), "{v}");

    let (st, _) = admin.delete(&format!("/api/keys/{k1_id}")).await;
    assert_eq!(st, 200);
    let (st, v) = send(&s.gw, "/api/chat", bearer(&k1), ollama_chat("llama-x")).await;
    assert_eq!(st, 401, "{v}");
    assert_eq!(
        s.up.hits(),
        before + 5,
        "a refused request reached the upstream"
    );

    // Usage rows carry the virtual key (and its user when it has one).
    s.gw.state.usage.flush().await;
    let (st, v) = admin
        .get(&format!("/api/usage?key={k1_id}&limit=100"))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["summary"]["requests"], 4, "{v}");
    for r in v["data"].as_array().unwrap() {
        assert_eq!(r["virtual_key_id"], k1_id, "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }
    let (_, v) = admin.get("/api/usage?group_by=key").await;
    let g = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"].as_str() == Some(k1_id.to_string().as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(g["requests"], 4, "{g}");
    // Revoked keys keep their name in reports.
    assert_eq!(g["key_name"], "all", "{g}");
    // No key in the database file, in any answer or report.
    let (_, listed) = admin.get("/api/keys").await;
    for k in [&k1, &k2, &k3, &k4] {
        assert!(!listed.to_string().contains(k.as_str()));
        assert!(!v.to_string().contains(k.as_str()));
    }
}

// ---- limits -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_429_with_retry_after() {
    let s = setup(Engine::Sqlite).await.unwrap();
    let admin = Admin::new(&s.gw);

    // Requests per minute, per key: the third of three is refused.
    let (_, k) = new_key(&admin, json!({"name": "rpm", "rpm": 2})).await;
    for _ in 0..2 {
        let (st, v) = send(
            &s.gw,
            "/v1/chat/completions",
            bearer(&k),
            openai_chat("gpt-x"),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let r =
        s.gw.client
            .post(format!("{}/v1/chat/completions", s.gw.base))
            .bearer_auth(&k)
            .json(&openai_chat("gpt-x"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 429);
    let ra: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&ra), "{ra}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(error_text(&v).contains("requests per minute"), "{v}");

    // Tokens per minute, in Anthropic's shape: the real usage (15 tokens a
    // call) counts, and the next estimate (a long prompt) does not fit.
    let (_, k) = new_key(&admin, json!({"name": "tpm", "tpm": 20})).await;
    let long = json!({"model": "claude-x", "max_tokens": 10,
        "messages": [{"role": "user", "content": "x".repeat(300)}]});
    let (st, _) = send(&s.gw, "/v1/messages", x_api_key(&k), long.clone()).await;
    assert_eq!(st, 200);
    let (st, v) = send(&s.gw, "/v1/messages", x_api_key(&k), long).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(error_type("/v1/messages", &v), "rate_limit_error", "{v}");
    assert!(error_text(&v).contains("tokens per minute"), "{v}");

    // Concurrency, in Ollama's shape: one in flight, the next refused.
    let (_, k) = new_key(
        &admin,
        json!({"name": "one-at-a-time", "max_concurrency": 1}),
    )
    .await;
    let before = s.up.hits();
    s.up.close();
    let gw = s.gw.base.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{gw}/api/chat"))
            .bearer_auth(&k2)
            .json(&ollama_chat("llama-x"))
            .send()
            .await
            .unwrap()
            .status()
    });
    // Wait (bounded) until the first is held at the upstream: it holds the
    // key's one slot from then on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.up.hits() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (st, v) = send(&s.gw, "/api/chat", bearer(&k), ollama_chat("llama-x")).await;
    assert_eq!(st, 429, "{v}");
    assert!(error_text(&v).contains("concurrency"), "{v}");
    assert!(s.up.hits() <= before + 1);
    s.up.open();
    assert_eq!(first.await.unwrap(), 200);

    // A user's limit spans its keys.
    let uid = insert_user(&s.store, "ann", false, Some(2)).await;
    reload(&s).await;
    let (_, a) = new_key(&admin, json!({"name": "ann-1", "user_id": uid})).await;
    let (_, b) = new_key(&admin, json!({"name": "ann-2", "user_id": uid})).await;
    assert_eq!(
        send(
            &s.gw,
            "/v1/chat/completions",
            bearer(&a),
            openai_chat("gpt-x")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(
            &s.gw,
            "/v1/chat/completions",
            bearer(&b),
            openai_chat("gpt-x")
        )
        .await
        .0,
        200
    );
    let (st, v) = send(
        &s.gw,
        "/v1/chat/completions",
        bearer(&a),
        openai_chat("gpt-x"),
    )
    .await;
    assert_eq!(st, 429, "{v}");
    assert!(error_text(&v).contains("user `ann`"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_models_limit_applies_whoever_serves_it() {
    let s = setup(Engine::Sqlite).await.unwrap();
    let admin = Admin::new(&s.gw);
    let (st, v) = admin
        .post(
            "/api/v1/llm-models",
            json!({"name": "GPT X", "model_id": "gpt-x", "provider": "oa", "rpm_limit": 1}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // Open gateway (no keys): the model's own limit still holds.
    assert_eq!(
        send(&s.gw, "/v1/chat/completions", None, openai_chat("gpt-x"))
            .await
            .0,
        200
    );
    let (st, v) = send(&s.gw, "/v1/chat/completions", None, openai_chat("gpt-x")).await;
    assert_eq!(st, 429, "{v}");
    assert!(error_text(&v).contains("model `gpt-x`"), "{v}");
    // Another model is not affected.
    assert_eq!(
        send(&s.gw, "/v1/chat/completions", None, openai_chat("gpt-y"))
            .await
            .0,
        200
    );
}

// ---- budgets ----------------------------------------------------------------

/// The request body every budget test sends, its worst-case cost at $1 per
/// million tokens in and out (micro-units = tokens), and a budget that
/// covers exactly ten such reservations.
fn budget_request() -> (Value, i64, f64) {
    let body = json!({"model": "gpt-x", "max_tokens": 100,
        "messages": [{"role": "user", "content": "how much?"}]});
    let len = serde_json::to_vec(&body).unwrap().len() as i64;
    let worst = (len + 2) / 3 + 100;
    // Ten and a half reservations: ten fit, the eleventh does not.
    let amount = (worst * 10 + worst / 2) as f64 / 1e6;
    (body, worst, amount)
}

async fn priced(admin: &Admin<'_>) {
    let (st, v) = admin
        .post(
            "/api/v1/llm-models",
            json!({"name": "GPT X", "model_id": "gpt-x", "provider": "oa",
                   "input_price": 1.0, "output_price": 1.0}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

/// Fires `n` concurrent requests per gateway while the upstream holds
/// everything it gets; returns (admitted, refused) after releasing it.
async fn burst(gws: &[&Gateway], up: &Upstream, key: &str, n: usize) -> (usize, usize) {
    let (body, _, _) = budget_request();
    up.close();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for gw in gws {
        for _ in 0..n {
            let (url, key, body, tx) = (
                format!("{}/v1/chat/completions", gw.base),
                key.to_string(),
                body.clone(),
                tx.clone(),
            );
            let client = gw.client.clone();
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                let v = r.json::<Value>().await.unwrap_or(Value::Null);
                let _ = tx.send((st, v));
            });
        }
    }
    drop(tx);
    let total = gws.len() * n;
    let mut refused = 0;
    // Everything refused comes back while the admitted ones are held.
    while refused < total - 10 {
        let (st, v) = rx.recv().await.unwrap();
        assert_eq!(
            st, 429,
            "an admitted request finished while the gate was closed: {v}"
        );
        assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
        assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
        refused += 1;
    }
    assert!(
        up.hits() <= 10,
        "{} requests reached the upstream",
        up.hits()
    );
    up.open();
    let mut admitted = 0;
    while let Some((st, v)) = rx.recv().await {
        match st {
            200 => admitted += 1,
            429 => refused += 1,
            _ => panic!("{st} {v}"),
        }
    }
    (admitted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_for_ten_admits_at_most_ten_of_a_hundred() {
    let s = setup(Engine::Sqlite).await.unwrap();
    let admin = Admin::new(&s.gw);
    priced(&admin).await;
    let (_, worst, amount) = budget_request();
    let (id, k) = new_key(
        &admin,
        json!({"name": "capped", "budget": {"amount": amount, "period": "monthly"}}),
    )
    .await;
    let (admitted, refused) = burst(&[&s.gw], &s.up, &k, 100).await;
    assert_eq!((admitted, refused), (10, 90));
    assert_eq!(s.up.hits(), 10);

    // Settled with the real cost (10 in + 5 out at $1/M = 15 micro-units each).
    s.gw.state.usage.flush().await;
    let budget = Budget {
        amount: llm_link_gateway::identity::to_micros(amount),
        period: Period::Monthly,
    };
    let now = llm_link_gateway::util::now_ms();
    let (spent, reserved) = s.gw.state.governor.spent(&Scope::Key(id), &budget, now);
    assert_eq!((spent, reserved), (150, 0));
    assert!(worst > 15);
    // The refusal says when the period resets.
    let (st, v) = send(
        &s.gw,
        "/v1/chat/completions",
        bearer(&k),
        json!({"model": "gpt-x", "max_tokens": 1_000_000, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(st, 429, "{v}");
    assert!(error_text(&v).contains("monthly budget"), "{v}");

    // Spend is persisted, and a new governor starts from it.
    llm_link_server::apply::flush_spend(&s.gw.state.governor, &s.store).await;
    let mut tx = s.store.db.begin_read().await.unwrap();
    let rows = tx.spend_since(0).await.unwrap();
    tx.rollback().await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.scope == format!("key:{id}"))
        .unwrap();
    assert_eq!(row.spent, 150);
    let fresh = Governor::new(TimeZone::UTC, None);
    fresh.load_spend(rows.into_iter().map(|r| (r.scope, r.period_start, r.spent)));
    assert_eq!(fresh.spent(&Scope::Key(id), &budget, now).0, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_through_redis() {
    let url = std::env::var("LLM_LINK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    // Each run its own key space, so runs never see each other's spend.
    let prefix = format!("llm-link-test-{}-{}", std::process::id(), fastrand::u64(..));
    let shared = |p: String| {
        let url = url.clone();
        async move {
            llm_link_gateway::routing::shared::RedisBudgets::connect(&url, &p)
                .await
                .unwrap_or_else(|e| {
                    panic!("Redis is needed at {url} for shared budgets (LLM_LINK_TEST_REDIS_URL): {e}")
                })
        }
    };
    let db = TestDb::sqlite().await;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let (base, up) = upstream().await;
    let one = store_common::gateway_with(
        config(&base),
        store.clone(),
        layer.clone(),
        Some(Arc::new(Governor::new(
            TimeZone::UTC,
            Some(shared(prefix.clone()).await),
        ))),
    )
    .await;
    let two = store_common::gateway_with(
        config(&base),
        store.clone(),
        layer,
        Some(Arc::new(Governor::new(
            TimeZone::UTC,
            Some(shared(prefix).await),
        ))),
    )
    .await;
    let admin = Admin::new(&one);
    priced(&admin).await;
    llm_link_server::apply::reload(&two.state, &store)
        .await
        .unwrap()
        .unwrap();
    let (_, _, amount) = budget_request();
    let (_, k) = new_key(
        &admin,
        json!({"name": "shared", "budget": {"amount": amount, "period": "daily"}}),
    )
    .await;
    llm_link_server::apply::reload_identities(&two.state, &store)
        .await
        .unwrap();
    // Fifty at each replica; each alone would admit ten.
    let (admitted, refused) = burst(&[&one, &two], &up, &k, 50).await;
    assert_eq!((admitted, refused), (10, 90));
    assert_eq!(up.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_settles_when_its_client_leaves() {
    let s = setup(Engine::Sqlite).await.unwrap();
    let admin = Admin::new(&s.gw);
    priced(&admin).await;
    let (id, k) = new_key(
        &admin,
        json!({"name": "streamer", "max_concurrency": 1, "budget": {"amount": 1.0, "period": "total"}}),
    )
    .await;
    let budget = Budget {
        amount: 1_000_000,
        period: Period::Total,
    };
    let r =
        s.gw.client
            .post(format!("{}/v1/chat/completions", s.gw.base))
            .bearer_auth(&k)
            .json(&json!({"model": "gpt-x", "stream": true, "max_tokens": 100,
            "messages": [{"role": "user", "content": "go on"}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = futures_util::StreamExt::next(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    let now = llm_link_gateway::util::now_ms();
    let (_, reserved) = s.gw.state.governor.spent(&Scope::Key(id), &budget, now);
    assert!(reserved > 0, "the stream holds its reservation");
    drop(body);
    // The client is gone: the reservation and the concurrency slot come back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, reserved) = s.gw.state.governor.spent(&Scope::Key(id), &budget, now);
        if reserved == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (st, v) = send(
        &s.gw,
        "/v1/chat/completions",
        bearer(&k),
        openai_chat("gpt-x"),
    )
    .await;
    assert_eq!(st, 200, "the slot was not released: {v}");
    s.gw.state.usage.flush().await;
    let (_, v) = admin.get(&format!("/api/usage?key={id}")).await;
    let rows = v["data"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["error"] == "client_disconnected" && r["stream"] == true),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_keys_rpm_through_redis() {
    let url = std::env::var("LLM_LINK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("llm-link-test-{}-{}", std::process::id(), fastrand::u64(..));
    let db = TestDb::sqlite().await;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let (base, up) = upstream().await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let shared = llm_link_gateway::routing::shared::RedisBudgets::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis is needed at {url}: {e}"));
        gws.push(
            store_common::gateway_with(
                config(&base),
                store.clone(),
                layer.clone(),
                Some(Arc::new(Governor::new(TimeZone::UTC, Some(shared)))),
            )
            .await,
        );
    }
    let admin = Admin::new(&gws[0]);
    // Minute windows: a run that straddles a minute boundary is run again.
    for attempt in 0..2 {
        let minute = llm_link_gateway::util::now_secs() / 60;
        let hits = up.hits();
        let (_, k) = new_key(
            &admin,
            json!({"name": format!("shared-rpm-{attempt}"), "rpm": 3}),
        )
        .await;
        llm_link_server::apply::reload_identities(&gws[1].state, &store)
            .await
            .unwrap();
        // Each replica alone would allow three; together they allow three.
        for gw in [&gws[0], &gws[1], &gws[0]] {
            let (st, v) = send(gw, "/v1/chat/completions", bearer(&k), openai_chat("gpt-x")).await;
            assert_eq!(st, 200, "{v}");
        }
        let r = gws[1]
            .client
            .post(format!("{}/v1/chat/completions", gws[1].base))
            .bearer_auth(&k)
            .json(&openai_chat("gpt-x"))
            .send()
            .await
            .unwrap();
        if llm_link_gateway::util::now_secs() / 60 != minute {
            continue;
        }
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
        let v: Value = r.json().await.unwrap();
        assert!(error_text(&v).contains("shared by every replica"), "{v}");
        assert_eq!(up.hits(), hits + 3);
        return;
    }
    panic!("two runs straddled a minute boundary");
}

// ---- the team API -----------------------------------------------------------

both!(the_team_api_answers_keys_and_sessions);
async fn the_team_api_answers_keys_and_sessions(engine: Engine) {
    let Some(s) = setup(engine).await else { return };
    let admin = Admin::new(&s.gw);
    for (model, provider) in [("gpt-x", "oa"), ("claude-x", "an")] {
        let (st, v) = admin
            .post(
                "/api/v1/llm-models",
                json!({"name": format!("The {model}"), "model_id": model, "provider": provider,
                       "description": "for the team", "supports_vision": true, "max_tokens": 4096,
                       "context_window": 128000, "input_price": 1.0, "output_price": 2.0}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = admin
        .post(
            "/api/users",
            json!({"username": "bob", "password": "correct horse battery", "role": "member"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let bob = v["id"].as_i64().unwrap();
    let (kid, k) = new_key(
        &admin,
        json!({"name": "bob-ci", "user_id": bob, "models": ["gpt-x"]}),
    )
    .await;
    let (_, other) = new_key(&admin, json!({"name": "someone-else"})).await;

    // Chat, JSON and SSE, with the key.
    let (st, v) = send(&s.gw, "/api/v1/llm/chat", bearer(&k), openai_chat("gpt-x")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    let r = s
        .gw
        .client
        .post(format!("{}/api/v1/llm/chat", s.gw.base))
        .bearer_auth(&k)
        .json(&json!({"model": "gpt-x", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);
    // Scope and credentials hold here too.
    let (st, v) = send(
        &s.gw,
        "/api/v1/llm/chat",
        bearer(&k),
        openai_chat("claude-x"),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    let (st, _) = send(&s.gw, "/api/v1/llm/chat", None, openai_chat("gpt-x")).await;
    assert_eq!(st, 401);
    assert_eq!(
        send(
            &s.gw,
            "/api/v1/llm/chat",
            bearer(&other),
            openai_chat("gpt-x")
        )
        .await
        .0,
        200
    );

    // Models: only what the key may call, with the catalog's fields.
    let r =
        s.gw.client
            .get(format!("{}/api/v1/llm/models", s.gw.base))
            .bearer_auth(&k)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let models = v["data"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    let m = &models[0];
    assert_eq!(m["model_id"], "gpt-x");
    assert_eq!(m["name"], "The gpt-x");
    assert_eq!(m["provider"], "oa");
    assert_eq!(m["description"], "for the team");
    assert_eq!(m["supports_vision"], true);
    assert_eq!(m["max_tokens"], 4096);
    assert_eq!(m["context_window"], 128000);
    assert_eq!(m["input_price"], 1.0);
    assert_eq!(m["output_price"], 2.0);

    // A session token works on the team API (and sees every model: no key scope).
    let r =
        s.gw.client
            .post(format!("{}/api/auth/login", s.gw.base))
            .json(&json!({"username": "bob", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let jwt = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r =
        s.gw.client
            .get(format!("{}/api/v1/llm/models", s.gw.base))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (st, v) = send(
        &s.gw,
        "/api/v1/llm/chat",
        bearer(&jwt),
        openai_chat("claude-x"),
    )
    .await;
    assert_eq!(st, 200, "{v}");

    // Usage: bob's own rows (key and session), never someone else's. The
    // stream's row lands once the server has seen its client go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.gw.state.usage.flush().await;
        if admin.get("/api/usage").await.1["summary"]["requests"] == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "rows never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for token in [&k, &jwt] {
        let r =
            s.gw.client
                .get(format!("{}/api/v1/llm/usage?group_by=key", s.gw.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        // JSON, SSE, the 403 (metered after authentication) and the session's call.
        assert_eq!(v["summary"]["requests"], 4, "{v}");
        assert!(v.get("recorder").is_none());
        let groups = v["data"].as_array().unwrap();
        assert!(groups.iter().all(|g| g["key"] != "null"), "{v}");
        assert!(
            groups
                .iter()
                .any(|g| g["key"] == kid.to_string().as_str() && g["key_name"] == "bob-ci"),
            "{v}"
        );
        // Another user's filter is not the caller's to ask for.
        let r =
            s.gw.client
                .get(format!("{}/api/v1/llm/usage?user=1", s.gw.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 400);
    }
    let (_, all) = admin.get("/api/usage").await;
    // The 401 (no credential) records nothing; the 403 names its model.
    assert_eq!(all["summary"]["requests"], 5, "{all}");
    let rows = all["data"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["endpoint"] == "llm/chat"), "{all}");
    assert!(
        rows.iter().any(|r| r["status"] == 403
            && r["model"] == "claude-x"
            && r["error"] == "model_not_allowed"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_keys_concurrency_through_redis() {
    let url = std::env::var("LLM_LINK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("llm-link-test-{}-{}", std::process::id(), fastrand::u64(..));
    let db = TestDb::sqlite().await;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let (base, up) = upstream().await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let shared = llm_link_gateway::routing::shared::RedisBudgets::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis is needed at {url}: {e}"));
        gws.push(
            store_common::gateway_with(
                config(&base),
                store.clone(),
                layer.clone(),
                Some(Arc::new(Governor::new(TimeZone::UTC, Some(shared)))),
            )
            .await,
        );
    }
    let admin = Admin::new(&gws[0]);
    let (_, k) = new_key(&admin, json!({"name": "one-slot", "max_concurrency": 1})).await;
    llm_link_server::apply::reload_identities(&gws[1].state, &store)
        .await
        .unwrap();
    up.close();
    let (url0, k0) = (format!("{}/v1/chat/completions", gws[0].base), k.clone());
    let first = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url0)
            .bearer_auth(k0)
            .json(&openai_chat("gpt-x"))
            .send()
            .await
            .unwrap()
            .status()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while up.hits() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The other replica's own counter is empty; the shared one is full.
    let (st, v) = send(
        &gws[1],
        "/v1/chat/completions",
        bearer(&k),
        openai_chat("gpt-x"),
    )
    .await;
    assert_eq!(st, 429, "{v}");
    assert!(error_text(&v).contains("on all replicas"), "{v}");
    up.open();
    assert_eq!(first.await.unwrap(), 200);
    // The slot comes back once the first is answered (released in the background).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, v) = send(
            &gws[1],
            "/v1/chat/completions",
            bearer(&k),
            openai_chat("gpt-x"),
        )
        .await;
        if st == 200 {
            break;
        }
        assert_eq!(st, 429, "{v}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
