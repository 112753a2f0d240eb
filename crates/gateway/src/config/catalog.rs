//! What the database contributes to the runtime, as the engine sees it:
//! catalog models (prices, limits, capabilities), app mappings, and the
//! decrypted provider layer. The store builds a [`DbLayer`]; the snapshot
//! composes it with the file and command line (the `snapshot` module).

use super::ProviderConfig;

/// A catalog model as the runtime sees it (prices, limits, capabilities),
/// for usage metering and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    pub id: i64,
    pub model_id: String,
    /// The provider (by name) that serves it in this snapshot.
    pub served_by: String,
    pub model_type: String,
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
}

/// Retry settings of an app mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub max_retries: u32,
    pub backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            backoff_ms: 1000,
        }
    }
}

/// An app mapping: which targets serve an app, how to choose, what to fall
/// back to.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMapping {
    pub name: String,
    /// `priority`, `round_robin`, `weighted`, `least_connections` or `latency`.
    pub routing_rule: String,
    /// `provider`, `provider/model` or model ids.
    pub targets: Vec<String>,
    pub fallback_chain: Vec<String>,
    pub retry: RetrySettings,
}

/// Database-held metadata the request path may use; empty without a database.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The database revision this snapshot was built from.
    pub revision: i64,
    pub models: Vec<CatalogModel>,
    pub apps: Vec<AppMapping>,
}

impl Catalog {
    pub fn app(&self, name: &str) -> Option<&AppMapping> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn model(&self, model_id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.model_id == model_id)
    }
}

/// The database's contribution, decrypted.
#[derive(Debug, Clone, Default)]
pub struct DbLayer {
    pub revision: i64,
    /// Every provider name in the database, enabled or not.
    pub names: Vec<String>,
    /// Enabled providers that can serve (origin `Database`).
    pub providers: Vec<ProviderConfig>,
    /// Enabled catalog models.
    pub models: Vec<LayerModel>,
    pub apps: Vec<AppMapping>,
    /// Enabled rows left out of the runtime, with the reason (shown by the API).
    pub inactive: Vec<(String, String)>,
}

/// An enabled catalog model and how it is served.
#[derive(Debug, Clone)]
pub struct LayerModel {
    /// What the runtime sees of it; `served_by` is filled in by composing.
    pub model: CatalogModel,
    /// The provider (or kind) the catalog row names.
    pub provider: String,
    /// The model name sent upstream.
    pub upstream: String,
    /// It has its own base URL or keys, so it needs a provider of its own.
    pub own_settings: bool,
    /// That provider (also built from the kind's defaults when `provider`
    /// names a kind rather than a provider).
    pub own: Option<ProviderConfig>,
}
