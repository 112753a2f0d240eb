//! Responses API objects kept with `store: true`: a bounded memory cache in
//! front of the database (or alone, without one). Writes reach the cache
//! before the client sees the answer end, so a follow-up request with
//! `previous_response_id` finds it at once; the database write follows.

use llm_link_gateway::error::ApiError;
use llm_link_gateway::govern::Principal;
use llm_link_gateway::util::now_ms;
use llm_link_store::responses::ResponseRow;
use llm_link_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of stored responses kept in memory (the database keeps them all).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How often expired responses are purged from the database.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub struct Stored {
    cache: moka::sync::Cache<String, Arc<ResponseRow>>,
    store: Option<Arc<Store>>,
    /// How long a response is kept.
    pub ttl: Duration,
}

/// Who a stored response belongs to: the user, else the key, else nobody
/// (a caller without an identity).
pub fn owner_of(who: &Principal) -> Option<String> {
    match (who.user_id(), who.key_id()) {
        (Some(u), _) => Some(format!("user:{u}")),
        (None, Some(k)) => Some(format!("key:{k}")),
        (None, None) => None,
    }
}

fn unavailable(what: &str, e: llm_link_store::StoreError) -> ApiError {
    tracing::warn!("{what} a stored response failed: {e}");
    ApiError::Unavailable("the response store is unavailable".into())
}

impl Stored {
    /// Responses kept for `ttl`, in `store` when there is one. Purges
    /// expired rows from the database now and then (when there is a
    /// runtime to do it on).
    pub fn new(ttl: Duration, store: Option<Arc<Store>>) -> Stored {
        if let Some(s) = store.clone() {
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(purge(s));
            }
        }
        Stored {
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|k: &String, r: &Arc<ResponseRow>| {
                    let n = k.len() + r.input_items.len() + r.response.len() + 256;
                    u32::try_from(n).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            store,
            ttl,
        }
    }

    /// The stored response `id`, if it exists, has not expired and `who`
    /// may see it (its owner, or anyone when it has none).
    pub async fn load(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<Option<Arc<ResponseRow>>, ApiError> {
        let now = now_ms();
        let row = match (self.cache.get(id), &self.store) {
            (Some(r), _) => Some(r),
            (None, None) => None,
            (None, Some(store)) => {
                let read = async {
                    let mut tx = store.db.begin_read().await?;
                    let r = tx.response(id, now).await?;
                    tx.commit().await?;
                    Ok(r)
                };
                let r = read.await.map_err(|e| unavailable("reading", e))?;
                r.map(|r| {
                    let r = Arc::new(r);
                    self.cache.insert(id.to_string(), r.clone());
                    r
                })
            }
        };
        let owner = owner_of(who);
        Ok(row.filter(|r| r.expires_at > now && (r.owner.is_none() || r.owner == owner)))
    }

    /// Keeps a response: in memory at once, in the database behind.
    pub fn save(&self, row: ResponseRow) {
        let row = Arc::new(row);
        self.cache.insert(row.id.clone(), row.clone());
        let Some(store) = self.store.clone() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            let write = async {
                let mut tx = store.db.begin().await?;
                tx.put_response(&row).await?;
                tx.commit().await
            };
            if let Err(e) = write.await {
                tracing::warn!(response = %row.id, "storing a response failed: {e}");
            }
        });
    }

    /// Forgets response `id` (the caller checked it may).
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.cache.invalidate(id);
        if let Some(store) = &self.store {
            let del = async {
                let mut tx = store.db.begin().await?;
                tx.delete_response(id).await?;
                tx.commit().await
            };
            del.await.map_err(|e| unavailable("deleting", e))?;
        }
        Ok(())
    }
}

async fn purge(store: Arc<Store>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        let purged = async {
            let mut tx = store.db.begin().await?;
            let n = tx.purge_responses(now_ms()).await?;
            tx.commit().await?;
            Ok::<_, llm_link_store::StoreError>(n)
        };
        match purged.await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "expired stored responses removed"),
            Err(e) => tracing::warn!("purging expired stored responses failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_link_gateway::identity::KeyEntry;

    fn key(id: i64, user_id: Option<i64>) -> Principal {
        Principal {
            key: Some(Arc::new(KeyEntry {
                id,
                name: format!("k{id}"),
                user_id,
                models: None,
                expires_at: None,
                revoked: false,
                limits: Default::default(),
            })),
            user: None,
        }
    }

    fn row(id: &str, owner: Option<String>, expires_at: i64) -> ResponseRow {
        ResponseRow {
            id: id.into(),
            owner,
            model: "m".into(),
            previous_response_id: None,
            affinity: None,
            input_items: "[]".into(),
            response: "{}".into(),
            created_at: 0,
            expires_at,
        }
    }

    /// A stored response is its creator's: another key does not see it,
    /// a caller without identity sees only unowned ones, and an expired
    /// one is gone for everybody.
    #[tokio::test]
    async fn only_the_owner_sees_a_stored_response() {
        let s = Stored::new(Duration::from_secs(60), None);
        let a = key(1, None);
        let b = key(2, None);
        let far = now_ms() + 60_000;
        s.save(row("resp_a", owner_of(&a), far));
        s.save(row("resp_open", None, far));
        s.save(row("resp_old", owner_of(&a), now_ms() - 1));
        assert!(s.load(&a, "resp_a").await.unwrap().is_some());
        assert!(s.load(&b, "resp_a").await.unwrap().is_none());
        assert!(s
            .load(&Principal::default(), "resp_a")
            .await
            .unwrap()
            .is_none());
        assert!(s.load(&b, "resp_open").await.unwrap().is_some());
        assert!(s.load(&a, "resp_old").await.unwrap().is_none());
        s.delete("resp_a").await.unwrap();
        assert!(s.load(&a, "resp_a").await.unwrap().is_none());
        // A key of a user belongs to the user: the user's other keys see it.
        assert_eq!(owner_of(&key(3, Some(9))).as_deref(), Some("user:9"));
        assert_eq!(owner_of(&key(4, Some(9))), owner_of(&key(3, Some(9))));
    }
}
