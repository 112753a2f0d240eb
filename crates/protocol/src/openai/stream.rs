//! Streamed chat completions (`chat.completion.chunk` over SSE).

use super::wire::{WireChunk, WireToolCall};
use super::{error_value_message, usage_from_wire, usage_to_wire};
use crate::ir::*;
use crate::json::DecodeError;
use crate::sse::{data_event, SseDecoder, SseEvent, SseEvents};
use crate::think::ThinkSplitter;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Decodes an upstream's SSE stream of chat chunks into [`StreamEvent`]s.
///
/// Keeps one `<think>` splitter per choice so reasoning that a host puts
/// inline in `content` comes out on the reasoning channel; [`finish`]
/// flushes held-back text. Done once `data: [DONE]` has been seen.
///
/// [`finish`]: SseDecoder::finish
pub type ChunkDecoder = SseDecoder<ChunkEvents>;

/// What the events of a [`ChunkDecoder`]'s stream mean, and its state
/// between them.
#[derive(Debug, Default)]
pub struct ChunkEvents {
    /// Per choice index; a map, as the index is the upstream's to choose.
    splitters: BTreeMap<u32, ThinkSplitter>,
    done: bool,
}

impl SseEvents for ChunkEvents {
    fn is_done(&self) -> bool {
        self.done
    }

    /// Flushes held-back text.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let mut tail = ChatChunk::default();
        for (&index, s) in self.splitters.iter_mut() {
            let split = s.finish();
            if !split.content.is_empty() || !split.reasoning.is_empty() {
                tail.choices.push(ChoiceDelta {
                    index,
                    content: (!split.content.is_empty()).then_some(split.content),
                    reasoning: (!split.reasoning.is_empty()).then_some(split.reasoning),
                    ..ChoiceDelta::default()
                });
            }
        }
        if !tail.choices.is_empty() {
            // Put the flushed text before any Done already queued.
            let pos = out
                .iter()
                .position(|e| matches!(e, StreamEvent::Done))
                .unwrap_or(out.len());
            out.insert(pos, StreamEvent::Chunk(tail));
        }
    }

    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            out.push(StreamEvent::Done);
            return Ok(());
        }
        let wire: WireChunk = serde_json::from_str(data)
            .map_err(|e| DecodeError::body(format!("malformed stream chunk: {e}")))?;
        if let Some(err) = &wire.error {
            let message = error_value_message(err)
                .unwrap_or_else(|| "upstream reported an error".to_string());
            let kind = err
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("upstream_error")
                .to_string();
            out.push(StreamEvent::Error(StreamError { message, kind }));
            return Ok(());
        }
        let mut chunk = ChatChunk {
            id: wire.id.filter(|s| !s.is_empty()),
            model: wire.model.filter(|s| !s.is_empty()),
            created: wire.created,
            choices: Vec::with_capacity(wire.choices.len()),
            usage: wire.usage.as_ref().map(usage_from_wire),
        };
        for c in wire.choices {
            let d = c.delta;
            let mut content = None;
            let mut reasoning = d
                .reasoning_content
                .or(d.reasoning)
                .filter(|s| !s.is_empty());
            let splitter = self.splitters.entry(c.index).or_default();
            let mut split = match &d.content {
                Some(t) => splitter.push(t),
                None => Default::default(),
            };
            if c.finish_reason.is_some() {
                let tail = splitter.finish();
                split.content.push_str(&tail.content);
                split.reasoning.push_str(&tail.reasoning);
            }
            if !split.content.is_empty() {
                content = Some(split.content);
            }
            if !split.reasoning.is_empty() {
                reasoning = Some(match reasoning {
                    Some(r) => r + &split.reasoning,
                    None => split.reasoning,
                });
            }
            chunk.choices.push(ChoiceDelta {
                index: c.index,
                role: d.role.as_deref().and_then(|r| match r {
                    "assistant" => Some(Role::Assistant),
                    _ => None,
                }),
                content,
                reasoning,
                tool_calls: match d.tool_calls {
                    Some(calls) => calls
                        .into_iter()
                        .enumerate()
                        .map(|(pos, tc)| tool_delta(pos, tc))
                        .collect(),
                    None => Vec::new(),
                },
                finish_reason: c.finish_reason.as_deref().map(FinishReason::from_openai),
            });
        }
        out.push(StreamEvent::Chunk(chunk));
        Ok(())
    }
}

fn tool_delta(pos: usize, tc: WireToolCall) -> ToolCallDelta {
    ToolCallDelta {
        index: tc.index.unwrap_or(pos as u32),
        id: tc.id.filter(|s| !s.is_empty()),
        name: tc.function.name.filter(|s| !s.is_empty()),
        arguments: tc.function.arguments,
    }
}

/// Encodes [`ChatChunk`]s as an OpenAI client expects them: one id across
/// all chunks, the role on each choice's first delta, tool-call fragments with
/// index/id/name/arguments, a final usage chunk when asked, `data: [DONE]`.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    reasoning: ReasoningOutput,
    /// Choice indexes whose role has been sent.
    role_sent: HashSet<u32>,
    /// Inline reasoning: choice indexes with `<think>` opened and not yet closed.
    think_open: HashSet<u32>,
    usage: Option<Usage>,
    finished: bool,
}

impl ChunkEncoder {
    pub fn new(
        id: String,
        created: u64,
        model: String,
        include_usage: bool,
        reasoning: ReasoningOutput,
    ) -> ChunkEncoder {
        ChunkEncoder {
            id,
            created,
            model,
            include_usage,
            reasoning,
            role_sent: HashSet::new(),
            think_open: HashSet::new(),
            usage: None,
            finished: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Usage seen so far (the last report wins).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn frame(&self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let mut o = Map::new();
        o.insert("id".into(), Value::String(self.id.clone()));
        o.insert("object".into(), json!("chat.completion.chunk"));
        o.insert("created".into(), json!(self.created));
        o.insert("model".into(), Value::String(self.model.clone()));
        o.insert("choices".into(), Value::Array(choices));
        if let Some(u) = usage {
            o.insert("usage".into(), u);
        }
        data_event(&crate::json::value_bytes(&Value::Object(o)))
    }

    /// Encodes one chunk; returns nothing when it carries nothing to send.
    pub fn encode(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut choices = Vec::with_capacity(chunk.choices.len());
        for c in &chunk.choices {
            let mut delta = Map::new();
            if self.role_sent.insert(c.index) {
                delta.insert("role".into(), json!("assistant"));
            }
            let mut text = String::new();
            match (self.reasoning, &c.reasoning) {
                (ReasoningOutput::Separate, Some(r)) if !r.is_empty() => {
                    delta.insert("reasoning_content".into(), json!(r));
                }
                (ReasoningOutput::Inline, Some(r)) if !r.is_empty() => {
                    if self.think_open.insert(c.index) {
                        text.push_str("<think>");
                    }
                    text.push_str(r);
                }
                _ => {}
            }
            let has_more = c.content.as_deref().is_some_and(|s| !s.is_empty())
                || !c.tool_calls.is_empty()
                || c.finish_reason.is_some();
            if has_more
                && self.reasoning == ReasoningOutput::Inline
                && self.think_open.remove(&c.index)
            {
                text.push_str("</think>\n\n");
            }
            if let Some(t) = &c.content {
                text.push_str(t);
            }
            if !text.is_empty() {
                delta.insert("content".into(), Value::String(text));
            } else if delta.contains_key("role") && c.tool_calls.is_empty() {
                delta.insert("content".into(), json!(""));
            }
            if !c.tool_calls.is_empty() {
                let calls: Vec<Value> = c
                    .tool_calls
                    .iter()
                    .map(|tc| {
                        let mut f = Map::new();
                        if let Some(n) = &tc.name {
                            f.insert("name".into(), json!(n));
                        }
                        f.insert("arguments".into(), json!(tc.arguments));
                        let mut o = Map::new();
                        o.insert("index".into(), json!(tc.index));
                        if let Some(id) = &tc.id {
                            o.insert("id".into(), json!(id));
                            o.insert("type".into(), json!("function"));
                        }
                        o.insert("function".into(), Value::Object(f));
                        Value::Object(o)
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            if delta.is_empty() && c.finish_reason.is_none() {
                continue;
            }
            choices.push(json!({
                "index": c.index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": c.finish_reason.as_ref().map(|f| f.as_openai().to_string()),
            }));
        }
        if choices.is_empty() {
            return None;
        }
        Some(self.frame(choices, None))
    }

    /// Ends the stream: the usage chunk when the client asked for it, then
    /// `data: [DONE]`.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        if !self.finished {
            self.finished = true;
            if self.include_usage {
                let u = self.usage.unwrap_or_default();
                out.extend_from_slice(&self.frame(Vec::new(), Some(usage_to_wire(&u))));
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        Bytes::from(out)
    }

    /// An in-band error after the stream has started, then the end.
    pub fn error(&mut self, err: &StreamError) -> Bytes {
        self.finished = true;
        let body = json!({"error": {"message": err.message, "type": err.kind, "param": null, "code": null}});
        let mut out = data_event(body.to_string().as_bytes()).to_vec();
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }
}
