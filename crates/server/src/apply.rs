//! Live apply: admin writes and changes made by other processes become a
//! new runtime snapshot. A write holds the apply lock and a transaction,
//! checks that the result composes with the base layer, commits and swaps;
//! a poller applies what replicas and the CLI changed and records keys the
//! request path disabled.

use crate::state::AppState;
use llm_link_gateway::config::ConfigError;
use llm_link_store::layer::db_layer;
use llm_link_store::{Store, StoreError, Tx};
use std::sync::Arc;
use std::time::Duration;

/// An admin write: holds the apply lock and a write transaction whose first
/// statement bumps the revision. [`Write::finish`] re-reads the database,
/// checks that the result composes, commits and swaps the runtime.
pub struct Write<'a> {
    store: &'a Store,
    _guard: tokio::sync::MutexGuard<'a, ()>,
    pub tx: Tx,
}

impl<'a> Write<'a> {
    pub async fn begin(store: &'a Store) -> llm_link_store::Result<Write<'a>> {
        let guard = store.apply_lock.lock().await;
        let mut tx = store.db.begin().await?;
        tx.bump_revision().await?;
        Ok(Write {
            store,
            _guard: guard,
            tx,
        })
    }

    /// Commits when the new state composes with the base layer; otherwise
    /// rolls back and returns the composition error.
    pub async fn finish(mut self, st: &AppState) -> Result<(), FinishError> {
        let snap = self.tx.snapshot().await.map_err(FinishError::Store)?;
        let layer = db_layer(&snap, &self.store.key);
        if let Err(e) = st.layers.check_db(&layer) {
            let _ = self.tx.rollback().await;
            return Err(FinishError::Invalid(e));
        }
        self.tx.commit().await.map_err(FinishError::Store)?;
        self.store
            .applied_revision
            .store(layer.revision, std::sync::atomic::Ordering::SeqCst);
        st.layers
            .update(&|rt| st.swap(rt), |_, db| *db = layer)
            .map_err(FinishError::Invalid)
    }
}

#[derive(Debug)]
pub enum FinishError {
    Store(StoreError),
    Invalid(ConfigError),
}

/// Reads the database and applies it (start, replica changes).
pub async fn reload(
    st: &AppState,
    store: &Store,
) -> llm_link_store::Result<Result<(), ConfigError>> {
    let _guard = store.apply_lock.lock().await;
    let mut tx = store.db.begin_read().await?;
    let snap = tx.snapshot().await?;
    let hash = tx.setting(llm_link_store::token::SETTING).await?;
    tx.rollback().await?;
    store.admin.set_hash(hash);
    let layer = db_layer(&snap, &store.key);
    let rev = layer.revision;
    let res = st.layers.update(&|rt| st.swap(rt), |_, db| *db = layer);
    if res.is_ok() {
        store
            .applied_revision
            .store(rev, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(res)
}

/// Reads users and virtual keys and swaps them in (start, admin writes,
/// changes made by replicas or the CLI).
pub async fn reload_identities(st: &AppState, store: &Store) -> llm_link_store::Result<()> {
    let (rev, users, keys) = llm_link_store::identity::load(&store.db).await?;
    let ids = llm_link_store::identity::identities(&users, &keys, &store.secrets);
    st.identities.store(Arc::new(ids));
    store
        .applied_identity_revision
        .store(rev, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// Records in the database what routing learned about stored keys: a key
/// the upstream refused (401/403) is disabled in memory by the request path;
/// here it becomes `disabled` with its `last_error`, so the admin API shows
/// why and a restart does not bring it back. Returns how many were recorded.
pub async fn persist_key_failures(st: &AppState, store: &Store) -> Result<usize, FinishError> {
    let rt = st.runtime();
    let mut failed: Vec<(i64, String)> = Vec::new();
    for u in rt.router.upstreams() {
        for (i, slot) in u.keys.iter().enumerate() {
            let Some((id, secret)) = u
                .cfg
                .meta
                .keys
                .get(i)
                .and_then(|k| Some((k.id?, &k.secret)))
            else {
                continue;
            };
            if let ("disabled", reason) = slot.status() {
                // The upstream's words may echo the key: never store it.
                let reason = reason.map_or_else(
                    || "refused upstream".into(),
                    |r| match secret.expose() {
                        "" => r,
                        s => r.replace(s, &secret.masked()),
                    },
                );
                failed.push((id, reason));
            }
        }
    }
    drop(rt);
    if failed.is_empty() {
        return Ok(0);
    }
    let mut w = Write::begin(store).await.map_err(FinishError::Store)?;
    let now = llm_link_gateway::util::now_ms();
    let mut n = 0;
    for (id, reason) in failed {
        let Some(mut k) = w.tx.key(id).await.map_err(FinishError::Store)? else {
            continue;
        };
        if k.status == "disabled" {
            continue;
        }
        k.status = "disabled".into();
        k.cooling_until = None;
        k.last_error = Some(reason.chars().take(500).collect());
        k.last_error_at = Some(now);
        k.updated_at = now;
        w.tx.update_key(&k).await.map_err(FinishError::Store)?;
        w.tx.audit(
            "llm-link",
            "provider_key.auto_disable",
            &format!("key {id}"),
            &serde_json::json!({"key": k.hint, "reason": k.last_error}),
        )
        .await
        .map_err(FinishError::Store)?;
        n += 1;
    }
    if n == 0 {
        // Dropping the write rolls it back (the revision stays).
        return Ok(0);
    }
    w.finish(st).await?;
    Ok(n)
}

/// Polls the revision so changes made by another process (a replica, the
/// CLI) are applied here too, and records keys the request path disabled.
/// Runs until shutdown.
pub fn spawn_poller(st: Arc<AppState>, every: Duration) {
    let Some(store) = st.store.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = st.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match persist_key_failures(&st, &store).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    "recorded {n} upstream key(s) refused by their provider as disabled"
                ),
                Err(FinishError::Store(e)) => tracing::warn!("cannot record refused keys: {e}"),
                Err(FinishError::Invalid(e)) => tracing::warn!("cannot record refused keys: {e}"),
            }
            let rev = match store.db.begin_read().await {
                Ok(mut tx) => {
                    let r = tx.revision().await;
                    let _ = tx.rollback().await;
                    r
                }
                Err(e) => Err(e),
            };
            match rev {
                Ok(r)
                    if r != store
                        .applied_revision
                        .load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    match reload(&st, &store).await {
                        Ok(Ok(())) => tracing::info!(
                            revision = r,
                            "applied a configuration change from the database"
                        ),
                        Ok(Err(e)) => {
                            // Remember it, so the same bad state is not retried every tick.
                            store
                                .applied_revision
                                .store(r, std::sync::atomic::Ordering::SeqCst);
                            tracing::error!(field = %e.field, "database change not applied, keeping the last good configuration: {e}")
                        }
                        Err(e) => tracing::warn!("cannot read the database: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("revision poll failed: {e}"),
            }
            let irev = match store.db.begin_read().await {
                Ok(mut tx) => {
                    let r = tx.identity_revision().await;
                    let _ = tx.rollback().await;
                    r
                }
                Err(e) => Err(e),
            };
            if let Ok(r) = irev {
                if r != store
                    .applied_identity_revision
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    match reload_identities(&st, &store).await {
                        Ok(()) => tracing::info!(
                            revision = r,
                            "applied a user/key change from the database"
                        ),
                        Err(e) => tracing::warn!("cannot read users and keys: {e}"),
                    }
                }
            }
        }
    });
}

/// Loads the budget spend of current periods into the governor (start).
pub async fn load_spend(st: &AppState, store: &Store) -> llm_link_store::Result<()> {
    // The oldest current period is this month's (or `total`, start 0).
    let since = llm_link_gateway::util::now_ms() - 32 * 86_400_000;
    let mut tx = store.db.begin_read().await?;
    let rows = tx.spend_since(since).await?;
    tx.rollback().await?;
    st.governor
        .load_spend(rows.into_iter().map(|r| (r.scope, r.period_start, r.spent)));
    Ok(())
}

/// Writes the spend settled since the last call; what cannot be written is
/// kept for the next call.
pub async fn flush_spend(gov: &llm_link_gateway::govern::Governor, store: &Store) {
    let dirty = gov.take_dirty();
    if dirty.is_empty() {
        return;
    }
    let res: llm_link_store::Result<()> = async {
        let mut tx = store.db.begin().await?;
        for (scope, start, delta) in &dirty {
            tx.add_spend(scope, *start, *delta).await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!("cannot record budget spend (kept for the next try): {e}");
        gov.restore_dirty(dirty);
    }
}

/// Persists budget spend every second until shutdown (then once more).
pub fn spawn_spend_writer(st: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let store = st.store.clone()?;
    let gov = st.governor.clone();
    let shutdown = st.shutdown.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => flush_spend(&gov, &store).await,
            }
        }
        flush_spend(&gov, &store).await;
    }))
}
