//! Stored rows turned into the engine's database layer: providers, keys,
//! catalog models and app mappings, secrets decrypted in memory only.

use crate::crypto::MasterKey;
use crate::rows::{AppRow, KeyRow, ModelRow, ProviderRow, Snapshot};
use llm_link_gateway::config::catalog::{
    AppMapping, CatalogModel, DbLayer, LayerModel, RetrySettings,
};
use llm_link_gateway::config::{
    ModelEntry, Origin, PoolKey, ProviderConfig, ProviderMeta, Timeouts,
};
use llm_link_gateway::presets;
use serde_json::Value;
use std::time::Duration;

fn ms(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_millis(n as u64),
        _ => default,
    }
}

fn usable(k: &KeyRow, now: i64) -> bool {
    k.status == "enabled" || (k.status == "cooling" && k.cooling_until.is_none_or(|t| t <= now))
}

fn pool(keys: &[&KeyRow], master: &MasterKey, what: &str) -> Vec<PoolKey> {
    let now = crate::now_ms();
    let mut out = Vec::new();
    for k in keys.iter().filter(|k| usable(k, now)) {
        match master.decrypt(&k.secret) {
            Ok(secret) => out.push(PoolKey {
                id: Some(k.id),
                secret,
                weight: k.weight.clamp(0, u32::MAX as i64) as u32,
            }),
            Err(e) => tracing::error!(key_id = k.id, "{what}: key {} skipped: {e}", k.hint),
        }
    }
    out
}

fn limit(v: Option<i64>) -> Option<u32> {
    v.filter(|n| *n > 0).map(|n| n.min(u32::MAX as i64) as u32)
}

/// Turns a provider row into a runtime provider, or says why it cannot serve.
// `..ProviderMeta::default()` stays for the routing fields the database does not hold.
#[allow(clippy::needless_update)]
pub fn provider_config(
    p: &ProviderRow,
    keys: &[&KeyRow],
    master: &MasterKey,
) -> Result<ProviderConfig, String> {
    let preset = presets::find(&p.kind)
        .filter(|pr| pr.supported)
        .ok_or_else(|| format!("provider kind `{}` is not supported by this build", p.kind))?;
    let base_url = match (&p.base_url, preset.base_url) {
        (Some(u), _) => u.clone(),
        (None, "") => return Err(format!("kind `{}` needs a base_url", p.kind)),
        (None, u) => u.to_string(),
    };
    let keys = pool(keys, master, &p.name);
    if keys.is_empty() && preset.key_required {
        return Err("no enabled key".into());
    }
    let mut models: Vec<ModelEntry> = p
        .models
        .iter()
        .map(|m| ModelEntry {
            id: m.id.clone(),
            upstream: m.upstream.clone().unwrap_or_else(|| m.id.clone()),
        })
        .collect();
    let default_model =
        llm_link_gateway::config::default_model(p.default_model.clone(), &mut models, preset);
    let headers = match &p.headers {
        None => Vec::new(),
        Some(ct) => {
            let plain = master
                .decrypt(ct)
                .map_err(|e| format!("headers cannot be decrypted: {e}"))?;
            let map: std::collections::BTreeMap<String, String> =
                serde_json::from_str(plain.expose()).map_err(|_| "headers are unreadable")?;
            map.into_iter().collect()
        }
    };
    let d = Timeouts::default();
    Ok(ProviderConfig {
        name: p.name.clone(),
        preset,
        base_url,
        api_key: keys.first().map(|k| k.secret.clone()),
        models,
        default_model,
        forward_any_model: p.forward_any_model,
        passthrough: p.passthrough,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms, d.connect),
            first_byte: ms(p.first_byte_timeout_ms, d.first_byte),
            idle: ms(p.idle_timeout_ms, d.idle),
            total: d.total,
        },
        headers,
        origin: Origin::Database,
        meta: ProviderMeta {
            id: Some(p.id),
            priority: p.priority,
            weight: p.weight.clamp(0, u32::MAX as i64) as u32,
            keys,
            key_usage: p.key_usage_mode.clone(),
            max_concurrency: limit(p.max_concurrency),
            rpm_limit: limit(p.rpm_limit),
            tpm_limit: limit(p.tpm_limit),
            responses: p.responses,
            ..ProviderMeta::default()
        },
    })
}

/// The provider a catalog model with its own base URL or keys is served by.
#[allow(clippy::needless_update)]
pub fn model_provider(
    m: &ModelRow,
    keys: &[&KeyRow],
    master: &MasterKey,
) -> Result<ProviderConfig, String> {
    let preset = presets::find(&m.provider)
        .filter(|p| p.supported)
        .ok_or_else(|| {
            format!(
                "provider `{}` is neither a configured provider nor a supported kind",
                m.provider
            )
        })?;
    let base_url = match (&m.base_url, preset.base_url) {
        (Some(u), _) => u.clone(),
        (None, "") => return Err(format!("kind `{}` needs a base_url", preset.kind)),
        (None, u) => u.to_string(),
    };
    let keys = if m.auth_type == "none" {
        Vec::new()
    } else {
        pool(keys, master, &format!("model {}", m.model_id))
    };
    if keys.is_empty() && preset.key_required && m.auth_type != "none" {
        return Err("no enabled key".into());
    }
    let upstream = m
        .upstream_model
        .clone()
        .unwrap_or_else(|| m.model_id.clone());
    Ok(ProviderConfig {
        name: format!("catalog-{}", m.id),
        preset,
        base_url,
        api_key: keys.first().map(|k| k.secret.clone()),
        models: vec![ModelEntry {
            id: m.model_id.clone(),
            upstream,
        }],
        default_model: Some(m.model_id.clone()),
        forward_any_model: false,
        passthrough: true,
        timeouts: Timeouts::default(),
        headers: Vec::new(),
        origin: Origin::Database,
        meta: ProviderMeta {
            id: None,
            priority: 0,
            weight: 1,
            keys,
            key_usage: m.key_usage_mode.clone(),
            max_concurrency: None,
            rpm_limit: limit(m.rpm_limit),
            tpm_limit: limit(m.tpm_limit),
            ..ProviderMeta::default()
        },
    })
}

fn app_mapping(a: &AppRow) -> AppMapping {
    let num = |k: &str| a.retry_config.get(k).and_then(Value::as_u64);
    let d = RetrySettings::default();
    AppMapping {
        name: a.app_name.clone(),
        routing_rule: a.routing_rule.clone(),
        targets: a.targets.clone(),
        fallback_chain: a.fallback_chain.clone(),
        retry: RetrySettings {
            max_retries: num("max_retries")
                .map(|n| n.min(100) as u32)
                .unwrap_or(d.max_retries),
            backoff_ms: num("backoff_ms").unwrap_or(d.backoff_ms),
        },
    }
}

/// Decrypts a snapshot into the database layer. Rows that cannot serve are
/// listed in `inactive` with the reason, never fatal.
pub fn db_layer(snap: &Snapshot, master: &MasterKey) -> DbLayer {
    let mut layer = DbLayer {
        revision: snap.revision,
        names: snap.providers.iter().map(|p| p.name.clone()).collect(),
        ..DbLayer::default()
    };
    for p in &snap.providers {
        if !p.enabled {
            continue;
        }
        let keys: Vec<&KeyRow> = snap
            .keys
            .iter()
            .filter(|k| k.provider_id == Some(p.id))
            .collect();
        match provider_config(p, &keys, master) {
            Ok(pc) => layer.providers.push(pc),
            Err(reason) => layer.inactive.push((p.name.clone(), reason)),
        }
    }
    for m in &snap.models {
        if m.status != "enabled" {
            continue;
        }
        let keys: Vec<&KeyRow> = snap
            .keys
            .iter()
            .filter(|k| k.llm_model_id == Some(m.id))
            .collect();
        let own_settings = m.base_url.is_some() || !keys.is_empty();
        let own = if own_settings || !layer.names.contains(&m.provider) {
            match model_provider(m, &keys, master) {
                Ok(pc) => Some(pc),
                Err(reason) => {
                    if own_settings {
                        layer.inactive.push((format!("llm-model {}", m.id), reason));
                        continue;
                    }
                    None
                }
            }
        } else {
            None
        };
        layer.models.push(LayerModel {
            model: CatalogModel {
                id: m.id,
                model_id: m.model_id.clone(),
                served_by: String::new(),
                model_type: m.model_type.clone(),
                context_window: m.context_window,
                max_tokens: m.max_tokens,
                supports_vision: m.supports_vision,
                supports_tools: m.supports_tools,
                input_price: m.input_price,
                output_price: m.output_price,
                cached_input_price: m.cached_input_price,
                rpm_limit: m.rpm_limit,
                tpm_limit: m.tpm_limit,
            },
            provider: m.provider.clone(),
            upstream: m
                .upstream_model
                .clone()
                .unwrap_or_else(|| m.model_id.clone()),
            own_settings,
            own,
        });
    }
    layer.apps = snap
        .apps
        .iter()
        .filter(|a| a.enabled)
        .map(app_mapping)
        .collect();
    layer
}
