//! Usage reports add up (issue 15), on both engines: for every `group_by`
//! the groups sum to the summary and to the raw rows, CSV carries the same
//! numbers, the team API (`/api/v1/llm/usage`) shows a member's key only
//! that member's rows and keys, and a member's (or viewer's) session on the
//! admin API's `/api/usage` sees only its own usage, not everyone's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use common::*;
use llm_link_gateway::usage::UsageRow;
use llm_link_store::crypto::MasterKey;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use store_common::{Admin, Engine, TestDb};

const PW: &str = "correct horse battery staple";
const DAY: i64 = 86_400_000;
const GROUPS: [&str; 6] = ["user", "key", "model", "provider", "app", "day"];

fn config(up: &str) -> llm_link_gateway::config::Config {
    config_from(
        &format!(
            r#"
[[providers]]
name = "pa"
kind = "openai-compatible"
base_url = "{up}/v1"
api_key = "upstream-key-pa"
models = ["m-a", "m-b", "fail-500"]

[[providers]]
name = "pb"
kind = "openai-compatible"
base_url = "{up}/v1"
api_key = "upstream-key-pb"
models = ["m-c", "mock-embed"]
"#
        ),
        &[],
    )
}

/// (requests, input, output, cost) of a set of rows or groups.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    requests: i64,
    input: i64,
    output: i64,
    cost: f64,
}

impl Sums {
    fn add(&mut self, requests: i64, v: &Value) {
        self.requests += requests;
        self.input += v["input_tokens"].as_i64().unwrap_or(0);
        self.output += v["output_tokens"].as_i64().unwrap_or(0);
        self.cost += v["cost"].as_f64().unwrap_or(0.0);
    }
    fn of_group(v: &Value) -> Sums {
        let mut s = Sums::default();
        s.add(v["requests"].as_i64().unwrap(), v);
        s
    }
    fn same(&self, o: &Sums) -> bool {
        self.requests == o.requests
            && self.input == o.input
            && self.output == o.output
            && (self.cost - o.cost).abs() < 1e-9
    }
}

/// The group a raw row falls in, as the report names it.
fn group_of(row: &Value, by: &str) -> Value {
    let text = |v: &Value| match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    };
    match by {
        "user" => text(&row["user_id"]),
        "key" => match &row["virtual_key_id"] {
            Value::Null => text(&row["key_id"]),
            v => text(v),
        },
        "day" => {
            let ts = row["ts"].as_i64().unwrap();
            let t = llm_link_store::rfc3339(ts - ts.rem_euclid(DAY));
            Value::String(t[..10].to_string())
        }
        other => text(&row[other]),
    }
}

fn raw_groups(rows: &[Value], by: &str) -> BTreeMap<String, Sums> {
    let mut m: BTreeMap<String, Sums> = BTreeMap::new();
    for r in rows {
        m.entry(group_of(r, by).to_string()).or_default().add(1, r);
    }
    m
}

fn raw_sums(rows: &[Value]) -> Sums {
    let mut s = Sums::default();
    for r in rows {
        s.add(1, r);
    }
    s
}

/// GET with a bearer credential; (status, body text).
async fn get_text(gw: &Gateway, path: &str, bearer: &str) -> (u16, String, String) {
    let r = gw
        .client
        .get(format!("{}{path}", gw.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (s, ct, r.text().await.unwrap())
}

async fn get_json(gw: &Gateway, path: &str, bearer: &str) -> (u16, Value) {
    let (s, _, t) = get_text(gw, path, bearer).await;
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

async fn chat(gw: &Gateway, bearer: &str, model: &str, stream: bool, app: Option<&str>) -> u16 {
    let mut r = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(bearer)
        .json(&json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(a) = app {
        r = r.header("x-llm-link-app", a);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    // Read to the end, so a stream's row settles.
    let _ = r.bytes().await;
    s
}

struct World {
    gw: Gateway,
    _db: TestDb,
    alice: i64,
    bob: i64,
    viewer: i64,
    /// Key ids: alice's two, bob's two, one of no user.
    alice_keys: [(i64, String); 2],
    bob_keys: [(i64, String); 2],
    nobody_key: (i64, String),
    /// Rows the setup made (requests plus inserted older rows).
    total: i64,
}

async fn login(gw: &Gateway, name: &str) -> String {
    let r = gw
        .client
        .post(format!("{}/api/auth/login", gw.base))
        .json(&json!({"username": name, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Users, keys, priced catalog models, requests of every kind, and rows of
/// two earlier days; waits until every row is written.
async fn world(engine: Engine) -> Option<World> {
    let db = TestDb::on(engine).await?;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let up = mock().await;
    let gw = store_common::gateway(config(&up.base), store.clone(), layer).await;
    let admin = Admin::new(&gw);

    for (name, model, provider, inp, out) in
        [("A", "m-a", "pa", 1.0, 2.0), ("C", "m-c", "pb", 3.0, 0.5)]
    {
        let (s, v) = admin
            .post(
                "/api/v1/llm-models",
                json!({"name": name, "model_id": model, "provider": provider,
                       "input_price": inp, "output_price": out}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let mut ids = Vec::new();
    for (name, role) in [("alice", "member"), ("bob", "member"), ("vic", "viewer")] {
        let (s, v) = admin
            .post(
                "/api/users",
                json!({"username": name, "password": PW, "role": role}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    let (alice, bob, viewer) = (ids[0], ids[1], ids[2]);
    let key = |user: Option<i64>, name: &str, models: Option<Value>| {
        let mut body = json!({"name": name, "user_id": user});
        if let Some(m) = models {
            body["models"] = m;
        }
        body
    };
    let mut mk = Vec::new();
    for body in [
        key(Some(alice), "a1", None),
        key(Some(alice), "a2", None),
        key(Some(bob), "b1", None),
        key(Some(bob), "b2-scoped", Some(json!(["m-a"]))),
        key(None, "nobody", None),
    ] {
        let (s, v) = admin.post("/api/keys", body).await;
        assert_eq!(s, 201, "{v}");
        mk.push((
            v["id"].as_i64().unwrap(),
            v["key"].as_str().unwrap().to_string(),
        ));
    }
    let (a1, a2, b1, b2, nk) = (&mk[0].1, &mk[1].1, &mk[2].1, &mk[3].1, &mk[4].1);
    let alice_session = login(&gw, "alice").await;

    let mut n = 0;
    let mut expect = |got: u16, want: u16| {
        assert_eq!(got, want);
        n += 1;
    };
    for _ in 0..3 {
        expect(chat(&gw, a1, "m-a", false, Some("ed")).await, 200);
    }
    for _ in 0..2 {
        expect(chat(&gw, a1, "m-b", true, Some("cli")).await, 200);
        expect(chat(&gw, a2, "m-c", false, None).await, 200);
        expect(chat(&gw, b1, "m-a", false, Some("ed")).await, 200);
    }
    expect(chat(&gw, b1, "m-c", true, Some("cli")).await, 200);
    expect(chat(&gw, b1, "fail-500", false, None).await, 502);
    // Refused after authentication (scope): still a row.
    expect(chat(&gw, b2, "m-c", false, None).await, 403);
    expect(chat(&gw, b2, "m-a", false, None).await, 200);
    expect(chat(&gw, nk, "m-b", false, Some("ed")).await, 200);
    // A session on the model route: alice's, of no key.
    expect(chat(&gw, &alice_session, "m-a", true, None).await, 200);
    // Refused at authentication: no row.
    assert_eq!(chat(&gw, "llk-not-a-key", "m-a", false, None).await, 401);

    // Older rows, on two earlier days, so `day` has several groups.
    let now = llm_link_store::now_ms();
    let old = |days: i64, user: i64, vk: i64, cost: f64| UsageRow {
        ts: now - days * DAY,
        request_id: format!("old-{days}-{vk}"),
        protocol: "openai",
        endpoint: "chat/completions",
        model: "m-a".into(),
        provider: Some("pa".into()),
        status: 200,
        input_tokens: Some(100 * days as u64),
        output_tokens: Some(10),
        cost: Some(cost),
        user_id: Some(user),
        virtual_key_id: Some(vk),
        ..UsageRow::default()
    };
    let olds = vec![
        old(1, alice, mk[0].0, 0.25),
        old(2, alice, mk[1].0, 0.5),
        old(2, bob, mk[2].0, 1.0),
    ];
    n += olds.len() as i64;
    llm_link_store::usage::insert(&store.db, &olds)
        .await
        .unwrap();

    // Bounded wait for the recorder's batches.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = admin.get("/api/usage?limit=1").await;
        assert_eq!(s, 200, "{v}");
        if v["summary"]["requests"] == json!(n) {
            break;
        }
        assert!(Instant::now() < deadline, "rows: {v}, want {n}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let alice_keys = [mk[0].clone(), mk[1].clone()];
    let bob_keys = [mk[2].clone(), mk[3].clone()];
    let nobody_key = mk[4].clone();
    Some(World {
        gw,
        _db: db,
        alice,
        bob,
        viewer,
        alice_keys,
        bob_keys,
        nobody_key,
        total: n,
    })
}

/// Checks one report (`path` with `group_by`) against raw `rows` as seen by
/// `bearer`: the groups sum to the summary and match the rows group by
/// group; the CSV has a header and one line per group with the same numbers.
async fn check_groups(gw: &Gateway, bearer: &str, path: &str, by: &str, rows: &[Value]) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let q = format!("{path}{sep}group_by={by}&limit=10000");
    let (s, v) = get_json(gw, &q, bearer).await;
    assert_eq!(s, 200, "{q}: {v}");
    let groups = v["data"].as_array().unwrap();
    let mut total = Sums::default();
    let mut seen: BTreeMap<String, Sums> = BTreeMap::new();
    for g in groups {
        let s = Sums::of_group(g);
        total.requests += s.requests;
        total.input += s.input;
        total.output += s.output;
        total.cost += s.cost;
        assert!(
            seen.insert(g[by].to_string(), s).is_none(),
            "{q}: group {} twice",
            g[by]
        );
    }
    let summary = Sums::of_group(&v["summary"]);
    assert!(
        total.same(&summary),
        "{q}: groups {total:?} != summary {summary:?}"
    );
    let raw = raw_groups(rows, by);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        raw.keys().collect::<Vec<_>>(),
        "{q}: groups differ from the rows'"
    );
    for (k, s) in &raw {
        assert!(
            s.same(&seen[k]),
            "{q}: group {k}: report {:?} != rows {s:?}",
            seen[k]
        );
    }
    assert!(summary.same(&raw_sums(rows)), "{q}: summary != rows");

    // The same report as CSV.
    let (s, ct, text) = get_text(gw, &format!("{q}&format=csv"), bearer).await;
    assert_eq!(s, 200, "{text}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let lines: Vec<&str> = text.strip_suffix("\r\n").unwrap().split("\r\n").collect();
    assert_eq!(lines.len(), groups.len() + 1, "{q}: {text}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(header[0], by, "{text}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut csv_total = Sums::default();
    for (line, g) in lines[1..].iter().zip(groups) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        let num = |c: &str| f[col(c)].parse::<i64>().unwrap();
        assert_eq!(num("requests"), g["requests"].as_i64().unwrap(), "{line}");
        assert_eq!(num("input_tokens"), g["input_tokens"].as_i64().unwrap());
        assert_eq!(num("output_tokens"), g["output_tokens"].as_i64().unwrap());
        let cost = f[col("cost")];
        match g["cost"].as_f64() {
            None => assert_eq!(cost, "", "{line}"),
            Some(c) => assert!((cost.parse::<f64>().unwrap() - c).abs() < 1e-9, "{line}"),
        }
        csv_total.requests += num("requests");
        csv_total.input += num("input_tokens");
        csv_total.output += num("output_tokens");
        csv_total.cost += cost.parse::<f64>().unwrap_or(0.0);
    }
    assert!(
        csv_total.same(&summary),
        "{q}: CSV {csv_total:?} != {summary:?}"
    );
}

/// The raw rows `bearer` sees at `path` (all of them), and the CSV of the
/// same rows: one line each plus the header, the same token sums.
async fn raw_rows(gw: &Gateway, bearer: &str, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let q = format!("{path}{sep}limit=10000");
    let (s, v) = get_json(gw, &q, bearer).await;
    assert_eq!(s, 200, "{q}: {v}");
    let rows = v["data"].as_array().unwrap().clone();
    assert_eq!(v["summary"]["requests"], json!(rows.len()), "{q}: {v}");
    assert!(Sums::of_group(&v["summary"]).same(&raw_sums(&rows)), "{v}");

    let (s, _, text) = get_text(gw, &format!("{q}&format=csv"), bearer).await;
    assert_eq!(s, 200, "{text}");
    let lines: Vec<&str> = text.strip_suffix("\r\n").unwrap().split("\r\n").collect();
    assert_eq!(lines.len(), rows.len() + 1, "{text}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut sums = Sums::default();
    for (line, r) in lines[1..].iter().zip(&rows) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        assert_eq!(f[col("id")], r["id"].to_string(), "{line}");
        sums.requests += 1;
        sums.input += f[col("input_tokens")].parse::<i64>().unwrap_or(0);
        sums.output += f[col("output_tokens")].parse::<i64>().unwrap_or(0);
        sums.cost += f[col("cost")].parse::<f64>().unwrap_or(0.0);
    }
    assert!(sums.same(&raw_sums(&rows)), "{q}: CSV rows differ");
    rows
}

both!(reports_add_up_to_the_rows);
async fn reports_add_up_to_the_rows(engine: Engine) {
    let Some(w) = world(engine).await else {
        return;
    };
    let gw = &w.gw;
    let admin = store_common::ADMIN;
    let rows = raw_rows(gw, admin, "/api/usage").await;
    assert_eq!(rows.len() as i64, w.total);
    // The setup's mix is really there: tokens, costs, and rows without cost.
    assert!(rows.iter().any(|r| r["cost"].is_null()));
    assert!(
        rows.iter()
            .filter(|r| r["cost"].as_f64() > Some(0.0))
            .count()
            >= 5
    );
    assert!(rows.iter().any(|r| r["status"] == 403));
    for by in GROUPS {
        check_groups(gw, admin, "/api/usage", by, &rows).await;
    }
    let days = raw_groups(&rows, "day").len();
    assert!(days >= 3, "{days} days");

    // The admin's per-user view equals the rows of that user.
    let (_, a) = get_json(
        gw,
        &format!("/api/usage?user={}&limit=10000", w.alice),
        admin,
    )
    .await;
    let mine: Vec<&Value> = rows.iter().filter(|r| r["user_id"] == w.alice).collect();
    assert_eq!(a["data"].as_array().unwrap().len(), mine.len(), "{a}");

    // The team API with alice's key: her rows only, the same sums as the
    // admin's `user=` report, and only her keys.
    let a1 = &w.alice_keys[0].1;
    let own = raw_rows(gw, a1, "/api/v1/llm/usage").await;
    assert_eq!(own.len(), mine.len());
    assert!(own.iter().all(|r| r["user_id"] == w.alice), "{own:?}");
    assert!(Sums::of_group(&a["summary"]).same(&raw_sums(&own)));
    for by in ["model", "day", "key"] {
        check_groups(gw, a1, "/api/v1/llm/usage", by, &own).await;
    }
    let (_, k) = get_json(gw, "/api/v1/llm/usage?group_by=key", a1).await;
    let keys: BTreeSet<String> = k["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap_or("").to_string())
        .collect();
    for (id, _) in &w.alice_keys {
        assert!(keys.contains(&id.to_string()), "{k}");
    }
    for (id, _) in w.bob_keys.iter().chain([&w.nobody_key]) {
        assert!(
            !keys.contains(&id.to_string()),
            "bob's or nobody's key in {k}"
        );
    }
    // Bob's key sees bob's rows; a key of no user, that key's rows.
    let b = raw_rows(gw, &w.bob_keys[1].1, "/api/v1/llm/usage").await;
    assert!(!b.is_empty() && b.iter().all(|r| r["user_id"] == w.bob));
    let nk = raw_rows(gw, &w.nobody_key.1, "/api/v1/llm/usage").await;
    assert_eq!(nk.len(), 1);
    assert_eq!(nk[0]["virtual_key_id"], w.nobody_key.0);
}

both!(a_member_sees_only_its_own_usage);
async fn a_member_sees_only_its_own_usage(engine: Engine) {
    let Some(w) = world(engine).await else {
        return;
    };
    let gw = &w.gw;
    let all = raw_rows(gw, store_common::ADMIN, "/api/usage").await;
    let alice = login(gw, "alice").await;
    let bob = login(gw, "bob").await;

    // Alice's session on the admin API's report: her rows, not everyone's.
    let (s, v) = get_json(gw, "/api/usage?limit=10000", &alice).await;
    assert_eq!(s, 200, "{v}");
    let mine: Vec<&Value> = all.iter().filter(|r| r["user_id"] == w.alice).collect();
    assert_eq!(
        v["summary"]["requests"],
        json!(mine.len()),
        "a member's /api/usage must cover only its own rows: {}",
        v["summary"]
    );
    let own = raw_rows(gw, &alice, "/api/usage").await;
    assert!(own.iter().all(|r| r["user_id"] == w.alice));
    assert!(v.get("recorder").is_none(), "gateway-wide counters: {v}");
    for by in GROUPS {
        check_groups(gw, &alice, "/api/usage", by, &own).await;
    }
    let (_, g) = get_json(gw, "/api/usage?group_by=user", &alice).await;
    assert_eq!(g["data"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g["data"][0]["user"], w.alice.to_string());
    // Asking for another user's usage is refused; her own is fine.
    let (s, e) = get_json(gw, &format!("/api/usage?user={}", w.bob), &alice).await;
    assert_eq!(s, 403, "{e}");
    let (s, e) = get_json(gw, &format!("/api/usage?user={}", w.alice), &alice).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["summary"]["requests"], json!(mine.len()));
    // Filtering by another's key finds nothing.
    let (s, e) = get_json(gw, &format!("/api/usage?key={}", w.bob_keys[0].0), &alice).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["summary"]["requests"], 0, "{e}");

    // The same session on the team API sees the same.
    let (_, t) = get_json(gw, "/api/v1/llm/usage?limit=10000", &alice).await;
    assert!(Sums::of_group(&t["summary"]).same(&raw_sums(&own)), "{t}");

    // Bob sees his own; a viewer (no rows of its own) sees none.
    let b = raw_rows(gw, &bob, "/api/usage").await;
    assert!(!b.is_empty() && b.iter().all(|r| r["user_id"] == w.bob));
    let vic = login(gw, "vic").await;
    let (s, v) = get_json(gw, "/api/usage", &vic).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["summary"]["requests"], 0, "viewer {}: {v}", w.viewer);

    // The admin token still sees everyone's.
    let (_, v) = get_json(gw, "/api/usage?limit=1", store_common::ADMIN).await;
    assert_eq!(v["summary"]["requests"], json!(w.total));
    assert!(v.get("recorder").is_some());
}

/// A request refused after authentication (a key's model scope: 403, its
/// rate limit: 429) leaves a row, which should say what was asked: the
/// model was read (the scope check needs it) and so was `stream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_keeps_its_model_and_stream() {
    let db = TestDb::sqlite().await;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let up = mock().await;
    let gw = store_common::gateway(config(&up.base), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let (s, k) = admin
        .post(
            "/api/keys",
            json!({"name": "scoped", "models": ["m-a"], "rpm": 1}),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap();
    assert_eq!(chat(&gw, key, "m-c", true, None).await, 403);
    assert_eq!(chat(&gw, key, "m-a", false, None).await, 200);
    assert_eq!(chat(&gw, key, "m-a", true, None).await, 429);
    gw.state.usage.flush().await;
    let (_, v) = admin.get("/api/usage?limit=10").await;
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    let row = |status: i64| rows.iter().find(|r| r["status"] == status).unwrap();
    assert_eq!(row(403)["model"], "m-c", "{}", row(403));
    assert_eq!(row(403)["stream"], true, "{}", row(403));
    assert_eq!(row(429)["model"], "m-a", "{}", row(429));
    assert_eq!(row(429)["stream"], true, "{}", row(429));
}

/// A report's `data` and `summary` describe the same rows, even while the
/// recorder writes. On PostgreSQL the two SELECTs of `usage::query` run in
/// one READ COMMITTED transaction, so each sees its own snapshot: a batch
/// committed between them gives a summary that counts rows `data` lacks
/// (this is what makes `usage::every_surface_is_metered::postgres` flaky:
/// 15 rows against a summary of 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_and_summary_come_from_one_snapshot() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (store, _layer) = db.open(&MasterKey::generate()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5000 {
                let row = UsageRow {
                    ts: llm_link_store::now_ms(),
                    request_id: format!("r{i}"),
                    protocol: "openai",
                    endpoint: "chat/completions",
                    model: "m".into(),
                    status: 200,
                    ..UsageRow::default()
                };
                llm_link_store::usage::insert(&store.db, &[row])
                    .await
                    .unwrap();
                i += 1;
            }
        })
    };
    let mut mismatches = Vec::new();
    for _ in 0..300 {
        let (data, summary) = llm_link_store::usage::query(
            &store.db,
            &llm_link_store::usage::Filter::default(),
            None,
            10_000,
        )
        .await
        .unwrap();
        if summary["requests"] != json!(data.len()) {
            mismatches.push(format!(
                "{} rows, summary {}",
                data.len(),
                summary["requests"]
            ));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        mismatches.is_empty(),
        "{} of 300: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}
