//! `key create`, `key list`, `key revoke`: virtual keys from the command
//! line, written straight to the database with the admin API's checks,
//! ownership rules and audit rows (actor `cli`). Running servers apply the
//! change within seconds (they poll the identity revision). Mistakes exit 2
//! with one line naming the flag.

use crate::args::{say, usage_error, KeyCreateArgs, StoreArgs};
use crate::commands::{block_on, env};
use llm_link_server::admin::caller::Caller;
use llm_link_server::admin::rest::AdminError;
use llm_link_server::admin::vkeys;
use llm_link_store::boot::{self, Opened};
use llm_link_store::{now_ms, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::process::ExitCode;

fn caller() -> Caller {
    Caller::admin_token("cli".into())
}

/// The flag (or argument) an API field came from.
fn flag(field: &str) -> &str {
    let base = field.split('[').next().unwrap_or(field);
    match base {
        "name" => "NAME",
        "user_id" => "--user",
        "models" => "--models",
        "expires_at" => "--expires",
        "rpm" => "--rpm",
        "tpm" => "--tpm",
        "max_concurrency" => "--max-concurrency",
        "budget" | "budget.amount" => "--budget",
        "budget.period" => "--period",
        "id" => "ID",
        other => other,
    }
}

fn failed(e: AdminError) -> ExitCode {
    match e.field.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => usage_error(format!("{}: {}", flag(f), e.message)),
        None => usage_error(e.message),
    }
}

/// Opens the database the flags name and runs `f` on it.
fn with_store<F, Fut>(a: &StoreArgs, f: F) -> ExitCode
where
    F: FnOnce(std::sync::Arc<Store>) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    block_on(async move {
        let opened: Opened =
            match boot::open(a.database.as_deref(), a.data_dir.as_deref(), true, &env).await {
                Ok(Some(o)) => o,
                Ok(None) => return usage_error("--database: `none` has no virtual keys to manage"),
                Err(e) => return usage_error(e),
            };
        let store = opened.store.clone();
        let code = f(store.clone()).await;
        store.db.close().await;
        drop(opened);
        code
    })
}

/// A user's id by name.
async fn user_id(store: &Store, name: &str) -> Result<i64, ExitCode> {
    let found = async {
        let mut tx = store.db.begin_read().await?;
        let u = tx.user_by_name(name).await?;
        tx.rollback().await?;
        Ok::<_, llm_link_store::StoreError>(u)
    }
    .await;
    match found {
        Ok(Some(u)) => Ok(u.id),
        Ok(None) => Err(usage_error(format!("--user: no user named `{name}`"))),
        Err(e) => Err(usage_error(format!("--database: {e}"))),
    }
}

pub fn create(a: &KeyCreateArgs) -> ExitCode {
    if a.period.is_some() && a.budget.is_none() {
        return usage_error("--period: needs --budget");
    }
    let mut body = json!({"name": a.name});
    if let Some(m) = &a.models {
        body["models"] = json!(m);
    }
    if let Some(t) = &a.expires {
        // Unix milliseconds as a number; anything else as RFC 3339 text.
        body["expires_at"] = match t.trim().parse::<i64>() {
            Ok(ms) => json!(ms),
            Err(_) => json!(t),
        };
    }
    for (k, v) in [
        ("rpm", a.rpm),
        ("tpm", a.tpm),
        ("max_concurrency", a.max_concurrency),
    ] {
        if let Some(n) = v {
            body[k] = json!(n);
        }
    }
    if let Some(amount) = a.budget {
        body["budget"] = json!({"amount": amount, "period": a.period});
    }
    with_store(&a.store, |store| async move {
        if let Some(name) = &a.user {
            match user_id(&store, name).await {
                Ok(id) => body["user_id"] = json!(id),
                Err(code) => return code,
            }
        }
        let b = match vkeys::parse_body(&body) {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        let (row, key) = match vkeys::create_key(&store, &caller(), &b).await {
            Ok(x) => x,
            Err(e) => return failed(e),
        };
        if a.json {
            say(vkeys::with_key(&row, &key, now_ms()).to_string());
            return ExitCode::SUCCESS;
        }
        let owner = a
            .user
            .as_deref()
            .map(|u| format!(" for user {u}"))
            .unwrap_or_default();
        say(format!("created key {} `{}`{owner}:", row.id, row.name));
        say(&key);
        say("shown once: llm-link keeps only its hash. Running servers accept it within seconds.");
        ExitCode::SUCCESS
    })
}

pub fn list(user: Option<&str>, as_json: bool, store_args: &StoreArgs) -> ExitCode {
    with_store(store_args, |store| async move {
        let only = match user {
            Some(name) => match user_id(&store, name).await {
                Ok(id) => Some(id),
                Err(code) => return code,
            },
            None => None,
        };
        let rows = match vkeys::list_keys(&store, &caller()).await {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let names: HashMap<i64, String> = async {
            let mut tx = store.db.begin_read().await.ok()?;
            let users = tx.users().await.ok()?;
            let _ = tx.rollback().await;
            Some(users.into_iter().map(|u| (u.id, u.username)).collect())
        }
        .await
        .unwrap_or_default();
        let now = now_ms();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|k| only.is_none() || k.user_id == only)
            .collect();
        if as_json {
            let keys: Vec<Value> = rows.iter().map(|k| vkeys::show(k, now)).collect();
            say(json!({"keys": keys, "total": keys.len()}).to_string());
            return ExitCode::SUCCESS;
        }
        if rows.is_empty() {
            say("no virtual keys");
            return ExitCode::SUCCESS;
        }
        say(format!(
            "{:<6} {:<24} {:<10} {:<16} {:<8} MODELS",
            "ID", "NAME", "HINT", "USER", "STATUS"
        ));
        for k in &rows {
            let user = k
                .user_id
                .map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string()))
                .unwrap_or_else(|| "-".into());
            let models = k
                .models
                .as_ref()
                .map(|m| m.join(","))
                .unwrap_or_else(|| "any".into());
            say(format!(
                "{:<6} {:<24} {:<10} {:<16} {:<8} {models}",
                k.id,
                k.name,
                k.hint,
                user,
                vkeys::status(k, now)
            ));
        }
        ExitCode::SUCCESS
    })
}

pub fn revoke(id: &str, store_args: &StoreArgs) -> ExitCode {
    with_store(store_args, |store| async move {
        match vkeys::revoke_key(&store, &caller(), id).await {
            Ok(k) => {
                say(format!(
                    "revoked key {} `{}` ({}); running servers refuse it within seconds",
                    k.id, k.name, k.hint
                ));
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        }
    })
}
