//! Streamed Messages: Anthropic's server-sent events both ways.
//!
//! An Anthropic stream is `message_start`, then content blocks — each a
//! `content_block_start`, `content_block_delta`s and a `content_block_stop`,
//! indexed from 0 — then `message_delta` (stop reason, cumulative usage) and
//! one `message_stop`; `ping` may come at any time, and `error` ends a stream
//! that fails after it started.

use super::wire::*;
use super::{finish_reason_from_stop_reason, message_id, stop_reason_for, usage_from_wire};
use crate::ir::*;
use crate::json::DecodeError;
use crate::sse::{named_event, SseDecoder, SseEvent, SseEvents};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A `tool_use` block and its position among the message's tool calls.
    Tool(u32),
    Other,
}

/// Decodes an Anthropic SSE stream (from an upstream) into [`StreamEvent`]s.
///
/// - `message_start` → a chunk with id, model, the assistant role and the
///   usage known so far (input side);
/// - text / thinking blocks → `content` / `reasoning` deltas;
/// - `tool_use` blocks → [`ToolCallDelta`]s whose `index` counts tool calls
///   (0, 1, …), not content blocks: the first carries id and name, each
///   `input_json_delta` adds `arguments` text;
/// - `message_delta` → the finish reason and complete usage (fields it omits
///   keep their `message_start` values);
/// - `message_stop` → [`StreamEvent::Done`]; `error` → [`StreamEvent::Error`];
///   `ping`, `signature_delta`, `content_block_stop` and unknown events yield
///   nothing.
///
/// Works with and without `event:` lines (the JSON `type` decides).
pub type StreamDecoder = SseDecoder<MessageEvents>;

/// What the events of a [`StreamDecoder`]'s stream mean, and its state
/// between them.
#[derive(Debug, Default)]
pub struct MessageEvents {
    id: Option<String>,
    model: Option<String>,
    blocks: HashMap<u32, BlockKind>,
    tools: u32,
    usage: WireUsage,
    done: bool,
}

impl MessageEvents {
    fn chunk(&self, delta: ChoiceDelta, usage: Option<Usage>) -> StreamEvent {
        StreamEvent::Chunk(ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: None,
            choices: vec![delta],
            usage,
        })
    }
}

impl SseEvents for MessageEvents {
    /// Whether `message_stop` has been seen.
    fn is_done(&self) -> bool {
        self.done
    }

    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let (name, data) = (ev.event.as_deref(), ev.data.trim());
        if data.is_empty() {
            return Ok(());
        }
        // Events carry their `type`: decode them straight away. Only one
        // without it (typed by its `event:` line) or a bad one goes through
        // a `Value`, to add the type or name the bad field.
        let ev: WireStreamEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(_) => {
                let mut value: Value = serde_json::from_str(data)
                    .map_err(|e| DecodeError::body(format!("malformed stream event: {e}")))?;
                if let (Some(o), Some(name)) = (value.as_object_mut(), name) {
                    if !o.contains_key("type") {
                        o.insert("type".into(), Value::String(name.to_string()));
                    }
                }
                from_value("event", value)?
            }
        };
        match ev {
            WireStreamEvent::MessageStart { message } => {
                self.id = Some(message.id).filter(|s| !s.is_empty());
                self.model = Some(message.model).filter(|s| !s.is_empty());
                let usage = message.usage.map(|u| {
                    self.usage = u;
                    usage_from_wire(&u)
                });
                out.push(self.chunk(
                    ChoiceDelta {
                        role: Some(Role::Assistant),
                        ..ChoiceDelta::default()
                    },
                    usage,
                ));
            }
            WireStreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireResponseBlock::Text { text } => {
                    self.blocks.insert(index, BlockKind::Text);
                    if !text.is_empty() {
                        out.push(self.chunk(
                            ChoiceDelta {
                                content: Some(text),
                                ..ChoiceDelta::default()
                            },
                            None,
                        ));
                    }
                }
                WireResponseBlock::Thinking { thinking } => {
                    self.blocks.insert(index, BlockKind::Thinking);
                    if !thinking.is_empty() {
                        out.push(self.chunk(
                            ChoiceDelta {
                                reasoning: Some(thinking),
                                ..ChoiceDelta::default()
                            },
                            None,
                        ));
                    }
                }
                WireResponseBlock::ToolUse { id, name, input } => {
                    let ordinal = self.tools;
                    self.tools += 1;
                    self.blocks.insert(index, BlockKind::Tool(ordinal));
                    // Streams start tool blocks with `input: {}` and send the
                    // input as deltas; a non-empty start input is kept.
                    let arguments = match input {
                        Value::Object(o) if !o.is_empty() => Value::Object(o).to_string(),
                        _ => String::new(),
                    };
                    out.push(self.chunk(
                        ChoiceDelta {
                            tool_calls: vec![ToolCallDelta {
                                index: ordinal,
                                id: Some(id).filter(|s| !s.is_empty()),
                                name: Some(name).filter(|s| !s.is_empty()),
                                arguments,
                            }],
                            ..ChoiceDelta::default()
                        },
                        None,
                    ));
                }
                WireResponseBlock::Other => {
                    self.blocks.insert(index, BlockKind::Other);
                }
            },
            WireStreamEvent::ContentBlockDelta { index, delta } => {
                let kind = self.blocks.get(&index).copied();
                let d = match delta {
                    WireDelta::TextDelta { text } if !text.is_empty() => ChoiceDelta {
                        content: Some(text),
                        ..ChoiceDelta::default()
                    },
                    WireDelta::ThinkingDelta { thinking } if !thinking.is_empty() => ChoiceDelta {
                        reasoning: Some(thinking),
                        ..ChoiceDelta::default()
                    },
                    WireDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                        let Some(BlockKind::Tool(ordinal)) = kind else {
                            return Err(DecodeError::body(format!(
                                "input_json_delta for content block {index}, which is not a tool_use block"
                            )));
                        };
                        ChoiceDelta {
                            tool_calls: vec![ToolCallDelta {
                                index: ordinal,
                                id: None,
                                name: None,
                                arguments: partial_json,
                            }],
                            ..ChoiceDelta::default()
                        }
                    }
                    _ => return Ok(()),
                };
                out.push(self.chunk(d, None));
            }
            WireStreamEvent::ContentBlockStop { .. } => {}
            WireStreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage = self.usage.merge(u);
                }
                out.push(
                    self.chunk(
                        ChoiceDelta {
                            finish_reason: delta
                                .stop_reason
                                .as_deref()
                                .map(finish_reason_from_stop_reason),
                            ..ChoiceDelta::default()
                        },
                        Some(usage_from_wire(&self.usage)),
                    ),
                );
            }
            WireStreamEvent::MessageStop => {
                self.done = true;
                out.push(StreamEvent::Done);
            }
            WireStreamEvent::Error { error } => {
                out.push(StreamEvent::Error(StreamError {
                    message: if error.message.is_empty() {
                        "upstream reported an error".to_string()
                    } else {
                        error.message
                    },
                    kind: if error.kind.is_empty() {
                        "api_error".to_string()
                    } else {
                        error.kind
                    },
                }));
            }
            WireStreamEvent::Ping | WireStreamEvent::Other => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    /// Block index, tool-call index.
    Tool(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet: arguments wait in `buf`.
    Pending,
    Open,
    Closed,
}

#[derive(Debug, Clone)]
struct ToolState {
    id: Option<String>,
    name: Option<String>,
    /// Arguments not sent yet.
    buf: String,
    /// All arguments seen, to tell when the JSON is complete.
    args: String,
    end: JsonEnd,
    phase: Phase,
}

/// Whether text fed piece by piece is one complete JSON value, without
/// re-parsing all of it on every piece: an object or array is scanned
/// incrementally and parsed once, when its outermost bracket closes.
#[derive(Debug, Clone, Default)]
struct JsonEnd {
    /// `Some(true)` when the value is an object or array, `Some(false)` for
    /// anything else (checked by parsing the whole text each time).
    container: Option<bool>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Set once the outermost bracket has closed: whether the text is valid
    /// JSON. Text after that can only be whitespace or make it invalid.
    closed: Option<bool>,
}

impl JsonEnd {
    /// Scans `added`, which has just been appended to `all`.
    fn push(&mut self, all: &str, added: &str) {
        let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let mut just_closed = false;
        for b in added.bytes() {
            if self.closed.is_some() {
                if !ws(b) {
                    self.closed = Some(false);
                    return;
                }
                continue;
            }
            match self.container {
                None if ws(b) => continue,
                None => {
                    let container = matches!(b, b'{' | b'[');
                    self.container = Some(container);
                    if !container {
                        return;
                    }
                    self.depth = 1;
                    continue;
                }
                Some(false) => return,
                Some(true) => {}
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.closed = Some(true);
                        just_closed = true;
                    }
                }
                _ => {}
            }
        }
        if just_closed && self.closed == Some(true) {
            // Only whitespace follows the close, so this is the value alone.
            self.closed = Some(serde_json::from_str::<serde::de::IgnoredAny>(all).is_ok());
        }
    }

    fn complete(&self, all: &str) -> bool {
        match self.container {
            Some(true) => self.closed == Some(true),
            _ => serde_json::from_str::<serde::de::IgnoredAny>(all).is_ok(),
        }
    }
}

/// Encodes [`ChatChunk`]s as an Anthropic stream for a client.
///
/// Guarantees the exact event grammar whatever the upstream sends: one
/// `message_start` first, content blocks with consecutive indices from 0,
/// each started, given deltas and stopped, one block at a time; one
/// `message_delta` (stop reason and usage, which OpenAI upstreams send after
/// the finish chunk) and one `message_stop` last.
///
/// Tool calls whose fragments arrive interleaved (OpenAI allows fragments of
/// several calls to alternate) are serialised: a call streams live while it
/// is the open block; a later call's fragments are held back until the open
/// call's arguments form complete JSON (or the stream ends), then sent as
/// one `input_json_delta`. A fragment that arrives for a call whose block
/// was already closed (because text came in between) cannot be sent and is
/// dropped.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    reasoning: ReasoningOutput,
    started: bool,
    finished: bool,
    next_block: u32,
    open: Option<Open>,
    tools: BTreeMap<u32, ToolState>,
    think_open: bool,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamEncoder {
    /// `id` is shown as [`message_id`]`(id)`; `model` is the name the client
    /// asked for.
    pub fn new(id: String, model: String, reasoning: ReasoningOutput) -> StreamEncoder {
        StreamEncoder {
            id: message_id(&id),
            model,
            reasoning,
            started: false,
            finished: false,
            next_block: 0,
            open: None,
            tools: BTreeMap::new(),
            think_open: false,
            finish_reason: None,
            usage: None,
        }
    }

    /// The message id sent to the client.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Usage seen so far (the last report wins).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// A `ping` event.
    pub fn ping() -> Bytes {
        named_event("ping", br#"{"type":"ping"}"#)
    }

    /// `message_start` followed by a `ping`, the first time; nothing after.
    pub fn start(&mut self) -> Bytes {
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        Bytes::from(out)
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut usage = Map::new();
        let u = self.usage.unwrap_or_default();
        usage.insert(
            "input_tokens".into(),
            json!(u.prompt_tokens.saturating_sub(u.cached_tokens.unwrap_or(0))),
        );
        if let Some(c) = u.cached_tokens {
            usage.insert("cache_read_input_tokens".into(), json!(c));
        }
        usage.insert("output_tokens".into(), json!(0));
        let ev = json!({
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage,
            }
        });
        Self::emit(out, "message_start", ev);
        out.extend_from_slice(&Self::ping());
    }

    /// Appends `event: <name>` with `ev` as its data, serialized straight
    /// into `out` (not through `Display` and an intermediate string).
    fn emit(out: &mut Vec<u8>, name: &str, ev: Value) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &ev);
        out.extend_from_slice(b"\n\n");
    }

    /// A `text_delta` or `thinking_delta` event, written directly: these
    /// are the per-token events of every translated stream.
    fn text_delta(out: &mut Vec<u8>, index: u32, kind: &str, field: &str, text: &str) {
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        crate::json::write_str(out, text);
        out.extend_from_slice(b"}}\n\n");
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: Value) -> u32 {
        let index = self.next_block;
        self.next_block += 1;
        Self::emit(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = match open {
            Open::Text(i) | Open::Thinking(i) => i,
            Open::Tool(i, t) => {
                if let Some(tool) = self.tools.get_mut(&t) {
                    tool.phase = Phase::Closed;
                }
                i
            }
        };
        Self::emit(
            out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }

    fn delta(out: &mut Vec<u8>, index: u32, delta: Value) {
        Self::emit(
            out,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Text(i)) => i,
            _ => {
                self.close_open(out);
                let i = self.open_block(out, json!({"type": "text", "text": ""}));
                self.open = Some(Open::Text(i));
                i
            }
        };
        Self::text_delta(out, index, "text_delta", "text", text);
    }

    fn thinking(&mut self, out: &mut Vec<u8>, text: &str) {
        let index = match self.open {
            Some(Open::Thinking(i)) => i,
            _ => {
                self.close_open(out);
                let i = self.open_block(
                    out,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                self.open = Some(Open::Thinking(i));
                i
            }
        };
        Self::text_delta(out, index, "thinking_delta", "thinking", text);
    }

    /// Inline reasoning: closes an open `<think>` before other output.
    fn close_think(&mut self, out: &mut Vec<u8>) {
        if self.think_open {
            self.think_open = false;
            self.text(out, "</think>\n\n");
        }
    }

    fn reasoning_text(&mut self, out: &mut Vec<u8>, r: &str) {
        if r.is_empty() {
            return;
        }
        match self.reasoning {
            ReasoningOutput::Separate => self.thinking(out, r),
            ReasoningOutput::Inline => {
                if !self.think_open {
                    self.think_open = true;
                    self.text(out, "<think>");
                }
                self.text(out, r);
            }
            ReasoningOutput::Drop => {}
        }
    }

    fn tool_delta(&mut self, out: &mut Vec<u8>, d: &ToolCallDelta) {
        let tool = self.tools.entry(d.index).or_insert_with(|| ToolState {
            id: None,
            name: None,
            buf: String::new(),
            args: String::new(),
            end: JsonEnd::default(),
            phase: Phase::Pending,
        });
        if tool.phase == Phase::Pending {
            if tool.id.is_none() {
                tool.id = d.id.clone().filter(|s| !s.is_empty());
            }
            if tool.name.is_none() {
                tool.name = d.name.clone().filter(|s| !s.is_empty());
            }
        }
        tool.args.push_str(&d.arguments);
        tool.end.push(&tool.args, &d.arguments);
        match tool.phase {
            Phase::Pending => tool.buf.push_str(&d.arguments),
            Phase::Open => {
                if !d.arguments.is_empty() {
                    if let Some(Open::Tool(index, _)) = self.open {
                        Self::delta(
                            out,
                            index,
                            json!({"type": "input_json_delta", "partial_json": d.arguments}),
                        );
                    }
                }
            }
            // Nothing can be added to a stopped block.
            Phase::Closed => {}
        }
        self.advance_tools(out, false);
    }

    /// Opens pending tool calls when the open block allows it. With `all`,
    /// (at the end) every pending call is flushed, named or not.
    fn advance_tools(&mut self, out: &mut Vec<u8>, all: bool) {
        loop {
            let next = self
                .tools
                .iter()
                .find(|(_, t)| t.phase == Phase::Pending && (all || t.name.is_some()))
                .map(|(k, _)| *k);
            let Some(next) = next else {
                return;
            };
            match self.open {
                Some(Open::Tool(_, t)) => {
                    let complete = self.tools.get(&t).is_some_and(|s| s.end.complete(&s.args));
                    if !(all || complete) {
                        return;
                    }
                    self.close_open(out);
                }
                Some(_) => self.close_open(out),
                None => {}
            }
            let Some(tool) = self.tools.get_mut(&next) else {
                return;
            };
            tool.phase = Phase::Open;
            let id = tool
                .id
                .clone()
                .unwrap_or_else(|| format!("toolu_{}_{next}", self.id.trim_start_matches("msg_")));
            let name = tool.name.clone().unwrap_or_default();
            let buf = std::mem::take(&mut tool.buf);
            let index = self.open_block(
                out,
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            );
            self.open = Some(Open::Tool(index, next));
            if !buf.is_empty() {
                Self::delta(
                    out,
                    index,
                    json!({"type": "input_json_delta", "partial_json": buf}),
                );
            }
        }
    }

    /// Encodes one chunk (only choice 0: Anthropic has one answer per
    /// message); `None` when it carries nothing to send. The first call also
    /// sends `message_start` (and a `ping`) unless [`start`](Self::start)
    /// already did.
    pub fn encode(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        for c in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(r) = &c.reasoning {
                self.reasoning_text(&mut out, r);
            }
            let content = c.content.as_deref().unwrap_or("");
            if !content.is_empty() || !c.tool_calls.is_empty() || c.finish_reason.is_some() {
                self.close_think(&mut out);
            }
            self.text(&mut out, content);
            for tc in &c.tool_calls {
                self.tool_delta(&mut out, tc);
            }
            if let Some(f) = &c.finish_reason {
                self.finish_reason = Some(f.clone());
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Ends the stream: closes the open block, sends any held-back tool
    /// calls, then `message_delta` (stop reason, usage) and `message_stop`.
    /// Later calls return nothing.
    pub fn finish(&mut self) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        self.close_think(&mut out);
        self.advance_tools(&mut out, true);
        self.close_open(&mut out);
        self.finished = true;
        let mut usage = Map::new();
        match self.usage {
            Some(u) => super::usage_to_wire(&u, &mut usage),
            None => {
                usage.insert("output_tokens".into(), json!(0));
            }
        }
        Self::emit(
            &mut out,
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {
                    // Every tool seen has been sent by now (advance_tools above).
                    "stop_reason": stop_reason_for(self.finish_reason.as_ref(), !self.tools.is_empty()),
                    "stop_sequence": null,
                },
                "usage": usage,
            }),
        );
        Self::emit(&mut out, "message_stop", json!({"type": "message_stop"}));
        Bytes::from(out)
    }

    /// An in-band `error` event after the stream has started; the stream
    /// ends there (later calls send nothing). A `kind` that is not one of
    /// Anthropic's error types (e.g. OpenAI's `server_error`) is sent as
    /// `api_error`.
    pub fn error(&mut self, e: &StreamError) -> Bytes {
        self.finished = true;
        let kind = if super::ERROR_TYPES.contains(&e.kind.as_str()) {
            e.kind.as_str()
        } else {
            "api_error"
        };
        named_event(
            "error",
            super::error_body(kind, &e.message).to_string().as_bytes(),
        )
    }
}

#[cfg(test)]
mod json_end_tests {
    use super::JsonEnd;

    #[test]
    fn agrees_with_serde_whatever_the_pieces() {
        let cases = [
            r#"{"a": "x}]\\\"{", "b": [1, {"c": null}]}"#,
            r#"  [1, 2, [3]]  "#,
            r#"{"a": 1} x"#,
            r#"{"a" 1}"#,
            r#"{]"#,
            r#"{"a": {}"#,
            r#"42"#,
            r#""é{""#,
            "",
            "\u{c}{}",
        ];
        for text in cases {
            let want = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            for size in 1..=text.len().max(1) {
                let mut end = JsonEnd::default();
                let mut all = String::new();
                let mut rest = text;
                while !rest.is_empty() {
                    let mut n = size.min(rest.len());
                    while !rest.is_char_boundary(n) {
                        n += 1;
                    }
                    let (piece, tail) = rest.split_at(n);
                    all.push_str(piece);
                    end.push(&all, piece);
                    rest = tail;
                }
                assert_eq!(end.complete(&all), want, "{text:?} in pieces of {size}");
            }
        }
    }
}
