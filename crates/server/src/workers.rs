//! Thread-per-core serving.
//!
//! The binary serves HTTP on N worker threads, each running its own
//! single-threaded tokio runtime. One acceptor (on the control runtime)
//! hands every new connection to the worker with the fewest open
//! connections; from then on the connection, its handler tasks and the
//! upstream connections they use live on that one thread. Upstream HTTP
//! clients are kept per worker (`llm_link_gateway::providers::http::Clients`), so a
//! proxied request never wakes another thread: with a shared work-stealing
//! pool each request crossed threads several times, which on a small
//! machine cost more CPU than the proxying itself (see bench/README.md).
//!
//! Handlers may still spawn tasks and use `spawn_blocking`; both stay on
//! the worker's runtime. Tests drive [`crate::serve_on`] instead, which
//! runs on whatever runtime calls it.

use axum::Router;
use llm_link_gateway::config::ClientLimits;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Worker {
    tx: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    done: tokio::sync::oneshot::Receiver<()>,
}

/// Serves `app` on `listener` with [`count`](llm_link_gateway::workers::count) worker threads until
/// `shutdown` is cancelled and every open connection has finished its
/// in-flight requests. Must be called from a tokio runtime (the acceptor
/// runs there).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ClientLimits,
) -> std::io::Result<()> {
    let n = llm_link_gateway::workers::count();
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        workers.push(start(i, app.clone(), shutdown.clone(), limits)?);
    }
    let mut next = 0usize;
    let overflow = Arc::new(AtomicUsize::new(0));
    while let Some((stream, peer)) = crate::front::accept(&listener, &shutdown).await {
        let open: usize = workers.iter().map(|w| w.open.load(Ordering::Relaxed)).sum();
        if open >= limits.max_connections {
            // Beyond the cap: a health check is still answered, on this
            // (the control) runtime; anything else gets 503.
            crate::front::spawn_overflow(&overflow, stream, peer, app.clone());
            continue;
        }
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // Fewest open connections first; ties rotate.
        let pick = (0..n)
            .map(|k| (next + k) % n)
            .min_by_key(|&k| workers[k].open.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (pick + 1) % n;
        let w = &workers[pick];
        w.open.fetch_add(1, Ordering::Relaxed);
        if w.tx.send((stream, peer)).is_err() {
            w.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("serving thread {pick} is gone; dropping a connection");
        }
    }
    drop(listener);
    for w in workers {
        drop(w.tx);
        let _ = w.done.await;
    }
    Ok(())
}

fn start(
    i: usize,
    app: Router,
    shutdown: CancellationToken,
    limits: ClientLimits,
) -> std::io::Result<Worker> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("llm-link-w{i}"))
        .spawn(move || {
            llm_link_gateway::workers::set_index(i);
            rt.block_on(async move {
                tokio::spawn(heartbeat());
                let graceful = hyper_util::server::graceful::GracefulShutdown::new();
                // This thread's own token: connections wait on it without
                // touching the shared one's lock.
                let local_shutdown = shutdown.child_token();
                let conns = crate::front::Connections::new(counter.clone());
                loop {
                    let (stream, peer) = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        got = rx.recv() => match got {
                            Some(c) => c,
                            None => break,
                        },
                    };
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            counter.fetch_sub(1, Ordering::Relaxed);
                            tracing::warn!("cannot adopt a connection: {e}");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = crate::front::serve(
                        stream,
                        peer,
                        app.clone(),
                        local_shutdown.clone(),
                        graceful.watcher(),
                        limits,
                    );
                    // The acceptor counted it when handing it over.
                    conns.spawn(conn, true);
                }
                // No new connections; let the open ones finish what they
                // are doing (the caller bounds this with its grace period).
                // Connections served by hyper close when idle on this
                // signal; the others close on `local_shutdown`.
                graceful.shutdown().await;
                conns.drained().await;
                let _ = done_tx.send(());
                // Keep driving this runtime until the process exits: I/O
                // that handlers opened here (a PostgreSQL or upstream
                // connection now used by the control thread's final usage
                // flush) only makes progress while its runtime runs.
                std::future::pending::<()>().await;
            });
        })?;
    Ok(Worker { tx, open, done })
}

/// Keeps one timer pending on a serving thread at all times.
///
/// A tokio runtime that parks with no timer pending wakes its own driver
/// (an eventfd write, and one more trip through `epoll_wait`) for every
/// timer registered before its next park, and each proxied request
/// registers two (its deadline and the first-byte timeout). On a lightly
/// loaded gateway that was two syscalls and a wasted poll on the path of
/// every request, while the upstream was answering. With a timer due
/// within a second, request timers (due later) register without waking
/// anything; the cost is one wake-up per second per idle thread.
async fn heartbeat() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}
