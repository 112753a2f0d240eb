//! Routing and resilience against fault-injecting mock upstreams: failover,
//! retries, circuit breakers, key pools, stream failover before the first
//! byte, strategies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{config_from, gateway, Gateway};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ok,
    /// Every request fails with 500.
    Dead,
    /// Every other request fails, rotating 500 / connection reset / hang.
    Flaky,
    /// Streams: 200 and headers, then the connection ends before any byte.
    StreamDiesAtOnce,
    /// Never answers (30 s).
    Hang,
}

struct Mock {
    name: &'static str,
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    seq: AtomicU64,
    /// Requests per key seen.
    by_key: Mutex<HashMap<String, usize>>,
    /// key → status it gets (429 with Retry-After, 401, …).
    key_status: Mutex<HashMap<String, u16>>,
}

struct Up {
    base: String,
    m: Arc<Mock>,
}

fn ok_body(name: &str, model: &str) -> Value {
    json!({"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("from {name}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
}

fn sse_ok(name: &str) -> Response {
    let c = |d: Value, f: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
        )
    };
    let body = [
        c(
            json!({"role": "assistant", "content": format!("from {name}")}),
            Value::Null,
        ),
        c(json!({}), json!("stop")),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}

async fn handle(State(m): State<Arc<Mock>>, req: Request) -> Response {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .replace("Bearer ", "");
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = v["stream"].as_bool().unwrap_or(false);
    m.hits.fetch_add(1, Ordering::SeqCst);
    *m.by_key.lock().unwrap().entry(key.clone()).or_default() += 1;
    if let Some(status) = m.key_status.lock().unwrap().get(&key).copied() {
        let mut r = (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"error": {"message": "key problem", "type": "x"}})),
        )
            .into_response();
        if status == 429 {
            r.headers_mut().insert("retry-after", "30".parse().unwrap());
        }
        return r;
    }
    let mode = *m.mode.lock().unwrap();
    let n = m.seq.fetch_add(1, Ordering::SeqCst);
    match mode {
        Mode::Dead => return (StatusCode::INTERNAL_SERVER_ERROR, "dead").into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "late").into_response();
        }
        Mode::Flaky if n % 2 == 1 => match (n / 2) % 3 {
            0 => return (StatusCode::INTERNAL_SERVER_ERROR, "flaky").into_response(),
            1 => {
                // A body that fails at once: hyper aborts the connection.
                let s = futures_util::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other("reset"))
                });
                return Response::builder()
                    .header("content-length", "100")
                    .body(Body::from_stream(s))
                    .unwrap();
            }
            _ => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return (StatusCode::INTERNAL_SERVER_ERROR, "late").into_response();
            }
        },
        Mode::StreamDiesAtOnce if stream => {
            let s = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("gone"))
            });
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(s))
                .unwrap();
        }
        _ => {}
    }
    if stream {
        return sse_ok(m.name);
    }
    axum::Json(ok_body(m.name, v["model"].as_str().unwrap_or(""))).into_response()
}

async fn up(name: &'static str, mode: Mode) -> Up {
    let m = Arc::new(Mock {
        name,
        mode: Mutex::new(mode),
        hits: AtomicUsize::new(0),
        seq: AtomicU64::new(0),
        by_key: Mutex::new(HashMap::new()),
        key_status: Mutex::new(HashMap::new()),
    });
    let app = Router::new().fallback(handle).with_state(m.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Up {
        base: format!("http://{addr}/v1"),
        m,
    }
}

/// `GET /api/routing` and the entry of provider `name` in it.
async fn routing_status(gw: &Gateway, name: &str) -> (Value, Value) {
    let status: Value = gw
        .client
        .get(format!("{}/api/routing", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap();
    (status, entry)
}

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

async fn content(gw: &Gateway, body: Value) -> (u16, String, String) {
    let r = gw.post("/v1/chat/completions", body).await;
    let status = r.status().as_u16();
    let route = r
        .headers()
        .get("x-llm-link-route")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        route,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_target_half_failing_costs_no_client_request() {
    let flaky = up("flaky", Mode::Flaky).await;
    let good = up("good", Mode::Ok).await;
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "flaky"
kind = "openai-compatible"
base_url = "{}"
models = ["x-flaky"]
timeouts = {{ first_byte = "300ms", idle = "300ms" }}

[[providers]]
name = "good"
kind = "openai-compatible"
base_url = "{}"
models = ["x-good"]

[[routes]]
model = "m"
strategy = "round_robin"
targets = [{{ provider = "flaky", model = "x-flaky" }}, {{ provider = "good", model = "x-good" }}]
retry = {{ max_attempts = 3, base = "1ms", max = "5ms" }}
"#,
            flaky.base, good.base
        ),
        &[],
    ))
    .await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for w in 0..20 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..50 {
                let (s, c, route) = content(&gw, chat()).await;
                if s != 200 || !c.starts_with("from ") {
                    failures += 1;
                    eprintln!("worker {w}: {s} {c} {route}");
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }
    assert_eq!(failures, 0, "client-visible failures");
    // Both targets were used; the flaky one really failed some of the time.
    assert!(flaky.m.hits.load(Ordering::SeqCst) > 0);
    assert!(good.m.hits.load(Ordering::SeqCst) >= 500);
}

#[tokio::test]
async fn dead_upstream_opens_the_breaker_and_recovers_after_cooldown() {
    let dead = up("dead", Mode::Dead).await;
    let good = up("good", Mode::Ok).await;
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "dead"
kind = "openai-compatible"
base_url = "{}"
models = ["m"]
priority = 10
breaker = {{ failures = 3, cooldown = "400ms", successes = 1 }}

[[providers]]
name = "good"
kind = "openai-compatible"
base_url = "{}"
models = ["m"]
"#,
            dead.base, good.base
        ),
        &[],
    ))
    .await;
    // The model is declared on both: the higher priority is tried first and
    // every request still succeeds through the other.
    for i in 0..3 {
        let (s, c, route) = content(&gw, chat()).await;
        assert_eq!((s, c.as_str()), (200, "from good"), "request {i}");
        assert!(route.starts_with("dead/m#0=upstream_failed"), "{route}");
    }
    // The breaker is open: no traffic reaches the dead upstream.
    let hits = dead.m.hits.load(Ordering::SeqCst);
    assert_eq!(
        hits, 3,
        "one try per request (then straight to the other), open after 3"
    );
    for _ in 0..20 {
        let (s, _, route) = content(&gw, chat()).await;
        assert_eq!(s, 200);
        assert!(route.starts_with("dead/m=skipped"), "{route}");
    }
    assert_eq!(dead.m.hits.load(Ordering::SeqCst), hits);
    let (status, d) = routing_status(&gw, "dead").await;
    assert_eq!(d["breaker"], "open", "{status}");

    // It comes back; after the cooldown a probe gets through and closes it.
    *dead.m.mode.lock().unwrap() = Mode::Ok;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (s, c, _) = content(&gw, chat()).await;
    assert_eq!((s, c.as_str()), (200, "from dead"));
    let (_, c, _) = content(&gw, chat()).await;
    assert_eq!(c, "from dead", "closed again: the preferred target serves");
}

#[tokio::test]
async fn key_pool_429_cools_401_disables_and_exhaustion_is_clear() {
    let u = up("keys", Mode::Ok).await;
    u.m.key_status
        .lock()
        .unwrap()
        .insert("k-limited".into(), 429);
    u.m.key_status
        .lock()
        .unwrap()
        .insert("k-revoked".into(), 401);
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "pool"
kind = "openai-compatible"
base_url = "{}"
api_key = "k-limited"
keys = ["k-revoked", "k-good"]
key_strategy = "single"
models = ["m"]
"#,
            u.base
        ),
        &[],
    ))
    .await;
    let (s, c, route) = content(&gw, chat()).await;
    assert_eq!((s, c.as_str()), (200, "from keys"), "{route}");
    // 429 moved on to the next key, 401 disabled that one, the third served.
    assert_eq!(
        route,
        "pool/m#0=rate_limited,pool/m#1=upstream_auth_failed,pool/m#2=ok"
    );
    for _ in 0..5 {
        assert_eq!(content(&gw, chat()).await.0, 200);
    }
    let by_key = u.m.by_key.lock().unwrap().clone();
    assert_eq!(
        by_key.get("k-limited"),
        Some(&1),
        "cooling key not used again: {by_key:?}"
    );
    assert_eq!(
        by_key.get("k-revoked"),
        Some(&1),
        "disabled key not used again: {by_key:?}"
    );
    assert_eq!(by_key.get("k-good"), Some(&6));
    let status: Value = gw
        .client
        .get(format!("{}/api/routing", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = status["providers"][0]["keys"].as_array().unwrap().clone();
    assert_eq!(keys[0]["status"], "cooling");
    assert_eq!(keys[1]["status"], "disabled");
    assert!(keys[1]["reason"].as_str().unwrap().contains("401"));
    assert!(!status.to_string().contains("k-good"), "keys are masked");

    // Every key rate limited: a clear 429 with Retry-After.
    u.m.key_status.lock().unwrap().insert("k-good".into(), 429);
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn all_keys_revoked_is_a_clear_503_after_the_upstream_401() {
    let u = up("keys", Mode::Ok).await;
    u.m.key_status.lock().unwrap().insert("bad-1".into(), 401);
    u.m.key_status.lock().unwrap().insert("bad-2".into(), 403);
    let gw = gateway(config_from(
        &format!("[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nkeys = [\"bad-1\", \"bad-2\"]\nmodels = [\"m\"]\n", u.base),
        &[],
    ))
    .await;
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(
        r.status(),
        502,
        "the first request sees the upstream's refusal"
    );
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("every key"),
        "{v}"
    );
    assert!(!v.to_string().contains("bad-1"));
}

#[tokio::test]
async fn stream_fails_over_before_the_first_byte_only() {
    let broken = up("broken", Mode::StreamDiesAtOnce).await;
    let good = up("good", Mode::Ok).await;
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "broken"
kind = "openai-compatible"
base_url = "{}"
models = ["m"]
priority = 1

[[providers]]
name = "good"
kind = "openai-compatible"
base_url = "{}"
models = ["m"]
"#,
            broken.base, good.base
        ),
        &[],
    ))
    .await;
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let route = r.headers()["x-llm-link-route"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        route.starts_with("broken/m#0=upstream_failed") && route.ends_with("good/m#0=ok"),
        "{route}"
    );
    let data = common::sse_data(r).await;
    assert!(data.iter().any(|d| d.contains("from good")), "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn fallback_chain_across_models_and_formats() {
    let dead = up("dead", Mode::Dead).await;
    let good = up("good", Mode::Ok).await;
    let gw = gateway(config_from(
        &format!(
            r#"
[[providers]]
name = "a"
kind = "openai-compatible"
base_url = "{}"
models = ["gpt-4o"]

[[providers]]
name = "b"
kind = "openai-compatible"
base_url = "{}"
models = ["glm-4"]
passthrough = false

[[routes]]
model = "gpt-4o"
targets = [{{ provider = "a", model = "gpt-4o" }}]
fallback = ["glm-4"]
retry = {{ max_attempts = 2, base = "1ms" }}

[[deprecations]]
model = "gpt-4-old"
replacement = "gpt-4o"
sunset = "2000-01-01"

[[deprecations]]
model = "glm-4"
replacement = "gpt-4o"
sunset = "2999-01-01"
"#,
            dead.base, good.base
        ),
        &[],
    ))
    .await;
    let (s, c, route) = content(
        &gw,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!((s, c.as_str()), (200, "from good"), "{route}");
    assert_eq!(route, "a/gpt-4o#0=upstream_failed,b/glm-4#0=ok");

    // Past its sunset a deprecated model is served by its replacement, with a warning.
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4-old", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-llm-link-deprecation"]
        .to_str()
        .unwrap()
        .contains("retired"));
    // Before its sunset it is still served as asked, with a warning.
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "glm-4", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-llm-link-deprecation"]
        .to_str()
        .unwrap()
        .contains("will be replaced"));
    assert_eq!(r.headers()["sunset"], "2999-01-01");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from good");
}

#[tokio::test]
async fn concurrency_limit_queues_then_503() {
    let u = up("slow", Mode::Hang).await;
    // One slot and a 200 ms queue: while a request holds the slot, the next
    // waits for it and then gives up with 503.
    let gw = gateway(config_from(
        &format!("[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nmodels = [\"m\"]\nmax_concurrency = 1\nqueue_timeout = \"200ms\"\n", u.base),
        &[],
    ))
    .await;
    let gw = Arc::new(gw);
    let g2 = gw.clone();
    let hung = tokio::spawn(async move { g2.post("/v1/chat/completions", chat()).await.status() });
    let mut polls = 0;
    while u.m.hits.load(Ordering::SeqCst) < 1 && polls < 1_000_000 {
        polls += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(u.m.hits.load(Ordering::SeqCst), 1);
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency limit"),
        "{v}"
    );
    assert_eq!(
        u.m.hits.load(Ordering::SeqCst),
        1,
        "the queued request never reached the upstream"
    );
    hung.abort();
}

#[tokio::test]
async fn requests_per_minute_limit_answers_429_with_retry_after() {
    let u = up("p", Mode::Ok).await;
    let gw = gateway(config_from(
        &format!("[[providers]]\nname = \"p\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nmodels = [\"m\"]\nrpm = 2\n", u.base),
        &[],
    ))
    .await;
    assert_eq!(content(&gw, chat()).await.0, 200);
    assert_eq!(content(&gw, chat()).await.0, 200);
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(r.status(), 429);
    let ra: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&ra), "{ra}");
    assert_eq!(
        u.m.hits.load(Ordering::SeqCst),
        2,
        "the limited request never left llm-link"
    );
}

#[tokio::test]
async fn active_health_check_opens_the_breaker_without_traffic() {
    let dead = up("dead", Mode::Dead).await;
    let gw = gateway(config_from(
        &format!(
            "[[providers]]\nname = \"d\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nmodels = [\"m\"]\nhealth_check = \"50ms\"\nbreaker = {{ failures = 2, cooldown = \"60s\" }}\n",
            dead.base
        ),
        &[],
    ))
    .await;
    // Poll the admin view (bounded) until the probes have opened the breaker.
    let mut state = String::new();
    for _ in 0..100 {
        let v: Value = gw
            .client
            .get(format!("{}/api/routing", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = v["providers"][0]["breaker"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state == "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "open");
    assert!(
        dead.m.hits.load(Ordering::SeqCst) >= 2,
        "the probes went to the model list"
    );
    // Its only target is open, so the request is its probe (panic mode):
    // the dead upstream's own failure comes back, not a made-up 503.
    let r = gw.post("/v1/chat/completions", chat()).await;
    assert_eq!(r.status(), 502);
}

/// Issue 17: a single provider that failed long enough to open its breaker
/// is still tried (panic mode: the only target is its own probe), so the
/// request after it recovers is a 200, not a 503 for the rest of the
/// cooldown.
#[tokio::test]
async fn a_lone_provider_is_probed_when_its_circuit_is_open() {
    let u = up("lone", Mode::Dead).await;
    let gw = gateway(config_from(
        &format!(
            "[[providers]]\nname = \"lone\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nmodels = [\"m\"]\nbreaker = {{ failures = 5, cooldown = \"60s\" }}\n\n[[routes]]\nmodel = \"m\"\ntargets = [{{ provider = \"lone\", model = \"m\" }}]\nretry = {{ max_attempts = 1 }}\n",
            u.base
        ),
        &[],
    ))
    .await;
    for i in 0..12 {
        let (s, _, route) = content(&gw, chat()).await;
        assert_eq!(s, 502, "request {i}: {route}");
        assert!(
            route.contains("=upstream_failed"),
            "request {i} was not sent: {route}"
        );
    }
    assert_eq!(u.m.hits.load(Ordering::SeqCst), 12);
    *u.m.mode.lock().unwrap() = Mode::Ok;
    let (s, c, _) = content(&gw, chat()).await;
    assert_eq!((s, c.as_str()), (200, "from lone"));
    // And it is closed again: the next one goes straight through.
    let (s, _, route) = content(&gw, chat()).await;
    assert_eq!((s, route.as_str()), (200, "lone/m#0=ok"));
}

/// Failing fast is an explicit per-route choice: then an open circuit is a
/// 503 at once and nothing reaches the upstream.
#[tokio::test]
async fn fail_fast_routes_answer_503_while_the_circuit_is_open() {
    let u = up("ff", Mode::Dead).await;
    let gw = gateway(config_from(
        &format!(
            "[[providers]]\nname = \"ff\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nmodels = [\"m\"]\nbreaker = {{ failures = 3, cooldown = \"60s\" }}\n\n[[routes]]\nmodel = \"m\"\ntargets = [{{ provider = \"ff\", model = \"m\" }}]\nretry = {{ max_attempts = 1, fail_fast = true }}\n",
            u.base
        ),
        &[],
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(content(&gw, chat()).await.0, 502);
    }
    for _ in 0..5 {
        let (s, _, route) = content(&gw, chat()).await;
        assert_eq!(s, 503, "{route}");
        assert!(route.contains("skipped"), "{route}");
    }
    assert_eq!(u.m.hits.load(Ordering::SeqCst), 3);
}

/// Issue 17: a whole answer larger than the provider's `max_answer` is a 502
/// naming the limit, forwarded or translated, however much more the
/// upstream would send (here: 1 MiB chunks, up to 256 MiB).
#[tokio::test]
async fn an_oversized_answer_is_a_502_naming_the_limit() {
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = sent.clone();
    let app = Router::new().fallback(move || {
        let sent = s2.clone();
        async move {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let body =
                futures_util::StreamExt::map(futures_util::stream::iter(0..256), move |_| {
                    sent.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(chunk.clone())
                });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gw = gateway(config_from(
        &format!(
            "[[providers]]\nname = \"big\"\nkind = \"openai-compatible\"\nbase_url = \"{base}/v1\"\nmodels = [\"m\"]\nmax_answer = \"64KiB\"\n"
        ),
        &[],
    ))
    .await;
    // Forwarded (OpenAI client, OpenAI upstream) and translated (Anthropic client).
    for (path, body) in [
        ("/v1/chat/completions", chat()),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let r = gw.post(path, body).await;
        assert_eq!(r.status(), 502, "{path}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("65536") && text.contains("max_answer"),
            "{path}: {text}"
        );
    }
    // It stopped reading long before the upstream's 256 MiB.
    assert!(
        sent.load(Ordering::SeqCst) < 64,
        "{}",
        sent.load(Ordering::SeqCst)
    );
    // A bad size is refused at start, naming the field.
    let file: llm_link_gateway::config::FileConfig = toml::from_str(
        "[[providers]]\nname = \"x\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\nmax_answer = \"lots\"\n",
    )
    .unwrap();
    let e =
        llm_link_gateway::config::build(&Default::default(), Some(&file), &|_| None).unwrap_err();
    assert_eq!(e.field, "providers[0].max_answer");
}

/// An upstream on raw sockets: the first connection answers one request,
/// then reads the next and closes without a byte; later connections answer
/// every request. Counts the requests it read.
async fn drops_second_request() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let reads = Arc::new(AtomicUsize::new(0));
    let r = reads.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let r = r.clone();
            let drop_second = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let body = ok_body("raw", "m").to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut served = 0;
                loop {
                    // One request: a head with a Content-Length body.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let complete = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break true;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break false,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    if !complete {
                        return;
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    served += 1;
                    if drop_second && served == 2 {
                        return; // written whole, never answered
                    }
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, reads)
}

/// Issue 17: a request written whole to a pooled connection that then
/// closes without answering is not sent again by the HTTP client on its own
/// (the upstream may have acted on it). With retries allowed by the route,
/// the re-send is a counted, logged attempt; without, the client gets 502
/// and the upstream saw the request once.
#[tokio::test]
async fn an_unanswered_request_is_resent_only_as_a_retry_attempt() {
    for (attempts, want) in [(2, 200), (1, 502)] {
        let (base, reads) = drops_second_request().await;
        let gw = gateway(config_from(
            &format!(
                "[[providers]]\nname = \"raw\"\nkind = \"openai-compatible\"\nbase_url = \"{base}\"\nmodels = [\"m\"]\n\n[[routes]]\nmodel = \"m\"\ntargets = [{{ provider = \"raw\", model = \"m\" }}]\nretry = {{ max_attempts = {attempts}, base = \"1ms\" }}\n"
            ),
            &[],
        ))
        .await;
        // The first request leaves a pooled connection behind.
        let (s, c, _) = content(&gw, chat()).await;
        assert_eq!((s, c.as_str()), (200, "from raw"));
        let (s, _, route) = content(&gw, chat()).await;
        assert_eq!(s, want, "max_attempts {attempts}: {route}");
        if attempts == 2 {
            assert!(
                route.contains("=upstream_failed") && route.ends_with("=ok"),
                "the re-send is a logged attempt: {route}"
            );
            assert_eq!(reads.load(Ordering::SeqCst), 3);
        } else {
            assert_eq!(reads.load(Ordering::SeqCst), 2, "sent once: {route}");
        }
    }
}

/// Issue 17: an upstream 429 is never a breaker failure. A lone provider
/// that answers 429 every time keeps answering 429 with `Retry-After` (its
/// key cools, then is tried again), never 503 "circuit open", and its
/// breaker stays closed.
#[tokio::test]
async fn repeated_upstream_429s_stay_429_and_never_open_the_breaker() {
    let u = up("busy", Mode::Ok).await;
    u.m.key_status.lock().unwrap().insert("k1".into(), 429);
    let gw = gateway(config_from(
        &format!(
            "[[providers]]\nname = \"busy\"\nkind = \"openai-compatible\"\nbase_url = \"{}\"\napi_key = \"k1\"\nmodels = [\"m\"]\nbreaker = {{ failures = 2, cooldown = \"60s\" }}\n",
            u.base
        ),
        &[],
    ))
    .await;
    for i in 0..12 {
        let r = gw.post("/v1/chat/completions", chat()).await;
        assert_eq!(r.status(), 429, "request {i}");
        let after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=30).contains(&after),
            "request {i}: Retry-After {after}"
        );
    }
    let (status, p) = routing_status(&gw, "busy").await;
    assert_eq!(p["breaker"], "closed", "{status}");
}
