//! The tables as Rust types, and every query, written once for both engines.
//!
//! Lists are small (providers, keys, models, apps: tens to hundreds of rows),
//! so filtering happens in Rust and updates are read-modify-write inside a
//! transaction.

use super::{on, Result, StoreError, Tx};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

/// Typed column access shared by both engines' rows.
pub(crate) trait Get {
    fn i64(&self, c: &str) -> Result<i64>;
    fn opt_i64(&self, c: &str) -> Result<Option<i64>>;
    fn text(&self, c: &str) -> Result<String>;
    fn opt_text(&self, c: &str) -> Result<Option<String>>;
    fn boolean(&self, c: &str) -> Result<bool>;
    fn opt_bool(&self, c: &str) -> Result<Option<bool>>;
    fn opt_f64(&self, c: &str) -> Result<Option<f64>>;
}

macro_rules! impl_get {
    ($row:ty) => {
        impl Get for $row {
            fn i64(&self, c: &str) -> Result<i64> {
                Ok(self.try_get::<i64, _>(c)?)
            }
            fn opt_i64(&self, c: &str) -> Result<Option<i64>> {
                Ok(self.try_get::<Option<i64>, _>(c)?)
            }
            fn text(&self, c: &str) -> Result<String> {
                Ok(self.try_get::<String, _>(c)?)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>> {
                Ok(self.try_get::<Option<String>, _>(c)?)
            }
            fn boolean(&self, c: &str) -> Result<bool> {
                Ok(self.try_get::<bool, _>(c)?)
            }
            fn opt_bool(&self, c: &str) -> Result<Option<bool>> {
                Ok(self.try_get::<Option<bool>, _>(c)?)
            }
            fn opt_f64(&self, c: &str) -> Result<Option<f64>> {
                Ok(self.try_get::<Option<f64>, _>(c)?)
            }
        }
    };
}
impl_get!(sqlx::sqlite::SqliteRow);
impl_get!(sqlx::postgres::PgRow);

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(r: &impl Get, c: &str) -> Result<T> {
    let t = r.text(c)?;
    serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{c}: {e}")))
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A model a database provider serves (`upstream` defaults to `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpecRow {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub description: String,
    pub enabled: bool,
    pub priority: i64,
    pub weight: i64,
    pub models: Vec<ModelSpecRow>,
    pub default_model: Option<String>,
    pub forward_any_model: bool,
    pub passthrough: bool,
    pub key_usage_mode: String,
    pub connect_timeout_ms: Option<i64>,
    pub first_byte_timeout_ms: Option<i64>,
    pub idle_timeout_ms: Option<i64>,
    pub max_concurrency: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// Ciphertext of a JSON object of extra upstream headers.
    pub headers: Option<String>,
    /// Serves the Responses API itself; `None`: as the kind says.
    pub responses: Option<bool>,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROVIDER_COLS: &str = "id, name, kind, base_url, description, enabled, priority, weight, models, default_model, forward_any_model, passthrough, key_usage_mode, connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms, max_concurrency, rpm_limit, tpm_limit, headers, responses, created_at, updated_at";

fn provider(r: &impl Get) -> Result<ProviderRow> {
    Ok(ProviderRow {
        id: r.i64("id")?,
        name: r.text("name")?,
        kind: r.text("kind")?,
        base_url: r.opt_text("base_url")?,
        description: r.text("description")?,
        enabled: r.boolean("enabled")?,
        priority: r.i64("priority")?,
        weight: r.i64("weight")?,
        models: json_col(r, "models")?,
        default_model: r.opt_text("default_model")?,
        forward_any_model: r.boolean("forward_any_model")?,
        passthrough: r.boolean("passthrough")?,
        key_usage_mode: r.text("key_usage_mode")?,
        connect_timeout_ms: r.opt_i64("connect_timeout_ms")?,
        first_byte_timeout_ms: r.opt_i64("first_byte_timeout_ms")?,
        idle_timeout_ms: r.opt_i64("idle_timeout_ms")?,
        max_concurrency: r.opt_i64("max_concurrency")?,
        rpm_limit: r.opt_i64("rpm_limit")?,
        tpm_limit: r.opt_i64("tpm_limit")?,
        responses: r.opt_bool("responses")?,
        headers: r.opt_text("headers")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

/// An upstream key, owned by a provider or by a catalog model.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: i64,
    pub provider_id: Option<i64>,
    pub llm_model_id: Option<i64>,
    pub label: String,
    /// Ciphertext.
    pub secret: String,
    /// Masked form, safe to show.
    pub hint: String,
    /// `enabled`, `disabled` or `cooling`.
    pub status: String,
    pub weight: i64,
    pub cooling_until: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const KEY_COLS: &str = "id, provider_id, llm_model_id, label, secret, hint, status, weight, cooling_until, last_error, last_error_at, last_used_at, created_at, updated_at";

fn key(r: &impl Get) -> Result<KeyRow> {
    Ok(KeyRow {
        id: r.i64("id")?,
        provider_id: r.opt_i64("provider_id")?,
        llm_model_id: r.opt_i64("llm_model_id")?,
        label: r.text("label")?,
        secret: r.text("secret")?,
        hint: r.text("hint")?,
        status: r.text("status")?,
        weight: r.i64("weight")?,
        cooling_until: r.opt_i64("cooling_until")?,
        last_error: r.opt_text("last_error")?,
        last_error_at: r.opt_i64("last_error_at")?,
        last_used_at: r.opt_i64("last_used_at")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

/// A catalog entry, in the shape of `/api/v1/llm-models`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub model_id: String,
    pub provider: String,
    pub model_type: String,
    pub description: String,
    /// `enabled`, `disabled` or `inactive`.
    pub status: String,
    pub base_url: Option<String>,
    pub upstream_model: Option<String>,
    pub auth_type: String,
    /// `single` or `round_robin`.
    pub key_usage_mode: String,
    pub context_window: Option<i64>,
    pub max_tokens: Option<i64>,
    pub supports_vision: bool,
    pub supports_tools: bool,
    /// Per million tokens.
    pub input_price: Option<f64>,
    pub output_price: Option<f64>,
    /// Per million cached prompt tokens; `None`: billed at `input_price`.
    pub cached_input_price: Option<f64>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const MODEL_COLS: &str = "id, name, model_id, provider, type, description, status, base_url, upstream_model, auth_type, key_usage_mode, context_window, max_tokens, supports_vision, supports_tools, input_price, output_price, cached_input_price, rpm_limit, tpm_limit, created_at, updated_at";

fn model(r: &impl Get) -> Result<ModelRow> {
    Ok(ModelRow {
        id: r.i64("id")?,
        name: r.text("name")?,
        model_id: r.text("model_id")?,
        provider: r.text("provider")?,
        model_type: r.text("type")?,
        description: r.text("description")?,
        status: r.text("status")?,
        base_url: r.opt_text("base_url")?,
        upstream_model: r.opt_text("upstream_model")?,
        auth_type: r.text("auth_type")?,
        key_usage_mode: r.text("key_usage_mode")?,
        context_window: r.opt_i64("context_window")?,
        max_tokens: r.opt_i64("max_tokens")?,
        supports_vision: r.boolean("supports_vision")?,
        supports_tools: r.boolean("supports_tools")?,
        input_price: r.opt_f64("input_price")?,
        output_price: r.opt_f64("output_price")?,
        cached_input_price: r.opt_f64("cached_input_price")?,
        rpm_limit: r.opt_i64("rpm_limit")?,
        tpm_limit: r.opt_i64("tpm_limit")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

/// An app mapping: app name → routing rule, targets, fallback chain, retries.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    pub id: i64,
    pub app_name: String,
    pub description: String,
    pub enabled: bool,
    pub routing_rule: String,
    pub targets: Vec<String>,
    pub fallback_chain: Vec<String>,
    pub retry_config: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

const APP_COLS: &str = "id, app_name, description, enabled, routing_rule, targets, fallback_chain, retry_config, created_at, updated_at";

fn app(r: &impl Get) -> Result<AppRow> {
    Ok(AppRow {
        id: r.i64("id")?,
        app_name: r.text("app_name")?,
        description: r.text("description")?,
        enabled: r.boolean("enabled")?,
        routing_rule: r.text("routing_rule")?,
        targets: json_col(r, "targets")?,
        fallback_chain: json_col(r, "fallback_chain")?,
        retry_config: json_col(r, "retry_config")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
}

fn audit(r: &impl Get) -> Result<AuditRow> {
    Ok(AuditRow {
        id: r.i64("id")?,
        at: r.i64("at")?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.text("target")?,
        details: json_col(r, "details")?,
    })
}

/// Everything the runtime is built from, read in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub providers: Vec<ProviderRow>,
    pub keys: Vec<KeyRow>,
    pub models: Vec<ModelRow>,
    pub apps: Vec<AppRow>,
}

// ---- writes -----------------------------------------------------------------
//
// A `*_COLS` list is `id`, the written columns, then `created_at, updated_at`.
// An insert writes all but `id`; an update all but `id`, `created_at` and the
// columns named fixed, ending `WHERE id = $n`. Each `bind_*!` binds the
// columns between `id` (or the fixed ones) and `created_at`, in list order.

/// `INSERT INTO table (cols but id) VALUES ($1, …) RETURNING id`.
pub(crate) fn insert_sql(table: &str, cols: &str) -> String {
    let cols: Vec<&str> = cols.split(", ").filter(|c| *c != "id").collect();
    let values: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) RETURNING id",
        cols.join(", "),
        values.join(", ")
    )
}

/// `UPDATE table SET c = $1, … WHERE id = $n`, leaving out `id`,
/// `created_at` and `fixed`.
pub(crate) fn update_sql(table: &str, cols: &str, fixed: &[&str]) -> String {
    let set: Vec<String> = cols
        .split(", ")
        .filter(|c| !matches!(*c, "id" | "created_at") && !fixed.contains(c))
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    format!(
        "UPDATE {table} SET {} WHERE id = ${}",
        set.join(", "),
        set.len() + 1
    )
}

/// A key's owner, set at insert only.
const KEY_OWNER: &[&str] = &["provider_id", "llm_model_id"];

macro_rules! bind_provider {
    ($q:expr, $p:expr, $models:expr) => {
        $q.bind(&$p.name)
            .bind(&$p.kind)
            .bind(&$p.base_url)
            .bind(&$p.description)
            .bind($p.enabled)
            .bind($p.priority)
            .bind($p.weight)
            .bind($models)
            .bind(&$p.default_model)
            .bind($p.forward_any_model)
            .bind($p.passthrough)
            .bind(&$p.key_usage_mode)
            .bind($p.connect_timeout_ms)
            .bind($p.first_byte_timeout_ms)
            .bind($p.idle_timeout_ms)
            .bind($p.max_concurrency)
            .bind($p.rpm_limit)
            .bind($p.tpm_limit)
            .bind(&$p.headers)
            .bind($p.responses)
    };
}

macro_rules! bind_key {
    ($q:expr, $k:expr) => {
        $q.bind(&$k.label)
            .bind(&$k.secret)
            .bind(&$k.hint)
            .bind(&$k.status)
            .bind($k.weight)
            .bind($k.cooling_until)
            .bind(&$k.last_error)
            .bind($k.last_error_at)
            .bind($k.last_used_at)
    };
}

macro_rules! bind_model {
    ($q:expr, $m:expr) => {
        $q.bind(&$m.name)
            .bind(&$m.model_id)
            .bind(&$m.provider)
            .bind(&$m.model_type)
            .bind(&$m.description)
            .bind(&$m.status)
            .bind(&$m.base_url)
            .bind(&$m.upstream_model)
            .bind(&$m.auth_type)
            .bind(&$m.key_usage_mode)
            .bind($m.context_window)
            .bind($m.max_tokens)
            .bind($m.supports_vision)
            .bind($m.supports_tools)
            .bind($m.input_price)
            .bind($m.output_price)
            .bind($m.cached_input_price)
            .bind($m.rpm_limit)
            .bind($m.tpm_limit)
    };
}

/// An app row's JSON columns, encoded once for either engine.
struct AppJson {
    targets: String,
    chain: String,
    retry: String,
}

impl AppJson {
    fn of(a: &AppRow) -> AppJson {
        AppJson {
            targets: to_json(&a.targets),
            chain: to_json(&a.fallback_chain),
            retry: to_json(&a.retry_config),
        }
    }
}

macro_rules! bind_app {
    ($q:expr, $a:expr, $j:expr) => {
        $q.bind(&$a.app_name)
            .bind(&$a.description)
            .bind($a.enabled)
            .bind(&$a.routing_rule)
            .bind(&$j.targets)
            .bind(&$j.chain)
            .bind(&$j.retry)
    };
}

/// Runs a SELECT once per engine and maps every row.
macro_rules! select_all {
    ($tx:expr, $sql:expr, $map:expr $(, $b:expr)*) => {
        on!($tx, |c| {
            sqlx::query($sql)
                $(.bind($b))*
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map($map)
                .collect()
        })
    };
}
pub(crate) use select_all;

/// Runs a SELECT once per engine and maps the row, if any.
macro_rules! select_one {
    ($tx:expr, $sql:expr, $map:expr $(, $b:expr)*) => {
        on!($tx, |c| {
            sqlx::query($sql)
                $(.bind($b))*
                .fetch_optional(&mut *c)
                .await?
                .as_ref()
                .map($map)
                .transpose()
        })
    };
}
pub(crate) use select_one;

impl Tx {
    /// Deletes row `id` of `table`; false when there is none.
    pub(crate) async fn delete_id(&mut self, table: &str, id: i64) -> Result<bool> {
        let sql = format!("DELETE FROM {table} WHERE id = $1");
        let n = on!(self, |c| {
            sqlx::query(&sql)
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    // ---- settings -------------------------------------------------------

    pub async fn setting(&mut self, key: &str) -> Result<Option<String>> {
        on!(self, |c| {
            let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&mut *c)
                .await?;
            match row {
                Some(r) => Ok(Some(r.text("value")?)),
                None => Ok(None),
            }
        })
    }

    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        let now = super::now_ms();
        on!(self, |c| {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    /// Inserts unless the key exists; true when this call inserted it.
    pub async fn insert_setting_if_absent(&mut self, key: &str, value: &str) -> Result<bool> {
        let now = super::now_ms();
        let n = on!(self, |c| {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Increments the configuration revision (replicas poll it) and returns
    /// the new value. Call it first in a write transaction.
    pub async fn bump_revision(&mut self) -> Result<i64> {
        self.bump_counter("revision").await
    }

    /// Increments the numeric setting `key` (1 when absent) and returns it.
    pub(crate) async fn bump_counter(&mut self, key: &str) -> Result<i64> {
        let now = super::now_ms();
        let v: String = on!(self, |c| {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, '1', $2) \
                 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT), \
                 updated_at = excluded.updated_at RETURNING value",
            )
            .bind(key)
            .bind(now)
            .fetch_one(&mut *c)
            .await?
            .text("value")?
        });
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("settings.{key} is not a number")))
    }

    pub async fn revision(&mut self) -> Result<i64> {
        Ok(self
            .setting("revision")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    // ---- providers ------------------------------------------------------

    pub async fn providers(&mut self) -> Result<Vec<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLS} FROM providers ORDER BY priority DESC, id");
        select_all!(self, &sql, provider)
    }

    pub async fn provider(&mut self, id: i64) -> Result<Option<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLS} FROM providers WHERE id = $1");
        select_one!(self, &sql, provider, id)
    }

    pub async fn provider_by_name(&mut self, name: &str) -> Result<Option<ProviderRow>> {
        if name.contains('\0') {
            // No stored name holds one (PostgreSQL text cannot).
            return Ok(None);
        }
        let sql = format!("SELECT {PROVIDER_COLS} FROM providers WHERE name = $1");
        select_one!(self, &sql, provider, name)
    }

    /// Inserts `p` (its `id` is ignored) and returns the new id.
    pub async fn insert_provider(&mut self, p: &ProviderRow) -> Result<i64> {
        let (sql, models) = (insert_sql("providers", PROVIDER_COLS), to_json(&p.models));
        on!(self, |c| {
            Ok(bind_provider!(sqlx::query(&sql), p, &models)
                .bind(p.created_at)
                .bind(p.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    /// Writes every column of `p` (by id); false when no such row.
    pub async fn update_provider(&mut self, p: &ProviderRow) -> Result<bool> {
        let (sql, models) = (
            update_sql("providers", PROVIDER_COLS, &[]),
            to_json(&p.models),
        );
        let n = on!(self, |c| {
            bind_provider!(sqlx::query(&sql), p, &models)
                .bind(p.updated_at)
                .bind(p.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Deletes a provider and (cascade) its keys; false when no such row.
    pub async fn delete_provider(&mut self, id: i64) -> Result<bool> {
        self.delete_id("providers", id).await
    }

    // ---- keys -----------------------------------------------------------

    pub async fn keys(&mut self) -> Result<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLS} FROM provider_keys ORDER BY id");
        select_all!(self, &sql, key)
    }

    pub async fn provider_keys(&mut self, provider_id: i64) -> Result<Vec<KeyRow>> {
        let sql =
            format!("SELECT {KEY_COLS} FROM provider_keys WHERE provider_id = $1 ORDER BY id");
        select_all!(self, &sql, key, provider_id)
    }

    pub async fn model_keys(&mut self, llm_model_id: i64) -> Result<Vec<KeyRow>> {
        let sql =
            format!("SELECT {KEY_COLS} FROM provider_keys WHERE llm_model_id = $1 ORDER BY id");
        select_all!(self, &sql, key, llm_model_id)
    }

    pub async fn key(&mut self, id: i64) -> Result<Option<KeyRow>> {
        let sql = format!("SELECT {KEY_COLS} FROM provider_keys WHERE id = $1");
        select_one!(self, &sql, key, id)
    }

    pub async fn insert_key(&mut self, k: &KeyRow) -> Result<i64> {
        let sql = insert_sql("provider_keys", KEY_COLS);
        on!(self, |c| {
            let q = sqlx::query(&sql).bind(k.provider_id).bind(k.llm_model_id);
            Ok(bind_key!(q, k)
                .bind(k.created_at)
                .bind(k.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    /// Writes a key's mutable columns (not its owner).
    pub async fn update_key(&mut self, k: &KeyRow) -> Result<bool> {
        let sql = update_sql("provider_keys", KEY_COLS, KEY_OWNER);
        let n = on!(self, |c| {
            bind_key!(sqlx::query(&sql), k)
                .bind(k.updated_at)
                .bind(k.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn delete_key(&mut self, id: i64) -> Result<bool> {
        self.delete_id("provider_keys", id).await
    }

    /// Replaces the ciphertext of a key (master key rotation).
    pub async fn set_key_secret(&mut self, id: i64, secret: &str) -> Result<()> {
        on!(self, |c| {
            sqlx::query("UPDATE provider_keys SET secret = $1 WHERE id = $2")
                .bind(secret)
                .bind(id)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    /// Replaces the ciphertext of a provider's headers (master key rotation).
    pub async fn set_provider_headers(&mut self, id: i64, headers: Option<&str>) -> Result<()> {
        on!(self, |c| {
            sqlx::query("UPDATE providers SET headers = $1 WHERE id = $2")
                .bind(headers)
                .bind(id)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    // ---- model catalog --------------------------------------------------

    pub async fn models(&mut self) -> Result<Vec<ModelRow>> {
        let sql = format!("SELECT {MODEL_COLS} FROM llm_models ORDER BY id");
        select_all!(self, &sql, model)
    }

    pub async fn model(&mut self, id: i64) -> Result<Option<ModelRow>> {
        let sql = format!("SELECT {MODEL_COLS} FROM llm_models WHERE id = $1");
        select_one!(self, &sql, model, id)
    }

    pub async fn insert_model(&mut self, m: &ModelRow) -> Result<i64> {
        let sql = insert_sql("llm_models", MODEL_COLS);
        on!(self, |c| {
            Ok(bind_model!(sqlx::query(&sql), m)
                .bind(m.created_at)
                .bind(m.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    pub async fn update_model(&mut self, m: &ModelRow) -> Result<bool> {
        let sql = update_sql("llm_models", MODEL_COLS, &[]);
        let n = on!(self, |c| {
            bind_model!(sqlx::query(&sql), m)
                .bind(m.updated_at)
                .bind(m.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn delete_model(&mut self, id: i64) -> Result<bool> {
        self.delete_id("llm_models", id).await
    }

    // ---- app mappings ---------------------------------------------------

    pub async fn apps(&mut self) -> Result<Vec<AppRow>> {
        let sql = format!("SELECT {APP_COLS} FROM app_mappings ORDER BY id");
        select_all!(self, &sql, app)
    }

    pub async fn app(&mut self, id: i64) -> Result<Option<AppRow>> {
        let sql = format!("SELECT {APP_COLS} FROM app_mappings WHERE id = $1");
        select_one!(self, &sql, app, id)
    }

    pub async fn app_by_name(&mut self, name: &str) -> Result<Option<AppRow>> {
        if name.contains('\0') {
            // No stored name holds one (PostgreSQL text cannot).
            return Ok(None);
        }
        let sql = format!("SELECT {APP_COLS} FROM app_mappings WHERE app_name = $1");
        select_one!(self, &sql, app, name)
    }

    pub async fn insert_app(&mut self, a: &AppRow) -> Result<i64> {
        let (sql, json) = (insert_sql("app_mappings", APP_COLS), AppJson::of(a));
        on!(self, |c| {
            Ok(bind_app!(sqlx::query(&sql), a, json)
                .bind(a.created_at)
                .bind(a.updated_at)
                .fetch_one(&mut *c)
                .await?
                .i64("id")?)
        })
    }

    pub async fn update_app(&mut self, a: &AppRow) -> Result<bool> {
        let (sql, json) = (update_sql("app_mappings", APP_COLS, &[]), AppJson::of(a));
        let n = on!(self, |c| {
            bind_app!(sqlx::query(&sql), a, json)
                .bind(a.updated_at)
                .bind(a.id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn delete_app(&mut self, id: i64) -> Result<bool> {
        self.delete_id("app_mappings", id).await
    }

    // ---- audit log ------------------------------------------------------

    /// Records an admin change. `details` must never hold a secret value:
    /// callers pass field names and key hints only.
    pub async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        details: &Value,
    ) -> Result<()> {
        let now = super::now_ms();
        let details = to_json(details);
        on!(self, |c| {
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(now)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(&details)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    /// Newest first; `before` pages backwards by id.
    pub async fn audit_log(&mut self, limit: i64, before: Option<i64>) -> Result<Vec<AuditRow>> {
        let before = before.unwrap_or(i64::MAX);
        on!(self, |c| {
            sqlx::query(
                "SELECT id, at, actor, action, target, details FROM audit_log WHERE id < $1 \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(audit)
            .collect()
        })
    }

    // ---- whole snapshot -------------------------------------------------

    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        Ok(Snapshot {
            revision: self.revision().await?,
            providers: self.providers().await?,
            keys: self.keys().await?,
            models: self.models().await?,
            apps: self.apps().await?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn write_sql_follows_the_column_lists() {
        assert_eq!(
            insert_sql("app_mappings", APP_COLS),
            "INSERT INTO app_mappings (app_name, description, enabled, routing_rule, targets, \
             fallback_chain, retry_config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
        );
        assert_eq!(
            update_sql("provider_keys", KEY_COLS, KEY_OWNER),
            "UPDATE provider_keys SET label = $1, secret = $2, hint = $3, status = $4, weight = $5, \
             cooling_until = $6, last_error = $7, last_error_at = $8, last_used_at = $9, updated_at = $10 \
             WHERE id = $11"
        );
        assert!(insert_sql("providers", PROVIDER_COLS).ends_with("$21, $22) RETURNING id"));
        assert!(update_sql("providers", PROVIDER_COLS, &[])
            .ends_with("responses = $20, updated_at = $21 WHERE id = $22"));
        assert!(insert_sql("llm_models", MODEL_COLS).ends_with("$20, $21) RETURNING id"));
        assert!(update_sql("llm_models", MODEL_COLS, &[])
            .ends_with("tpm_limit = $19, updated_at = $20 WHERE id = $21"));
    }
}
