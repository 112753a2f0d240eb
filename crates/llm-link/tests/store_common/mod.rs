//! Storage test harness: a database per test on either engine (SQLite in a
//! temporary folder; PostgreSQL in a schema of its own, dropped afterwards)
//! and a gateway whose runtime serves what the database holds.
//!
//! PostgreSQL is expected at 127.0.0.1:5432 (trust auth, database `test`;
//! override with LLM_LINK_TEST_PG_URL). When it cannot be reached the tests
//! fail with a clear message, unless LLM_LINK_SKIP_PG=1.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::Gateway;
use llm_link_gateway::config::catalog::DbLayer;
use llm_link_gateway::config::{Config, Secret};
use llm_link_server::AppState;
use llm_link_store::crypto::MasterKey;
use llm_link_store::{DbTarget, Store};
use serde_json::Value;
use sqlx::Connection;
use std::sync::Arc;

/// Runs a storage test body once per engine: `both!(name)` makes
/// `name::sqlite` and `name::postgres` from `async fn name(engine: Engine)`.
#[allow(unused_macros)]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await
            }
        }
    };
}

pub const ADMIN: &str = "test-admin-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub engine: Engine,
    pub target: DbTarget,
    pub dir: tempfile::TempDir,
    /// (admin URL, schema) for PostgreSQL.
    pg: Option<(String, String)>,
}

fn pg_candidates() -> Vec<String> {
    match std::env::var("LLM_LINK_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => vec![u],
        _ => vec![
            "postgres://postgres@127.0.0.1:5432/test".into(),
            "postgres://root@127.0.0.1:5432/test".into(),
        ],
    }
}

fn skip_pg() -> bool {
    std::env::var("LLM_LINK_SKIP_PG").is_ok_and(|v| v == "1")
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            engine: Engine::Sqlite,
            target: DbTarget::SqliteFile(dir.path().join("llm-link.db")),
            dir,
            pg: None,
        }
    }

    /// `None` only when PostgreSQL is unreachable and LLM_LINK_SKIP_PG=1.
    pub async fn postgres() -> Option<TestDb> {
        let mut last = String::new();
        for url in pg_candidates() {
            match sqlx::PgConnection::connect(&url).await {
                Ok(mut c) => {
                    let schema = format!(
                        "t_{}_{}",
                        std::process::id(),
                        fastrand::u64(..) % 1_000_000_000
                    );
                    sqlx::query(&format!("CREATE SCHEMA {schema}"))
                        .execute(&mut c)
                        .await
                        .unwrap();
                    let _ = c.close().await;
                    let sep = if url.contains('?') { '&' } else { '?' };
                    let target = DbTarget::Postgres(format!(
                        "{url}{sep}options=-c%20search_path%3D{schema}"
                    ));
                    return Some(TestDb {
                        engine: Engine::Postgres,
                        target,
                        dir: tempfile::tempdir().unwrap(),
                        pg: Some((url, schema)),
                    });
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if skip_pg() {
            eprintln!("PostgreSQL unreachable ({last}); skipped because LLM_LINK_SKIP_PG=1");
            return None;
        }
        panic!(
            "PostgreSQL is not reachable ({last}). The storage tests run on both engines: start PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`), point LLM_LINK_TEST_PG_URL at one, or set LLM_LINK_SKIP_PG=1 to skip them"
        );
    }

    pub async fn on(engine: Engine) -> Option<TestDb> {
        match engine {
            Engine::Sqlite => Some(TestDb::sqlite().await),
            Engine::Postgres => TestDb::postgres().await,
        }
    }

    pub async fn open(&self, key: &MasterKey) -> (Arc<Store>, DbLayer) {
        llm_link_store::boot::open_with_key(&self.target, key.clone())
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((url, schema)) = self.pg.take() else {
            return;
        };
        // Async drop does not exist: clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// A gateway over `cfg` plus the database; the admin token is [`ADMIN`].
pub async fn gateway(cfg: Config, store: Arc<Store>, layer: DbLayer) -> Gateway {
    gateway_with(cfg, store, layer, None).await
}

/// As [`gateway`], with its own limits-and-budgets governor (a replica
/// sharing budgets through Redis).
pub async fn gateway_with(
    mut cfg: Config,
    store: Arc<Store>,
    layer: DbLayer,
    governor: Option<Arc<llm_link_gateway::govern::Governor>>,
) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.port = addr.port();
    if cfg.admin_token.is_none() {
        cfg.admin_token = Some(Secret::new(ADMIN));
    }
    let mut state = AppState::with_store(&cfg, Some(store.clone()), layer).unwrap();
    if let Some(g) = governor {
        state = state.with_governor(g).unwrap();
    }
    llm_link_server::apply::reload_identities(&state, &store)
        .await
        .unwrap();
    let st = state.clone();
    tokio::spawn(async move {
        llm_link_server::serve_on(listener, st).await.unwrap();
    });
    Gateway {
        base: format!("http://{addr}"),
        state,
        client: reqwest::Client::new(),
    }
}

/// Admin calls with the token.
pub struct Admin<'a> {
    pub gw: &'a Gateway,
    pub token: String,
}

impl<'a> Admin<'a> {
    pub fn new(gw: &'a Gateway) -> Admin<'a> {
        Admin {
            gw,
            token: ADMIN.into(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .gw
            .client
            .request(m, format!("{}{path}", self.gw.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }
}

/// A chat request body.
pub fn chat(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}
