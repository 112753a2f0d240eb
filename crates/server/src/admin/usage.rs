//! `GET /api/v1/llm/usage` (admin token): usage rows or aggregates, with a
//! summary over every matching row.
//!
//! Filters: `from`, `to` (Unix ms or RFC 3339; `from` inclusive, `to`
//! exclusive), `model`, `provider`, `app`, `key` (the key id), `limit`
//! (rows or groups, 1–10000, default 100) and `group_by`
//! (`model`, `provider`, `app`, `key` or `day`).

use crate::admin::resource::Filters;
use crate::admin::rest::{self, AdminError, AdminResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use llm_link_store::usage::{self as db, Filter, GroupBy};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/llm/usage", get(usage))
}

const KNOWN: &[&str] = &[
    "from", "to", "model", "provider", "app", "key", "limit", "group_by",
];

async fn usage(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let q = Filters::new(&q, KNOWN)?;
    let text = |k: &str| -> AdminResult<Option<String>> {
        match q.get(k) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(AdminError::invalid(
                format!("query.{k}"),
                "must not be empty",
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let time = |k: &str| -> AdminResult<Option<i64>> {
        q.get(k)
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    AdminError::invalid(
                        format!("query.{k}"),
                        "must be Unix milliseconds or an RFC 3339 time (2024-05-01T00:00:00Z or 2024-05-01)",
                    )
                })
            })
            .transpose()
    };
    let filter = Filter {
        from: time("from")?,
        to: time("to")?,
        model: text("model")?,
        provider: text("provider")?,
        app: text("app")?,
        key_id: text("key")?,
    };
    if let (Some(f), Some(t)) = (filter.from, filter.to) {
        if f > t {
            return Err(AdminError::invalid("query.to", "must not be before `from`"));
        }
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|_| AdminError::invalid("query.limit", "must be a number"))?,
    };
    let limit = rest::check_range("query.limit", limit, 1, 10_000)?;
    let group_by = q
        .get("group_by")
        .map(|v| {
            GroupBy::parse(v).ok_or_else(|| {
                AdminError::invalid(
                    "query.group_by",
                    "must be one of model, provider, app, key, day",
                )
            })
        })
        .transpose()?;
    let store = rest::store(&st)?;
    let (data, summary) = db::query(&store.db, &filter, group_by, limit).await?;
    let s = &st.usage.stats;
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "summary": summary,
        "recorder": {
            "enabled": st.usage.enabled(),
            "written": s.written.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
            "failed": s.failed.load(Ordering::Relaxed),
        },
    }))
    .into_response())
}

/// Unix milliseconds, or RFC 3339 (`2024-05-01T12:00:00Z`, fractions and
/// `±hh:mm` offsets allowed, a `T` or a space between date and time), or a
/// bare date (`2024-05-01`, midnight UTC).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, rest) = match s.get(..10) {
        Some(d) => (d, &s[10..]),
        None => return None,
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if date.as_bytes().get(4) != Some(&b'-') || !(1..=12).contains(&m) || d < 1 || d > days_in(y, m)
    {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    if rest.len() < 8 || rest.as_bytes()[2] != b':' || rest.as_bytes()[5] != b':' {
        return None;
    }
    let (hh, mm, ss) = (num(&rest[..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = num(&ms)?;
        rest = &frac[digits..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &rest[1..];
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (num(&o[..2])?, num(&o[3..])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3_600_000 + om * 60_000)
        }
    };
    Some(day_ms + hh * 3_600_000 + mm * 60_000 + ss * 1000 + millis - offset_ms)
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1714521600000"), Some(1_714_521_600_000));
        assert_eq!(parse_time("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(parse_time("2024-05-01T00:00:00Z"), Some(1_714_521_600_000));
        assert_eq!(
            parse_time("2024-05-01T08:00:00.5+08:00"),
            Some(1_714_521_600_500)
        );
        assert_eq!(
            parse_time("2024-02-29 23:59:59.999z"),
            Some(1_709_251_199_999)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00-01:30"), Some(5_400_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-05-01T25:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00Z",
            "-5",
            "2024-05-01T00:00:00.Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        // Round trip with the store's formatter.
        let ms = 1_709_251_199_999;
        assert_eq!(parse_time(&llm_link_store::rfc3339(ms)), Some(ms));
    }
}
