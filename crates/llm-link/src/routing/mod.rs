//! Model resolution: which provider serves a model name, and under which
//! upstream name.
//!
//! Order: aliases, then a model id declared on a provider, then the
//! `provider/model` form, then a provider that forwards any model.

use crate::error::ApiError;
use crate::providers::Provider;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a request goes.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<dyn Provider>,
    pub upstream_model: String,
}

/// A model as `/v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub owned_by: String,
}

pub struct ModelRouter {
    providers: Vec<Arc<dyn Provider>>,
    /// client model id → (provider index, upstream model), first declaration wins.
    by_model: HashMap<String, (usize, String)>,
    by_name: HashMap<String, usize>,
    aliases: HashMap<String, String>,
    /// Index of the provider that takes any model name.
    any: Option<usize>,
    listing: Vec<ModelInfo>,
}

const MAX_ALIAS_DEPTH: usize = 8;

impl ModelRouter {
    pub fn new(providers: Vec<Arc<dyn Provider>>, aliases: &[(String, String)]) -> ModelRouter {
        let mut by_model = HashMap::new();
        let mut by_name = HashMap::new();
        let mut listing = Vec::new();
        let mut any = None;
        for (i, p) in providers.iter().enumerate() {
            let cfg = p.config();
            by_name.insert(cfg.name.clone(), i);
            for m in &cfg.models {
                if !by_model.contains_key(&m.id) {
                    by_model.insert(m.id.clone(), (i, m.upstream.clone()));
                    listing.push(ModelInfo {
                        id: m.id.clone(),
                        owned_by: cfg.name.clone(),
                    });
                }
            }
            if cfg.forward_any_model && any.is_none() {
                any = Some(i);
            }
        }
        for (alias, target) in aliases {
            if !by_model.contains_key(alias) {
                let owner = target.split_once('/').map(|(p, _)| p).unwrap_or("llm-link");
                listing.push(ModelInfo {
                    id: alias.clone(),
                    owned_by: owner.to_string(),
                });
            }
        }
        ModelRouter {
            providers,
            by_model,
            by_name,
            aliases: aliases.iter().cloned().collect(),
            any,
            listing,
        }
    }

    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Every model clients can ask for.
    pub fn models(&self) -> &[ModelInfo] {
        &self.listing
    }

    /// A listed model, by id (also `provider/model` and aliases).
    pub fn find_model(&self, id: &str) -> Option<ModelInfo> {
        if let Some(m) = self.listing.iter().find(|m| m.id == id) {
            return Some(m.clone());
        }
        let (name, model) = id.split_once('/')?;
        let i = *self.by_name.get(name)?;
        let p = &self.providers[i];
        p.config()
            .models
            .iter()
            .any(|m| m.id == model)
            .then(|| ModelInfo {
                id: id.to_string(),
                owned_by: name.to_string(),
            })
    }

    pub fn resolve(&self, requested: &str) -> Result<Target, ApiError> {
        if self.providers.is_empty() {
            return Err(ApiError::Unavailable(
                "no provider is configured; start llm-link with --provider KIND (see `llm-link providers`), a --config file, or a provider key variable such as OPENAI_API_KEY".into(),
            ));
        }
        let mut model = requested;
        for _ in 0..MAX_ALIAS_DEPTH {
            match self.aliases.get(model) {
                Some(t) if t != model => model = t,
                _ => break,
            }
        }
        if let Some((i, upstream)) = self.by_model.get(model) {
            return Ok(self.target(*i, upstream));
        }
        if let Some((name, rest)) = model.split_once('/') {
            if let Some(&i) = self.by_name.get(name) {
                if rest.is_empty() {
                    let cfg = self.providers[i].config();
                    if let Some(d) = &cfg.default_model {
                        let upstream = cfg
                            .models
                            .iter()
                            .find(|m| &m.id == d)
                            .map(|m| m.upstream.clone())
                            .unwrap_or_else(|| d.clone());
                        return Ok(self.target(i, &upstream));
                    }
                }
                let cfg = self.providers[i].config();
                let upstream = cfg
                    .models
                    .iter()
                    .find(|m| m.id == rest)
                    .map(|m| m.upstream.as_str())
                    .unwrap_or(rest);
                return Ok(self.target(i, upstream));
            }
        }
        if let Some(i) = self.any {
            return Ok(self.target(i, model));
        }
        Err(ApiError::ModelNotFound(format!(
            "The model `{requested}` does not exist or is not served by this llm-link; list the available models with GET /v1/models"
        )))
    }

    fn target(&self, i: usize, upstream: &str) -> Target {
        Target {
            provider: self.providers[i].clone(),
            upstream_model: upstream.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelEntry, Origin, ProviderConfig, Timeouts};
    use crate::providers::presets;

    fn provider(name: &str, models: &[(&str, &str)], any: bool) -> Arc<dyn Provider> {
        let cfg = ProviderConfig {
            name: name.into(),
            preset: presets::find("openai-compatible").unwrap_or(&presets::PRESETS[0]),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            models: models
                .iter()
                .map(|(id, up)| ModelEntry {
                    id: (*id).into(),
                    upstream: (*up).into(),
                })
                .collect(),
            default_model: models.first().map(|m| m.0.to_string()),
            forward_any_model: any,
            passthrough: true,
            timeouts: Timeouts::default(),
            headers: vec![],
            origin: Origin::File,
            meta: Default::default(),
        };
        match crate::providers::build(cfg) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn resolve(r: &ModelRouter, m: &str) -> Option<(String, String)> {
        r.resolve(m)
            .ok()
            .map(|t| (t.provider.name().to_string(), t.upstream_model))
    }

    #[test]
    fn resolution_order() {
        let r = ModelRouter::new(
            vec![
                provider(
                    "zhipu",
                    &[("glm-4-flash", "glm-4-flash"), ("fast", "glm-4-air")],
                    false,
                ),
                provider("local", &[("meta/llama", "meta/llama")], false),
            ],
            &[
                ("gpt-4".into(), "zhipu/glm-4-flash".into()),
                ("chain".into(), "gpt-4".into()),
            ],
        );
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(resolve(&r, "glm-4-flash"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "fast"), pair("zhipu", "glm-4-air"));
        assert_eq!(resolve(&r, "zhipu/fast"), pair("zhipu", "glm-4-air"));
        assert_eq!(resolve(&r, "zhipu/glm-4-plus"), pair("zhipu", "glm-4-plus"));
        assert_eq!(resolve(&r, "zhipu/"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "gpt-4"), pair("zhipu", "glm-4-flash"));
        assert_eq!(resolve(&r, "chain"), pair("zhipu", "glm-4-flash"));
        // A declared id with a slash wins over the provider/model form.
        assert_eq!(resolve(&r, "meta/llama"), pair("local", "meta/llama"));
        match r.resolve("nope") {
            Err(ApiError::ModelNotFound(m)) => assert!(m.contains("/v1/models")),
            _ => panic!("expected not found"),
        }
        assert!(r.find_model("gpt-4").is_some());
        assert!(r.find_model("zhipu/fast").is_some());
        assert!(r.find_model("zhipu/other").is_none());
    }

    #[test]
    fn single_provider_forwards_anything() {
        let r = ModelRouter::new(
            vec![provider("zhipu", &[("glm-4-flash", "glm-4-flash")], true)],
            &[],
        );
        assert_eq!(
            resolve(&r, "glm-4-plus"),
            Some(("zhipu".to_string(), "glm-4-plus".to_string()))
        );
        let empty = ModelRouter::new(vec![], &[]);
        assert!(matches!(empty.resolve("x"), Err(ApiError::Unavailable(_))));
    }
}
