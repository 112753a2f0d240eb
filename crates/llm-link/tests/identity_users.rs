//! Users and roles, on both engines: login (token and cookie), me, logout
//! revoking the session, lockout after failed logins, role permissions on
//! the admin API (Bearer and cookie), the admin token as break-glass, users
//! CRUD, audit rows without passwords; and the `llm-link user` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[macro_use]
mod store_common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use llm_link_store::crypto::MasterKey;
use llm_link_store::Store;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use store_common::{Admin, Engine, TestDb};
use tower::ServiceExt;

const PW: &str = "correct-horse-battery";

struct Env {
    _db: TestDb,
    gw: Gateway,
    store: Arc<Store>,
}

async fn setup(engine: Engine) -> Option<Env> {
    let db = TestDb::on(engine).await?;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    Some(Env { _db: db, gw, store })
}

impl Env {
    fn admin(&self) -> Admin<'_> {
        Admin::new(&self.gw)
    }

    async fn create_user(&self, name: &str, role: &str) -> i64 {
        let (s, v) = self
            .admin()
            .post(
                "/api/users",
                json!({"username": name, "password": PW, "role": role}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        no_secrets(&v);
        v["id"].as_i64().unwrap()
    }

    async fn login_raw(&self, name: &str, pw: &str, https: bool) -> reqwest::Response {
        let mut req = self
            .gw
            .client
            .post(format!("{}/api/auth/login", self.gw.base))
            .json(&json!({"username": name, "password": pw}));
        if https {
            req = req.header("x-forwarded-proto", "https");
        }
        req.send().await.unwrap()
    }

    /// Logs in; the session token.
    async fn login(&self, name: &str) -> String {
        let r = self.login_raw(name, PW, false).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// A call with a session token as Bearer, or as the cookie.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        cookie: bool,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.gw.client.request(m, format!("{}{path}", self.gw.base));
        req = if cookie {
            req.header("cookie", format!("other=1; llm_link_session={token}"))
        } else {
            req.bearer_auth(token)
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        let text = r.text().await.unwrap();
        no_secrets_text(&text);
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn audit(&self) -> Vec<llm_link_store::rows::AuditRow> {
        let mut tx = self.store.db.begin_read().await.unwrap();
        let log = tx.audit_log(1000, None).await.unwrap();
        tx.rollback().await.unwrap();
        log
    }
}

fn no_secrets_text(text: &str) {
    assert!(!text.contains(PW), "a password in a response: {text}");
    assert!(!text.contains("new-password-42"), "{text}");
    assert!(!text.contains("password_hash"), "{text}");
    assert!(!text.contains("$argon2"), "a hash in a response: {text}");
}

fn no_secrets(v: &Value) {
    no_secrets_text(&v.to_string());
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

both!(login_me_and_logout);
async fn login_me_and_logout(engine: Engine) {
    let Some(env) = setup(engine).await else {
        return;
    };
    env.create_user("alice", "member").await;

    // Login: a token, its expiry, the user, and the cookie.
    let r = env.login_raw("alice", PW, false).await;
    assert_eq!(r.status(), 200);
    let cookie = set_cookie(&r);
    let text = r.text().await.unwrap();
    no_secrets_text(&text);
    let v: Value = serde_json::from_str(&text).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("eyJ") && token.matches('.').count() == 2);
    assert!(v["expires_at"].as_str().unwrap().contains('T'), "{v}");
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["user"]["role"], "member");
    assert_eq!(v["user"]["disabled"], false);
    assert!(v["user"]["last_login_at"].is_string(), "{v}");
    assert_eq!(
        cookie,
        format!("llm_link_session={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200")
    );
    // Behind a TLS proxy the cookie is Secure.
    let r = env.login_raw("alice", PW, true).await;
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r).ends_with("; Secure"), "{}", set_cookie(&r));

    // Me, by Bearer and by cookie.
    let (s, me) = env.call("GET", "/api/auth/me", &token, false, None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "member");
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(perms.contains(&"ManageKeys") && perms.contains(&"ViewProviders"));
    assert!(!perms.contains(&"ManageUsers"), "{perms:?}");
    let (s, _) = env.call("GET", "/api/auth/me", &token, true, None).await;
    assert_eq!(s, 200);
    let r = env
        .gw
        .client
        .get(format!("{}/api/auth/me", env.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = env
        .call(
            "GET",
            "/api/auth/me",
            "eyJhbGciOiJIUzI1NiJ9.e30.bad",
            false,
            None,
        )
        .await;
    assert_eq!(s, 401);

    // Wrong password and unknown user: the same 401.
    let r = env.login_raw("alice", "wrong-password", false).await;
    assert_eq!(r.status(), 401);
    let wrong: Value = r.json().await.unwrap();
    assert_eq!(
        wrong,
        json!({"error": {"message": "invalid username or password", "type": "unauthorized"}})
    );
    let r = env.login_raw("nobody", "wrong-password", false).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), wrong);
    // Body mistakes name the field.
    let r = env
        .gw
        .post("/api/auth/login", json!({"username": "alice"}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "password", "{v}");

    // Logout revokes the session: the same token is refused afterwards.
    let r = env
        .gw
        .client
        .post(format!("{}/api/auth/logout", env.gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        set_cookie(&r).contains("llm_link_session=;"),
        "{}",
        set_cookie(&r)
    );
    assert!(set_cookie(&r).contains("Max-Age=0"));
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let (s, _) = env.call("GET", "/api/auth/me", &token, false, None).await;
    assert_eq!(s, 401);
    let (s, _) = env.call("GET", "/api/providers", &token, true, None).await;
    assert_eq!(s, 401);

    // The audit log has each event, and no password anywhere.
    let log = env.audit().await;
    for action in [
        "user.create",
        "auth.login",
        "auth.login_failed",
        "auth.logout",
    ] {
        assert!(
            log.iter().any(|a| a.action == action),
            "no {action} in the audit log"
        );
    }
    let failed = log
        .iter()
        .find(|a| a.action == "auth.login_failed")
        .unwrap();
    assert!(failed.target.contains("alice") || failed.target.contains("nobody"));
    let login = log.iter().find(|a| a.action == "auth.login").unwrap();
    assert_eq!(login.actor, "user:alice");
    for a in &log {
        let all = format!("{} {} {} {}", a.actor, a.action, a.target, a.details);
        assert!(
            !all.contains(PW) && !all.contains("wrong-password"),
            "{all}"
        );
        assert!(!all.contains("$argon2"), "{all}");
    }
}

both!(lockout_after_five_failures);
async fn lockout_after_five_failures(engine: Engine) {
    let Some(env) = setup(engine).await else {
        return;
    };
    let id = env.create_user("bob", "viewer").await;

    // Failures short of five, then a success, reset the count.
    for _ in 0..4 {
        assert_eq!(
            env.login_raw("bob", "nope-nope-nope", false).await.status(),
            401
        );
    }
    env.login("bob").await;
    let mut tx = env.store.db.begin_read().await.unwrap();
    let row = tx.user(id).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(row.failed_logins, 0);
    assert_eq!(row.locked_until, None);

    // Five in a row lock the account: even the right password gets a 429.
    for _ in 0..5 {
        assert_eq!(
            env.login_raw("bob", "nope-nope-nope", false).await.status(),
            401
        );
    }
    let r = env.login_raw("bob", PW, false).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("locked"),
        "{v}"
    );
    let r = env.login_raw("bob", "nope-nope-nope", false).await;
    assert_eq!(r.status(), 429);
    assert!(env.audit().await.iter().any(|a| a.action == "auth.locked"));
    // The admin sees when the lock ends.
    let (_, u) = env.admin().get(&format!("/api/users/{id}")).await;
    assert!(u["locked_until"].is_string(), "{u}");

    // Once the lock is over (moved into the past here), the password works.
    let mut tx = env.store.db.begin().await.unwrap();
    tx.set_login_state(id, 0, Some(1), None).await.unwrap();
    tx.commit().await.unwrap();
    env.login("bob").await;
}

both!(roles_guard_the_admin_api);
async fn roles_guard_the_admin_api(engine: Engine) {
    let Some(env) = setup(engine).await else {
        return;
    };
    env.create_user("vic", "viewer").await;
    env.create_user("mem", "member").await;
    env.create_user("ada", "admin").await;
    let viewer = env.login("vic").await;
    let member = env.login("mem").await;
    let admin = env.login("ada").await;
    let provider =
        json!({"name": "p1", "kind": "openai", "api_key": "sk-role-test-0001", "models": ["m1"]});

    // A viewer reads providers (Bearer and cookie) but cannot change them.
    let (s, v) = env
        .call("GET", "/api/providers", &viewer, false, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env.call("GET", "/api/providers", &viewer, true, None).await;
    assert_eq!(s, 200);
    let (s, _) = env.call("GET", "/api/audit", &viewer, false, None).await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call("GET", "/api/v1/llm/usage", &viewer, false, None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .call(
            "POST",
            "/api/providers",
            &viewer,
            false,
            Some(provider.clone()),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["type"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("needs the EditProviders permission"),
        "{v}"
    );
    let (s, _) = env
        .call(
            "POST",
            "/api/providers",
            &viewer,
            true,
            Some(provider.clone()),
        )
        .await;
    assert_eq!(s, 403);

    // A member cannot manage users (or providers).
    let (s, v) = env.call("GET", "/api/users", &member, false, None).await;
    assert_eq!(s, 403);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ManageUsers"));
    let (s, _) = env
        .call(
            "POST",
            "/api/users",
            &member,
            true,
            Some(json!({"username": "x1", "password": PW, "role": "admin"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = env
        .call("DELETE", "/api/providers/p1", &member, false, None)
        .await;
    assert_eq!(s, 403);

    // An admin user may do everything, by cookie too; it is the audit actor.
    let (s, v) = env
        .call("POST", "/api/providers", &admin, true, Some(provider))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = env.call("GET", "/api/users", &admin, false, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 3);
    let log = env.audit().await;
    assert!(log
        .iter()
        .any(|a| a.action == "provider.create" && a.actor == "user:ada"));

    // The admin token still works; no credential is a 401.
    let (s, _) = env.admin().get("/api/users").await;
    assert_eq!(s, 200);
    let r = env.gw.get("/api/providers").await;
    assert_eq!(r.status(), 401);
    let (s, _) = env
        .call("GET", "/api/providers", "eyJx.eyJ.sig", false, None)
        .await;
    assert_eq!(s, 401);

    // The hot-update guard takes the same credentials from a remote caller:
    // a viewer may look at routing but not switch providers; an admin may.
    let app = llm_link_server::app(env.gw.state.clone());
    let remote: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    let req = |method: &str, path: &str, token: &str| {
        let mut r = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"provider":"zhipu","api_key":"k"}"#))
            .unwrap();
        r.extensions_mut().insert(ConnectInfo(remote));
        r
    };
    let status = |r: axum::response::Response| r.status().as_u16();
    assert_eq!(
        status(
            app.clone()
                .oneshot(req("GET", "/api/routing", &viewer))
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            app.clone()
                .oneshot(req("POST", "/api/config/update", &viewer))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            app.clone()
                .oneshot(req("POST", "/api/config/update", &admin))
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            app.clone()
                .oneshot(req("POST", "/api/config/update", "wrong"))
                .await
                .unwrap()
        ),
        403
    );
}

both!(users_crud);
async fn users_crud(engine: Engine) {
    let Some(env) = setup(engine).await else {
        return;
    };
    let admin = env.admin();
    let (s, v) = admin
        .post(
            "/api/users",
            json!({"username": "carol@example.com", "password": PW, "role": "member",
                   "rpm": 60, "tpm": 1000, "max_concurrency": 2,
                   "budget": {"amount": 12.5, "period": "monthly"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    no_secrets(&v);
    let id = v["id"].as_i64().unwrap();
    for k in [
        "id",
        "username",
        "role",
        "disabled",
        "rpm",
        "tpm",
        "max_concurrency",
        "budget",
        "locked_until",
        "last_login_at",
        "created_at",
        "updated_at",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert_eq!(v["budget"], json!({"amount": 12.5, "period": "monthly"}));
    assert_eq!(v["rpm"], 60);
    // Live at once in the request path's identities.
    assert_eq!(
        env.gw.state.identities.load().user(id).unwrap().limits.rpm,
        Some(60)
    );

    // Mistakes name the field; a taken name is a 409.
    let cases = [
        (
            json!({"username": "carol@example.com", "password": PW, "role": "member"}),
            409,
            "username",
        ),
        (
            json!({"username": "has space", "password": PW, "role": "member"}),
            400,
            "username",
        ),
        (
            json!({"username": "", "password": PW, "role": "member"}),
            400,
            "username",
        ),
        (
            json!({"username": "dave", "password": "short", "role": "member"}),
            400,
            "password",
        ),
        (
            json!({"username": "dave", "password": PW, "role": "root"}),
            400,
            "role",
        ),
        (
            json!({"username": "dave", "password": PW, "role": "viewer", "rpm": 0}),
            400,
            "rpm",
        ),
        (
            json!({"username": "dave", "password": PW, "role": "viewer", "budget": {"amount": 1, "period": "hourly"}}),
            400,
            "budget.period",
        ),
        (
            json!({"username": "dave", "password": PW, "role": "viewer", "colour": "red"}),
            400,
            "colour",
        ),
        (json!({"password": PW, "role": "viewer"}), 400, "username"),
    ];
    for (body, status, field) in cases {
        let (s, v) = admin.post("/api/users", body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        no_secrets(&v);
    }

    // List and read.
    let (s, l) = admin.get("/api/users").await;
    assert_eq!(s, 200);
    assert_eq!(l["total"], 1);
    no_secrets(&l);
    let (s, _) = admin.get("/api/users/999999").await;
    assert_eq!(s, 404);

    // PATCH: limits (null clears), role.
    let (s, v) = admin
        .call(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(json!({"rpm": null, "tpm": 5, "budget": null, "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rpm"], Value::Null);
    assert_eq!(v["tpm"], 5);
    assert_eq!(v["budget"], Value::Null);
    assert_eq!(v["role"], "viewer");
    assert_eq!(v["max_concurrency"], 2);
    let entry = env.gw.state.identities.load().user(id).cloned().unwrap();
    assert_eq!(entry.role, llm_link_gateway::identity::Role::Viewer);
    assert_eq!(entry.limits.rpm, None);

    // A new password ends the sessions; the new one works, the old does not.
    let token = env.login("carol@example.com").await;
    let (s, v) = admin
        .call(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(json!({"password": "new-password-42"})),
        )
        .await;
    assert_eq!(s, 200);
    no_secrets(&v);
    let (s, _) = env.call("GET", "/api/auth/me", &token, false, None).await;
    assert_eq!(s, 401);
    assert_eq!(
        env.login_raw("carol@example.com", PW, false).await.status(),
        401
    );
    let r = env
        .login_raw("carol@example.com", "new-password-42", false)
        .await;
    assert_eq!(r.status(), 200);
    let token: String = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .into();

    // Disabling ends the sessions and refuses logins with the same answer.
    let (s, v) = admin
        .call(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["disabled"], true);
    let (s, _) = env.call("GET", "/api/providers", &token, false, None).await;
    assert_eq!(s, 401);
    let r = env
        .login_raw("carol@example.com", "new-password-42", false)
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "invalid username or password"
    );

    // Delete.
    let (s, _) = admin.delete(&format!("/api/users/{id}")).await;
    assert_eq!(s, 200);
    let (s, _) = admin.get(&format!("/api/users/{id}")).await;
    assert_eq!(s, 404);
    assert!(env.gw.state.identities.load().user(id).is_none());

    let log = env.audit().await;
    for action in ["user.create", "user.update", "user.delete"] {
        assert!(log.iter().any(|a| a.action == action), "no {action}");
    }
    let pw_change = log
        .iter()
        .find(|a| a.action == "user.update" && a.details["changed"] == json!(["password"]))
        .unwrap();
    assert!(!pw_change.details.to_string().contains("new-password-42"));
    for a in &log {
        let d = a.details.to_string();
        assert!(
            !d.contains(PW) && !d.contains("new-password-42") && !d.contains("$argon2"),
            "{d}"
        );
    }
}

/// Without any admin token, the last enabled admin user cannot lock
/// everyone out; with a second admin it can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_stays_without_an_admin_token() {
    let db = TestDb::sqlite().await;
    let (store, layer) = db.open(&MasterKey::generate()).await;
    let root = llm_link_store::users::create(&store.db, "root", PW, "admin", "test")
        .await
        .unwrap();
    let mut cfg = config_from("", &[]);
    cfg.admin_token = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    let state = llm_link_server::AppState::with_store(&cfg, Some(store.clone()), layer).unwrap();
    llm_link_server::apply::reload_identities(&state, &store)
        .await
        .unwrap();
    tokio::spawn(llm_link_server::serve_on(listener, state.clone()));
    let gw = Gateway {
        base: format!("http://{addr}"),
        state,
        client: reqwest::Client::new(),
    };
    let env = Env { _db: db, gw, store };
    let token = env.login("root").await;
    let (s, v) = env
        .call("DELETE", &format!("/api/users/{root}"), &token, false, None)
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = env
        .call(
            "PATCH",
            &format!("/api/users/{root}"),
            &token,
            false,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = env
        .call(
            "PATCH",
            &format!("/api/users/{root}"),
            &token,
            false,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = env
        .call(
            "POST",
            "/api/users",
            &token,
            false,
            Some(json!({"username": "root2", "password": PW, "role": "admin"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = env
        .call(
            "PATCH",
            &format!("/api/users/{root}"),
            &token,
            false,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 200);
    // Demoted: the same session now lacks ManageUsers.
    let (s, _) = env.call("GET", "/api/users", &token, false, None).await;
    assert_eq!(s, 403);
}

// ---- the CLI ----------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_llm-link");

fn cli(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut c = std::process::Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("LLM_LINK_") || k.ends_with("_API_KEY") || k == "XDG_DATA_HOME" {
            c.env_remove(k);
        }
    }
    c.env("RUST_BACKTRACE", "0").env("LLM_LINK_DATA_DIR", data);
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            // A command refused before it reads stdin closes the pipe early.
            let _ = input.write_all(s.as_bytes());
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cli_creates_lists_and_disables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pw_line = format!("{PW}\n");

    let (code, out, err) = cli(
        &data,
        &["user", "create", "erin", "--role", "admin"],
        Some(&pw_line),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created user erin"), "{out}");
    assert!(!out.contains(PW) && !err.contains(PW));
    // Mistakes exit 2 with one line naming the field.
    for (args, stdin, needle) in [
        (
            vec!["user", "create", "erin", "--role", "admin"],
            pw_line.as_str(),
            "NAME",
        ),
        (
            vec!["user", "create", "bad name", "--role", "admin"],
            pw_line.as_str(),
            "NAME",
        ),
        (
            vec!["user", "create", "frank", "--role", "viewer"],
            "short\n",
            "password",
        ),
        (
            vec!["user", "create", "frank", "--role", "root"],
            pw_line.as_str(),
            "--role",
        ),
        (vec!["user", "disable", "nobody"], "", "NAME"),
    ] {
        let (code, _, err) = cli(&data, &args, Some(stdin));
        assert_eq!(code, 2, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains(PW), "{err}");
    }

    let (code, out, _) = cli(&data, &["user", "list"], None);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.contains("erin")).unwrap();
    assert!(out.lines().next().unwrap().contains("USERNAME"), "{out}");
    assert!(row.contains("admin") && row.ends_with("no"), "{row}");
    assert!(!out.contains("$argon2"));

    // A server over that database: erin logs in.
    let target = llm_link_store::DbTarget::SqliteFile(data.join("llm-link.db"));
    let (store, layer) = llm_link_store::boot::open_with_key(&target, MasterKey::generate())
        .await
        .unwrap();
    let gw = store_common::gateway(config_from("", &[]), store.clone(), layer).await;
    let env = Env {
        _db: TestDb::sqlite().await,
        gw,
        store,
    };
    let token = env.login("erin").await;

    // Disabled from the CLI: the poller's reload (here called directly, as
    // the poller does when the identity revision moves) refuses her.
    let (code, out, err) = cli(&data, &["user", "disable", "erin"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("disabled"), "{out}");
    llm_link_server::apply::reload_identities(&env.gw.state, &env.store)
        .await
        .unwrap();
    assert_eq!(env.login_raw("erin", PW, false).await.status(), 401);
    let (s, _) = env.call("GET", "/api/auth/me", &token, false, None).await;
    assert_eq!(s, 401);
    let (_, out, _) = cli(&data, &["user", "list"], None);
    let row = out.lines().find(|l| l.contains("erin")).unwrap();
    assert!(row.contains("yes"), "{row}");

    // Enabled again and a new password from stdin.
    assert_eq!(cli(&data, &["user", "enable", "erin"], None).0, 0);
    let (code, _, err) = cli(
        &data,
        &["user", "passwd", "erin"],
        Some("new-password-42\n"),
    );
    assert_eq!(code, 0, "{err}");
    llm_link_server::apply::reload_identities(&env.gw.state, &env.store)
        .await
        .unwrap();
    assert_eq!(env.login_raw("erin", PW, false).await.status(), 401);
    assert_eq!(
        env.login_raw("erin", "new-password-42", false)
            .await
            .status(),
        200
    );
    let log = env.audit().await;
    assert!(log
        .iter()
        .any(|a| a.action == "user.create" && a.actor == "cli"));
    assert!(log
        .iter()
        .any(|a| a.action == "user.update" && a.actor == "cli"));
}
