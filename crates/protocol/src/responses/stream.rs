//! Streamed Responses answers: the event stream of `POST /v1/responses`
//! with `stream: true`.
//!
//! Every event is `event: <type>\ndata: <json>\n\n`, its JSON carrying the
//! same `type` and a `sequence_number` counting from 0. A stream is
//! `response.created`, `response.in_progress`, then output items one after
//! another, each opened by `response.output_item.added` and closed by
//! `response.output_item.done` with its `output_index`, then
//! `response.completed` (or `response.incomplete` at the token limit, or
//! `response.failed` on an error) carrying the whole `response` object:
//!
//! - a `reasoning` item: `response.reasoning_summary_part.added`,
//!   `response.reasoning_summary_text.delta`…, `.done`,
//!   `response.reasoning_summary_part.done`;
//! - a `message` item: `response.content_part.added`,
//!   `response.output_text.delta`…, `response.output_text.done`,
//!   `response.content_part.done`;
//! - a `function_call` item: `response.function_call_arguments.delta`…,
//!   `.done`; a `custom_tool_call` item (a tool that was `custom` in the
//!   request): `response.custom_tool_call_input.delta` (the whole input,
//!   sent when the call ends: it sits inside the arguments' JSON),
//!   `response.custom_tool_call_input.done`.
//!
//! A chat stream may interleave the fragments of several tool calls; here
//! one item is open at a time. A call's fragments wait until it can open,
//! which is when the open call's arguments are complete JSON (or the
//! stream ends). Arguments arriving for a call already closed (after text
//! came in between) are dropped.

use super::{
    call_item, call_item_id, custom_input, custom_tool_names, incomplete_reason, item_id,
    message_item, output_text_part, reasoning_item, response_object, ResponseState,
};
use crate::ir::*;
use crate::json::write_str;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The output item being written.
#[derive(Debug)]
enum Open {
    Reasoning {
        index: usize,
        text: String,
    },
    Message {
        index: usize,
        text: String,
    },
    /// A tool call, by its index in the chat stream.
    Tool {
        index: usize,
        key: u32,
    },
}

/// The kinds of delta events.
#[derive(Debug, Clone, Copy)]
enum Delta {
    Text,
    Summary,
    Arguments,
    CustomInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Seen, waiting to be opened.
    Pending,
    Open,
    Closed,
}

#[derive(Debug)]
struct ToolState {
    id: Option<String>,
    name: Option<String>,
    /// All the arguments text sent (or to send) as this call's.
    args: String,
    phase: Phase,
}

/// Encodes [`ChatChunk`]s as a Responses event stream (see the module).
/// Only choice 0 is encoded: a response has one answer.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created_at: u64,
    echo: Map<String, Value>,
    custom_tools: super::CallNames,
    seq: u64,
    started: bool,
    finished: bool,
    /// Closed items, by output index.
    output: Vec<Value>,
    open: Option<Open>,
    tools: BTreeMap<u32, ToolState>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// The final `response` object, once finished or failed.
    last: Option<Value>,
}

impl StreamEncoder {
    /// A stream for response `id` (`resp_…`) answering as `model`, created
    /// at `created_at` (Unix seconds), echoing `echo`
    /// ([`super::ResponsesRequest::echo`]).
    pub fn new(id: String, model: String, created_at: u64, echo: Map<String, Value>) -> Self {
        let custom_tools = custom_tool_names(&echo);
        StreamEncoder {
            id,
            model,
            created_at,
            echo,
            custom_tools,
            seq: 0,
            started: false,
            finished: false,
            output: Vec::new(),
            open: None,
            tools: BTreeMap::new(),
            finish_reason: None,
            usage: None,
            last: None,
        }
    }

    /// The response id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Usage seen so far (the last report wins).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The `response` object: final after [`finish`](Self::finish) or
    /// [`error`](Self::error) (what to store), else as it stands, with the
    /// items closed so far.
    pub fn response(&self) -> Value {
        match &self.last {
            Some(v) => v.clone(),
            None => self.snapshot("in_progress", self.output.clone(), None, None),
        }
    }

    /// `response.created` and `response.in_progress`, the first time;
    /// nothing after.
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
        for kind in ["response.created", "response.in_progress"] {
            let response = self.snapshot("in_progress", Vec::new(), None, None);
            self.emit(out, json!({"type": kind, "response": response}));
        }
    }

    fn snapshot(
        &self,
        status: &str,
        output: Vec<Value>,
        incomplete: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        response_object(
            ResponseState {
                id: &self.id,
                created_at: self.created_at,
                model: &self.model,
                status,
                output,
                usage: self.usage.as_ref(),
                incomplete_reason: incomplete,
                error,
            },
            &self.echo,
        )
    }

    /// Appends an event: `ev` (an object with its `type`) gets the next
    /// sequence number.
    fn emit(&mut self, out: &mut Vec<u8>, mut ev: Value) {
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Value::Object(o) = &mut ev {
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        crate::json::write_value(out, &ev);
        out.extend_from_slice(b"\n\n");
    }

    /// A delta event, written directly: these are the per-token events.
    fn delta(&mut self, out: &mut Vec<u8>, kind: Delta, item: &str, index: usize, delta: &str) {
        let (name, part, logprobs) = match kind {
            Delta::Text => ("response.output_text.delta", Some("content_index"), true),
            Delta::Summary => (
                "response.reasoning_summary_text.delta",
                Some("summary_index"),
                false,
            ),
            Delta::Arguments => ("response.function_call_arguments.delta", None, false),
            Delta::CustomInput => ("response.custom_tool_call_input.delta", None, false),
        };
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(num.format(self.seq).as_bytes());
        self.seq += 1;
        out.extend_from_slice(b",\"item_id\":");
        write_str(out, item);
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(num.format(index).as_bytes());
        if let Some(field) = part {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"\":0");
        }
        out.extend_from_slice(b",\"delta\":");
        write_str(out, delta);
        if logprobs {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// The output index the next opened item gets.
    fn next_index(&self) -> usize {
        self.output.len()
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, r: &str) {
        if r.is_empty() {
            return;
        }
        let index = match &mut self.open {
            Some(Open::Reasoning { index, text }) => {
                text.push_str(r);
                *index
            }
            _ => {
                self.close_open(out, "completed");
                let index = self.next_index();
                let id = item_id("rs", &self.id, index);
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": index, "item": reasoning_item(&id, "")}),
                );
                self.emit(
                    out,
                    json!({
                        "type": "response.reasoning_summary_part.added",
                        "item_id": id, "output_index": index, "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    }),
                );
                self.open = Some(Open::Reasoning {
                    index,
                    text: r.to_string(),
                });
                index
            }
        };
        let id = item_id("rs", &self.id, index);
        self.delta(out, Delta::Summary, &id, index, r);
    }

    fn text(&mut self, out: &mut Vec<u8>, t: &str) {
        if t.is_empty() {
            return;
        }
        let index = match &mut self.open {
            Some(Open::Message { index, text }) => {
                text.push_str(t);
                *index
            }
            _ => {
                self.close_open(out, "completed");
                let index = self.next_index();
                let id = item_id("msg", &self.id, index);
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": index, "item": message_item(&id, None, "in_progress")}),
                );
                self.emit(
                    out,
                    json!({
                        "type": "response.content_part.added",
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": output_text_part(""),
                    }),
                );
                self.open = Some(Open::Message {
                    index,
                    text: t.to_string(),
                });
                index
            }
        };
        let id = item_id("msg", &self.id, index);
        self.delta(out, Delta::Text, &id, index, t);
    }

    fn is_custom(&self, key: u32) -> bool {
        self.tools
            .get(&key)
            .and_then(|t| t.name.as_ref())
            .is_some_and(|n| self.custom_tools.is_custom(n))
    }

    /// The call a tool's state stands for.
    fn call(&self, key: u32, index: usize) -> ToolCall {
        let t = self.tools.get(&key);
        ToolCall {
            id: t.and_then(|t| t.id.clone()).unwrap_or_else(|| {
                let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
                format!("call_{base}_{index}")
            }),
            name: t.and_then(|t| t.name.clone()).unwrap_or_default(),
            arguments: t.map(|t| t.args.clone()).unwrap_or_default(),
        }
    }

    fn tool_delta(&mut self, out: &mut Vec<u8>, d: &ToolCallDelta) {
        let tool = self.tools.entry(d.index).or_insert_with(|| ToolState {
            id: None,
            name: None,
            args: String::new(),
            phase: Phase::Pending,
        });
        match tool.phase {
            Phase::Pending => {
                if tool.id.is_none() {
                    tool.id = d.id.clone().filter(|s| !s.is_empty());
                }
                if tool.name.is_none() {
                    tool.name = d.name.clone().filter(|s| !s.is_empty());
                }
                tool.args.push_str(&d.arguments);
            }
            Phase::Open => {
                tool.args.push_str(&d.arguments);
                if !d.arguments.is_empty() && !self.is_custom(d.index) {
                    if let Some(Open::Tool { index, .. }) = self.open {
                        let id = call_item_id(&self.id, index, false);
                        self.delta(out, Delta::Arguments, &id, index, &d.arguments);
                    }
                }
            }
            // Nothing can be added to a closed item.
            Phase::Closed => {}
        }
        self.advance_tools(out);
    }

    /// Opens the next named pending call when nothing is open, or when the
    /// open item is a call whose arguments are complete JSON.
    fn advance_tools(&mut self, out: &mut Vec<u8>) {
        loop {
            let next = self
                .tools
                .iter()
                .find(|(_, t)| t.phase == Phase::Pending && t.name.is_some())
                .map(|(k, _)| *k);
            let Some(next) = next else {
                return;
            };
            if let Some(Open::Tool { key, .. }) = &self.open {
                let complete = self.tools.get(key).is_some_and(|t| {
                    serde_json::from_str::<serde::de::IgnoredAny>(&t.args).is_ok()
                });
                if !complete {
                    return;
                }
            }
            self.close_open(out, "completed");
            self.open_tool(out, next);
        }
    }

    fn open_tool(&mut self, out: &mut Vec<u8>, key: u32) {
        let index = self.next_index();
        let custom = self.is_custom(key);
        let mut call = self.call(key, index);
        let args = std::mem::take(&mut call.arguments);
        if let Some(t) = self.tools.get_mut(&key) {
            t.phase = Phase::Open;
            // Keep the generated id, so the item's call_id never changes.
            t.id = Some(call.id.clone());
        }
        let item = call_item(&self.id, index, &call, "in_progress", &self.custom_tools);
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": index, "item": item}),
        );
        self.open = Some(Open::Tool { index, key });
        if !args.is_empty() && !custom {
            let id = call_item_id(&self.id, index, false);
            self.delta(out, Delta::Arguments, &id, index, &args);
        }
    }

    /// Closes the open item with `status` (`completed` or `incomplete`).
    fn close_open(&mut self, out: &mut Vec<u8>, status: &str) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (index, item) = match open {
            Open::Reasoning { index, text } => {
                let id = item_id("rs", &self.id, index);
                self.emit(
                    out,
                    json!({
                        "type": "response.reasoning_summary_text.done",
                        "item_id": id, "output_index": index, "summary_index": 0, "text": text,
                    }),
                );
                self.emit(
                    out,
                    json!({
                        "type": "response.reasoning_summary_part.done",
                        "item_id": id, "output_index": index, "summary_index": 0,
                        "part": {"type": "summary_text", "text": text},
                    }),
                );
                (index, reasoning_item(&id, &text))
            }
            Open::Message { index, text } => {
                let id = item_id("msg", &self.id, index);
                self.emit(
                    out,
                    json!({
                        "type": "response.output_text.done",
                        "item_id": id, "output_index": index, "content_index": 0,
                        "text": text, "logprobs": [],
                    }),
                );
                self.emit(
                    out,
                    json!({
                        "type": "response.content_part.done",
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": output_text_part(&text),
                    }),
                );
                (index, message_item(&id, Some(&text), status))
            }
            Open::Tool { index, key } => {
                let custom = self.is_custom(key);
                let call = self.call(key, index);
                if let Some(t) = self.tools.get_mut(&key) {
                    t.phase = Phase::Closed;
                }
                let id = call_item_id(&self.id, index, custom);
                if custom {
                    let input = custom_input(&call.arguments);
                    if !input.is_empty() {
                        self.delta(out, Delta::CustomInput, &id, index, &input);
                    }
                    self.emit(
                        out,
                        json!({
                            "type": "response.custom_tool_call_input.done",
                            "item_id": id, "output_index": index, "input": input,
                        }),
                    );
                } else {
                    self.emit(
                        out,
                        json!({
                            "type": "response.function_call_arguments.done",
                            "item_id": id, "output_index": index,
                            "name": call.name, "arguments": call.arguments,
                        }),
                    );
                }
                (
                    index,
                    call_item(&self.id, index, &call, status, &self.custom_tools),
                )
            }
        };
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
        self.output.push(item);
    }

    /// Encodes one chunk; `None` when it carries nothing to send. The first
    /// call also sends the opening events unless [`start`](Self::start)
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
                self.reasoning(&mut out, r);
            }
            if let Some(t) = &c.content {
                self.text(&mut out, t);
            }
            for tc in &c.tool_calls {
                self.tool_delta(&mut out, tc);
            }
            if let Some(f) = &c.finish_reason {
                self.finish_reason = Some(f.clone());
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Ends the stream: closes the open item, sends the calls still
    /// waiting, then `response.completed` (or `response.incomplete`, its
    /// last item `incomplete`, when the answer stopped at the token limit
    /// or a content filter). Later calls return nothing.
    pub fn finish(&mut self) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        let reason = incomplete_reason(self.finish_reason.as_ref());
        let status = |last: bool| {
            if last && reason.is_some() {
                "incomplete"
            } else {
                "completed"
            }
        };
        let waiting: Vec<u32> = self
            .tools
            .iter()
            .filter(|(_, t)| t.phase == Phase::Pending)
            .map(|(k, _)| *k)
            .collect();
        self.close_open(&mut out, status(waiting.is_empty()));
        for (n, key) in waiting.iter().enumerate() {
            self.open_tool(&mut out, *key);
            self.close_open(&mut out, status(n + 1 == waiting.len()));
        }
        self.finished = true;
        let response = self.snapshot(
            if reason.is_some() {
                "incomplete"
            } else {
                "completed"
            },
            self.output.clone(),
            reason,
            None,
        );
        let kind = if reason.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(&mut out, json!({"type": kind, "response": response}));
        self.last = Some(response);
        Bytes::from(out)
    }

    /// A `response.failed` event after the stream has started (status
    /// `failed`, `error: {code, message}`, the items closed so far); the
    /// stream ends there (later calls send nothing).
    pub fn error(&mut self, e: &StreamError) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        self.finished = true;
        let error = json!({"code": error_code(&e.kind), "message": e.message});
        let response = self.snapshot("failed", self.output.clone(), None, Some(error));
        self.emit(
            &mut out,
            json!({"type": "response.failed", "response": response}),
        );
        self.last = Some(response);
        Bytes::from(out)
    }
}

/// A response error `code` for an upstream error kind: the API's own codes
/// pass, a few others map to theirs, anything else is `server_error`.
pub fn error_code(kind: &str) -> &'static str {
    match kind {
        "rate_limit_exceeded" | "rate_limit_error" => "rate_limit_exceeded",
        "invalid_prompt" => "invalid_prompt",
        "context_length_exceeded" => "context_length_exceeded",
        "insufficient_quota" => "insufficient_quota",
        "server_is_overloaded" | "overloaded_error" => "server_is_overloaded",
        _ => "server_error",
    }
}
