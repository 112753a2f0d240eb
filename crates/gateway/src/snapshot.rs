//! The runtime snapshot a request reads, composed from two layers and
//! swapped atomically whenever either changes.
//!
//! * the **base** layer: the `--config` file, the command line and provider
//!   key variables (re-read when the file changes; replaced by an in-process
//!   switch from the hot-update API);
//! * the **database** layer: providers, keys, catalog models and app
//!   mappings, secrets decrypted in memory.
//!
//! Precedence: base providers come first (so their model ids win a clash
//! and `forward_any_model` on a command-line provider keeps catching unknown
//! names), then database providers by descending priority. A database
//! provider may not share a name with a file or command-line one (a config
//! error naming the field); an auto-detected provider (from a key variable
//! such as `OPENAI_API_KEY`) with the same name as a database provider steps
//! aside. Catalog models whose `provider` names a provider are served by it;
//! a model with its own `base_url` or keys gets a provider of its own named
//! `catalog-<id>`.

use crate::config::catalog::{Catalog, CatalogModel, DbLayer};
use crate::config::{
    check_self_loop, Config, ConfigError, FileConfig, ModelEntry, Origin, ProviderConfig, Secret,
};
use crate::presets;
use crate::routing::upstream::Upstream;
use crate::routing::ModelRouter;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Everything a request needs, immutable once built.
pub struct Runtime {
    pub router: ModelRouter,
    pub auth_keys: Vec<Secret>,
    /// Catalog metadata and app mappings from the database (empty without one).
    pub catalog: Arc<Catalog>,
}

impl Runtime {
    pub fn from_config(cfg: &Config) -> Result<Runtime, String> {
        let upstreams = cfg
            .providers
            .iter()
            .cloned()
            .map(|p| Upstream::build(p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        crate::routing::exec::spawn_health_checks(&upstreams);
        Ok(Runtime {
            router: ModelRouter::new(upstreams, &cfg.aliases, &cfg.routes, &cfg.deprecations),
            auth_keys: cfg.auth_keys.clone(),
            catalog: Arc::default(),
        })
    }
}

/// The provider names a config file declares clash with database ones?
/// Names the file's field exactly (`providers[2].name`).
pub fn check_file_names(file: &FileConfig, db: &DbLayer) -> Result<(), ConfigError> {
    for (i, p) in file.providers.iter().enumerate() {
        if p.enabled == Some(false) {
            continue;
        }
        let name = p.name.clone().unwrap_or_else(|| {
            presets::find(&p.kind)
                .map(|pr| pr.kind.to_string())
                .unwrap_or_else(|| p.kind.clone())
        });
        if db.names.contains(&name) {
            return Err(ConfigError::new(
                format!("providers[{i}].name"),
                format!(
                    "`{name}` is also the name of a provider in the database; rename one of them (database providers are managed through /api/providers)"
                ),
            ));
        }
    }
    Ok(())
}

/// Composes the layers into one configuration and the catalog.
pub fn compose(base: &Config, db: &DbLayer) -> Result<(Config, Catalog), ConfigError> {
    let db_names: HashSet<&str> = db.names.iter().map(String::as_str).collect();
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for p in &base.providers {
        if db_names.contains(p.name.as_str()) {
            match p.origin {
                // Auto-detected from a key variable: the explicit entry wins.
                Origin::Env => continue,
                Origin::Cli => {
                    let mut p = p.clone();
                    p.name = (2..)
                        .map(|i| format!("{}-{i}", p.name))
                        .find(|n| {
                            !db_names.contains(n.as_str())
                                && !base.providers.iter().any(|q| &q.name == n)
                        })
                        .unwrap_or_else(|| format!("{}-cli", p.name));
                    providers.push(p);
                    continue;
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("providers.{}", p.name),
                        format!(
                            "`{}` is declared in the {} and also exists in the database; rename one of them",
                            p.name,
                            p.origin.as_str()
                        ),
                    ))
                }
            }
        }
        providers.push(p.clone());
    }
    let first_db = providers.len();
    providers.extend(db.providers.iter().cloned());
    // Database providers by descending priority (stable: ties keep id order).
    providers[first_db..].sort_by_key(|p| std::cmp::Reverse(p.meta.priority));

    let mut catalog = Catalog {
        revision: db.revision,
        apps: db.apps.clone(),
        models: Vec::new(),
    };
    for lm in &db.models {
        let m = &lm.model;
        let upstream = lm.upstream.clone();
        let named = providers.iter().position(|p| p.name == lm.provider);
        let served_by = match (named, &lm.own) {
            (Some(i), _) if !lm.own_settings => {
                let p = &mut providers[i];
                if !p.models.iter().any(|e| e.id == m.model_id) {
                    p.models.push(ModelEntry {
                        id: m.model_id.clone(),
                        upstream,
                    });
                }
                p.name.clone()
            }
            (_, Some(pc)) => {
                providers.push(pc.clone());
                pc.name.clone()
            }
            (_, None) => continue,
        };
        catalog.models.push(CatalogModel {
            served_by,
            ..m.clone()
        });
    }
    let cfg = Config {
        providers,
        ..base.clone()
    };
    check_self_loop(&cfg)?;
    Ok((cfg, catalog))
}

/// The layers and the lock that makes compose-and-swap atomic.
pub struct Layers {
    inner: Mutex<LayerState>,
}

#[derive(Clone)]
struct LayerState {
    base: Config,
    db: DbLayer,
}

impl Layers {
    pub fn new(base: Config, db: DbLayer) -> Layers {
        Layers {
            inner: Mutex::new(LayerState { base, db }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LayerState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base layer (config file + command line).
    pub fn base(&self) -> Config {
        self.lock().base.clone()
    }

    pub fn db(&self) -> DbLayer {
        self.lock().db.clone()
    }

    /// The composed configuration as it is being served.
    pub fn composed(&self) -> Result<Config, ConfigError> {
        let s = self.lock();
        compose(&s.base, &s.db).map(|(c, _)| c)
    }

    /// Would this database layer compose with the current base?
    pub fn check_db(&self, db: &DbLayer) -> Result<(), ConfigError> {
        let base = self.base();
        compose(&base, db).map(|_| ())
    }

    /// Changes a layer; composes, builds and swaps the runtime, all under the
    /// lock. On error nothing changes.
    pub fn update(
        &self,
        swap: &dyn Fn(Runtime),
        change: impl FnOnce(&mut Config, &mut DbLayer),
    ) -> Result<(), ConfigError> {
        let mut state = self.lock();
        let mut next = state.clone();
        change(&mut next.base, &mut next.db);
        let (cfg, catalog) = compose(&next.base, &next.db)?;
        let mut rt = Runtime::from_config(&cfg).map_err(|m| ConfigError::new("providers", m))?;
        rt.catalog = Arc::new(catalog);
        swap(rt);
        *state = next;
        Ok(())
    }

    /// The runtime for the current layers (at start).
    pub fn runtime(&self) -> Result<Runtime, ConfigError> {
        let s = self.lock();
        let (cfg, catalog) = compose(&s.base, &s.db)?;
        let mut rt = Runtime::from_config(&cfg).map_err(|m| ConfigError::new("providers", m))?;
        rt.catalog = Arc::new(catalog);
        Ok(rt)
    }
}
