//! Usage reports: rows or aggregates, with a summary over every matching
//! row, as JSON or CSV (`format=csv`).
//!
//! * `GET /api/usage` (admin API, ViewMetrics): everyone's usage for an
//!   admin (or the admin token); a member's or viewer's session sees only
//!   its own user's rows (`user=` naming another user is 403).
//! * `GET /api/v1/llm/usage` (seed 004's team API): the caller's own usage
//!   when it presents a virtual key (its user's, or the key's when it has no
//!   user) or a user's session; with an admin credential, everyone's (as
//!   before the team API existed).
//!
//! Filters: `from`, `to` (Unix ms or RFC 3339; `from` inclusive, `to`
//! exclusive), `model`, `provider`, `app`, `key` (a virtual key id or the
//! short hash of a static key), `user` (a user id; admin only), `limit`
//! (rows or groups, 1–10000, default 100) and `group_by` (`model`,
//! `provider`, `app`, `key`, `user` or `day`; the team API allows `model`,
//! `day` and `key`).

use crate::admin::caller::Caller;
use crate::admin::resource::Filters;
use crate::admin::rest::{self, AdminError, AdminResult};
use crate::state::AppState;
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use llm_link_gateway::govern::Principal;
use llm_link_gateway::lifecycle::{self, Credential};
use llm_link_store::usage::{self as db, Filter, GroupBy};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `/api/usage`, mounted behind the admin guard.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/usage", get(usage))
}

/// `/api/v1/llm/usage`: a virtual key or a session sees its own usage;
/// anything else goes through the admin guard.
pub fn team_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/llm/usage", get(usage))
        .route_layer(axum::middleware::from_fn_with_state(state, own_or_admin))
}

/// Who asks: a virtual key or a session (their own usage), else the admin
/// guard decides.
async fn own_or_admin(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let cred = {
        let ids = st.identities.load();
        match lifecycle::authenticate(req.headers(), &st.peek_runtime(), &ids) {
            Ok(Credential::Principal(p)) => Some(Ok(p)),
            Ok(Credential::Session(t)) => Some(Err(t.to_string())),
            _ => None,
        }
    };
    let who = match cred {
        None => return rest::require_admin(State(st), req, next).await,
        Some(Ok(p)) => p,
        Some(Err(token)) => match crate::sessions::principal(&st, &token).await {
            Ok(w) => w,
            // Perhaps an admin's session on the admin API: let the guard say.
            Err(_) => return rest::require_admin(State(st), req, next).await,
        },
    };
    req.extensions_mut().insert(who);
    next.run(req).await
}

const KNOWN: &[&str] = &[
    "from", "to", "model", "provider", "app", "key", "user", "limit", "group_by", "format",
];

async fn usage(
    State(st): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let own = who.map(|w| w.0);
    // A user without the admin role sees only its own usage on the admin
    // API too (members have ViewMetrics, but not over everyone's rows).
    let scoped_to = match caller.as_deref() {
        Some(c) if own.is_none() && !c.is_admin() => Some(
            c.user_id()
                .ok_or_else(|| AdminError::forbidden("only an admin sees everyone's usage"))?,
        ),
        _ => None,
    };
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
    let key = text("key")?;
    let (key_id, virtual_key_id) = match key.as_deref().map(str::parse::<i64>) {
        Some(Ok(id)) => (None, Some(id)),
        _ => (key, None),
    };
    let user_id = match text("user")? {
        None => None,
        Some(_) if own.is_some() => {
            return Err(AdminError::invalid(
                "query.user",
                "the team API shows the caller's own usage; use /api/usage for other users",
            ))
        }
        Some(v) => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| AdminError::invalid("query.user", "must be a user id"))?,
        ),
    };
    let mut filter = Filter {
        from: time("from")?,
        to: time("to")?,
        model: text("model")?,
        provider: text("provider")?,
        app: text("app")?,
        key_id,
        user_id,
        virtual_key_id,
    };
    if let Some(me) = scoped_to {
        if filter.user_id.is_some_and(|u| u != me) {
            return Err(AdminError::forbidden(
                "a member or viewer sees only its own usage",
            ));
        }
        filter.user_id = Some(me);
    }
    if let Some(who) = &own {
        // Only the caller's own rows, whatever else was asked.
        match who.user_id() {
            Some(u) => filter.user_id = Some(u),
            None => {
                filter.virtual_key_id = who.key_id();
                filter.key_id = None;
            }
        }
    }
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
    let allowed: &[&str] = if own.is_some() {
        &["model", "day", "key"]
    } else {
        &["model", "provider", "app", "key", "user", "day"]
    };
    let group_by = q
        .get("group_by")
        .map(|v| {
            GroupBy::parse(v)
                .filter(|g| allowed.contains(&g.name()))
                .ok_or_else(|| {
                    AdminError::invalid(
                        "query.group_by",
                        format!("must be one of {}", allowed.join(", ")),
                    )
                })
        })
        .transpose()?;
    let csv = match q.get("format").map(str::trim) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(AdminError::invalid("query.format", "must be json or csv")),
    };
    let store = rest::store(&st)?;
    let (mut data, summary) = db::query(&store.db, &filter, group_by, limit).await?;
    name_groups(&st, group_by, &mut data);
    if csv {
        return Ok(csv_response(&data, group_by));
    }
    let s = &st.usage.stats;
    let mut body = json!({
        "object": "list",
        "data": data,
        "summary": summary,
    });
    if own.is_none() && scoped_to.is_none() {
        body["recorder"] = json!({
            "enabled": st.usage.enabled(),
            "written": s.written.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
            "failed": s.failed.load(Ordering::Relaxed),
        });
    }
    Ok(Json(body).into_response())
}

/// Adds the user's name to `group_by=user` groups and the key's name to
/// `group_by=key` groups of virtual keys.
fn name_groups(st: &AppState, by: Option<GroupBy>, data: &mut [Value]) {
    let ids = st.identities.load();
    for g in data.iter_mut() {
        match by {
            Some(GroupBy::User) => {
                let name = g["user"]
                    .as_str()
                    .and_then(|u| u.parse::<i64>().ok())
                    .and_then(|u| ids.user(u))
                    .map(|u| u.username.clone());
                g["username"] = name.map_or(Value::Null, Value::String);
            }
            Some(GroupBy::Key) => {
                let id = g["key"].as_str().and_then(|k| k.parse::<i64>().ok());
                let name = id.and_then(|id| {
                    ids.keys
                        .values()
                        .find(|k| k.id == id)
                        .map(|k| k.name.clone())
                });
                g["key_name"] = name.map_or(Value::Null, Value::String);
            }
            _ => {}
        }
    }
}

/// The report as CSV (RFC 4180 quoting), one line per row or group.
fn csv_response(data: &[Value], by: Option<GroupBy>) -> Response {
    let cols: Vec<&str> = match by {
        None => ["id", "time"]
            .into_iter()
            .chain(db::COLS.iter().copied().filter(|c| *c != "ts"))
            .collect(),
        Some(g) => {
            let mut c = vec![g.name()];
            match g {
                GroupBy::User => c.push("username"),
                GroupBy::Key => c.push("key_name"),
                _ => {}
            }
            c.extend([
                "requests",
                "input_tokens",
                "output_tokens",
                "cost",
                "errors",
            ]);
            c
        }
    };
    let mut out = cols.join(",");
    out.push_str("\r\n");
    for row in data {
        let line: Vec<String> = cols.iter().map(|c| csv_field(&row[*c])).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r.headers_mut().insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"usage.csv\""),
    );
    r
}

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // A leading =, +, - or @ would be a formula in a spreadsheet.
    let s = if s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<f64>().is_err()) {
        format!("'{s}")
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
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
