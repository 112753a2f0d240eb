//! The usage queue and its writer: a request only pushes its row into a
//! bounded in-memory queue (never waiting); one background task drains it
//! and inserts rows in batches (up to [`MAX_BATCH`] rows per transaction,
//! at least every [`FLUSH_EVERY`]). A full queue drops the row, counts it
//! and warns (at most every `WARN_EVERY`); shutdown flushes everything
//! queued before the process exits.

use crate::providers::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One request's usage, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// Unix milliseconds when the request arrived.
    pub ts: i64,
    pub request_id: String,
    /// `openai`, `anthropic` or `ollama`.
    pub protocol: &'static str,
    /// `chat/completions`, `completions`, `embeddings`, `messages`, `chat`,
    /// `generate`, `embed`.
    pub endpoint: &'static str,
    pub app: Option<String>,
    /// The model the client asked for (empty when the request was rejected
    /// before its model was read).
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    /// A low-cardinality label (`upstream_failed`, `client_disconnected`, …).
    pub error: Option<&'static str>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub attempts: u32,
    pub cost: Option<f64>,
    /// First 8 hex digits of the SHA-256 of the client key presented.
    pub key_id: Option<String>,
    /// The user the request ran as (its virtual key's user, or a session's).
    pub user_id: Option<i64>,
    /// The virtual key's id.
    pub virtual_key_id: Option<i64>,
}

/// Rows per transaction (one multi-row INSERT).
pub const MAX_BATCH: usize = 500;
/// The longest a queued row waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Rows the queue holds; beyond, rows are dropped (and counted).
pub const QUEUE_ROWS: usize = 32_768;
/// At most one "queue full" or "write failed" warning this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where batches go (the database; a vector in tests).
pub trait BatchSink: Send + 'static {
    fn write<'a>(&'a mut self, rows: &'a [UsageRow]) -> BoxFuture<'a, Result<(), String>>;
}

enum Msg {
    Row(Box<UsageRow>),
    /// Write what is queued so far, then answer.
    Flush(oneshot::Sender<()>),
    /// Write everything queued, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// Counters, shown by `GET /api/v1/llm/usage`.
#[derive(Debug, Default)]
pub struct Stats {
    pub written: AtomicU64,
    /// Dropped because the queue was full (or already closed).
    pub dropped: AtomicU64,
    /// Lost because the database refused the batch.
    pub failed: AtomicU64,
    last_warn_ms: AtomicU64,
}

impl Stats {
    /// Whether a warning may be logged now (rate limit shared by all kinds).
    fn may_warn(&self) -> bool {
        let now = crate::util::now_ms().max(0) as u64;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
            return false;
        }
        self.last_warn_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The handle requests record through; cheap to clone. A disabled recorder
/// (no database) records nothing.
#[derive(Clone, Default)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Msg>>,
    /// Wakes the writer before its window ends (a flush, a filling queue).
    urgent: Arc<tokio::sync::Notify>,
    pub stats: Arc<Stats>,
}

impl Recorder {
    pub fn disabled() -> Recorder {
        Recorder::default()
    }

    /// Starts the writer task on the current runtime.
    pub fn start(sink: impl BatchSink) -> Recorder {
        Recorder::with_capacity(sink, QUEUE_ROWS)
    }

    pub fn with_capacity(sink: impl BatchSink, capacity: usize) -> Recorder {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(Stats::default());
        let urgent = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run(rx, sink, stats.clone(), urgent.clone()));
        Recorder {
            tx: Some(tx),
            urgent,
            stats,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a row without waiting; a full queue drops it.
    pub fn record(&self, row: UsageRow) {
        let Some(tx) = &self.tx else { return };
        let sent = tx.try_send(Msg::Row(Box::new(row)));
        if sent.is_ok() && tx.capacity() < tx.max_capacity() / 2 {
            self.urgent.notify_one();
        }
        if let Err(e) = sent {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.stats.may_warn() {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the usage queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the usage writer has stopped",
                };
                tracing::warn!(dropped_total = n, "{why}: usage row dropped");
            }
        }
    }

    /// Waits until every row queued before this call is written (or failed).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Flush(ack)).await.is_ok() {
            self.urgent.notify_one();
            let _ = done.await;
        }
    }

    /// Writes everything queued and stops the writer; later rows are
    /// dropped. Called once the server has stopped serving.
    pub async fn flush_and_close(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Close(ack)).await.is_ok() {
            self.urgent.notify_one();
            let _ = done.await;
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Msg>,
    mut sink: impl BatchSink,
    stats: Arc<Stats>,
    urgent: Arc<tokio::sync::Notify>,
) {
    let mut batch: Vec<UsageRow> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // The first row of a window wakes the writer; the rest of the
        // window's rows queue up without waking it (a wake-up per request
        // would cost the serving threads a cross-thread signal each).
        let Some(first) = rx.recv().await else { break };
        let mut closing = false;
        let mut msg = Some(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut waited = false;
        // Collect until the batch is full, the oldest row is FLUSH_EVERY
        // old, or someone asks for a flush.
        loop {
            match msg.take() {
                Some(Msg::Row(r)) => batch.push(*r),
                Some(Msg::Flush(a)) => {
                    acks.push(a);
                    break;
                }
                Some(Msg::Close(a)) => {
                    acks.push(a);
                    closing = true;
                    break;
                }
                None => {}
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(m) => {
                    msg = Some(m);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closing = true;
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if waited {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = urgent.notified() => {}
            }
            waited = true;
        }
        if closing {
            // Nothing new is accepted; what is already queued still counts.
            rx.close();
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Row(r) => batch.push(*r),
                    Msg::Flush(a) | Msg::Close(a) => acks.push(a),
                }
            }
        }
        for part in batch.chunks(MAX_BATCH) {
            write(&mut sink, part, &stats).await;
        }
        batch.clear();
        for a in acks.drain(..) {
            let _ = a.send(());
        }
        if closing {
            break;
        }
    }
}

/// One batch, with one retry after a short pause (a busy SQLite file, a
/// PostgreSQL failover); then the rows are counted as failed.
async fn write(sink: &mut impl BatchSink, rows: &[UsageRow], stats: &Stats) {
    let mut last = String::new();
    for pause in [None, Some(Duration::from_millis(200))] {
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        match sink.write(rows).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) => last = e,
        }
    }
    let n = stats.failed.fetch_add(rows.len() as u64, Ordering::Relaxed) + rows.len() as u64;
    if stats.may_warn() {
        tracing::warn!(
            rows = rows.len(),
            failed_total = n,
            "could not write usage rows: {last}"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Records each batch's size and when it arrived.
    struct VecSink(mpsc::UnboundedSender<usize>, bool);

    impl BatchSink for VecSink {
        fn write<'a>(&'a mut self, rows: &'a [UsageRow]) -> BoxFuture<'a, Result<(), String>> {
            let fail = self.1;
            let n = rows.len();
            Box::pin(async move {
                if fail {
                    return Err("refused".into());
                }
                let _ = self.0.send(n);
                Ok(())
            })
        }
    }

    fn row() -> UsageRow {
        UsageRow::default()
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_size() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rec = Recorder::start(VecSink(tx, false));
        let t0 = tokio::time::Instant::now();
        for _ in 0..(MAX_BATCH + 3) {
            rec.record(row());
        }
        // A full batch goes at once, without waiting for the timer.
        assert_eq!(rx.recv().await, Some(MAX_BATCH));
        assert!(t0.elapsed() < FLUSH_EVERY, "{:?}", t0.elapsed());
        assert_eq!(rx.recv().await, Some(3));
        assert!(t0.elapsed() >= FLUSH_EVERY);
        rec.flush().await;
        assert_eq!(rec.stats.written.load(Ordering::Relaxed), 503);
        assert_eq!(rec.stats.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_time() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rec = Recorder::start(VecSink(tx, false));
        let t0 = tokio::time::Instant::now();
        rec.record(row());
        rec.record(row());
        assert_eq!(rx.recv().await, Some(2));
        let waited = t0.elapsed();
        assert!(
            waited >= FLUSH_EVERY && waited < FLUSH_EVERY * 2,
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn close_writes_everything_then_stops() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rec = Recorder::start(VecSink(tx, false));
        let t0 = tokio::time::Instant::now();
        for _ in 0..1200 {
            rec.record(row());
        }
        rec.flush_and_close().await;
        // Everything written before close returned, without the timer.
        assert!(t0.elapsed() < FLUSH_EVERY);
        let mut sizes = Vec::new();
        while let Ok(n) = rx.try_recv() {
            sizes.push(n);
        }
        assert_eq!(sizes.iter().sum::<usize>(), 1200);
        assert!(sizes.iter().all(|&n| n <= MAX_BATCH), "{sizes:?}");
        assert_eq!(rec.stats.written.load(Ordering::Relaxed), 1200);
        // Closed: a later row is dropped and counted, nothing waits.
        rec.record(row());
        rec.flush().await;
        assert_eq!(rec.stats.dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_drops_and_counts_without_blocking() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The writer cannot run before the test yields, so the queue fills.
        let rec = Recorder::with_capacity(VecSink(tx, false), 4);
        for _ in 0..10 {
            rec.record(row());
        }
        assert_eq!(rec.stats.dropped.load(Ordering::Relaxed), 6);
        rec.flush().await;
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rec.stats.written.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_are_counted() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let rec = Recorder::start(VecSink(tx, true));
        rec.record(row());
        rec.flush().await;
        assert_eq!(rec.stats.failed.load(Ordering::Relaxed), 1);
        assert_eq!(rec.stats.written.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn disabled_records_nothing() {
        let rec = Recorder::disabled();
        assert!(!rec.enabled());
        rec.record(row());
        rec.flush().await;
        rec.flush_and_close().await;
        assert_eq!(rec.stats.dropped.load(Ordering::Relaxed), 0);
    }
}
