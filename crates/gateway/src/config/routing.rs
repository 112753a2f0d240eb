//! Routing and resilience settings: per-provider key pools, limits and
//! breaker settings; routes with strategies, targets and fallback chains;
//! retry policy; model deprecations.

use super::{parse_duration, ConfigError};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The next target only when the one before fails.
    #[default]
    Priority,
    RoundRobin,
    /// Smooth weighted round robin.
    Weighted,
    /// Fewest requests in flight.
    LeastConnections,
    /// Power of two choices on an EWMA of time to first byte.
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStrategy {
    /// The first usable key; the next only when it is disabled or cooling.
    #[default]
    Single,
    RoundRobin,
    Weighted,
    /// The key with the fewest requests so far.
    LeastUsed,
}

impl KeyStrategy {
    /// Parses the stored spelling; unknown values mean `single`.
    pub fn parse(s: &str) -> KeyStrategy {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "round_robin" => KeyStrategy::RoundRobin,
            "weighted" => KeyStrategy::Weighted,
            "least_used" => KeyStrategy::LeastUsed,
            _ => KeyStrategy::Single,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before letting probes through.
    pub cooldown: Duration,
    /// Successful probes that close it again.
    pub successes: u32,
    /// Also open when the error rate over the last `window` outcomes reaches this.
    pub error_rate: f64,
    pub window: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
            successes: 3,
            error_rate: 0.5,
            window: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Give up (504) when the whole request has taken this long.
    pub deadline: Duration,
    /// When every target's breaker is open, answer 503 at once instead of
    /// sending the request to the target whose cooldown ends first (panic
    /// mode, the default).
    pub fail_fast: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(600),
            fail_fast: false,
        }
    }
}

/// One target of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTarget {
    pub provider: String,
    pub model: String,
    pub weight: Option<u32>,
    pub priority: Option<i32>,
}

/// A client-facing model served by several targets.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub model: String,
    pub strategy: Strategy,
    pub targets: Vec<RouteTarget>,
    /// Other client-facing models tried, in order, when every target failed.
    pub fallback: Vec<String>,
    pub retry: RetryPolicy,
}

/// A model on its way out.
#[derive(Debug, Clone, PartialEq)]
pub struct Deprecation {
    pub model: String,
    pub replacement: String,
    /// `YYYY-MM-DD`; from this day on requests are mapped to the replacement.
    pub sunset: String,
    /// Unix seconds of the sunset day's start (UTC).
    pub sunset_unix: u64,
}

// ---- file sections ----

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}

impl DurationValue {
    fn parse(&self, field: &str) -> Result<Duration, ConfigError> {
        match self {
            // Zero would make a timer fire continuously (and tokio's
            // interval refuses it): every duration here must be positive.
            DurationValue::Secs(0) => Err(ConfigError::new(field, "must be positive")),
            DurationValue::Secs(s) => Ok(Duration::from_secs(*s)),
            DurationValue::Text(t) => parse_duration(t).map_err(|m| ConfigError::new(field, m)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    pub failures: Option<u32>,
    pub cooldown: Option<DurationValue>,
    pub successes: Option<u32>,
    pub error_rate: Option<f64>,
    pub window: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    Key(String),
    Weighted { key: String, weight: Option<u32> },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    pub max_attempts: Option<u32>,
    pub base: Option<DurationValue>,
    pub max: Option<DurationValue>,
    pub deadline: Option<DurationValue>,
    pub fail_fast: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTargetSection {
    pub provider: String,
    pub model: String,
    pub weight: Option<u32>,
    pub priority: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub model: String,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub targets: Vec<RouteTargetSection>,
    #[serde(default)]
    pub fallback: Vec<String>,
    pub retry: Option<RetrySection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSection {
    pub model: String,
    pub replacement: String,
    pub sunset: String,
}

pub fn breaker_from(at: &str, b: &BreakerSection) -> Result<BreakerConfig, ConfigError> {
    let d = BreakerConfig::default();
    let cfg = BreakerConfig {
        failures: b.failures.unwrap_or(d.failures),
        cooldown: match &b.cooldown {
            Some(v) => v.parse(&format!("{at}.cooldown"))?,
            None => d.cooldown,
        },
        successes: b.successes.unwrap_or(d.successes),
        error_rate: b.error_rate.unwrap_or(d.error_rate),
        window: b.window.unwrap_or(d.window),
    };
    if cfg.failures == 0 || cfg.successes == 0 {
        return Err(ConfigError::new(
            at,
            "failures and successes must be at least 1",
        ));
    }
    if !(cfg.error_rate > 0.0 && cfg.error_rate <= 1.0) {
        return Err(ConfigError::new(
            format!("{at}.error_rate"),
            "must be in (0, 1]",
        ));
    }
    Ok(cfg)
}

pub fn retry_from(at: &str, r: Option<&RetrySection>) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    let Some(r) = r else { return Ok(d) };
    let p = RetryPolicy {
        max_attempts: r.max_attempts.unwrap_or(d.max_attempts),
        base_delay: match &r.base {
            Some(v) => v.parse(&format!("{at}.base"))?,
            None => d.base_delay,
        },
        max_delay: match &r.max {
            Some(v) => v.parse(&format!("{at}.max"))?,
            None => d.max_delay,
        },
        deadline: match &r.deadline {
            Some(v) => v.parse(&format!("{at}.deadline"))?,
            None => d.deadline,
        },
        fail_fast: r.fail_fast.unwrap_or(d.fail_fast),
    };
    if p.max_attempts == 0 {
        return Err(ConfigError::new(
            format!("{at}.max_attempts"),
            "must be at least 1",
        ));
    }
    Ok(p)
}

pub fn duration_from(
    field: &str,
    v: &Option<DurationValue>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        Some(v) => v.parse(field),
        None => Ok(default),
    }
}

pub fn route_from(i: usize, r: &RouteSection) -> Result<RouteConfig, ConfigError> {
    let at = format!("routes[{i}]");
    if r.model.trim().is_empty() {
        return Err(ConfigError::new(format!("{at}.model"), "must not be empty"));
    }
    if r.targets.is_empty() && r.fallback.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.targets"),
            "a route needs at least one target or fallback",
        ));
    }
    let mut targets = Vec::new();
    for (j, t) in r.targets.iter().enumerate() {
        if t.weight == Some(0) {
            return Err(ConfigError::new(
                format!("{at}.targets[{j}].weight"),
                "must be at least 1",
            ));
        }
        targets.push(RouteTarget {
            provider: t.provider.clone(),
            model: t.model.clone(),
            weight: t.weight,
            priority: t.priority,
        });
    }
    Ok(RouteConfig {
        model: r.model.clone(),
        strategy: r.strategy,
        targets,
        fallback: r.fallback.clone(),
        retry: retry_from(&format!("{at}.retry"), r.retry.as_ref())?,
    })
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    u64::try_from(days_from_civil(y, m, d) * 86_400).ok()
}

pub fn deprecation_from(i: usize, d: &DeprecationSection) -> Result<Deprecation, ConfigError> {
    let at = format!("deprecations[{i}]");
    let sunset_unix = parse_date(&d.sunset).ok_or_else(|| {
        ConfigError::new(
            format!("{at}.sunset"),
            format!("`{}` is not a date like 2026-01-31", d.sunset),
        )
    })?;
    if d.model.trim().is_empty() || d.replacement.trim().is_empty() {
        return Err(ConfigError::new(
            at,
            "model and replacement must not be empty",
        ));
    }
    Ok(Deprecation {
        model: d.model.clone(),
        replacement: d.replacement.clone(),
        sunset: d.sunset.clone(),
        sunset_unix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("soon"), None);
    }
}
