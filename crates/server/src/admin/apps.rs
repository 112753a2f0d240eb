//! `/api/apps`: app mappings (app name → routing rule, targets, fallback
//! chain, retry settings), and `/api/audit`, the log of admin changes.

use super::resource::{self, lookup, name_free, Changes, Filters, Resource, Stored, Table};
use super::rest::{self, AdminError, AdminResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use llm_link_store::rows::AppRow;
use llm_link_store::{now_ms, rfc3339, Store, Tx};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    resource::routes::<AppRow>("/api/apps", "/api/apps/{id}").route("/api/audit", get(audit))
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
pub struct AppBody {
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

/// `retry` merged into the stored retry settings.
fn retry(old: &Value, r: &RetryIn) -> AdminResult<Value> {
    let mut cfg = old.as_object().cloned().unwrap_or_default();
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
    Ok(Value::Object(cfg))
}

/// The fields an app mapping body sets.
fn apply(row: &mut AppRow, b: &AppBody) -> AdminResult<Changes> {
    let mut c = Changes::default();
    c.check("name", b.name.as_deref(), &mut row.app_name, |f, n| {
        rest::check_name(f, n)?;
        Ok(n.to_string())
    })?;
    c.copy("description", b.description.clone(), &mut row.description);
    c.copy("enabled", b.enabled, &mut row.enabled);
    c.check(
        "routing_rule",
        b.routing_rule.as_deref(),
        &mut row.routing_rule,
        |f, r| {
            let r = r.trim().replace('-', "_");
            if !ROUTING_RULES.contains(&r.as_str()) {
                return Err(AdminError::invalid(
                    f,
                    format!("must be one of {}", ROUTING_RULES.join(", ")),
                ));
            }
            Ok(r)
        },
    )?;
    c.check("targets", b.targets.as_deref(), &mut row.targets, targets)?;
    c.check(
        "fallback_chain",
        b.fallback_chain.as_deref(),
        &mut row.fallback_chain,
        targets,
    )?;
    let old = row.retry_config.clone();
    c.check("retry", b.retry.as_ref(), &mut row.retry_config, |_, r| {
        retry(&old, r)
    })?;
    if row.app_name.is_empty() {
        return Err(AdminError::invalid("name", "this field is required"));
    }
    Ok(c)
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

impl Table for AppRow {
    const NOUN: &'static str = "app mapping";

    async fn all(tx: &mut Tx) -> Stored<Vec<AppRow>> {
        tx.apps().await
    }

    async fn by_id(tx: &mut Tx, id: i64) -> Stored<Option<AppRow>> {
        tx.app(id).await
    }

    async fn by_name(tx: &mut Tx, name: &str) -> Stored<Option<AppRow>> {
        tx.app_by_name(name).await
    }
}

impl Resource for AppRow {
    type Scope = ();
    type Path = String;
    type Body = AppBody;
    type Children = ();
    const KIND: &'static str = "app";
    const LIST: &'static str = "apps";

    fn id(&self) -> i64 {
        self.id
    }

    fn target(&self) -> String {
        format!("app {} ({})", self.id, self.app_name)
    }

    fn missing(id: &String) -> AdminError {
        AdminError::not_found(format!("no app mapping `{id}`"))
    }

    async fn list(st: &AppState, _: &(), q: &HashMap<String, String>) -> AdminResult<Vec<Value>> {
        let store = rest::store(st)?;
        let q = Filters::new(q, &["enabled", "name"])?;
        let enabled = q.flag("enabled")?;
        let apps = resource::rows::<AppRow>(store).await?;
        Ok(apps
            .iter()
            .filter(|a| enabled.is_none_or(|e| a.enabled == e))
            .filter(|a| q.get("name").is_none_or(|n| a.app_name.contains(n)))
            .map(app_json)
            .collect())
    }

    async fn find(_: &AppState, store: &Store, id: &String) -> AdminResult<AppRow> {
        lookup(store, id).await?.ok_or_else(|| Self::missing(id))
    }

    async fn show(&self, _: &AppState, _: &Store) -> AdminResult<Value> {
        Ok(app_json(self))
    }

    async fn create(_: &AppState, _: &Store, _: &(), b: &AppBody) -> AdminResult<(AppRow, ())> {
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
        apply(&mut row, b)?;
        Ok((row, ()))
    }

    async fn patch(&mut self, _: &AppState, _: &Store, b: &AppBody) -> AdminResult<Changes> {
        let changed = apply(self, b)?;
        self.updated_at = now_ms();
        Ok(changed)
    }

    async fn taken(&self, tx: &mut Tx, before: Option<&AppRow>) -> AdminResult<()> {
        let before = before.map(|b| b.app_name.as_str());
        name_free::<AppRow>(tx, &self.app_name, before, "an app mapping").await
    }

    async fn insert(&mut self, tx: &mut Tx, _: ()) -> AdminResult<Value> {
        self.id = tx.insert_app(self).await?;
        Ok(json!({}))
    }

    async fn update(
        &self,
        tx: &mut Tx,
        _: &Store,
        _: &AppBody,
        changed: Changes,
    ) -> AdminResult<Option<Value>> {
        Ok(tx
            .update_app(self)
            .await?
            .then(|| json!({ "changed": changed })))
    }

    async fn delete(&self, tx: &mut Tx) -> AdminResult<Option<Value>> {
        Ok(tx.delete_app(self.id).await?.then(|| json!({})))
    }
}

async fn audit(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let store = rest::store(&st)?;
    let q = Filters::new(&q, &["limit", "before"])?;
    let limit = q.limit(100, 1000)?;
    let before = q.number("before")?;
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
