//! Shared state: the configuration snapshot the request path reads, swapped
//! atomically on change so nothing on that path waits on a lock or the
//! database.

use arc_swap::ArcSwap;
use llm_link_gateway::config::{Config, ConfigError, Secret};
use llm_link_gateway::govern::Governor;
use llm_link_gateway::identity::Identities;
use llm_link_gateway::snapshot::{Layers, Runtime};
use llm_link_gateway::usage::Recorder;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where this instance listens (the bound port, not the requested 0).
#[derive(Debug, Clone)]
pub struct Listen {
    pub host: String,
    pub port: u16,
}

pub struct AppState {
    runtime: ArcSwap<Runtime>,
    pub body_limit: usize,
    /// Differs on every start, even two starts in the same second.
    pub instance_id: u64,
    pub pid: u32,
    pub started: Instant,
    pub listen: Listen,
    /// The `--app` preset this instance was started with.
    pub app: Option<String>,
    /// Lets non-loopback callers use the mutating admin endpoints.
    pub admin_token: Option<Secret>,
    pub cors_origins: Vec<String>,
    /// Cancelled to begin a graceful shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What the runtime is composed from: the config file and command line,
    /// and the database (see `llm_link_gateway::snapshot`; the `apply` module writes it).
    pub layers: Layers,
    /// The database, when there is one (admin API, live apply).
    pub store: Option<Arc<llm_link_store::Store>>,
    /// Where usage rows go (disabled without a database).
    pub usage: Recorder,
    /// Users and virtual keys (empty without a database), swapped whole on
    /// change like the runtime; see `apply::reload_identities`.
    pub identities: ArcSwap<Identities>,
    /// Limits and budgets of keys, users and catalog models; lives as long
    /// as the process (snapshots come and go, counters stay).
    pub governor: Arc<Governor>,
    /// Session-row checks remembered for a few seconds (see `sessions`).
    pub sessions: SessionCache,
    /// Responses API objects kept with `store: true`.
    pub responses: crate::stored::Stored,
    /// Deadlines and the connection cap of the HTTP front.
    pub client: llm_link_gateway::config::ClientLimits,
}

impl AppState {
    pub fn new(cfg: &Config) -> Result<Arc<AppState>, String> {
        AppState::with_store(cfg, None, Default::default()).map_err(|e| e.to_string())
    }

    /// A state whose runtime also serves what the database holds.
    pub fn with_store(
        cfg: &Config,
        store: Option<Arc<llm_link_store::Store>>,
        db: llm_link_gateway::config::catalog::DbLayer,
    ) -> Result<Arc<AppState>, ConfigError> {
        let layers = Layers::new(cfg.clone(), db);
        let runtime = layers.runtime()?;
        let usage = match &store {
            Some(s) if tokio::runtime::Handle::try_current().is_ok() => {
                Recorder::start(llm_link_store::usage::DbSink(s.db.clone()))
            }
            _ => Recorder::disabled(),
        };
        let responses = crate::stored::Stored::new(cfg.responses_ttl, store.clone());
        Ok(Arc::new(AppState {
            runtime: ArcSwap::from_pointee(runtime),
            body_limit: cfg.body_limit,
            instance_id: new_instance_id(),
            pid: std::process::id(),
            started: Instant::now(),
            listen: Listen {
                host: cfg.host.clone(),
                port: cfg.port,
            },
            app: cfg.app.clone(),
            admin_token: cfg.admin_token.clone(),
            cors_origins: cfg.cors_origins.clone(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            layers,
            store,
            usage,
            identities: ArcSwap::from_pointee(Identities::default()),
            governor: Arc::new(Governor::new(
                cfg.budget_timezone.clone(),
                llm_link_gateway::routing::shared::budgets(),
            )),
            sessions: Default::default(),
            responses,
            client: cfg.client,
        }))
    }

    /// The same state with another governor (tests: a Redis-backed one
    /// with its own key prefix).
    pub fn with_governor(self: Arc<AppState>, governor: Arc<Governor>) -> Option<Arc<AppState>> {
        let mut st = Arc::into_inner(self)?;
        st.governor = governor;
        Some(Arc::new(st))
    }

    /// The in-process provider switch (hot-update API): replaces the
    /// file/command-line providers and aliases; database providers and
    /// client auth stay.
    pub fn switch_providers(&self, cfg: &Config) -> Result<(), String> {
        self.layers
            .update(&|rt| self.swap(rt), |base, _| {
                base.providers = cfg.providers.clone();
                base.aliases = cfg.aliases.clone();
            })
            .map_err(|e| e.to_string())
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// A short look at the current snapshot, without touching its shared
    /// reference count (which every serving thread would otherwise bounce
    /// between cores). Not to be held across an `.await`.
    pub fn peek_runtime(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.runtime.load()
    }

    /// Replaces the snapshot; requests in flight keep the one they loaded.
    pub fn swap(&self, rt: Runtime) {
        self.runtime.store(Arc::new(rt));
    }
}

/// How long a session-row check is remembered (see the `sessions` module).
pub const SESSION_CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const SESSION_CHECK_CAPACITY: u64 = 10_000;

/// What a session-row check found: `Some((user_id, expires_at_ms))` for a
/// live row, `None` for a revoked or missing one.
pub(crate) type RowCheck = Option<(i64, i64)>;

/// Session-row checks remembered for [`SESSION_CHECK_TTL`], positive and
/// negative alike; the `sessions` module fills and reads it.
#[derive(Clone)]
pub struct SessionCache {
    pub(crate) rows: moka::future::Cache<String, RowCheck>,
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache {
            rows: moka::future::Cache::builder()
                .max_capacity(SESSION_CHECK_CAPACITY)
                .time_to_live(SESSION_CHECK_TTL)
                .build(),
        }
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCache(…)")
    }
}

impl SessionCache {
    /// Drops what is remembered about one session (logout).
    pub async fn forget(&self, sid: &str) {
        self.rows.invalidate(sid).await;
    }

    /// Drops everything remembered (a user's sessions were revoked).
    pub fn forget_all(&self) {
        self.rows.invalidate_all();
    }
}

/// Milliseconds since the epoch times 1000 plus a random part: unique per
/// start and still exact in a JavaScript number (< 2^53).
fn new_instance_id() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms.saturating_mul(1000) + fastrand::u64(0..1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_ids_differ_and_fit_javascript() {
        let a = super::new_instance_id();
        let b = super::new_instance_id();
        assert!(a < (1u64 << 53));
        // Same millisecond is possible; the random part still differs most of the time.
        let ids: std::collections::HashSet<u64> =
            (0..50).map(|_| super::new_instance_id()).collect();
        assert!(ids.len() > 1);
        assert!(a > 1_700_000_000_000_000 && b > 1_700_000_000_000_000);
    }
}
