//! Streamed Ollama answers: NDJSON, one JSON object per line, the last one
//! with `done: true`, `done_reason` and the metrics.

use super::wire::WireChatResponse;
use super::{
    answer_head, arguments_value, done_reason, error_message, finish_from_done_reason, put_metrics,
    tool_call_from_wire, unix_secs_from_rfc3339, usage_from_counts, Timings,
};
use crate::ir::*;
use crate::json::DecodeError;
use crate::think::ThinkSplitter;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Decodes an Ollama upstream's NDJSON `/api/chat` stream into
/// [`StreamEvent`]s. Lines may be split anywhere across [`feed`](Self::feed)
/// calls (even inside a UTF-8 sequence).
///
/// Tool calls arrive whole in Ollama streams; each becomes one
/// [`ToolCallDelta`] with a running index, an id (`call_<n>` unless the
/// upstream sent one), the name and the complete arguments text.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already known to hold no `\n`, so a long
    /// line fed in small pieces is scanned once, not once per piece.
    scanned: usize,
    splitter: ThinkSplitter,
    calls_seen: u32,
    role_sent: bool,
    done: bool,
}

impl NdjsonDecoder {
    pub fn new() -> NdjsonDecoder {
        NdjsonDecoder::default()
    }

    /// Whether the `done: true` line has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, DecodeError> {
        // Taken out so lines can be borrowed from it while `line` runs.
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut result = Ok(());
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + pos;
            result = self.line(&buf[start..end], &mut out);
            start = end + 1;
            from = start;
            if result.is_err() {
                break;
            }
        }
        buf.drain(..start);
        self.scanned = if result.is_ok() { buf.len() } else { 0 };
        if result.is_ok() && buf.len() > crate::sse::MAX_LINE {
            // An upstream that never ends its line must not grow this
            // buffer without bound.
            buf.clear();
            self.scanned = 0;
            result = Err(DecodeError::body("stream line exceeds 16 MiB"));
        }
        self.buf = buf;
        result.map(|()| out)
    }

    /// Ends the input: decodes a last line without a newline and flushes
    /// held-back text.
    pub fn finish(&mut self) -> Result<Vec<StreamEvent>, DecodeError> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        self.line(&rest, &mut out)?;
        let tail = self.splitter.finish();
        if !tail.content.is_empty() || !tail.reasoning.is_empty() {
            let chunk = ChatChunk {
                choices: vec![ChoiceDelta {
                    content: (!tail.content.is_empty()).then_some(tail.content),
                    reasoning: (!tail.reasoning.is_empty()).then_some(tail.reasoning),
                    ..ChoiceDelta::default()
                }],
                ..ChatChunk::default()
            };
            let pos = out
                .iter()
                .position(|e| matches!(e, StreamEvent::Done))
                .unwrap_or(out.len());
            out.insert(pos, StreamEvent::Chunk(chunk));
        }
        Ok(out)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| DecodeError::body("stream line is not UTF-8"))?
            .trim();
        if text.is_empty() {
            return Ok(());
        }
        let wire: WireChatResponse = serde_json::from_str(text)
            .map_err(|e| DecodeError::body(format!("malformed stream line: {e}")))?;
        if let Some(err) = &wire.error {
            out.push(StreamEvent::Error(StreamError {
                message: error_message(err),
                kind: "upstream_error".to_string(),
            }));
            return Ok(());
        }
        let msg = wire.message.unwrap_or_default();
        let raw_text = msg.content.or(wire.response).unwrap_or_default();
        let mut split = self.splitter.push(&raw_text);
        if wire.done {
            let tail = self.splitter.finish();
            split.content.push_str(&tail.content);
            split.reasoning.push_str(&tail.reasoning);
        }
        let mut reasoning = msg.thinking.or(wire.thinking).unwrap_or_default();
        reasoning.push_str(&split.reasoning);

        let mut tool_calls = Vec::new();
        for tc in msg.tool_calls.unwrap_or_default() {
            let n = self.calls_seen;
            self.calls_seen += 1;
            let call = tool_call_from_wire(tc, format!("call_{n}"));
            tool_calls.push(ToolCallDelta {
                index: n,
                id: Some(call.id),
                name: Some(call.name).filter(|s| !s.is_empty()),
                arguments: call.arguments,
            });
        }
        let finish_reason = wire.done.then(|| {
            if self.calls_seen > 0 {
                FinishReason::ToolCalls
            } else {
                finish_from_done_reason(wire.done_reason.as_deref())
            }
        });
        let mut delta = ChoiceDelta {
            index: 0,
            role: None,
            content: (!split.content.is_empty()).then_some(split.content),
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls,
            finish_reason,
        };
        let usage = wire
            .done
            .then(|| usage_from_counts(wire.prompt_eval_count, wire.eval_count));
        if !delta.is_empty() || usage.is_some() {
            if !self.role_sent {
                delta.role = Some(Role::Assistant);
                self.role_sent = true;
            }
            out.push(StreamEvent::Chunk(ChatChunk {
                id: None,
                model: Some(wire.model).filter(|m| !m.is_empty()),
                created: wire.created_at.as_deref().and_then(unix_secs_from_rfc3339),
                choices: vec![delta],
                usage,
            }));
        }
        if wire.done {
            self.done = true;
            out.push(StreamEvent::Done);
        }
        Ok(())
    }
}

/// A tool call being put together from fragments.
#[derive(Debug, Clone, Default)]
struct PendingCall {
    name: String,
    arguments: String,
}

/// Encodes [`ChatChunk`]s as an Ollama client expects them: one NDJSON line
/// per chunk with text or reasoning, whole tool calls, then a final
/// `done: true` line with `done_reason`, token counts and durations.
///
/// Tool-call fragments are buffered: Ollama clients expect each call whole,
/// with its arguments as a JSON object. They are sent when the upstream
/// says the turn is over (a chunk with a finish reason) or at
/// [`finish`](Self::finish), one line per call, in index order. Arguments
/// that are not valid JSON by then are sent as a JSON string, so nothing
/// is lost and a strict client fails loudly rather than calling a tool with
/// made-up arguments.
///
/// With `generate` set, lines carry `response` (and `thinking`) instead of
/// `message`, as `/api/generate` does; tool calls cannot be expressed there
/// and are not sent.
#[derive(Debug)]
pub struct ChatStreamEncoder {
    model: String,
    created_at: String,
    /// Every text line up to its text: model, created_at and the opening
    /// of `message` (or `response`).
    text_start: Vec<u8>,
    reasoning: ReasoningOutput,
    generate: bool,
    /// Inline reasoning: `<think>` was opened and not yet closed.
    think_open: bool,
    /// By tool-call index.
    pending: BTreeMap<u32, PendingCall>,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    finished: bool,
}

impl ChatStreamEncoder {
    pub fn new(
        model: String,
        created_at: String,
        reasoning: ReasoningOutput,
        generate: bool,
    ) -> ChatStreamEncoder {
        let mut text_start = Vec::with_capacity(96 + model.len());
        text_start.extend_from_slice(b"{\"model\":");
        push_json_str(&mut text_start, &model);
        text_start.extend_from_slice(b",\"created_at\":");
        push_json_str(&mut text_start, &created_at);
        text_start.extend_from_slice(if generate {
            b",\"response\":".as_slice()
        } else {
            b",\"message\":{\"role\":\"assistant\",\"content\":".as_slice()
        });
        ChatStreamEncoder {
            model,
            created_at,
            text_start,
            reasoning,
            generate,
            think_open: false,
            pending: BTreeMap::new(),
            usage: None,
            finish_reason: None,
            finished: false,
        }
    }

    /// Usage seen so far (the last report wins).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finish reason seen so far.
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.finish_reason.as_ref()
    }

    fn line(&self, body: Map<String, Value>) -> Vec<u8> {
        let mut out = Value::Object(body).to_string().into_bytes();
        out.push(b'\n');
        out
    }

    /// Appends one text line (`message`, or `response` for generate): the
    /// fixed start made once per stream, then the text. Building a `Value`
    /// map per line and printing it through `Display` cost several
    /// thousand instructions per streamed token.
    fn text_line(&self, out: &mut Vec<u8>, text: &str, thinking: Option<&str>) {
        out.extend_from_slice(&self.text_start);
        push_json_str(out, text);
        if let Some(t) = thinking {
            out.extend_from_slice(b",\"thinking\":");
            push_json_str(out, t);
        }
        if !self.generate {
            out.push(b'}');
        }
        out.extend_from_slice(b",\"done\":false}\n");
    }

    /// Sends the buffered tool calls, one line each.
    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        let calls = std::mem::take(&mut self.pending);
        if self.generate {
            return;
        }
        for c in calls.into_values() {
            let mut o = answer_head(&self.model, &self.created_at);
            o.insert(
                "message".into(),
                json!({
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {
                        "name": c.name,
                        "arguments": arguments_value(&c.arguments),
                    }}],
                }),
            );
            o.insert("done".into(), Value::Bool(false));
            out.extend_from_slice(&self.line(o));
        }
    }

    /// Encodes one chunk; returns nothing when it carries nothing to send
    /// yet. Only choice 0 is sent (Ollama has one choice).
    pub fn encode(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut out = Vec::new();
        for c in chunk.choices.iter().filter(|c| c.index == 0) {
            let mut text = String::new();
            let mut thinking = None;
            match (self.reasoning, c.reasoning.as_deref()) {
                (ReasoningOutput::Separate, Some(r)) if !r.is_empty() => thinking = Some(r),
                (ReasoningOutput::Inline, Some(r)) if !r.is_empty() => {
                    if !self.think_open {
                        text.push_str("<think>");
                        self.think_open = true;
                    }
                    text.push_str(r);
                }
                _ => {}
            }
            let has_more = c.content.as_deref().is_some_and(|s| !s.is_empty())
                || !c.tool_calls.is_empty()
                || c.finish_reason.is_some();
            if has_more && self.think_open {
                text.push_str("</think>\n\n");
                self.think_open = false;
            }
            if let Some(t) = &c.content {
                text.push_str(t);
            }
            if !text.is_empty() || thinking.is_some() {
                self.text_line(&mut out, &text, thinking);
            }
            for tc in &c.tool_calls {
                let p = self.pending.entry(tc.index).or_default();
                if let Some(n) = tc.name.as_deref().filter(|n| !n.is_empty()) {
                    p.name = n.to_string();
                }
                p.arguments.push_str(&tc.arguments);
            }
            if let Some(f) = &c.finish_reason {
                self.finish_reason = Some(f.clone());
                self.flush_calls(&mut out);
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Ends the stream: any buffered tool calls, then the final line with
    /// `done: true`, `done_reason`, token counts and `timings`.
    /// `created_at` is the time of this last line. Empty when called again.
    pub fn finish(&mut self, timings: Timings, created_at: String) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        self.finished = true;
        let mut out = Vec::new();
        if self.think_open {
            self.think_open = false;
            self.text_line(&mut out, "</think>\n\n", None);
        }
        self.flush_calls(&mut out);
        let mut o = answer_head(&self.model, &created_at);
        if self.generate {
            o.insert("response".into(), json!(""));
        } else {
            o.insert(
                "message".into(),
                json!({"role": "assistant", "content": ""}),
            );
        }
        o.insert(
            "done_reason".into(),
            json!(done_reason(self.finish_reason.as_ref())),
        );
        o.insert("done".into(), Value::Bool(true));
        put_metrics(&mut o, timings, self.usage);
        out.extend_from_slice(&self.line(o));
        Bytes::from(out)
    }

    /// An in-band error after the stream has started: `{"error": msg}`.
    /// The stream is over after it.
    pub fn error(&mut self, msg: &str) -> Bytes {
        self.finished = true;
        self.pending.clear();
        let mut out = json!({ "error": msg }).to_string().into_bytes();
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    crate::json::write_str(out, s);
}
