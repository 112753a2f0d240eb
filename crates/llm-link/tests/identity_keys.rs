//! Virtual keys through the admin API (`/api/keys`), on both engines: the
//! key is shown once and stored only as a keyed hash; creating, rotating
//! and revoking take effect on the request path's identities at once;
//! `null` clears; validation errors name the field; every change is
//! audited without the key; members see and manage only their own keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use llm_link_gateway::identity::{token_hash, Role};
use llm_link_server::admin::caller::Caller;
use llm_link_store::crypto::MasterKey;
use llm_link_store::identity::UserRow;
use llm_link_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use store_common::{Admin, Engine, TestDb};
use tower::ServiceExt;

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

async fn add_user(store: &Store, name: &str, role: &str) -> UserRow {
    let now = llm_link_store::now_ms();
    let mut u = UserRow {
        id: 0,
        username: name.into(),
        password_hash: "$argon2id$not-a-real-hash".into(),
        role: role.into(),
        disabled: false,
        rpm: None,
        tpm: None,
        max_concurrency: None,
        budget_amount: None,
        budget_period: None,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.db.begin().await.unwrap();
    u.id = tx.insert_user(&u).await.unwrap();
    tx.commit().await.unwrap();
    u
}

/// Everything the SQLite database holds on disk (the file and its WAL).
fn sqlite_bytes(db: &TestDb) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let p = db.dir.path().join(format!("llm-link.db{suffix}"));
        if let Ok(b) = std::fs::read(p) {
            out.extend(b);
        }
    }
    assert!(!out.is_empty(), "no database file in {:?}", db.dir.path());
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

both!(lifecycle);
async fn lifecycle(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let alice = add_user(&store, "alice", "member").await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let tk = store.secrets.token_key;

    // Create: the key is in this answer and nowhere else.
    let (s, k) = admin
        .post(
            "/api/keys",
            json!({
                "name": "ci bot", "user_id": alice.id, "models": ["gpt-4o", "glm-4-flash"],
                "expires_at": "2099-01-01T00:00:00Z", "rpm": 60, "tpm": 10000,
                "max_concurrency": 4, "budget": {"amount": 12.5, "period": "monthly"},
            }),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("llk-") && key.len() == 47, "{key}");
    let id = k["id"].as_i64().unwrap();
    assert_eq!(k["name"], "ci bot");
    assert_eq!(k["user_id"], alice.id);
    assert_eq!(k["hint"], format!("llk-…{}", &key[key.len() - 4..]));
    assert_eq!(k["models"], json!(["gpt-4o", "glm-4-flash"]));
    assert_eq!(k["expires_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(
        (k["rpm"].clone(), k["tpm"].clone()),
        (json!(60), json!(10000))
    );
    assert_eq!(k["max_concurrency"], 4);
    assert_eq!(k["budget"], json!({"amount": 12.5, "period": "monthly"}));
    assert_eq!(k["status"], "active");
    assert!(k["created_at"].as_str().unwrap().ends_with('Z'));
    let hash = token_hash(&tk, &key);
    assert!(k.get("key_hash").is_none() && !k.to_string().contains(&hash));

    // The request path knows it at once.
    let found = gw.state.identities.load().key(&key).cloned().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.user_id, Some(alice.id));
    assert_eq!(found.limits.rpm, Some(60));
    assert!(found.allows("gpt-4o") && !found.allows("gpt-4o-mini"));

    // Reading never shows the key or its hash.
    let (s, g) = admin.get(&format!("/api/keys/{id}")).await;
    assert_eq!(s, 200);
    assert!(g.get("key").is_none() && g.get("key_hash").is_none());
    assert_eq!(g["hint"], k["hint"]);
    let (s, l) = admin.get("/api/keys").await;
    assert_eq!(s, 200);
    assert_eq!(l["total"], 1);
    for text in [g.to_string(), l.to_string()] {
        assert!(!text.contains(&key) && !text.contains(&hash), "{text}");
    }

    // PATCH: `null` clears, absent keeps; the request path follows.
    let (s, p) = admin
        .call(
            "PATCH",
            &format!("/api/keys/{id}"),
            Some(json!({"name": "ci", "models": null, "rpm": null, "budget": null, "expires_at": null})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["name"], "ci");
    assert_eq!(p["models"], Value::Null);
    assert_eq!(p["rpm"], Value::Null);
    assert_eq!(p["budget"], Value::Null);
    assert_eq!(p["expires_at"], Value::Null);
    assert_eq!(p["tpm"], 10000);
    assert!(p.get("key").is_none());
    let found = gw.state.identities.load().key(&key).cloned().unwrap();
    assert_eq!(found.name, "ci");
    assert_eq!(found.limits.rpm, None);
    assert_eq!(found.limits.budget, None);
    assert!(found.allows("anything"));
    // A GET answer can be sent back unchanged.
    let (_, g) = admin.get(&format!("/api/keys/{id}")).await;
    let (s, back) = admin
        .call("PATCH", &format!("/api/keys/{id}"), Some(g.clone()))
        .await;
    assert_eq!((s, back["name"].clone()), (200, json!("ci")), "{back}");

    // Rotate: same id and settings, a new key; the old one stops at once.
    let (s, r) = admin
        .post(&format!("/api/keys/{id}/rotate"), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    let key2 = r["key"].as_str().unwrap().to_string();
    assert_ne!(key2, key);
    assert_eq!(r["id"], id);
    assert_eq!(r["name"], "ci");
    assert_eq!(r["tpm"], 10000);
    assert_eq!(r["hint"], format!("llk-…{}", &key2[key2.len() - 4..]));
    {
        let ids = gw.state.identities.load();
        assert!(ids.key(&key).is_none(), "the rotated-away key still works");
        assert_eq!(ids.key(&key2).unwrap().id, id);
    }

    // Revoke: the row stays (status revoked), the key stops at once.
    let (s, d) = admin.delete(&format!("/api/keys/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(d, json!({"id": id, "status": "revoked"}));
    // It stays known (so the gateway stays closed) but refused.
    assert!(gw.state.identities.load().key(&key2).unwrap().revoked);
    let (s, g) = admin.get(&format!("/api/keys/{id}")).await;
    assert_eq!((s, g["status"].clone()), (200, json!("revoked")));
    assert!(g["revoked_at"].is_string());
    assert_eq!(admin.get("/api/keys?status=revoked").await.1["total"], 1);
    assert_eq!(admin.get("/api/keys?status=active").await.1["total"], 0);
    // A revoked key cannot be changed or rotated; revoking again is a no-op.
    let (s, e) = admin
        .call("PATCH", &format!("/api/keys/{id}"), Some(json!({"rpm": 5})))
        .await;
    assert_eq!((s, e["error"]["type"].clone()), (409, json!("conflict")));
    let (s, _) = admin
        .post(&format!("/api/keys/{id}/rotate"), json!({}))
        .await;
    assert_eq!(s, 409);
    assert_eq!(admin.delete(&format!("/api/keys/{id}")).await.0, 200);
    assert_eq!(admin.get("/api/keys/999999").await.0, 404);
    assert_eq!(admin.get("/api/keys/not-a-number").await.0, 404);
    assert_eq!(admin.delete("/api/keys/999999").await.0, 404);

    // The audit log: one row per change, never a key or a hash.
    let (s, a) = admin.get("/api/audit?limit=50").await;
    assert_eq!(s, 200);
    let entries = a["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .filter(|e| e["target"] == format!("key {id}"))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.revoke", "key.rotate", "key.update", "key.create"],
        "{a}"
    );
    let update = entries
        .iter()
        .find(|e| e["action"] == "key.update")
        .unwrap();
    assert_eq!(
        update["details"]["changed"],
        json!(["name", "models", "expires_at", "rpm", "budget"])
    );
    assert_eq!(update["details"]["name"], "ci");
    assert!(update["actor"].as_str().unwrap().starts_with("admin@"));
    let text = a.to_string();
    for secret in [&key, &key2, &hash, &token_hash(&tk, &key2)] {
        assert!(!text.contains(secret.as_str()), "a secret in the audit log");
    }

    // On disk: hashes only.
    if engine == Engine::Sqlite {
        let bytes = sqlite_bytes(&db);
        assert!(
            contains(&bytes, &token_hash(&tk, &key2)),
            "the hash is stored"
        );
        assert!(!contains(&bytes, &key) && !contains(&bytes, &key2));
    }
}

both!(validation);
async fn validation(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "rpm": 0}), "rpm"),
        (json!({"name": "x", "tpm": 10_000_001}), "tpm"),
        (
            json!({"name": "x", "max_concurrency": 0}),
            "max_concurrency",
        ),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "x", "expires_at": 1000}), "expires_at"),
        (json!({"name": "x", "expires_at": "soon"}), "expires_at"),
        (
            json!({"name": "x", "budget": {"amount": 5, "period": "hourly"}}),
            "budget.period",
        ),
        (
            json!({"name": "x", "budget": {"amount": -1, "period": "daily"}}),
            "budget.amount",
        ),
        (json!({"name": "x", "models": []}), "models"),
        (json!({"name": "x", "models": ["gpt-4o", ""]}), "models[1]"),
        (json!({"name": "x", "models": "gpt-4o"}), "models"),
        (json!({"name": "x", "user_id": 424242}), "user_id"),
        (json!({"name": "x", "key": "llk-mine"}), "key"),
    ];
    for (b, f) in cases {
        let (s, e) = admin.post("/api/keys", b.clone()).await;
        assert_eq!(s, 400, "{b} -> {e}");
        assert_eq!(field(&e), f, "{b} -> {e}");
        assert_eq!(e["error"]["type"], "invalid_request");
    }
    // Nothing was written by the refused creates.
    assert_eq!(admin.get("/api/keys").await.1["total"], 0);
    assert!(!gw.state.identities.load().any());

    // Unknown model names are fine (the catalog may change); Unix ms expiry too.
    let later = llm_link_store::now_ms() + 86_400_000;
    let (s, k) = admin
        .post(
            "/api/keys",
            json!({"name": "x", "models": ["not-in-the-catalog"], "expires_at": later}),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(
        k["user_id"],
        Value::Null,
        "the admin token's keys are no one's"
    );
    let id = k["id"].as_i64().unwrap();
    let (s, e) = admin
        .call("PATCH", &format!("/api/keys/{id}"), Some(json!({"rpm": 0})))
        .await;
    assert_eq!((s, field(&e)), (400, "rpm"));
    let (s, e) = admin
        .call(
            "PATCH",
            &format!("/api/keys/{id}"),
            Some(json!({"budget": {"amount": 1}})),
        )
        .await;
    assert_eq!((s, field(&e)), (400, "budget.period"));
    let alice = add_user(&store, "alice", "member").await;
    let (s, e) = admin
        .call(
            "PATCH",
            &format!("/api/keys/{id}"),
            Some(json!({"user_id": alice.id})),
        )
        .await;
    assert_eq!((s, field(&e)), (400, "user_id"), "{e}");
    // Without the admin token: 401.
    let r = gw.get("/api/keys").await;
    assert_eq!(r.status(), 401);
}

/// `/api/keys` as `caller` sees it: the key routes with the caller the
/// admin guard would have put in the request.
struct As {
    router: axum::Router,
}

impl As {
    fn new(gw: &Gateway, caller: Caller) -> As {
        let router = llm_link_server::admin::vkeys::routes()
            .layer(axum::Extension(caller))
            .with_state(gw.state.clone());
        As { router }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(match body {
                Some(b) => Body::from(b.to_string()),
                None => Body::empty(),
            })
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

fn caller(u: &UserRow) -> Caller {
    let entry = Arc::new(u.entry());
    Caller {
        role: entry.role,
        actor: format!("user:{}", u.username),
        user: Some(entry),
    }
}

both!(ownership);
async fn ownership(engine: Engine) {
    let Some(db) = TestDb::on(engine).await else {
        return;
    };
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let alice = add_user(&store, "alice", "member").await;
    let bob = add_user(&store, "bob", "member").await;
    let vera = add_user(&store, "vera", "viewer").await;
    let boss = add_user(&store, "boss", "admin").await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let admin = Admin::new(&gw);
    let (s, bobs) = admin
        .post("/api/keys", json!({"name": "bob's", "user_id": bob.id}))
        .await;
    assert_eq!(s, 201);
    let bob_key = bobs["id"].as_i64().unwrap();

    let a = As::new(&gw, caller(&alice));
    // A member's key is its own, whether it says so or not.
    let (s, mine) = a
        .call("POST", "/api/keys", Some(json!({"name": "mine"})))
        .await;
    assert_eq!(s, 201, "{mine}");
    assert_eq!(mine["user_id"], alice.id);
    assert!(mine["key"].as_str().unwrap().starts_with("llk-"));
    let my_key = mine["id"].as_i64().unwrap();
    let (s, also) = a
        .call(
            "POST",
            "/api/keys",
            Some(json!({"name": "also", "user_id": alice.id})),
        )
        .await;
    assert_eq!((s, also["user_id"].clone()), (201, json!(alice.id)));
    // …and never someone else's.
    for b in [
        json!({"name": "x", "user_id": bob.id}),
        json!({"name": "x", "user_id": null}),
    ] {
        let (s, e) = a.call("POST", "/api/keys", Some(b)).await;
        assert_eq!(
            (s, e["error"]["type"].clone()),
            (403, json!("forbidden")),
            "{e}"
        );
    }
    // It sees its own keys only; another's is 404, never 403.
    let (s, l) = a.call("GET", "/api/keys", None).await;
    assert_eq!(s, 200);
    assert_eq!(l["total"], 2, "{l}");
    assert!(l["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["user_id"] == alice.id));
    assert_eq!(
        a.call("GET", &format!("/api/keys?user_id={}", bob.id), None)
            .await
            .1["total"],
        0
    );
    let other = format!("/api/keys/{bob_key}");
    assert_eq!(a.call("GET", &other, None).await.0, 404);
    assert_eq!(
        a.call("PATCH", &other, Some(json!({"rpm": 1}))).await.0,
        404
    );
    assert_eq!(a.call("DELETE", &other, None).await.0, 404);
    assert_eq!(
        a.call("POST", &format!("{other}/rotate"), Some(json!({})))
            .await
            .0,
        404
    );
    // Bob's key is untouched.
    let (_, b) = admin.get(&other).await;
    assert_eq!(
        (b["status"].clone(), b["rpm"].clone()),
        (json!("active"), Value::Null)
    );
    // Its own: read, patch, rotate, revoke.
    let own = format!("/api/keys/{my_key}");
    assert_eq!(a.call("GET", &own, None).await.0, 200);
    assert_eq!(a.call("PATCH", &own, Some(json!({"rpm": 10}))).await.0, 200);
    let (s, r) = a.call("POST", &format!("{own}/rotate"), None).await;
    assert_eq!(s, 200, "{r}");
    let rotated = r["key"].as_str().unwrap().to_string();
    assert_eq!(
        gw.state.identities.load().key(&rotated).unwrap().user_id,
        Some(alice.id)
    );
    assert_eq!(a.call("DELETE", &own, None).await.0, 200);
    assert!(gw.state.identities.load().key(&rotated).unwrap().revoked);
    // The audit log names the user.
    let (_, log) = admin.get("/api/audit?limit=50").await;
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "user:alice" && e["action"] == "key.revoke"));

    // A viewer may not manage keys at all.
    let v = As::new(&gw, caller(&vera));
    for (m, p, b) in [
        ("GET", "/api/keys".to_string(), None),
        ("POST", "/api/keys".to_string(), Some(json!({"name": "x"}))),
        ("GET", other.clone(), None),
    ] {
        let (s, e) = v.call(m, &p, b).await;
        assert_eq!(
            (s, e["error"]["type"].clone()),
            (403, json!("forbidden")),
            "{m} {p}"
        );
    }

    // An admin user sees everyone's, filters by user, and gives keys to anyone.
    let boss_as = As::new(&gw, caller(&boss));
    assert_eq!(boss.entry().role, Role::Admin);
    let (_, l) = boss_as.call("GET", "/api/keys", None).await;
    assert_eq!(l["total"], 3);
    let (_, l) = boss_as
        .call("GET", &format!("/api/keys?user_id={}", bob.id), None)
        .await;
    assert_eq!(l["total"], 1);
    let (s, k) = boss_as
        .call(
            "POST",
            "/api/keys",
            Some(json!({"name": "for bob", "user_id": bob.id})),
        )
        .await;
    assert_eq!((s, k["user_id"].clone()), (201, json!(bob.id)));
    let (_, k) = boss_as
        .call("POST", "/api/keys", Some(json!({"name": "own"})))
        .await;
    assert_eq!(k["user_id"], boss.id, "an admin's key defaults to its own");
    let (s, k) = boss_as
        .call(
            "POST",
            "/api/keys",
            Some(json!({"name": "service", "user_id": null})),
        )
        .await;
    assert_eq!((s, k["user_id"].clone()), (201, Value::Null));
    assert_eq!(boss_as.call("GET", &other, None).await.0, 200);

    // A user's keys go with the user.
    let mut tx = store.db.begin().await.unwrap();
    tx.delete_user(bob.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(admin.get(&other).await.0, 404);
}

/// `llm-link key create|list|revoke`: the built binary against a SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_create_list_revoke() {
    const BIN: &str = env!("CARGO_BIN_EXE_llm-link");
    let db = TestDb::sqlite().await;
    let master = MasterKey::generate();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LLM_LINK_") || k.ends_with("_API_KEY") || k == "XDG_DATA_HOME" {
                c.env_remove(k);
            }
        }
        let out = c
            .env("RUST_BACKTRACE", "0")
            .env("LLM_LINK_DATA_DIR", db.dir.path())
            .env("LLM_LINK_MASTER_KEY", master.encode())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The first run creates the database; a user to own a key.
    let (code, out, err) = run(&["key", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no virtual keys"), "{out}");
    let (store, _) = db.open(&master).await;
    add_user(&store, "alice", "member").await;

    let (code, out, err) = run(&[
        "key",
        "create",
        "ci bot",
        "--user",
        "alice",
        "--models",
        "gpt-4o,glm-4",
        "--rpm",
        "10",
        "--budget",
        "5",
        "--period",
        "daily",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let key = out
        .lines()
        .find(|l| l.starts_with("llk-"))
        .unwrap()
        .to_string();
    assert!(
        out.contains("created key 1 `ci bot` for user alice"),
        "{out}"
    );

    // Mistakes exit 2 with one line naming the flag.
    for (args, flag) in [
        (
            &["key", "create", "x", "--budget", "1", "--period", "hourly"][..],
            "--period",
        ),
        (&["key", "create", "x", "--period", "daily"][..], "--period"),
        (&["key", "create", "x", "--user", "nobody"][..], "--user"),
        (&["key", "create", "x", "--rpm", "0"][..], "--rpm"),
        (&["key", "create", "x", "--models", ","][..], "--models"),
        (
            &["key", "create", "x", "--expires", "2001-01-01"][..],
            "--expires",
        ),
        (&["key", "revoke", "42"][..], "no key with id"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.starts_with(&format!("error: {flag}")),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // Listed by hint, never by key; stored as its hash.
    let (code, out, _) = run(&["key", "list", "--json"]);
    assert_eq!(code, 0);
    let l: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l["total"], 1);
    assert_eq!(l["keys"][0]["models"], json!(["gpt-4o", "glm-4"]));
    assert_eq!(
        l["keys"][0]["budget"],
        json!({"amount": 5.0, "period": "daily"})
    );
    assert!(!out.contains(&key));
    let (_, table, _) = run(&["key", "list", "--user", "alice"]);
    assert!(table.contains("ci bot") && table.contains("alice") && table.contains("active"));
    let resolve = || async {
        let (_, users, keys) = llm_link_store::identity::load(&store.db).await.unwrap();
        llm_link_store::identity::identities(&users, &keys, &store.secrets)
            .key(&key)
            .filter(|k| !k.revoked)
            .map(|k| (k.id, k.limits.rpm))
    };
    assert_eq!(resolve().await, Some((1, Some(10))));

    let (code, out, err) = run(&["key", "revoke", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(resolve().await, None);
    let mut tx = store.db.begin_read().await.unwrap();
    let audit = tx.audit_log(20, None).await.unwrap();
    tx.rollback().await.unwrap();
    let ours: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.target == "key 1")
        .map(|a| (a.actor.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(ours, [("cli", "key.revoke"), ("cli", "key.create")]);
    assert!(!audit.iter().any(|a| a.details.to_string().contains(&key)));
    assert!(!contains(&sqlite_bytes(&db), &key));
}
