//! `llm-link serve`: configuration, logging, listening, the start-up lines,
//! and graceful shutdown.

use crate::args::{esay, say, usage_error, ServeArgs};
use llm_link_gateway::config::{self, Config, ConfigError, LogFormat};
use llm_link_gateway::presets::PRESETS;
use llm_link_server::state::AppState;
use std::net::SocketAddr;
use std::process::ExitCode;

pub fn run(args: ServeArgs) -> ExitCode {
    let file = match &args.server.config {
        Some(path) => match config::load_file(path) {
            Ok(f) => Some(f),
            Err(e) => return usage_error(e),
        },
        None => None,
    };
    let cfg = match config::build(&args.input(), file.as_ref(), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if let Err(e) = init_logging(&cfg) {
        return usage_error(e);
    }
    // Serving threads are fixed for the life of the process; upstream client
    // sets are sized from this, so it is set before any state is built.
    llm_link_gateway::workers::configure(
        args.server
            .workers
            .map(usize::from)
            .unwrap_or_else(llm_link_gateway::workers::default_count),
    );
    // The control runtime: accepting, signals, storage polling, file watch.
    // Requests are served on the worker threads (llm_link_server::workers).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            esay(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let storage = Storage {
        args: args.store.clone(),
        config_path: args.server.config.clone(),
        cli: args.input(),
        file,
    };
    rt.block_on(serve(cfg, storage))
}

/// What `serve` needs for the database and the config file watch.
struct Storage {
    args: crate::args::StoreArgs,
    config_path: Option<std::path::PathBuf>,
    cli: config::CliInput,
    file: Option<config::FileConfig>,
}

fn init_logging(cfg: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level).map_err(|e| {
        format!(
            "--log-level: `{}` is not a valid filter ({e})",
            cfg.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let res = match cfg.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already initialised (tests) is fine.
    let _ = res;
    Ok(())
}

async fn serve(mut cfg: Config, storage: Storage) -> ExitCode {
    if let Some(url) = &cfg.redis {
        if let Err(e) = llm_link_gateway::routing::shared::connect(url, "llm-link").await {
            return usage_error(format!("--redis: {e}"));
        }
    }
    let listener = match bind(&cfg.host, cfg.port).await {
        Ok(l) => l,
        Err(e) => {
            return usage_error(format!(
                "--port: cannot listen on {}:{}: {e}",
                cfg.host, cfg.port
            ))
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            esay(format!("error: cannot read the listen address: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // The bound port (for --port 0), so loop checks and switches see the truth.
    cfg.port = addr.port();
    if let Err(e) = config::check_self_loop(&cfg) {
        return usage_error(e);
    }
    // Storage opens before the start-up lines (SQLite open + migrate: milliseconds).
    let env = |k: &str| std::env::var(k).ok();
    let opened = match llm_link_store::boot::open(
        storage.args.database.as_deref(),
        storage.args.data_dir.as_deref(),
        cfg.admin_token.is_some(),
        &env,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return usage_error(e),
    };
    let (store, layer) = match &opened {
        Some(o) => (Some(o.store.clone()), o.layer.clone()),
        None => (None, Default::default()),
    };
    if let Some(f) = &storage.file {
        if let Err(e) = llm_link_gateway::snapshot::check_file_names(f, &layer) {
            return usage_error(e);
        }
    }
    let state = match AppState::with_store(&cfg, store, layer) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    if let Some(store) = &state.store {
        let loaded = match llm_link_server::apply::reload_identities(&state, store).await {
            Ok(()) => llm_link_server::apply::load_spend(&state, store).await,
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            return usage_error(ConfigError::new(
                "--database",
                format!("cannot read users, keys and budget spend: {e}"),
            ));
        }
    }
    if !cfg.insecure
        && !addr.ip().is_loopback()
        && cfg.auth_keys.is_empty()
        && !state.identities.load().any()
    {
        return usage_error(ConfigError::new(
            "--host",
            format!(
                "{} is reachable from other machines but no client credential is configured; \
                 add --auth-key KEY, create users or virtual keys, or pass --insecure to serve it open",
                cfg.host
            ),
        ));
    }
    let spend_writer = llm_link_server::apply::spawn_spend_writer(state.clone());
    llm_link_server::apply::spawn_poller(state.clone(), std::time::Duration::from_secs(2));
    let _watch = match &storage.config_path {
        Some(path) => match llm_link_server::watch::spawn(
            state.clone(),
            path.clone(),
            storage.cli.clone(),
            llm_link_server::watch::DEBOUNCE,
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                esay(format!(
                    "warning: {e}; edits to the config file need a restart"
                ));
                None
            }
        },
        None => None,
    };
    let mut extra = Vec::new();
    match &opened {
        Some(o) => {
            extra.push(format!(
                "storage:     {}",
                o.store.location.banner(&o.key_source)
            ));
            extra.push(format!(
                "admin API:   http://{addr}/api/{{providers,apps,v1/llm-models,audit,users,keys,usage}} (admin token, or a user's session from /api/auth/login)"
            ));
            extra.push(format!("usage:       recorded in the database; GET http://{addr}/api/usage (admin), /api/v1/llm/usage (a key's or session's own)"));
            if let Some(t) = &o.new_admin_token {
                extra.push(format!(
                    "admin token: {t}  (shown once; stored as a keyed hash; `llm-link key reset-admin-token` makes a new one)"
                ));
            }
        }
        None => extra.push("storage:     none (--database none): providers come from flags and the config file only; usage is not recorded".into()),
    }
    let shown = state.layers.composed().unwrap_or_else(|_| cfg.clone());
    // Armed before the start-up lines, so a signal sent as soon as the host
    // sees "listening" is a graceful shutdown, never the default action.
    let signals = match Signals::arm() {
        Ok(s) => s,
        Err(e) => {
            esay(format!("error: cannot install signal handlers: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let shutdown = state.shutdown.clone();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        // Cancel first: logging must never stand between a signal and shutdown.
        signal_token.cancel();
        tracing::info!("shutdown signal received; finishing requests in flight");
    });
    print_banner(&shown, &state, addr, &extra);
    let grace = cfg.shutdown_timeout;
    let usage = state.usage.clone();
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        res = llm_link_server::workers::serve(listener, llm_link_server::app(state), shutdown.clone(), cfg.client) => {
            if let Err(e) = res {
                esay(format!("error: server failed: {e}"));
                return ExitCode::FAILURE;
            }
        }
        _ = deadline => {
            tracing::warn!("requests still running after {}s; closing them", grace.as_secs_f64());
        }
    }
    // Usage rows and budget spend still queued go in before the pool closes.
    usage.flush_and_close().await;
    shutdown.cancel();
    if let Some(w) = spend_writer {
        let _ = w.await;
    }
    // Closing the pool checkpoints SQLite's WAL into the main file.
    if let Some(o) = &opened {
        o.store.db.close().await;
    }
    drop(opened);
    ExitCode::SUCCESS
}

/// Accept queue length: a burst of new connections (a thousand clients
/// opening streams at once) must not be dropped by the kernel, which would
/// cost each a one-second SYN retry.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(host: &str, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn arm() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_banner(cfg: &Config, state: &AppState, addr: SocketAddr, extra: &[String]) {
    let base = format!("http://{addr}");
    let mut lines = vec![format!(
        "llm-link {} (pid {}, instance {})",
        env!("CARGO_PKG_VERSION"),
        state.pid,
        state.instance_id
    )];
    if cfg.providers.is_empty() {
        let vars: Vec<&str> = PRESETS
            .iter()
            .filter(|p| p.supported && p.key_required)
            .filter_map(|p| p.key_env)
            .collect();
        lines.push("providers: none found.".into());
        lines.push(format!(
            "  add one: set a key variable ({}) and restart, or run `llm-link --provider KIND --model NAME`, or pass --config FILE; `llm-link providers` lists the kinds",
            vars.join(", ")
        ));
    } else {
        lines.push("providers:".into());
        for p in &cfg.providers {
            let models: Vec<&str> = p.models.iter().map(|m| m.id.as_str()).take(6).collect();
            let more = p.models.len().saturating_sub(models.len());
            lines.push(format!(
                "  {:<14} {:<18} {}  models: {}{}{}  (from {}{})",
                p.name,
                p.preset.kind,
                llm_link_store::shown_base_url(&p.base_url),
                models.join(", "),
                if more > 0 {
                    format!(" +{more}")
                } else {
                    String::new()
                },
                if p.forward_any_model {
                    " (any model forwarded)"
                } else {
                    ""
                },
                p.origin.as_str(),
                match (&p.api_key, p.preset.key_env) {
                    (Some(_), Some(var)) if p.origin == config::Origin::Env => format!(", {var}"),
                    _ => String::new(),
                }
            ));
        }
    }
    lines.push(format!(
        "OpenAI API:  {base}/v1  (chat/completions, completions, embeddings, models)"
    ));
    lines.push(format!("health:      {base}/health, {base}/api/health"));
    if cfg.redis.is_some() {
        lines.push("shared limits: Redis (RPM/TPM counted across replicas)".into());
    }
    lines.push(format!("hot update:  {base}/api/config/{{current,update,switch,validate,pid,shutdown}} (loopback or admin token)"));
    if let Some(app) = cfg.app.as_deref().and_then(llm_link_gateway::apps::find) {
        lines.push(format!(
            "app preset:  {} ({}); client settings: llm-link apps show {}",
            app.name, app.description, app.name
        ));
    }
    let ids = state.identities.load();
    let vkeys = ids.keys.values().filter(|k| !k.revoked).count();
    lines.push(format!(
        "client auth: {}",
        if cfg.auth_keys.is_empty() && !ids.any() {
            "none (any client may call; set --auth-key, or create users or virtual keys, to require a credential)".to_string()
        } else {
            format!(
                "required ({} static key(s), {vkeys} virtual key(s), {} user(s); Authorization: Bearer or x-api-key)",
                cfg.auth_keys.len(),
                ids.users.len()
            )
        }
    ));
    lines.extend(extra.iter().cloned());
    lines.push(format!("llm-link listening on {base}"));
    say(lines.join("\n"));
    if let Some(app) = cfg.app.as_deref().and_then(llm_link_gateway::apps::find) {
        if app.wants_auth_key && cfg.auth_keys.is_empty() {
            esay(format!(
                "warning: --app {} expects a client key; pass --auth-key (or LLM_LINK_AUTH_KEY) and give the client the same key",
                app.name
            ));
        }
    }
    if cfg.auth_keys.is_empty() && !addr.ip().is_loopback() && !state.identities.load().any() {
        esay(format!(
            "warning: listening on {} without client auth (--insecure): anyone who can reach this address can spend your provider keys",
            addr.ip()
        ));
    }
}
