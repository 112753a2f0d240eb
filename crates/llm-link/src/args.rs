//! The command line's shape (clap) and the few output helpers every
//! command uses. `llm-link` alone is `llm-link serve`.

use clap::{Args, Parser, Subcommand};
use llm_link_gateway::config::{CliInput, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Examples:
  ZHIPU_API_KEY=... llm-link --provider zhipu --model glm-4-flash
  llm-link --provider openai-compatible --base-url http://localhost:8000/v1 --model qwen2.5
  llm-link --config llm-link.toml --auth-key my-client-key
  llm-link providers              # every provider kind, its base URL, key variable, default model

Every serve flag can also come from an LLM_LINK_<FLAG> environment variable
(LLM_LINK_PORT, LLM_LINK_PROVIDER, ...). With no provider given, llm-link
enables every provider whose key variable (OPENAI_API_KEY, ZHIPU_API_KEY, ...)
is set.";

#[derive(Debug, Parser)]
#[command(
    name = "llm-link",
    version,
    about = "One gateway between any LLM client and any LLM provider",
    long_about = "llm-link serves the OpenAI, Anthropic and Ollama APIs on one port and routes each \
request to the provider that serves the requested model: OpenAI, Anthropic, Zhipu, Aliyun, \
Volcengine, Tencent, DeepSeek, Moonshot, MiniMax, any OpenAI-compatible endpoint or an Ollama \
server, translating between the formats (streams, tools and images included), with fallback, \
retries, circuit breakers and key pools.",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default when no subcommand is given)
    #[command(after_help = AFTER_HELP)]
    Serve(Box<ServeArgs>),
    /// List every provider kind with its default base URL, key variable and default model
    Providers {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Work with configuration files
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List client presets (`--app`), or print what to paste into one: `apps show zed`
    Apps {
        #[command(subcommand)]
        command: Option<AppsCommand>,
    },
    /// Back up the SQLite database (compressed; safe while serving)
    Backup(BackupArgs),
    /// Replace the SQLite database with a backup (refused while a server runs)
    Restore(RestoreArgs),
    /// Master key and admin token maintenance
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Users of the admin API and console: create, list, passwd, disable, enable
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the version
    Version,
}

/// Where the data lives (same flags and variables as `serve`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Storage")]
pub struct StoreArgs {
    /// Database URL: a SQLite file path or sqlite://PATH (default: llm-link.db in the
    /// data dir), postgres://… for shared mode, or `none` (then usage is not recorded)
    #[arg(
        long,
        env = "LLM_LINK_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Data dir: the SQLite file, master.key, backups
    /// [default: $XDG_DATA_HOME/llm-link or ~/.local/share/llm-link]
    #[arg(long, env = "LLM_LINK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Output file [default: DATA_DIR/backups/llm-link-<UTC time>.db.gz]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Keep only the newest N backups in the output folder (llm-link-*.db.gz)
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Remove backups in the output folder older than this (30d, 12h)
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,
    // Last: its `Storage` heading would carry over to flags after it.
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup (.db.gz from `llm-link backup`, or a plain SQLite file)
    pub file: PathBuf,
    /// Restore even if the backup's secrets belong to another master key
    #[arg(long)]
    pub force: bool,
    // Last: its `Storage` heading would carry over to flags after it.
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Re-encrypt every stored secret with a new master key, in one transaction
    RotateMaster {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace the admin token; prints the new one once
    ResetAdminToken {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a virtual key (llk-…) for clients; prints it once
    Create(KeyCreateArgs),
    /// List virtual keys (their hints; the keys themselves are never stored)
    List {
        /// Only this user's keys
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a virtual key; running servers refuse it within seconds
    Revoke {
        /// The key's id (`key list`)
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `key create`: the same fields and checks as `POST /api/keys`.
#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// A name to tell the key by (in lists, usage and the audit log)
    pub name: String,
    /// The user it belongs to (default: no user)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The models it may call, comma-separated (default: any)
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// When it stops working: RFC 3339 (2030-01-01T00:00:00Z) or Unix milliseconds
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,
    /// Requests per minute
    #[arg(long, value_name = "N")]
    pub rpm: Option<i64>,
    /// Tokens per minute
    #[arg(long, value_name = "N")]
    pub tpm: Option<i64>,
    /// Requests at once
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<i64>,
    /// Spending limit, in the catalog's currency (needs --period)
    #[arg(long, value_name = "AMOUNT")]
    pub budget: Option<f64>,
    /// The budget's period: daily, weekly, monthly or total
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// Print JSON instead of lines
    #[arg(long)]
    pub json: bool,
    // Last: its `Storage` heading would carry over to flags after it.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Passwords are never flags: they are read from standard input (its first
/// line) when it is not a terminal, otherwise prompted for twice without echo.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (password from stdin or a prompt)
    Create {
        /// Username: 1-64 characters of letters, digits and . _ @ -
        name: String,
        /// What the user may do: admin (everything), member (view, own keys), viewer (view)
        #[arg(long, value_parser = ["admin", "member", "viewer"])]
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users: id, username, role, disabled, locked
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password (from stdin or a prompt); ends its sessions
    Passwd {
        /// The username
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: it can no longer log in, and its sessions end
    Disable {
        /// The username
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user again
    Enable {
        /// The username
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Print the settings to paste into that client
    Show {
        /// zed, codex, claude-code, aider, openhands or continue
        name: String,
        /// The llm-link address the client should use
        #[arg(long, default_value = "http://127.0.0.1:11434")]
        url: String,
        /// The model the client should ask for
        #[arg(long, default_value = "glm-4-flash")]
        model: String,
        /// The client key (--auth-key) the client should present
        #[arg(long, default_value = "<your --auth-key>")]
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with the current environment) and print what it declares
    Check {
        /// The file: .toml, .yaml, .yml or .json
        file: PathBuf,
    },
}

/// `serve`'s flags, in groups that `--help` shows under their headings;
/// every flag can also come from its `LLM_LINK_<FLAG>` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub upstream: ProviderArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Address to listen on; anything but loopback should come with --auth-key
    #[arg(long, env = "LLM_LINK_HOST", value_name = "IP")]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free one) [default: 11434]
    #[arg(long, env = "LLM_LINK_PORT")]
    pub port: Option<u16>,
    /// Config file declaring providers, models and aliases (.toml, .yaml, .yml, .json)
    #[arg(long, env = "LLM_LINK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Key clients must present as `Authorization: Bearer KEY` or `x-api-key: KEY`;
    /// repeat or separate with commas for several
    #[arg(
        long = "auth-key",
        env = "LLM_LINK_AUTH_KEY",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_key: Vec<String>,
    /// Largest request body accepted (413 beyond) [default: 32MiB]
    #[arg(long, env = "LLM_LINK_BODY_LIMIT", value_name = "SIZE")]
    pub body_limit: Option<String>,
    /// Redis for limits shared by several replicas (redis://host:6379/0); optional
    #[arg(
        long,
        env = "LLM_LINK_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,
    /// Client preset (zed, codex, claude-code, aider, openhands, continue); see `llm-link apps`
    #[arg(long, env = "LLM_LINK_APP", value_name = "NAME")]
    pub app: Option<String>,
    /// Admin token: the break-glass credential of the admin API (/api/providers, /api/apps,
    /// /api/v1/llm-models, /api/users; users log in at /api/auth/login instead) and lets
    /// non-loopback callers use the mutating /api/config/* endpoints
    /// [default: one generated on first start, printed once, stored as a keyed hash]
    #[arg(
        long,
        env = "LLM_LINK_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Browser origins allowed to call /api/config/* (CORS); none by default
    #[arg(
        long = "cors-origin",
        env = "LLM_LINK_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// How long in-flight requests and streams may finish after a shutdown signal [default: 30s]
    #[arg(long, env = "LLM_LINK_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Time zone whose calendar days, weeks (from Monday) and months budgets reset on [default: UTC]
    #[arg(long, env = "LLM_LINK_BUDGET_TIMEZONE", value_name = "TZ")]
    pub budget_timezone: Option<String>,
    /// A client's request head must be complete this long after its first byte (a new connection: after it is accepted), or the connection closes [default: 30s]
    #[arg(long, env = "LLM_LINK_CLIENT_HEAD_TIMEOUT", value_name = "DURATION")]
    pub client_head_timeout: Option<String>,
    /// A keep-alive client connection with no request for this long closes [default: 75s; on the hyper fallback the head timeout bounds idle time too]
    #[arg(long, env = "LLM_LINK_CLIENT_IDLE_TIMEOUT", value_name = "DURATION")]
    pub client_idle_timeout: Option<String>,
    /// A request body that makes no progress for this long is answered 408 and its connection closed [default: 30s]
    #[arg(long, env = "LLM_LINK_CLIENT_BODY_TIMEOUT", value_name = "DURATION")]
    pub client_body_timeout: Option<String>,
    /// Most open client connections; beyond, a new one has a second to send its request: GET /health and /api/health are answered, anything else gets 503 [default: half the open-file limit]
    #[arg(long, env = "LLM_LINK_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long Responses API answers stored with `store: true` are kept for previous_response_id and GET /v1/responses/{id} [default: 30d]
    #[arg(long, env = "LLM_LINK_RESPONSES_TTL", value_name = "DURATION")]
    pub responses_ttl: Option<String>,
    /// Allow a non-loopback --host with no client credential at all (no --auth-key, no users, no virtual keys)
    #[arg(long, env = "LLM_LINK_INSECURE")]
    pub insecure: bool,
    /// Serving threads, each with its own event loop and upstream connection pools [default: one per CPU core]
    #[arg(long, env = "LLM_LINK_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Provider")]
pub struct ProviderArgs {
    /// Provider kind for single-provider mode (see `llm-link providers`)
    #[arg(long, env = "LLM_LINK_PROVIDER", value_name = "KIND")]
    pub provider: Option<String>,
    /// Default model for --provider; in single-provider mode any model name is forwarded
    #[arg(long, env = "LLM_LINK_MODEL", value_name = "NAME")]
    pub model: Option<String>,
    /// Upstream API key for --provider (default: the kind's variable, e.g. ZHIPU_API_KEY)
    #[arg(
        long,
        env = "LLM_LINK_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Upstream base URL for --provider (default: the kind's published URL)
    #[arg(long, env = "LLM_LINK_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Upstream connect timeout [default: 10s]
    #[arg(long, env = "LLM_LINK_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Longest wait for an upstream's response headers [default: 300s]
    #[arg(long, env = "LLM_LINK_FIRST_BYTE_TIMEOUT", value_name = "DURATION")]
    pub first_byte_timeout: Option<String>,
    /// Longest silence between two chunks of an upstream answer [default: 120s]
    #[arg(long, env = "LLM_LINK_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// The longest a whole upstream answer may take, first byte to last (a stream too) [default: 30m]
    #[arg(long, env = "LLM_LINK_TOTAL_TIMEOUT", value_name = "DURATION")]
    pub total_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log filter: error, warn, info, debug, trace, or a tracing directive like llm_link=debug
    #[arg(long, env = "LLM_LINK_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format (logs go to stderr)
    #[arg(long, env = "LLM_LINK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    pub fn input(&self) -> CliInput {
        let (s, p, l) = (&self.server, &self.upstream, &self.log);
        CliInput {
            host: s.host.clone(),
            port: s.port,
            provider: p.provider.clone(),
            model: p.model.clone(),
            api_key: p.api_key.clone(),
            base_url: p.base_url.clone(),
            auth_keys: s.auth_key.clone(),
            body_limit: s.body_limit.clone(),
            connect_timeout: p.connect_timeout.clone(),
            first_byte_timeout: p.first_byte_timeout.clone(),
            idle_timeout: p.idle_timeout.clone(),
            total_timeout: p.total_timeout.clone(),
            log_level: l.log_level.clone(),
            log_format: l.log_format,
            app: s.app.clone(),
            admin_token: s.admin_token.clone(),
            cors_origins: s.cors_origins.clone(),
            shutdown_timeout: s.shutdown_timeout.clone(),
            redis: s.redis.clone(),
            budget_timezone: s.budget_timezone.clone(),
            insecure: s.insecure,
            responses_ttl: s.responses_ttl.clone(),
            client_head_timeout: s.client_head_timeout.clone(),
            client_idle_timeout: s.client_idle_timeout.clone(),
            client_body_timeout: s.client_body_timeout.clone(),
            max_connections: s.max_connections,
        }
    }
}

/// Writes a line to stdout; a closed stdout (`llm-link providers | head`, a
/// host that stopped reading) is not an error worth dying for.
pub fn say(line: impl AsRef<str>) {
    write_line(std::io::stdout().lock(), line.as_ref());
}

/// Writes a line to stderr, never panicking when nobody reads it.
pub fn esay(line: impl AsRef<str>) {
    write_line(std::io::stderr().lock(), line.as_ref());
}

fn write_line(mut w: impl std::io::Write, line: &str) {
    let _ = w
        .write_all(line.as_bytes())
        .and_then(|_| w.write_all(b"\n"))
        .and_then(|_| w.flush());
}

/// A user mistake: one line on stderr, exit 2.
pub fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    esay(format!("error: {msg}"));
    ExitCode::from(2)
}
