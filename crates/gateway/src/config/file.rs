//! The `--config` file: TOML, YAML or JSON, same schema.
//!
//! ```toml
//! [server]
//! auth_keys = ["${LLM_LINK_CLIENT_KEY}"]
//! body_limit = "32MiB"
//!
//! [[providers]]
//! name = "zhipu"                 # optional, defaults to kind; used in `zhipu/glm-4`
//! kind = "zhipu"
//! api_key = "${ZHIPU_API_KEY}"   # optional, defaults to the kind's env var
//! models = ["glm-4-flash", { id = "glm4", upstream = "glm-4-plus" }]
//!
//! [aliases]
//! "gpt-4" = "zhipu/glm-4-flash"
//! ```

use super::{
    expand_env, normalize_base_url, parse_duration, preset_for, ConfigError, ModelEntry, Origin,
    ProviderConfig, Secret, Timeouts,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: Option<ServerSection>,
    #[serde(default)]
    pub providers: Vec<ProviderSection>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub routes: Vec<super::routing::RouteSection>,
    #[serde(default)]
    pub deprecations: Vec<super::routing::DeprecationSection>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub auth_keys: Option<Vec<String>>,
    pub body_limit: Option<SizeValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl std::fmt::Display for SizeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeValue::Bytes(b) => write!(f, "{b}"),
            SizeValue::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModelSpec {
    Id(String),
    Full {
        id: String,
        #[serde(default)]
        upstream: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    pub connect: Option<SizeValue>,
    pub first_byte: Option<SizeValue>,
    pub idle: Option<SizeValue>,
    pub total: Option<SizeValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: Option<String>,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    pub default_model: Option<String>,
    #[serde(default)]
    pub forward_any_model: bool,
    pub passthrough: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    pub timeouts: Option<TimeoutSection>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub priority: Option<i32>,
    pub weight: Option<u32>,
    /// More keys for the pool (after `api_key`): strings or `{ key, weight }`.
    #[serde(default)]
    pub keys: Vec<super::routing::KeySpec>,
    pub key_strategy: Option<super::routing::KeyStrategy>,
    pub max_concurrency: Option<u32>,
    pub queue_timeout: Option<super::routing::DurationValue>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub breaker: Option<super::routing::BreakerSection>,
    pub health_check: Option<super::routing::DurationValue>,
    /// The largest whole answer read from it (`32MiB`, `1GB`, bytes).
    pub max_answer: Option<String>,
    /// Whether the host serves the Responses API itself (default: on for
    /// `openai`, off for every other kind).
    pub responses: Option<bool>,
}

/// A parser's message with every double-quoted value replaced by `"…"`:
/// serde quotes the offending value (`invalid type: string "sk-…",
/// expected u32`), which may be a key written into the wrong field. Field
/// and variant names are in backticks and stay.
fn hide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            out.push(c);
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Reads and parses a config file; the format follows the extension.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("--config", format!("cannot read {shown}: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "toml" => toml::from_str(&text).map_err(|e| {
            let msg = hide_quoted(e.message());
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError::new(format!("config {shown}"), format!("{msg}{at}"))
        }),
        "yaml" | "yml" => serde_yaml::from_str(&text)
            .map_err(|e| ConfigError::new(format!("config {shown}"), hide_quoted(&e.to_string()))),
        "json" => serde_json::from_str(&text)
            .map_err(|e| ConfigError::new(format!("config {shown}"), hide_quoted(&e.to_string()))),
        _ => Err(ConfigError::new(
            "--config",
            format!("{shown}: unknown extension; use .toml, .yaml, .yml or .json"),
        )),
    }
}

fn duration(
    field: String,
    v: &Option<SizeValue>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => parse_duration(&v.to_string()).map_err(|m| ConfigError::new(field, m)),
    }
}

pub(super) fn provider_from_file(
    i: usize,
    p: &ProviderSection,
    env: &dyn Fn(&str) -> Option<String>,
    default_timeouts: Timeouts,
) -> Result<ProviderConfig, ConfigError> {
    let at = |f: &str| format!("providers[{i}].{f}");
    let preset = preset_for(&p.kind, &at("kind"))?;
    let name = p.name.clone().unwrap_or_else(|| preset.kind.to_string());
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            at("name"),
            "must be non-empty, without spaces or `/`",
        ));
    }
    let base_url = match (&p.base_url, preset.base_url) {
        (Some(u), _) => {
            let u = expand_env(u, env).map_err(|m| ConfigError::new(at("base_url"), m))?;
            normalize_base_url(&u).map_err(|m| ConfigError::new(at("base_url"), m))?
        }
        (None, "") => {
            return Err(ConfigError::new(
                at("base_url"),
                format!("provider kind `{}` needs a base_url", preset.kind),
            ))
        }
        (None, u) => u.to_string(),
    };
    let api_key = match &p.api_key {
        Some(k) => Some(expand_env(k, env).map_err(|m| ConfigError::new(at("api_key"), m))?),
        None => preset.key_env.and_then(env),
    }
    .filter(|k| !k.trim().is_empty());
    if api_key.is_none() && preset.key_required {
        return Err(ConfigError::new(
            at("api_key"),
            format!(
                "provider `{name}` needs an API key: set api_key (\"${{VAR}}\" allowed) or {}",
                preset.key_env.unwrap_or("its key variable")
            ),
        ));
    }
    let mut models = Vec::new();
    for (j, m) in p.models.iter().enumerate() {
        let (id, upstream) = match m {
            ModelSpec::Id(id) => (id.clone(), id.clone()),
            ModelSpec::Full { id, upstream } => {
                (id.clone(), upstream.clone().unwrap_or_else(|| id.clone()))
            }
        };
        if id.trim().is_empty() || upstream.trim().is_empty() {
            return Err(ConfigError::new(
                at(&format!("models[{j}]")),
                "model id must not be empty",
            ));
        }
        models.push(ModelEntry { id, upstream });
    }
    let default_model = super::default_model(p.default_model.clone(), &mut models, preset);
    if models.is_empty() && !p.forward_any_model {
        return Err(ConfigError::new(
            at("models"),
            format!(
                "provider `{name}` declares no models; list some or set forward_any_model = true"
            ),
        ));
    }
    let t = p.timeouts.clone().unwrap_or_default();
    let timeouts = Timeouts {
        connect: duration(at("timeouts.connect"), &t.connect, default_timeouts.connect)?,
        first_byte: duration(
            at("timeouts.first_byte"),
            &t.first_byte,
            default_timeouts.first_byte,
        )?,
        idle: duration(at("timeouts.idle"), &t.idle, default_timeouts.idle)?,
        total: duration(at("timeouts.total"), &t.total, default_timeouts.total)?,
    };
    let mut headers = Vec::new();
    for (k, v) in &p.headers {
        let v = expand_env(v, env).map_err(|m| ConfigError::new(at(&format!("headers.{k}")), m))?;
        if ::http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || ::http::HeaderValue::from_str(&v).is_err()
        {
            return Err(ConfigError::new(
                at(&format!("headers.{k}")),
                "not a valid HTTP header",
            ));
        }
        headers.push((k.clone(), v));
    }
    // The key pool: `api_key` first, then `keys`.
    let mut keys = Vec::new();
    if let Some(k) = &api_key {
        keys.push(super::PoolKey {
            id: None,
            secret: Secret::new(k.trim()),
            weight: 1,
        });
    }
    for (j, k) in p.keys.iter().enumerate() {
        let (text, weight) = match k {
            super::routing::KeySpec::Key(t) => (t, None),
            super::routing::KeySpec::Weighted { key, weight } => (key, *weight),
        };
        let key =
            expand_env(text, env).map_err(|m| ConfigError::new(at(&format!("keys[{j}]")), m))?;
        if key.trim().is_empty() {
            return Err(ConfigError::new(
                at(&format!("keys[{j}]")),
                "must not be empty",
            ));
        }
        if weight == Some(0) {
            return Err(ConfigError::new(
                at(&format!("keys[{j}].weight")),
                "must be at least 1",
            ));
        }
        keys.push(super::PoolKey {
            id: None,
            secret: Secret::new(key.trim()),
            weight: weight.unwrap_or(1),
        });
    }
    let api_key = api_key.or_else(|| keys.first().map(|k| k.secret.expose().to_string()));
    let defaults = super::ProviderMeta::default();
    if p.weight == Some(0) {
        return Err(ConfigError::new(at("weight"), "must be at least 1"));
    }
    if p.max_concurrency == Some(0) {
        return Err(ConfigError::new(
            at("max_concurrency"),
            "must be at least 1",
        ));
    }
    let meta = super::ProviderMeta {
        id: None,
        priority: i64::from(p.priority.unwrap_or(0)),
        weight: p.weight.unwrap_or(1),
        keys,
        key_usage: match p.key_strategy.unwrap_or_default() {
            super::routing::KeyStrategy::Single => "single",
            super::routing::KeyStrategy::RoundRobin => "round_robin",
            super::routing::KeyStrategy::Weighted => "weighted",
            super::routing::KeyStrategy::LeastUsed => "least_used",
        }
        .into(),
        max_concurrency: p.max_concurrency,
        rpm_limit: p.rpm.filter(|v| *v > 0),
        tpm_limit: p.tpm.filter(|v| *v > 0),
        queue_timeout: super::routing::duration_from(
            &at("queue_timeout"),
            &p.queue_timeout,
            defaults.queue_timeout,
        )?,
        breaker: match &p.breaker {
            Some(b) => super::routing::breaker_from(&at("breaker"), b)?,
            None => defaults.breaker,
        },
        health_check: match &p.health_check {
            Some(v) => Some(super::routing::duration_from(
                &at("health_check"),
                &Some(v.clone()),
                defaults.queue_timeout,
            )?),
            None => None,
        },
        max_answer: match &p.max_answer {
            None => defaults.max_answer,
            Some(v) => super::parse_size(v)
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    ConfigError::new(
                        at("max_answer"),
                        "must be a size of at least 1KiB, like 32MiB or 1GB",
                    )
                })?,
        },
        responses: p.responses,
    };
    Ok(ProviderConfig {
        name,
        preset,
        base_url,
        api_key: api_key.map(Secret::new),
        models,
        default_model,
        forward_any_model: p.forward_any_model,
        passthrough: p.passthrough.unwrap_or(true),
        timeouts,
        headers,
        origin: Origin::File,
        meta,
    })
}
