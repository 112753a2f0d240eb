//! `/api/apps`: app mappings (app name → routing rule, targets, fallback
//! chain, retry settings), and `/api/audit`, the log of admin changes.

use super::rest::{self, begin, body, commit, ident, Actor, AdminError, AdminResult, Ident};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use llm_link_store::rows::AppRow;
use llm_link_store::{now_ms, rfc3339, Store};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/apps", get(list).post(create))
        .route(
            "/api/apps/{id}",
            get(read).put(update).patch(update).delete(remove),
        )
        .route("/api/audit", get(audit))
}

pub const ROUTING_RULES: &[&str] = &[
    "priority",
    "round_robin",
    "weighted",
    "least_connections",
    "latency",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryIn {
    max_retries: Option<i64>,
    backoff_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppBody {
    #[serde(alias = "app_name")]
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    routing_rule: Option<String>,
    targets: Option<Vec<String>>,
    fallback_chain: Option<Vec<String>>,
    #[serde(alias = "retry_config")]
    retry: Option<RetryIn>,
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[allow(dead_code)]
    created_at: Option<IgnoredAny>,
    #[allow(dead_code)]
    updated_at: Option<IgnoredAny>,
}

fn targets(field: &str, list: &[String]) -> AdminResult<Vec<String>> {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let t = t.trim();
        if t.is_empty() || t.len() > 300 {
            return Err(AdminError::invalid(
                format!("{field}[{i}]"),
                "must be a provider name, `provider/model` or a model id",
            ));
        }
        out.push(t.to_string());
    }
    Ok(out)
}

fn patch(row: &mut AppRow, b: &AppBody) -> AdminResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    if let Some(n) = &b.name {
        rest::check_name("name", n)?;
        row.app_name = n.clone();
        changed.push("name");
    }
    if let Some(d) = &b.description {
        row.description = d.clone();
        changed.push("description");
    }
    if let Some(e) = b.enabled {
        row.enabled = e;
        changed.push("enabled");
    }
    if let Some(r) = &b.routing_rule {
        let r = r.trim().replace('-', "_");
        if !ROUTING_RULES.contains(&r.as_str()) {
            return Err(AdminError::invalid(
                "routing_rule",
                format!("must be one of {}", ROUTING_RULES.join(", ")),
            ));
        }
        row.routing_rule = r;
        changed.push("routing_rule");
    }
    if let Some(t) = &b.targets {
        row.targets = targets("targets", t)?;
        changed.push("targets");
    }
    if let Some(t) = &b.fallback_chain {
        row.fallback_chain = targets("fallback_chain", t)?;
        changed.push("fallback_chain");
    }
    if let Some(r) = &b.retry {
        let mut cfg = row.retry_config.as_object().cloned().unwrap_or_default();
        if let Some(n) = r.max_retries {
            cfg.insert(
                "max_retries".into(),
                json!(rest::check_range("retry.max_retries", n, 0, 10)?),
            );
        }
        if let Some(n) = r.backoff_ms {
            cfg.insert(
                "backoff_ms".into(),
                json!(rest::check_range("retry.backoff_ms", n, 0, 60_000)?),
            );
        }
        row.retry_config = Value::Object(cfg);
        changed.push("retry");
    }
    if row.app_name.is_empty() {
        return Err(AdminError::invalid("name", "this field is required"));
    }
    Ok(changed)
}

fn app_json(a: &AppRow) -> Value {
    let d = llm_link_gateway::config::catalog::RetrySettings::default();
    json!({
        "id": a.id,
        "name": a.app_name,
        "description": a.description,
        "enabled": a.enabled,
        "routing_rule": a.routing_rule,
        "targets": a.targets,
        "fallback_chain": a.fallback_chain,
        "retry": {
            "max_retries": a.retry_config.get("max_retries").cloned().unwrap_or(json!(d.max_retries)),
            "backoff_ms": a.retry_config.get("backoff_ms").cloned().unwrap_or(json!(d.backoff_ms)),
        },
        "created_at": rfc3339(a.created_at),
        "updated_at": rfc3339(a.updated_at),
    })
}

async fn find(store: &Store, id: &str) -> AdminResult<AppRow> {
    let mut tx = store.db.begin_read().await?;
    let a = match ident(id) {
        Ident::Id(n) => tx.app(n).await?,
        Ident::Name(n) => tx.app_by_name(&n).await?,
    };
    tx.rollback().await?;
    a.ok_or_else(|| AdminError::not_found(format!("no app mapping `{id}`")))
}

async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let q = rest::query(&q, &["enabled", "name"])?;
    let enabled = rest::bool_param(&q, "enabled")?;
    let mut tx = store.db.begin_read().await?;
    let apps = tx.apps().await?;
    tx.rollback().await?;
    let data: Vec<Value> = apps
        .iter()
        .filter(|a| enabled.is_none_or(|e| a.enabled == e))
        .filter(|a| {
            q.get("name")
                .is_none_or(|n| a.app_name.contains(n.as_str()))
        })
        .map(app_json)
        .collect();
    let total = data.len();
    Ok(Json(json!({"apps": data, "total": total})).into_response())
}

async fn read(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> AdminResult {
    let store = rest::store(&st)?;
    Ok(Json(app_json(&find(store, &id).await?)).into_response())
}

async fn create(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: AppBody = body(&raw)?;
    let now = now_ms();
    let mut row = AppRow {
        id: 0,
        app_name: String::new(),
        description: String::new(),
        enabled: true,
        routing_rule: "priority".into(),
        targets: Vec::new(),
        fallback_chain: Vec::new(),
        retry_config: json!({}),
        created_at: now,
        updated_at: now,
    };
    patch(&mut row, &b)?;
    let mut w = begin(store).await?;
    if w.tx.app_by_name(&row.app_name).await?.is_some() {
        return Err(AdminError::conflict(
            "name",
            format!("an app mapping named `{}` exists", row.app_name),
        ));
    }
    row.id = w.tx.insert_app(&row).await?;
    commit(
        w,
        &st,
        who,
        "app.create",
        &format!("app {} ({})", row.id, row.app_name),
        &json!({}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(app_json(&row))).into_response())
}

async fn update(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
    raw: Bytes,
) -> AdminResult {
    let store = rest::store(&st)?;
    let b: AppBody = body(&raw)?;
    let current = find(store, &id).await?;
    let mut row = current.clone();
    let changed = patch(&mut row, &b)?;
    row.updated_at = now_ms();
    let mut w = begin(store).await?;
    if row.app_name != current.app_name && w.tx.app_by_name(&row.app_name).await?.is_some() {
        return Err(AdminError::conflict(
            "name",
            format!("an app mapping named `{}` exists", row.app_name),
        ));
    }
    if !w.tx.update_app(&row).await? {
        return Err(AdminError::not_found(format!("no app mapping `{id}`")));
    }
    commit(
        w,
        &st,
        who,
        "app.update",
        &format!("app {} ({})", row.id, row.app_name),
        &json!({ "changed": changed }),
    )
    .await?;
    Ok(Json(app_json(&row)).into_response())
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let row = find(store, &id).await?;
    let mut w = begin(store).await?;
    if !w.tx.delete_app(row.id).await? {
        return Err(AdminError::not_found(format!("no app mapping `{id}`")));
    }
    commit(
        w,
        &st,
        who,
        "app.delete",
        &format!("app {} ({})", row.id, row.app_name),
        &json!({}),
    )
    .await?;
    Ok(Json(json!({"status": "deleted", "id": row.id})).into_response())
}

async fn audit(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let q = rest::query(&q, &["limit", "before"])?;
    let num = |k: &str, d: i64| -> AdminResult<i64> {
        match q.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| AdminError::invalid(format!("query.{k}"), "must be a number")),
        }
    };
    let limit = rest::check_range("query.limit", num("limit", 100)?, 1, 1000)?;
    let before = q.get("before").map(|_| num("before", 0)).transpose()?;
    let mut tx = store.db.begin_read().await?;
    let rows = tx.audit_log(limit, before).await?;
    tx.rollback().await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.id, "at": rfc3339(r.at), "actor": r.actor, "action": r.action, "target": r.target, "details": r.details})
        })
        .collect();
    Ok(Json(json!({"entries": data})).into_response())
}
