//! Upstream byte streams → decoded events, for every wire format.

use super::{ByteStream, EventStream};
use crate::error::ApiError;
use futures_util::StreamExt;
use llm_link_protocol::ir::StreamEvent;
use llm_link_protocol::json::DecodeError;
use std::collections::VecDeque;

/// A stateful decoder of one upstream wire format's stream.
pub trait EventDecoder: Send + 'static {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError>;
    fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError>;
    /// Whether the upstream said the stream is complete.
    fn is_done(&self) -> bool;
}

/// Implements [`EventDecoder`] for protocol decoders, whose inherent
/// `feed`, `finish` and `is_done` already have the trait's signatures.
macro_rules! event_decoder {
    ($($decoder:ty),+ $(,)?) => {$(
        impl EventDecoder for $decoder {
            fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
                self.feed(bytes)
            }
            fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError> {
                self.finish()
            }
            fn is_done(&self) -> bool {
                self.is_done()
            }
        }
    )+};
}

event_decoder!(
    llm_link_protocol::openai::stream::ChunkDecoder,
    llm_link_protocol::anthropic::stream::StreamDecoder,
    llm_link_protocol::ollama::stream::NdjsonDecoder,
);

fn has_finish(ev: &StreamEvent) -> bool {
    matches!(ev, StreamEvent::Chunk(c) if c.choices.iter().any(|c| c.finish_reason.is_some()))
}

/// Decodes an upstream byte stream. A stream that ends without its
/// end-of-stream marker and without a finish reason is reported as broken.
pub fn decode_events<D: EventDecoder>(
    bytes: ByteStream,
    decoder: D,
    provider: String,
) -> EventStream {
    struct St<D> {
        bytes: ByteStream,
        dec: D,
        queue: VecDeque<Result<StreamEvent, ApiError>>,
        ended: bool,
        saw_finish: bool,
        provider: String,
    }
    let st = St {
        bytes,
        dec: decoder,
        queue: VecDeque::new(),
        ended: false,
        saw_finish: false,
        provider,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(b)) => match st.dec.feed(&b) {
                    Ok(evs) => {
                        st.saw_finish |= evs.iter().any(has_finish);
                        st.queue.extend(evs.into_iter().map(Ok));
                    }
                    Err(e) => {
                        st.ended = true;
                        tracing::warn!(provider = %st.provider, error = %e, "malformed upstream stream");
                        st.queue.push_back(Err(ApiError::BadGateway(format!(
                            "provider `{}` sent a malformed stream",
                            st.provider
                        ))));
                    }
                },
                Some(Err(e)) => {
                    st.ended = true;
                    st.queue.push_back(Err(e));
                }
                None => {
                    st.ended = true;
                    match st.dec.finish() {
                        Ok(evs) => {
                            st.saw_finish |= evs.iter().any(has_finish);
                            st.queue.extend(evs.into_iter().map(Ok));
                        }
                        Err(e) => {
                            tracing::warn!(provider = %st.provider, error = %e, "malformed stream tail")
                        }
                    }
                    if !st.dec.is_done() && !st.saw_finish {
                        st.queue.push_back(Err(ApiError::BadGateway(format!(
                            "provider `{}` ended the stream early",
                            st.provider
                        ))));
                    }
                }
            }
        }
    }))
}
