//! Re-applies the `--config` file when it changes: watched with `notify`
//! (its folder, so editors that save by rename are seen), debounced, then
//! parsed and validated exactly as at start. A bad edit is logged with the
//! field at fault and the last good configuration keeps serving.
//!
//! The reload rebuilds the base layer (file + command line + key variables);
//! database providers stay, and so does client auth unless the file's
//! `server.auth_keys` changed. `server.host`, `server.port` and
//! `server.body_limit` need a restart (a warning says so).

use crate::state::AppState;
use llm_link_gateway::config::{build, check_self_loop, load_file, CliInput, ConfigError};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The default quiet period before a change is applied.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// What the last reload did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Increments with every reload attempt.
    pub seq: u64,
    /// The number of providers served, or why the edit was rejected.
    pub result: Result<usize, ConfigError>,
}

/// Keeps the watch alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    pub outcomes: watch::Receiver<Outcome>,
}

/// Starts watching `path`; each settled change re-applies the file.
pub fn spawn(
    st: Arc<AppState>,
    path: PathBuf,
    cli: CliInput,
    debounce: Duration,
) -> Result<FileWatch, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| format!("{} is not a file", path.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        if ev.paths.is_empty()
            || ev
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let (out_tx, out_rx) = watch::channel(Outcome {
        seq: 0,
        result: Ok(st.runtime().router.providers().len()),
    });
    let mut last_text = std::fs::read_to_string(&path).ok();
    tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = st.shutdown.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Wait until the file has been quiet for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    // Mid-save (removed, then renamed into place): the next event retries.
                    tracing::debug!("config file {} unreadable for now: {e}", path.display());
                    continue;
                }
            };
            if last_text.as_deref() == Some(text.as_str()) {
                continue;
            }
            seq += 1;
            let result = reload(&st, &path, &cli);
            match &result {
                Ok(n) => {
                    last_text = Some(text);
                    tracing::info!(
                        providers = n,
                        "config file {} changed: applied",
                        path.display()
                    );
                }
                Err(e) => tracing::error!(
                    field = %e.field,
                    "config file {} change rejected, keeping the last good configuration: {e}",
                    path.display()
                ),
            }
            let _ = out_tx.send(Outcome { seq, result });
        }
    });
    Ok(FileWatch {
        _watcher: watcher,
        outcomes: out_rx,
    })
}

/// Parses, validates and applies the file; the error names the field.
pub fn reload(st: &AppState, path: &Path, cli: &CliInput) -> Result<usize, ConfigError> {
    let file = load_file(path)?;
    let env = |k: &str| std::env::var(k).ok();
    let mut cfg = build(cli, Some(&file), &env)?;
    llm_link_gateway::snapshot::check_file_names(&file, &st.layers.db())?;
    let file_port = file.server.as_ref().and_then(|s| s.port);
    if cli.port.is_none() && file_port.is_some_and(|p| p != 0 && p != st.listen.port) {
        tracing::warn!(
            "server.port changed in {}; restart llm-link to listen there",
            path.display()
        );
    }
    if cfg.body_limit != st.body_limit {
        tracing::warn!(
            "server.body_limit changed in {}; restart llm-link to apply it",
            path.display()
        );
    }
    // Keep the address actually bound (loop checks compare against it).
    cfg.host = st.listen.host.clone();
    cfg.port = st.listen.port;
    check_self_loop(&cfg)?;
    st.layers.update(&|rt| st.swap(rt), |base, _| *base = cfg)?;
    Ok(st.runtime().router.providers().len())
}
