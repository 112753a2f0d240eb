//! An upstream body as a stream of byte chunks that
//! - fails when the upstream sends nothing for longer than the idle timeout,
//!   or has not finished by its total deadline (one timer per stream,
//!   re-armed lazily, not one per chunk), and
//! - hands on what arrived together as one chunk.
//!
//! The second point matters for speed. hyper's client passes a chunked body
//! on one chunk at a time, each after a turn of its connection task, and
//! hyper's server writes to the client whenever the body it sends has
//! nothing ready. Passed on as they come, a burst of 100 SSE events from the
//! upstream became 100 writes (and 100 wake-ups of the client). Here, after
//! a chunk arrives, the stream lets the connection task run once more
//! before answering; whatever that turn produced joins the chunk. When the
//! upstream is quiet (an LLM emitting tokens one by one) that costs one
//! extra scheduler turn per chunk, microseconds, and delays nothing.

use crate::error::ApiError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The most bytes joined into one chunk.
pub const MAX_JOINED: usize = 64 * 1024;

pub struct IdleStream<S> {
    inner: S,
    idle: Duration,
    /// When the whole answer must have ended.
    until: Instant,
    total: Duration,
    name: std::sync::Arc<str>,
    timer: Pin<Box<Sleep>>,
    last: Instant,
    /// Bytes received and not yet handed on.
    held: Option<Bytes>,
    more: BytesMut,
    /// The inner stream had nothing once since the last chunk.
    waited: bool,
    /// An error (or the end) to report after the held bytes.
    after: Option<Option<ApiError>>,
    done: bool,
}

impl<S> IdleStream<S> {
    pub fn new(
        inner: S,
        idle: Duration,
        total: Duration,
        name: std::sync::Arc<str>,
    ) -> IdleStream<S> {
        let now = Instant::now();
        IdleStream {
            inner,
            idle,
            until: now + total,
            total,
            name,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            last: now,
            held: None,
            more: BytesMut::new(),
            waited: false,
            after: None,
            done: false,
        }
    }

    fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    fn hold(&mut self, b: Bytes) {
        match &self.held {
            None => self.held = Some(b),
            Some(_) => self.more.extend_from_slice(&b),
        }
    }

    fn take(&mut self) -> Option<Bytes> {
        let first = self.held.take()?;
        if self.more.is_empty() {
            return Some(first);
        }
        let mut all = BytesMut::with_capacity(first.len() + self.more.len());
        all.extend_from_slice(&first);
        all.extend_from_slice(&self.more);
        self.more.clear();
        Some(all.freeze())
    }
}

impl<S, E> Stream for IdleStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(after) = this.after.take() {
            this.done = true;
            return Poll::Ready(after.map(Err));
        }
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    this.last = Instant::now();
                    this.waited = false;
                    if b.is_empty() {
                        continue;
                    }
                    this.hold(b);
                    if this.held_len() >= MAX_JOINED {
                        return Poll::Ready(this.take().map(Ok));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(provider = %this.name, error = %e, "upstream stream failed");
                    let err = ApiError::BadGateway(format!(
                        "provider `{}` broke off the stream",
                        this.name
                    ));
                    return Poll::Ready(Some(match this.take() {
                        Some(b) => {
                            this.after = Some(Some(err));
                            Ok(b)
                        }
                        None => {
                            this.done = true;
                            Err(err)
                        }
                    }));
                }
                Poll::Ready(None) => {
                    return Poll::Ready(match this.take() {
                        Some(b) => {
                            this.after = Some(None);
                            Some(Ok(b))
                        }
                        None => {
                            this.done = true;
                            None
                        }
                    });
                }
                Poll::Pending => {
                    if this.held.is_some() {
                        if this.waited {
                            this.waited = false;
                            return Poll::Ready(this.take().map(Ok));
                        }
                        // Let the connection task have its turn first.
                        this.waited = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let deadline = (this.last + this.idle).min(this.until);
                    if this.timer.deadline() != deadline {
                        this.timer.as_mut().reset(deadline);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        let why = if deadline == this.until {
                            format!(
                                "provider `{}` did not finish its answer within {}s",
                                this.name,
                                this.total.as_secs_f64()
                            )
                        } else {
                            format!(
                                "provider `{}` sent nothing for {}s",
                                this.name,
                                this.idle.as_secs_f64()
                            )
                        };
                        return Poll::Ready(Some(Err(ApiError::Timeout(why))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    const HOUR: Duration = Duration::from_secs(3600);

    fn name() -> std::sync::Arc<str> {
        std::sync::Arc::from("p")
    }

    /// A stream that answers from a script, one step per poll: `Some(b)`
    /// is a chunk, `None` is one `Pending` (waking itself at once).
    struct Script(std::collections::VecDeque<Option<&'static str>>);

    impl Stream for Script {
        type Item = Result<Bytes, String>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.0.pop_front() {
                None => Poll::Ready(None),
                Some(Some(s)) => Poll::Ready(Some(Ok(Bytes::from_static(s.as_bytes())))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    async fn collect(script: Vec<Option<&'static str>>) -> Vec<String> {
        let s = IdleStream::new(Script(script.into()), Duration::from_secs(5), HOUR, name());
        s.map(|r| String::from_utf8(r.unwrap().to_vec()).unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn joins_what_arrives_together() {
        // a, b arrive with one quiet turn between them: joined. Two quiet
        // turns in a row: what is held goes out.
        let got = collect(vec![Some("a"), None, Some("b"), None, None, Some("c")]).await;
        assert_eq!(got, vec!["ab", "c"]);
    }

    #[tokio::test]
    async fn a_quiet_upstream_gets_each_chunk_out_alone() {
        let got = collect(vec![Some("a"), None, None, Some("b"), None, None]).await;
        assert_eq!(got, vec!["a", "b"]);
    }

    #[tokio::test]
    async fn joined_chunks_stop_at_the_cap() {
        let big: &'static str = Box::leak("x".repeat(MAX_JOINED / 2 + 1).into_boxed_str());
        let got = collect(vec![Some(big), Some(big), Some(big)]).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 2 * big.len());
        assert_eq!(got[1].len(), big.len());
    }

    #[tokio::test]
    async fn an_error_comes_after_the_held_bytes() {
        let inner = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"data: 1\n\n")),
            Err("reset".to_string()),
        ]);
        let mut s = IdleStream::new(inner, Duration::from_secs(5), HOUR, name());
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"data: 1\n\n");
        assert!(matches!(s.next().await, Some(Err(ApiError::BadGateway(_)))));
        assert!(s.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_times_out() {
        let inner = futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"x"))])
            .chain(futures_util::stream::pending());
        let mut s = IdleStream::new(inner, Duration::from_secs(3), HOUR, name());
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"x");
        let started = Instant::now();
        assert!(matches!(s.next().await, Some(Err(ApiError::Timeout(_)))));
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert!(s.next().await.is_none());
    }

    /// An upstream that keeps sending, each chunk well within the idle
    /// timeout, still ends at the total deadline.
    #[tokio::test(start_paused = true)]
    async fn an_endless_trickle_ends_at_the_total_deadline() {
        let inner = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, String>(Bytes::from_static(b"data: x\n\n")), ()))
        });
        let mut s = IdleStream::new(
            Box::pin(inner),
            Duration::from_secs(3),
            Duration::from_secs(10),
            name(),
        );
        let started = Instant::now();
        let mut chunks = 0;
        let err = loop {
            match s.next().await {
                Some(Ok(_)) => chunks += 1,
                Some(Err(e)) => break e,
                None => panic!("ended without an error"),
            }
        };
        assert!(
            matches!(&err, ApiError::Timeout(m) if m.contains("within 10s")),
            "{err}"
        );
        assert!(chunks >= 8, "{chunks}");
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(12));
    }
}
