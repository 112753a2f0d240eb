//! Helpers shared by the codecs' unit tests: fixtures, feeding a stream
//! decoder in pieces, and collapsing the decoded events for comparison.

use crate::ir::{FinishReason, StreamEvent, Usage};
use crate::DecodeError;

/// The bytes of `tests/fixtures/<format>/<name>`.
pub(crate) fn fixture(format: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/{format}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A stream decoder of any wire format.
pub(crate) trait Decoder {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError>;
    fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError>;
}

macro_rules! decoder {
    ($($t:ty),*) => {$(
        impl Decoder for $t {
            fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
                <$t>::feed(self, bytes)
            }
            fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError> {
                <$t>::finish(self)
            }
        }
    )*};
}

decoder!(
    crate::openai::stream::ChunkDecoder,
    crate::anthropic::stream::StreamDecoder,
    crate::ollama::stream::NdjsonDecoder
);

/// Feeds `bytes` to `d` in pieces of `split` bytes, then finishes it.
pub(crate) fn decode_in_pieces(
    mut d: impl Decoder,
    bytes: &[u8],
    split: usize,
) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    for piece in bytes.chunks(split.max(1)) {
        out.extend(d.feed(piece).unwrap_or_else(|e| panic!("{e}")));
    }
    out.extend(d.finish().unwrap_or_else(|e| panic!("{e}")));
    out
}

/// (content, reasoning, tool calls by index as (id, name, arguments), finish, usage)
pub(crate) type Collected = (
    String,
    String,
    Vec<(String, String, String)>,
    Option<FinishReason>,
    Option<Usage>,
);

/// Collapses a stream into [`Collected`].
pub(crate) fn collect(events: &[StreamEvent]) -> Collected {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    let mut usage = None;
    for ev in events {
        if let StreamEvent::Chunk(c) = ev {
            if c.usage.is_some() {
                usage = c.usage;
            }
            for ch in &c.choices {
                content.push_str(ch.content.as_deref().unwrap_or(""));
                reasoning.push_str(ch.reasoning.as_deref().unwrap_or(""));
                for tc in &ch.tool_calls {
                    let i = tc.index as usize;
                    if calls.len() <= i {
                        calls.resize(i + 1, Default::default());
                    }
                    if let Some(id) = &tc.id {
                        calls[i].0 = id.clone();
                    }
                    if let Some(n) = &tc.name {
                        calls[i].1 = n.clone();
                    }
                    calls[i].2.push_str(&tc.arguments);
                }
                if ch.finish_reason.is_some() {
                    finish = ch.finish_reason.clone();
                }
            }
        }
    }
    (content, reasoning, calls, finish, usage)
}
