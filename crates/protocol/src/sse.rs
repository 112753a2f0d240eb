//! Incremental Server-Sent Events parsing, decoding and writing.

use crate::ir::StreamEvent;
use crate::json::DecodeError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when present.
    pub event: Option<String>,
    /// All `data:` lines, joined with `\n`.
    pub data: String,
}

/// Feeds bytes in any split; yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    /// Bytes at the start of `buf` already known to hold no `\n`, so a long
    /// line fed in small pieces is scanned once, not once per piece.
    scanned: usize,
    pending: Pending,
}

/// The fields of the event being read.
#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    data: Option<String>,
}

/// Bytes that may be buffered waiting for a line end before the input is
/// considered malformed (a runaway line).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError(pub String);

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Adds bytes and returns every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Lines are read in place and the buffer advanced once at the end
        // (a burst of upstream events is hundreds of lines).
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[from..]) {
            let end = from + pos;
            let mut line = &self.buf[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| SseError("stream line is not valid UTF-8".into()))?;
            if let Some(ev) = self.pending.line(line) {
                out.push(ev);
            }
            start = end + 1;
            from = start;
        }
        self.buf.advance(start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_LINE {
            return Err(SseError("stream line exceeds 16 MiB".into()));
        }
        Ok(out)
    }

    /// Ends the input: a final event without its blank line still counts.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            self.scanned = 0;
            let rest = self.buf.split();
            if let Ok(line) = std::str::from_utf8(&rest) {
                if let Some(ev) = self.pending.line(line.trim_end_matches('\r')) {
                    return Some(ev);
                }
            }
        }
        self.pending.dispatch()
    }
}

impl Pending {
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let data = self.data.take();
        let event = self.event.take();
        data.map(|data| SseEvent { event, data })
    }
}

/// What the events of one format's stream mean: [`SseDecoder`] parses the
/// stream and hands each event to this.
pub trait SseEvents: Default {
    /// Decodes one event, pushing what it yields to `out`.
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError>;

    /// After the last event: pushes what is still held back (by default
    /// nothing).
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) {}

    /// Whether the stream's end has been seen.
    fn is_done(&self) -> bool;
}

/// Decodes an SSE stream from an upstream into [`StreamEvent`]s, the bytes
/// split anywhere across [`feed`](Self::feed) calls; `E` decodes each event.
#[derive(Debug, Default)]
pub struct SseDecoder<E> {
    sse: SseParser,
    events: E,
}

impl<E: SseEvents> SseDecoder<E> {
    pub fn new() -> SseDecoder<E> {
        SseDecoder::default()
    }

    /// Whether the stream's end has been seen.
    pub fn is_done(&self) -> bool {
        self.events.is_done()
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        let events = self.sse.feed(bytes).map_err(|e| DecodeError::body(e.0))?;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            self.events.event(&ev, &mut out)?;
        }
        Ok(out)
    }

    /// Ends the input: an unterminated last event still counts, then what
    /// the format held back.
    pub fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError> {
        let mut out = Vec::new();
        if let Some(ev) = self.sse.finish() {
            self.events.event(&ev, &mut out)?;
        }
        self.events.finish(&mut out);
        Ok(out)
    }
}

pub fn data_event(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(payload);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Writes `event: <name>\ndata: <payload>\n\n`.
pub fn named_event(name: &str, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + name.len() + 16);
    b.put_slice(b"event: ");
    b.put_slice(name.as_bytes());
    b.put_slice(b"\ndata: ");
    b.put_slice(payload);
    b.put_slice(b"\n\n");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    mod props {
        //! The parser against a reference: a stream of events written out
        //! and fed in arbitrary pieces yields exactly those events; any
        //! bytes at all never panic.
        use super::*;
        use proptest::prelude::*;

        fn event() -> impl Strategy<Value = SseEvent> {
            (
                proptest::option::of("[a-z.]{1,12}"),
                proptest::collection::vec("[ -~]{0,30}", 1..4),
            )
                .prop_map(|(event, lines)| SseEvent {
                    event,
                    data: lines.join("\n"),
                })
        }

        fn write(events: &[SseEvent], crlf: bool) -> Vec<u8> {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut out = String::new();
            for e in events {
                if let Some(name) = &e.event {
                    out.push_str(&format!("event: {name}{nl}"));
                }
                for line in e.data.split('\n') {
                    out.push_str(&format!("data: {line}{nl}"));
                }
                out.push_str(nl);
            }
            out.into_bytes()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn any_split_yields_the_events(
                events in proptest::collection::vec(event(), 0..12),
                cuts in proptest::collection::vec(1usize..40, 0..60),
                crlf in any::<bool>(),
            ) {
                let wire = write(&events, crlf);
                let mut p = SseParser::new();
                let mut got = Vec::new();
                let mut pos = 0;
                let mut k = 0;
                while pos < wire.len() {
                    let n = cuts.get(k).copied().unwrap_or(13).min(wire.len() - pos);
                    k += 1;
                    got.extend(p.feed(&wire[pos..pos + n]).unwrap_or_default());
                    pos += n;
                }
                got.extend(p.finish());
                prop_assert_eq!(got, events);
            }

            #[test]
            fn arbitrary_bytes_never_panic(
                wire in proptest::collection::vec(any::<u8>(), 0..2048),
                cuts in proptest::collection::vec(1usize..40, 0..60),
            ) {
                let mut p = SseParser::new();
                let mut pos = 0;
                let mut k = 0;
                while pos < wire.len() {
                    let n = cuts.get(k).copied().unwrap_or(13).min(wire.len() - pos);
                    k += 1;
                    let _ = p.feed(&wire[pos..pos + n]);
                    pos += n;
                }
                let _ = p.finish();
            }
        }
    }

    #[test]
    fn events_split_anywhere() {
        let input =
            b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\ndata: l1\ndata: l2\n\ndata: [DONE]\n\n";
        for split in 0..input.len() {
            let mut p = SseParser::new();
            let mut evs = p.feed(&input[..split]).unwrap_or_default();
            evs.extend(p.feed(&input[split..]).unwrap_or_default());
            assert_eq!(evs.len(), 3, "split at {split}");
            assert_eq!(evs[0].event.as_deref(), Some("a"));
            assert_eq!(evs[0].data, "{\"x\":1}");
            assert_eq!(evs[1].data, "l1\nl2");
            assert_eq!(evs[2].data, "[DONE]");
        }
    }

    #[test]
    fn events_fed_byte_by_byte() {
        let input = b"event: a\r\ndata: {\"x\":1}\r\n\r\ndata: l1\ndata: l2\n\n";
        let mut p = SseParser::new();
        let mut evs = Vec::new();
        for b in input {
            evs.extend(p.feed(std::slice::from_ref(b)).unwrap_or_default());
        }
        let data: Vec<&str> = evs.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["{\"x\":1}", "l1\nl2"]);
        assert_eq!(evs[0].event.as_deref(), Some("a"));
    }

    #[test]
    fn finish_flushes_unterminated_event() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: tail").unwrap_or_default().is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("tail".to_string()));
    }
}
