//! Command line + config file + environment → one validated [`Config`].
//!
//! Every mistake becomes a [`ConfigError`] that names the flag or field, so
//! the binary can exit 2 with one line.

pub mod catalog;
mod file;
pub mod routing;

pub use file::{load_file, FileConfig};

use crate::presets::{self, Preset};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sk-…abcd`-style hint, safe to show.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let n = s.chars().count();
        if n <= 8 {
            return "****".into();
        }
        let head: String = s.chars().take(3).collect();
        let tail: String = s.chars().skip(n - 4).collect();
        format!("{head}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// A user mistake in flags, environment or config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag (`--port`) or field (`providers[0].base_url`) at fault.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From sending the request to the response headers.
    pub first_byte: Duration,
    /// Longest silence between two body chunks.
    pub idle: Duration,
    /// The longest a whole answer may take, first byte to last.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(30 * 60),
        }
    }
}

/// A model a provider serves: the id clients use and the id sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub id: String,
    pub upstream: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cli,
    File,
    Env,
    /// Created through the admin API (stored; see `config::catalog`).
    Database,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cli => "command line",
            Origin::File => "config file",
            Origin::Env => "environment",
            Origin::Database => "database",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Unique; the `name` in `name/model`.
    pub name: String,
    pub preset: &'static Preset,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub models: Vec<ModelEntry>,
    pub default_model: Option<String>,
    /// Accept any model name and forward it as is.
    pub forward_any_model: bool,
    /// Forward same-format bodies byte for byte (default). When off, every
    /// request goes through the internal model (normalises vendor quirks such
    /// as inline `<think>` reasoning).
    pub passthrough: bool,
    pub timeouts: Timeouts,
    /// Extra headers sent upstream (for example OpenRouter's `HTTP-Referer`).
    pub headers: Vec<(String, String)>,
    pub origin: Origin,
    /// Routing metadata (priority, weight, key pool, limits); defaults for
    /// providers that declare none.
    pub meta: ProviderMeta,
}

/// What the database (and, later, the config file) says about how to use a
/// provider. The request path may ignore any of it.
#[derive(Debug, Clone)]
pub struct ProviderMeta {
    /// The database row id, for providers from the database.
    pub id: Option<i64>,
    /// Higher goes first.
    pub priority: i64,
    pub weight: u32,
    /// Every usable upstream key; `api_key` is the first one.
    pub keys: Vec<PoolKey>,
    /// `single`, `round_robin`, `weighted` or `least_used`.
    pub key_usage: String,
    pub max_concurrency: Option<u32>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u32>,
    /// How long a request waits for a concurrency slot before a 503.
    pub queue_timeout: Duration,
    pub breaker: routing::BreakerConfig,
    /// Probe the provider's model list this often (feeds the breaker).
    pub health_check: Option<Duration>,
    /// The largest whole (non-streamed) answer read from it; beyond, the
    /// request is a 502 naming the limit.
    pub max_answer: usize,
    /// Forward Responses API requests byte for byte (`/responses`); `None`:
    /// as the preset says (on for `openai`). Off, they are translated to
    /// Chat Completions like for any other host.
    pub responses: Option<bool>,
}

/// The default of [`ProviderMeta::max_answer`].
pub const DEFAULT_MAX_ANSWER: usize = 32 * 1024 * 1024;

impl Default for ProviderMeta {
    fn default() -> Self {
        ProviderMeta {
            id: None,
            priority: 0,
            weight: 1,
            keys: Vec::new(),
            key_usage: "single".into(),
            max_concurrency: None,
            rpm_limit: None,
            tpm_limit: None,
            queue_timeout: Duration::from_secs(10),
            breaker: routing::BreakerConfig::default(),
            health_check: None,
            max_answer: DEFAULT_MAX_ANSWER,
            responses: None,
        }
    }
}

/// One key of a provider's pool.
#[derive(Debug, Clone)]
pub struct PoolKey {
    /// The database row id (to record errors against), when stored.
    pub id: Option<i64>,
    pub secret: Secret,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub auth_keys: Vec<Secret>,
    pub body_limit: usize,
    pub providers: Vec<ProviderConfig>,
    /// alias → `provider/model` or a model id.
    pub aliases: Vec<(String, String)>,
    /// Client-facing models with several targets, strategies and fallbacks.
    pub routes: Vec<routing::RouteConfig>,
    pub deprecations: Vec<routing::Deprecation>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// The `--app` preset, validated.
    pub app: Option<String>,
    pub admin_token: Option<Secret>,
    pub cors_origins: Vec<String>,
    /// How long in-flight requests may finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Redis for limits shared by replicas.
    pub redis: Option<String>,
    /// The calendar budgets reset on (`--budget-timezone`, default UTC).
    pub budget_timezone: crate::identity::TimeZone,
    /// Serve a non-loopback address without any client credential.
    pub insecure: bool,
    /// How long Responses API objects stored with `store: true` are kept.
    pub responses_ttl: Duration,
    /// Deadlines and the connection cap of the HTTP front.
    pub client: ClientLimits,
}

/// What a client connection may hold: time and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A request head must be complete this long after its first byte (a
    /// new connection: after it was accepted), or the connection closes.
    pub head_timeout: Duration,
    /// A keep-alive connection with no request this long closes.
    pub idle_timeout: Duration,
    /// A request body that makes no progress this long is answered 408.
    pub body_timeout: Duration,
    /// Most open client connections; beyond, a new one waits briefly and
    /// is refused (health checks are still answered).
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
        }
    }
}

/// Half the process's open-file limit (each proxied request may hold an
/// upstream connection too, and the database and logs need some), at
/// least 32; 4,096 when the limit cannot be read.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(n) => (n / 2).max(32),
        None => 4096,
    }
}

/// The default of [`Config::responses_ttl`]: 30 days, as OpenAI keeps them.
pub const DEFAULT_RESPONSES_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Everything `serve` takes on the command line (after clap).
#[derive(Debug, Clone, Default)]
pub struct CliInput {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub auth_keys: Vec<String>,
    pub body_limit: Option<String>,
    pub connect_timeout: Option<String>,
    pub first_byte_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub total_timeout: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub app: Option<String>,
    pub admin_token: Option<String>,
    pub cors_origins: Vec<String>,
    pub shutdown_timeout: Option<String>,
    pub redis: Option<String>,
    pub budget_timezone: Option<String>,
    pub insecure: bool,
    pub responses_ttl: Option<String>,
    pub client_head_timeout: Option<String>,
    pub client_idle_timeout: Option<String>,
    pub client_body_timeout: Option<String>,
    pub max_connections: Option<usize>,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `30d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m, h or d)")),
    };
    if !(secs > 0.0 && secs < 1e7) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `32MiB`, `10MB`, `512k` or a number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t.as_str(), ""),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 32MiB or 1048576)"))?;
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{s}` has an unknown unit (use KiB, MiB or GiB)")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if v == 0 {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(v)
}

/// Expands `${VAR}` references; an unset variable is an error naming it.
pub fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        let name = &after[..end];
        if name.is_empty() {
            return Err("empty `${}` reference".into());
        }
        match env(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a base URL and normalises it (no trailing slash).
pub fn normalize_base_url(url: &str) -> Result<String, String> {
    let parsed =
        url::Url::parse(url.trim()).map_err(|e| format!("`{url}` is not a valid URL ({e})"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

/// A provider's default model: the one configured, else its first model,
/// else its kind's. A provider that declares no models serves its default
/// one (`models` stays empty only when there is none).
pub fn default_model(
    configured: Option<String>,
    models: &mut Vec<ModelEntry>,
    preset: &Preset,
) -> Option<String> {
    let d = configured
        .or_else(|| models.first().map(|m| m.id.clone()))
        .or_else(|| (!preset.default_model.is_empty()).then(|| preset.default_model.to_string()));
    if let (true, Some(d)) = (models.is_empty(), &d) {
        models.push(ModelEntry {
            id: d.clone(),
            upstream: d.clone(),
        });
    }
    d
}

fn preset_for(kind: &str, field: &str) -> Result<&'static Preset, ConfigError> {
    let p = presets::find(kind).ok_or_else(|| {
        ConfigError::new(
            field,
            format!(
                "unknown provider kind `{kind}`; known kinds: {}",
                presets::kinds()
            ),
        )
    })?;
    if !p.supported {
        return Err(ConfigError::new(
            field,
            format!(
                "provider kind `{}` is not supported by this build ({})",
                p.kind, p.note
            ),
        ));
    }
    Ok(p)
}

/// Builds the validated configuration.
pub fn build(
    cli: &CliInput,
    file: Option<&FileConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let server = file.and_then(|f| f.server.as_ref());
    let host = cli
        .host
        .clone()
        .or_else(|| server.and_then(|s| s.host.clone()))
        .unwrap_or_else(|| "127.0.0.1".into());
    if host.parse::<IpAddr>().is_err() && host != "localhost" {
        return Err(ConfigError::new(
            "--host",
            format!("`{host}` is not an IP address (try 127.0.0.1 or 0.0.0.0)"),
        ));
    }
    let port = cli
        .port
        .or_else(|| server.and_then(|s| s.port))
        .unwrap_or(11434);

    let mut auth_keys: Vec<Secret> = Vec::new();
    for k in cli.auth_keys.iter().flat_map(|k| k.split(',')) {
        let k = k.trim();
        if !k.is_empty() {
            auth_keys.push(Secret::new(k));
        }
    }
    if let Some(keys) = server.and_then(|s| s.auth_keys.as_ref()) {
        for (i, k) in keys.iter().enumerate() {
            let k = expand_env(k, env)
                .map_err(|m| ConfigError::new(format!("server.auth_keys[{i}]"), m))?;
            if k.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("server.auth_keys[{i}]"),
                    "must not be empty",
                ));
            }
            auth_keys.push(Secret::new(k.trim()));
        }
    }

    let body_limit = match (&cli.body_limit, server.and_then(|s| s.body_limit.as_ref())) {
        (Some(s), _) => parse_size(s).map_err(|m| ConfigError::new("--body-limit", m))?,
        (None, Some(s)) => {
            parse_size(&s.to_string()).map_err(|m| ConfigError::new("server.body_limit", m))?
        }
        (None, None) => DEFAULT_BODY_LIMIT,
    };

    let mut cli_timeouts = Timeouts::default();
    for (flag, value, slot) in [
        (
            "--connect-timeout",
            &cli.connect_timeout,
            &mut cli_timeouts.connect,
        ),
        (
            "--first-byte-timeout",
            &cli.first_byte_timeout,
            &mut cli_timeouts.first_byte,
        ),
        ("--idle-timeout", &cli.idle_timeout, &mut cli_timeouts.idle),
        (
            "--total-timeout",
            &cli.total_timeout,
            &mut cli_timeouts.total,
        ),
    ] {
        if let Some(v) = value {
            *slot = parse_duration(v).map_err(|m| ConfigError::new(flag, m))?;
        }
    }

    let mut providers = Vec::new();
    if let Some(f) = file {
        for (i, p) in f.providers.iter().enumerate() {
            if p.enabled == Some(false) {
                continue;
            }
            let pc = file::provider_from_file(i, p, env, cli_timeouts)?;
            if providers.iter().any(|q: &ProviderConfig| q.name == pc.name) {
                return Err(ConfigError::new(
                    format!("providers[{i}].name"),
                    format!(
                        "`{}` is used by another provider; names must be unique",
                        pc.name
                    ),
                ));
            }
            providers.push(pc);
        }
    }

    if let Some(kind) = &cli.provider {
        let preset = preset_for(kind, "--provider")?;
        let base_url = match (&cli.base_url, preset.base_url) {
            (Some(u), _) => normalize_base_url(u).map_err(|m| ConfigError::new("--base-url", m))?,
            (None, "") => {
                return Err(ConfigError::new(
                    "--base-url",
                    format!("provider `{}` needs --base-url", preset.kind),
                ))
            }
            (None, u) => u.to_string(),
        };
        let api_key = cli
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| preset.key_env.and_then(env).filter(|k| !k.is_empty()));
        if api_key.is_none() && preset.key_required {
            return Err(ConfigError::new(
                "--api-key",
                format!(
                    "provider `{}` needs an API key: pass --api-key or set {}",
                    preset.kind,
                    preset.key_env.unwrap_or("its key variable")
                ),
            ));
        }
        let model = cli
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .or_else(|| {
                (!preset.default_model.is_empty()).then(|| preset.default_model.to_string())
            })
            .ok_or_else(|| {
                ConfigError::new(
                    "--model",
                    format!("provider `{}` needs --model", preset.kind),
                )
            })?;
        let name = unique_name(preset.kind, &providers);
        providers.push(ProviderConfig {
            name,
            preset,
            base_url,
            api_key: api_key.map(Secret::new),
            models: vec![ModelEntry {
                id: model.clone(),
                upstream: model.clone(),
            }],
            default_model: Some(model),
            forward_any_model: true,
            passthrough: true,
            timeouts: cli_timeouts,
            headers: Vec::new(),
            origin: Origin::Cli,
            meta: ProviderMeta::default(),
        });
    } else {
        for (flag, set) in [
            ("--model", cli.model.is_some()),
            ("--api-key", cli.api_key.is_some()),
            ("--base-url", cli.base_url.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    flag,
                    "only makes sense together with --provider",
                ));
            }
        }
    }

    if providers.is_empty() {
        // Nothing declared: enable every preset whose key variable is set.
        for preset in presets::PRESETS
            .iter()
            .filter(|p| p.supported && p.key_required)
        {
            let Some(key) = preset
                .key_env
                .and_then(env)
                .filter(|k| !k.trim().is_empty())
            else {
                continue;
            };
            let mut models: Vec<ModelEntry> = preset
                .known_models
                .iter()
                .map(|m| ModelEntry {
                    id: m.to_string(),
                    upstream: m.to_string(),
                })
                .collect();
            if !preset.default_model.is_empty()
                && !models.iter().any(|m| m.id == preset.default_model)
            {
                models.push(ModelEntry {
                    id: preset.default_model.into(),
                    upstream: preset.default_model.into(),
                });
            }
            providers.push(ProviderConfig {
                name: preset.kind.to_string(),
                preset,
                base_url: preset.base_url.to_string(),
                api_key: Some(Secret::new(key.trim())),
                models,
                default_model: (!preset.default_model.is_empty())
                    .then(|| preset.default_model.to_string()),
                forward_any_model: false,
                passthrough: true,
                timeouts: cli_timeouts,
                headers: Vec::new(),
                origin: Origin::Env,
                meta: ProviderMeta::default(),
            });
        }
        // With exactly one provider found, any model name goes to it.
        if providers.len() == 1 {
            providers[0].forward_any_model = true;
        }
    }

    let mut aliases = Vec::new();
    if let Some(f) = file {
        for (alias, target) in &f.aliases {
            if alias.trim().is_empty() || target.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("aliases.{alias}"),
                    "alias and target must not be empty",
                ));
            }
            aliases.push((alias.clone(), target.clone()));
        }
    }

    let app = match &cli.app {
        Some(name) => Some(
            crate::apps::find(name)
                .ok_or_else(|| {
                    ConfigError::new(
                        "--app",
                        format!("unknown app `{name}`; known apps: {}", crate::apps::names()),
                    )
                })?
                .name
                .to_string(),
        ),
        None => None,
    };
    let shutdown_timeout = match &cli.shutdown_timeout {
        Some(v) => parse_duration(v).map_err(|m| ConfigError::new("--shutdown-timeout", m))?,
        None => Duration::from_secs(30),
    };
    let responses_ttl = match &cli.responses_ttl {
        Some(v) => parse_duration(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ConfigError::new(
                    "--responses-ttl",
                    "must be a positive duration like 30d, 12h or 3600",
                )
            })?,
        None => DEFAULT_RESPONSES_TTL,
    };
    let mut client = ClientLimits::default();
    for (flag, value, slot) in [
        (
            "--client-head-timeout",
            &cli.client_head_timeout,
            &mut client.head_timeout,
        ),
        (
            "--client-idle-timeout",
            &cli.client_idle_timeout,
            &mut client.idle_timeout,
        ),
        (
            "--client-body-timeout",
            &cli.client_body_timeout,
            &mut client.body_timeout,
        ),
    ] {
        if let Some(v) = value {
            *slot = parse_duration(v).map_err(|m| ConfigError::new(flag, m))?;
        }
    }
    if let Some(n) = cli.max_connections {
        if n == 0 {
            return Err(ConfigError::new("--max-connections", "must be at least 1"));
        }
        client.max_connections = n;
    }
    let mut routes = Vec::new();
    let mut deprecations = Vec::new();
    if let Some(f) = file {
        for (i, r) in f.routes.iter().enumerate() {
            let route = routing::route_from(i, r)?;
            for (j, t) in route.targets.iter().enumerate() {
                if !providers.iter().any(|p| p.name == t.provider) {
                    return Err(ConfigError::new(
                        format!("routes[{i}].targets[{j}].provider"),
                        format!("no provider is named `{}`", t.provider),
                    ));
                }
            }
            routes.push(route);
        }
        for (i, d) in f.deprecations.iter().enumerate() {
            deprecations.push(routing::deprecation_from(i, d)?);
        }
    }
    let redis = match cli
        .redis
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r)
            if r.starts_with("redis://")
                || r.starts_with("rediss://")
                || r.starts_with("redis+unix://") =>
        {
            Some(r.to_string())
        }
        Some(_) => {
            return Err(ConfigError::new(
                "--redis",
                // The value is not echoed: a Redis URL may carry a password.
                "not a Redis URL (expected redis://host:6379/0, rediss:// or redis+unix://)"
                    .to_string(),
            ));
        }
        None => None,
    };
    let budget_timezone = match cli
        .budget_timezone
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => crate::identity::TimeZone::UTC,
        Some(name) => crate::identity::TimeZone::get(name).map_err(|_| {
            ConfigError::new(
                "--budget-timezone",
                format!(
                    "`{name}` is not a known time zone (try UTC, Asia/Shanghai, Europe/Berlin)"
                ),
            )
        })?,
    };
    let cfg = Config {
        redis,
        budget_timezone,
        insecure: cli.insecure,
        responses_ttl,
        client,
        routes,
        deprecations,
        app,
        admin_token: cli
            .admin_token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .map(Secret::new),
        cors_origins: cli
            .cors_origins
            .iter()
            .flat_map(|o| o.split(','))
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        shutdown_timeout,
        host,
        port,
        auth_keys,
        body_limit,
        providers,
        aliases,
        log_level: cli.log_level.clone().unwrap_or_else(|| "info".into()),
        log_format: cli.log_format.unwrap_or(LogFormat::Text),
    };
    check_self_loop(&cfg)?;
    Ok(cfg)
}

fn unique_name(base: &str, existing: &[ProviderConfig]) -> String {
    if !existing.iter().any(|p| p.name == base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !existing.iter().any(|p| &p.name == n))
        .unwrap_or_else(|| base.to_string())
}

fn is_loopback_or_any(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip.is_loopback()
                || ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                || ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }
        Err(_) => false,
    }
}

/// Refuses a provider whose address is llm-link's own listen address: every
/// request would loop back into llm-link.
pub fn check_self_loop(cfg: &Config) -> Result<(), ConfigError> {
    if cfg.port == 0 {
        return Ok(());
    }
    for (i, p) in cfg.providers.iter().enumerate() {
        let Ok(u) = url::Url::parse(&p.base_url) else {
            continue;
        };
        let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
            continue;
        };
        let same_host =
            host == cfg.host || (is_loopback_or_any(host) && is_loopback_or_any(&cfg.host));
        if port == cfg.port && same_host {
            let field = match p.origin {
                Origin::Cli => "--base-url".to_string(),
                _ => format!("providers[{i}].base_url"),
            };
            return Err(ConfigError::new(
                field,
                format!(
                    "provider `{}` points at {}:{}, which is llm-link's own listen address; requests would loop",
                    p.name, host, port
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
