//! Responses API objects stored with `store: true`: what
//! `previous_response_id`, `GET /v1/responses/{id}`, its `input_items` and
//! `DELETE` read. Rows expire (`expires_at`); [`Tx::purge_responses`] drops
//! them.

use crate::rows::{select_one, Get};
use crate::{on, Result, Tx};

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRow {
    /// `resp_…`.
    pub id: String,
    /// Who may read or delete it: `key:<id>`, `user:<id>`, or `None` for a
    /// caller without an identity.
    pub owner: Option<String>,
    pub model: String,
    pub previous_response_id: Option<String>,
    /// The provider target that produced it (for reasoning affinity).
    pub affinity: Option<String>,
    /// JSON array of the request's input items.
    pub input_items: String,
    /// The JSON response object.
    pub response: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub expires_at: i64,
}

const COLS: &str = "id, owner, model, previous_response_id, affinity, input_items, response, \
                    created_at, expires_at";

fn response_row(r: &impl Get) -> Result<ResponseRow> {
    Ok(ResponseRow {
        id: r.text("id")?,
        owner: r.opt_text("owner")?,
        model: r.text("model")?,
        previous_response_id: r.opt_text("previous_response_id")?,
        affinity: r.opt_text("affinity")?,
        input_items: r.text("input_items")?,
        response: r.text("response")?,
        created_at: r.i64("created_at")?,
        expires_at: r.i64("expires_at")?,
    })
}

impl Tx {
    /// Stores a response; an existing row with the same id is replaced (a
    /// retried write).
    pub async fn put_response(&mut self, r: &ResponseRow) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
                "INSERT INTO responses (id, owner, model, previous_response_id, affinity, \
                 input_items, response, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO UPDATE SET response = excluded.response, \
                 expires_at = excluded.expires_at",
            )
            .bind(&r.id)
            .bind(&r.owner)
            .bind(&r.model)
            .bind(&r.previous_response_id)
            .bind(&r.affinity)
            .bind(&r.input_items)
            .bind(&r.response)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    /// The response `id` unless it has expired by `now` (ms).
    pub async fn response(&mut self, id: &str, now: i64) -> Result<Option<ResponseRow>> {
        if id.contains('\0') {
            return Ok(None);
        }
        let sql = format!("SELECT {COLS} FROM responses WHERE id = $1 AND expires_at > $2");
        select_one!(self, &sql, response_row, id, now)
    }

    /// Deletes response `id`; false when there was none.
    pub async fn delete_response(&mut self, id: &str) -> Result<bool> {
        if id.contains('\0') {
            return Ok(false);
        }
        let n = on!(self, |c| {
            sqlx::query("DELETE FROM responses WHERE id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Drops responses that expired before `now` (ms); how many.
    pub async fn purge_responses(&mut self, now: i64) -> Result<u64> {
        Ok(on!(self, |c| {
            sqlx::query("DELETE FROM responses WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;

    #[tokio::test]
    async fn stored_responses_are_read_replaced_deleted_and_expire() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = crate::DbTarget::SqliteFile(dir.path().join("r.db"));
        let (db, _) = Db::open(&target).await.unwrap_or_else(|e| panic!("{e}"));
        let row = |id: &str, expires_at: i64| ResponseRow {
            id: id.into(),
            owner: Some("key:3".into()),
            model: "m".into(),
            previous_response_id: None,
            affinity: Some("p1".into()),
            input_items: r#"[{"type":"message","role":"user","content":"hi"}]"#.into(),
            response: r#"{"id":"x","output":[]}"#.into(),
            created_at: 1,
            expires_at,
        };
        let mut tx = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.put_response(&row("resp_a", 100)).await.unwrap();
        tx.put_response(&row("resp_b", 10)).await.unwrap();
        let mut again = row("resp_a", 200);
        again.response = r#"{"id":"x","output":[1]}"#.into();
        tx.put_response(&again).await.unwrap();
        assert_eq!(tx.response("resp_a", 50).await.unwrap(), Some(again));
        assert_eq!(tx.response("resp_b", 50).await.unwrap(), None, "expired");
        assert_eq!(tx.response("nope\0", 0).await.unwrap(), None);
        assert_eq!(tx.purge_responses(50).await.unwrap(), 1);
        assert!(tx.delete_response("resp_a").await.unwrap());
        assert!(!tx.delete_response("resp_a").await.unwrap());
        tx.commit().await.unwrap();
    }
}
