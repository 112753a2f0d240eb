//! `llm-link serve`: configuration, logging, listening, the start-up lines,
//! and graceful shutdown.

use crate::cli::{usage_error, ServeArgs};
use crate::config::{self, Config, LogFormat};
use crate::providers::presets::PRESETS;
use crate::state::AppState;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// How long in-flight requests may run on after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub fn run(args: ServeArgs) -> ExitCode {
    let file = match &args.config {
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(cfg))
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
        .with_target(false);
    let res = match cfg.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already initialised (tests) is fine.
    let _ = res;
    Ok(())
}

async fn serve(cfg: Config) -> ExitCode {
    let state = match AppState::new(&cfg) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let listener = match tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await {
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
            eprintln!("error: cannot read the listen address: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&cfg, &state, addr);

    let shutdown = state.shutdown.clone();
    let app = crate::app(state);
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; finishing requests in flight");
        signal_token.cancel();
    });
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let graceful = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        graceful.cancelled().await;
    });
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        res = server => {
            if let Err(e) = res {
                eprintln!("error: server failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        _ = deadline => {
            tracing::warn!("requests still running after {}s; closing them", SHUTDOWN_GRACE.as_secs());
        }
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn print_banner(cfg: &Config, state: &AppState, addr: SocketAddr) {
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
                p.base_url,
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
    lines.push(format!(
        "client auth: {}",
        if cfg.auth_keys.is_empty() {
            "none (any client may call; set --auth-key to require a key)".to_string()
        } else {
            format!(
                "required ({} key(s); Authorization: Bearer or x-api-key)",
                cfg.auth_keys.len()
            )
        }
    ));
    lines.push(format!("llm-link listening on {base}"));
    println!("{}", lines.join("\n"));
    if cfg.auth_keys.is_empty() && !addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {} without client auth: anyone who can reach this address can spend your provider keys; pass --auth-key",
            addr.ip()
        );
    }
}
