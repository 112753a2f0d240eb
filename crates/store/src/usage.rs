//! Usage rows in the store: the batch insert (cached multi-row INSERTs of
//! fixed sizes, one transaction per batch) and the queries behind
//! `GET /api/v1/llm/usage`, written once for both engines.

use crate::rows::Get;
use crate::{on, Db, Result};
use llm_link_gateway::providers::BoxFuture;
use llm_link_gateway::usage::BatchSink;
use llm_link_gateway::usage::UsageRow;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The stored columns, in INSERT order (reports show `id` and `time` besides).
pub const COLS: &[&str] = &[
    "ts",
    "request_id",
    "protocol",
    "endpoint",
    "app",
    "model",
    "provider",
    "upstream_model",
    "stream",
    "status",
    "error",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "latency_ms",
    "ttfb_ms",
    "attempts",
    "cost",
    "key_id",
    "user_id",
    "virtual_key_id",
];

/// Writes batches into `usage_records`.
pub struct DbSink(pub Db);

impl BatchSink for DbSink {
    fn write<'a>(&'a mut self, rows: &'a [UsageRow]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { insert(&self.0, rows).await.map_err(|e| e.to_string()) })
    }
}

/// The multi-row INSERT; numbered placeholders (`$1`) for PostgreSQL,
/// anonymous ones (`?`) for SQLite, where looking up each of thousands of
/// numbered parameters by name costs time quadratic in their count.
fn insert_sql(n: usize, numbered: bool) -> String {
    let mut sql = format!("INSERT INTO usage_records ({}) VALUES ", COLS.join(", "));
    let mut p = 1;
    for r in 0..n {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..COLS.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            if numbered {
                let _ = write!(sql, "${p}");
                p += 1;
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rows per INSERT statement. A batch goes out as statements of these
/// sizes (largest first), each prepared once per connection and then
/// taken from the statement cache. A multi-row INSERT with as many rows as
/// the batch was a new statement for each batch size, parsed every time:
/// in SQLite that parse cost about as much per row as the rest of a
/// proxied request.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The INSERT text for each of [`CHUNKS`], per placeholder style.
fn chunk_sql(numbered: bool) -> &'static [String; 7] {
    static NUMBERED: std::sync::OnceLock<[String; 7]> = std::sync::OnceLock::new();
    static ANONYMOUS: std::sync::OnceLock<[String; 7]> = std::sync::OnceLock::new();
    let cell = if numbered { &NUMBERED } else { &ANONYMOUS };
    cell.get_or_init(|| CHUNKS.map(|n| insert_sql(n, numbered)))
}

/// Inserts rows in one transaction.
pub async fn insert(db: &Db, rows: &[UsageRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let sqls = chunk_sql(matches!(db, Db::Postgres(_)));
    let mut tx = db.begin().await?;
    let mut rest = rows;
    while !rest.is_empty() {
        // The largest size that fits; the last one, 1, always does.
        let k = CHUNKS
            .iter()
            .position(|&n| n <= rest.len())
            .unwrap_or(CHUNKS.len() - 1);
        let (part, tail) = rest.split_at(CHUNKS[k]);
        rest = tail;
        let sql = sqls[k].as_str();
        on!(&mut tx, |c| {
            let mut q = sqlx::query(sql);
            for r in part {
                q = q
                    .bind(r.ts)
                    .bind(r.request_id.as_str())
                    .bind(r.protocol)
                    .bind(r.endpoint)
                    .bind(r.app.as_deref())
                    .bind(r.model.as_str())
                    .bind(r.provider.as_deref())
                    .bind(r.upstream_model.as_deref())
                    .bind(r.stream)
                    .bind(i64::from(r.status))
                    .bind(r.error)
                    .bind(r.input_tokens.map(big))
                    .bind(r.output_tokens.map(big))
                    .bind(r.cached_tokens.map(big))
                    .bind(r.reasoning_tokens.map(big))
                    .bind(big(r.latency_ms))
                    .bind(r.ttfb_ms.map(big))
                    .bind(i64::from(r.attempts))
                    .bind(r.cost)
                    .bind(r.key_id.as_deref())
                    .bind(r.user_id)
                    .bind(r.virtual_key_id);
            }
            q.execute(&mut *c).await?;
        });
    }
    tx.commit().await
}

/// A filter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// Which rows a query covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Inclusive, Unix ms.
    pub from: Option<i64>,
    /// Exclusive, Unix ms.
    pub to: Option<i64>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub app: Option<String>,
    pub key_id: Option<String>,
    pub user_id: Option<i64>,
    pub virtual_key_id: Option<i64>,
}

impl Filter {
    /// ` WHERE …` (or nothing) and its arguments, `$1`, `$2`, … in order.
    fn clause(&self) -> (String, Vec<Arg>) {
        let mut conds: Vec<String> = Vec::new();
        let mut args = Vec::new();
        let mut add = |cond: &str, a: Arg| {
            args.push(a);
            conds.push(format!("{cond} ${}", args.len()));
        };
        if let Some(v) = self.from {
            add("ts >=", Arg::Int(v));
        }
        if let Some(v) = self.to {
            add("ts <", Arg::Int(v));
        }
        for (col, v) in [
            ("model", &self.model),
            ("provider", &self.provider),
            ("app", &self.app),
            ("key_id", &self.key_id),
        ] {
            if let Some(v) = v {
                add(&format!("{col} ="), Arg::Text(v.clone()));
            }
        }
        for (col, v) in [
            ("user_id", self.user_id),
            ("virtual_key_id", self.virtual_key_id),
        ] {
            if let Some(v) = v {
                add(&format!("{col} ="), Arg::Int(v));
            }
        }
        if conds.is_empty() {
            (String::new(), args)
        } else {
            (format!(" WHERE {}", conds.join(" AND ")), args)
        }
    }
}

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Provider,
    App,
    /// The virtual key's id, else the short hash of a static key.
    Key,
    User,
    /// The UTC day.
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "app" => GroupBy::App,
            "key" => GroupBy::Key,
            "user" => GroupBy::User,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::App => "app",
            GroupBy::Key => "key",
            GroupBy::User => "user",
            GroupBy::Day => "day",
        }
    }

    fn expr(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::App => "app",
            GroupBy::Key => "COALESCE(CAST(virtual_key_id AS TEXT), key_id)",
            GroupBy::User => "CAST(user_id AS TEXT)",
            GroupBy::Day => "(ts / 86400000)",
        }
    }
}

const AGGREGATES: &str = "COUNT(*) AS requests, \
    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
    SUM(cost) AS cost, \
    CAST(COALESCE(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS errors";

fn aggregates(r: &impl Get) -> Result<Value> {
    Ok(json!({
        "requests": r.i64("requests")?,
        "input_tokens": r.i64("input_tokens")?,
        "output_tokens": r.i64("output_tokens")?,
        "cost": r.opt_f64("cost")?,
        "errors": r.i64("errors")?,
    }))
}

fn record(r: &impl Get) -> Result<Value> {
    let ts = r.i64("ts")?;
    Ok(json!({
        "id": r.i64("id")?,
        "ts": ts,
        "time": crate::rfc3339(ts),
        "request_id": r.text("request_id")?,
        "protocol": r.text("protocol")?,
        "endpoint": r.text("endpoint")?,
        "app": r.opt_text("app")?,
        "model": r.text("model")?,
        "provider": r.opt_text("provider")?,
        "upstream_model": r.opt_text("upstream_model")?,
        "stream": r.boolean("stream")?,
        "status": r.i64("status")?,
        "error": r.opt_text("error")?,
        "input_tokens": r.opt_i64("input_tokens")?,
        "output_tokens": r.opt_i64("output_tokens")?,
        "cached_tokens": r.opt_i64("cached_tokens")?,
        "reasoning_tokens": r.opt_i64("reasoning_tokens")?,
        "latency_ms": r.i64("latency_ms")?,
        "ttfb_ms": r.opt_i64("ttfb_ms")?,
        "attempts": r.i64("attempts")?,
        "cost": r.opt_f64("cost")?,
        "key_id": r.opt_text("key_id")?,
        "user_id": r.opt_i64("user_id")?,
        "virtual_key_id": r.opt_i64("virtual_key_id")?,
    }))
}

fn group(r: &impl Get, by: GroupBy) -> Result<Value> {
    let key = match by {
        GroupBy::Day => {
            let day = r.i64("g")?;
            let text = crate::rfc3339(day.saturating_mul(86_400_000));
            Value::String(text.get(..10).unwrap_or(&text).to_string())
        }
        _ => r.opt_text("g")?.map_or(Value::Null, Value::String),
    };
    let mut v = aggregates(r)?;
    v[by.name()] = key;
    Ok(v)
}

/// Runs `$sql` with the filter's arguments and maps each row with `$map`.
macro_rules! fetch {
    ($tx:expr, $sql:expr, $args:expr, $map:expr) => {
        on!($tx, |c| {
            let mut q = sqlx::query($sql);
            for a in $args {
                q = match a {
                    Arg::Int(v) => q.bind(*v),
                    Arg::Text(s) => q.bind(s.as_str()),
                };
            }
            q.fetch_all(&mut *c)
                .await?
                .iter()
                .map($map)
                .collect::<Result<Vec<Value>>>()?
        })
    };
}

/// The rows (newest first, at most `limit`) or the groups (at most
/// `limit`), and the summary over every matching row.
pub async fn query(
    db: &Db,
    filter: &Filter,
    group_by: Option<GroupBy>,
    limit: i64,
) -> Result<(Vec<Value>, Value)> {
    let (clause, args) = filter.clause();
    let n = args.len() + 1;
    let mut tx = db.begin_read().await?;
    // The rows and the summary from one snapshot (PostgreSQL's default,
    // READ COMMITTED, gives each statement its own; SQLite's read
    // transaction is one snapshot already).
    if let crate::Tx::Postgres(t) = &mut tx {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut **t)
            .await?;
    }
    let data = match group_by {
        None => {
            let sql = format!(
                "SELECT id, {} FROM usage_records{clause} ORDER BY ts DESC, id DESC LIMIT ${n}",
                COLS.join(", ")
            );
            let mut all = args.clone();
            all.push(Arg::Int(limit));
            fetch!(&mut tx, &sql, &all, record)
        }
        Some(by) => {
            let order = if by == GroupBy::Day {
                "g"
            } else {
                "requests DESC, g"
            };
            let sql = format!(
                "SELECT {} AS g, {AGGREGATES} FROM usage_records{clause} GROUP BY {} ORDER BY {order} LIMIT ${n}",
                by.expr(),
                by.expr()
            );
            let mut all = args.clone();
            all.push(Arg::Int(limit));
            fetch!(&mut tx, &sql, &all, |r| group(r, by))
        }
    };
    let sql = format!("SELECT {AGGREGATES} FROM usage_records{clause}");
    let summary = fetch!(&mut tx, &sql, &args, aggregates)
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": null, "errors": 0}));
    tx.rollback().await?;
    Ok((data, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_placeholder() {
        let s = insert_sql(2, true);
        assert!(s.contains("($1, $2,"), "{s}");
        assert!(s.ends_with(", $44)"), "{s}");
        assert_eq!(s.matches('$').count(), 44);
        let s = insert_sql(2, false);
        assert!(
            s.ends_with("?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            "{s}"
        );
        assert_eq!(s.matches('?').count(), 44);
    }

    #[tokio::test]
    async fn batches_of_any_size_insert_every_row_in_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = crate::DbTarget::SqliteFile(dir.path().join("u.db"));
        let (db, _) = Db::open(&target).await.unwrap_or_else(|e| panic!("{e}"));
        let row = |i: i64| UsageRow {
            ts: i,
            request_id: format!("r{i}"),
            protocol: "openai",
            endpoint: "chat/completions",
            model: "m".into(),
            input_tokens: Some(u64::try_from(i).unwrap_or(0)),
            ..UsageRow::default()
        };
        // 0, 1, and sizes that take every chunk size (64+32+…+1 = 127).
        let mut next = 0;
        for n in [0, 1, 127, 64, 200, 3] {
            let rows: Vec<UsageRow> = (next..next + n).map(row).collect();
            insert(&db, &rows).await.unwrap_or_else(|e| panic!("{e}"));
            next += n;
        }
        let (data, summary) = query(&db, &Filter::default(), None, 1000)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary["requests"], json!(next));
        assert_eq!(data.len(), usize::try_from(next).unwrap_or(0));
        // Newest first: every row is there once, with its own values.
        for (k, r) in data.iter().enumerate() {
            let i = next - 1 - i64::try_from(k).unwrap_or(0);
            assert_eq!(r["request_id"], json!(format!("r{i}")), "{r}");
            assert_eq!(r["input_tokens"], json!(i), "{r}");
        }
    }

    #[test]
    fn filters_become_numbered_conditions() {
        let f = Filter {
            from: Some(5),
            model: Some("m".into()),
            key_id: Some("abcd1234".into()),
            ..Filter::default()
        };
        let (c, a) = f.clause();
        assert_eq!(c, " WHERE ts >= $1 AND model = $2 AND key_id = $3");
        assert_eq!(a.len(), 3);
        assert_eq!(Filter::default().clause().0, "");
    }
}
