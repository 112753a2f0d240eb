//! Token usage read from answers that are forwarded byte for byte: a whole
//! body ([`from_body`]) or a stream watched as it passes ([`UsageScanner`]).
//!
//! Both read only what metering needs. A body is deserialised into a struct
//! holding the usage fields alone; a stream is split into lines and only a
//! line that can carry usage (or an error) by a cheap byte search is parsed,
//! so the bytes themselves are never copied or held back (only an incomplete
//! last line is kept until its end arrives).

use crate::ir::Usage;
use crate::json::top_members;
use serde::Deserialize;

/// The wire format of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI JSON / SSE (`usage.prompt_tokens`, `usage.completion_tokens`).
    OpenAi,
    /// Anthropic JSON / SSE (`usage.input_tokens`, `usage.output_tokens`,
    /// cache fields; in a stream `message_start` and `message_delta`).
    Anthropic,
    /// Ollama JSON / NDJSON (`prompt_eval_count`, `eval_count`).
    Ollama,
    /// OpenAI Responses JSON / SSE (`usage.input_tokens`,
    /// `usage.output_tokens` and their details; in a stream the `response`
    /// of `response.completed`, `response.incomplete` or `response.failed`;
    /// `error` and `response.failed` events are errors).
    Responses,
}

#[derive(Deserialize)]
struct OpenAiUsageOnly {
    #[serde(default)]
    usage: Option<crate::openai::wire::WireUsage>,
}

#[derive(Deserialize)]
struct AnthropicMessageUsage {
    #[serde(default)]
    usage: Option<crate::anthropic::wire::WireUsage>,
}

#[derive(Deserialize)]
struct AnthropicUsageOnly {
    /// `message_start` carries the message, with its (input) usage.
    #[serde(default)]
    message: Option<AnthropicMessageUsage>,
    /// A whole message and `message_delta` carry it at the top.
    #[serde(default)]
    usage: Option<crate::anthropic::wire::WireUsage>,
}

#[derive(Deserialize)]
struct OllamaUsageOnly {
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct ResponsesUsageOnly {
    #[serde(default)]
    usage: Option<crate::responses::wire::WireUsage>,
}

/// A Responses stream event: its type and, for the events that end a
/// stream, the response's usage.
#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    response: Option<ResponsesUsageOnly>,
}

/// The Responses events that end a stream, each with the final usage.
const RESPONSES_END_EVENTS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

#[derive(Deserialize)]
struct ErrorOnly {
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// The usage of a complete (not streamed) answer body, when it reports one.
///
/// Only the members that carry usage are decoded ([`top_members`] finds
/// them); a body that scan cannot read simply is decoded in full, with the
/// same result.
pub fn from_body(format: Format, body: &[u8]) -> Option<Usage> {
    let quick = match format {
        Format::OpenAi => top_members(body, ["usage"]).map(|[usage]| {
            OpenAiUsageOnly {
                usage: member(usage)?,
            }
            .usage()
        }),
        Format::Anthropic => top_members(body, ["message", "usage"]).map(|[message, usage]| {
            AnthropicUsageOnly {
                message: member(message)?,
                usage: member(usage)?,
            }
            .usage()
        }),
        Format::Ollama => top_members(body, ["prompt_eval_count", "eval_count"]).map(|[p, e]| {
            OllamaUsageOnly {
                prompt_eval_count: member(p)?,
                eval_count: member(e)?,
            }
            .usage()
        }),
        Format::Responses => top_members(body, ["usage"]).map(|[usage]| {
            ResponsesUsageOnly {
                usage: member(usage)?,
            }
            .usage()
        }),
    };
    quick.unwrap_or_else(|| from_whole_body(format, body))
}

/// A member found by [`top_members`] as its struct field would decode it:
/// absent or `null` is `None`; `None` outside when it does not decode (the
/// whole body would not either).
fn member<'a, T: Deserialize<'a>>(text: Option<&'a [u8]>) -> Option<Option<T>> {
    match text {
        None => Some(None),
        Some(t) => serde_json::from_slice(t).ok(),
    }
}

/// [`from_body`] by decoding the whole body.
fn from_whole_body(format: Format, body: &[u8]) -> Option<Usage> {
    match format {
        Format::OpenAi => serde_json::from_slice::<OpenAiUsageOnly>(body)
            .ok()?
            .usage(),
        Format::Anthropic => serde_json::from_slice::<AnthropicUsageOnly>(body)
            .ok()?
            .usage(),
        Format::Ollama => serde_json::from_slice::<OllamaUsageOnly>(body)
            .ok()?
            .usage(),
        Format::Responses => serde_json::from_slice::<ResponsesUsageOnly>(body)
            .ok()?
            .usage(),
    }
}

impl ResponsesUsageOnly {
    fn usage(self) -> Option<Usage> {
        self.usage.map(|u| crate::responses::usage_from_wire(&u))
    }
}

impl OpenAiUsageOnly {
    fn usage(self) -> Option<Usage> {
        self.usage.map(|u| crate::openai::usage_from_wire(&u))
    }
}

impl AnthropicUsageOnly {
    fn usage(self) -> Option<Usage> {
        let u = self.usage.or(self.message.and_then(|m| m.usage))?;
        Some(crate::anthropic::usage_from_wire(&u))
    }
}

impl OllamaUsageOnly {
    fn usage(self) -> Option<Usage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        Some(crate::ollama::usage_from_counts(
            self.prompt_eval_count,
            self.eval_count,
        ))
    }
}

/// The longest incomplete line kept while waiting for its end; a longer one
/// (a huge content chunk) is skipped up to its newline, as no line that
/// reports usage is anywhere near this long.
const MAX_CARRY: usize = 4 * 1024 * 1024;

/// Watches a forwarded SSE (OpenAI, Anthropic, Responses) or NDJSON (Ollama) stream for
/// usage and in-band errors. Feed it every chunk in order; chunks may split
/// lines anywhere.
#[derive(Debug)]
pub struct UsageScanner {
    format: Format,
    /// The start of a line whose end has not arrived yet.
    carry: Vec<u8>,
    /// Inside an over-long line: ignore bytes up to the next newline.
    skipping: bool,
    usage: Option<Usage>,
    /// Anthropic usage merged across `message_start` and `message_delta`.
    anthropic: Option<crate::anthropic::wire::WireUsage>,
    error: bool,
}

impl UsageScanner {
    pub fn new(format: Format) -> UsageScanner {
        UsageScanner {
            format,
            carry: Vec::new(),
            skipping: false,
            usage: None,
            anthropic: None,
            error: false,
        }
    }

    /// The usage reported so far (the latest, for formats that repeat it).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream carried an in-band error event.
    pub fn saw_error(&self) -> bool {
        self.error
    }

    /// Looks at one chunk; true when the usage or the error flag changed.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let before = (self.usage, self.error);
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = (&rest[..pos], &rest[pos + 1..]);
            rest = tail;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.carry.is_empty() {
                self.line(head);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(head);
                self.line(&line);
                line.clear();
                self.carry = line;
            }
        }
        if !rest.is_empty() && !self.skipping {
            if self.carry.len() + rest.len() > MAX_CARRY {
                self.carry.clear();
                self.skipping = true;
            } else {
                self.carry.extend_from_slice(rest);
            }
        }
        before != (self.usage, self.error)
    }

    /// The input ended: a last line without its newline still counts.
    pub fn finish(&mut self) -> bool {
        let before = (self.usage, self.error);
        if !self.carry.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.carry);
            self.line(&line);
        }
        self.carry.clear();
        before != (self.usage, self.error)
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.format {
            Format::OpenAi | Format::Anthropic => {
                if self.format == Format::Anthropic && line.starts_with(b"event:") {
                    if trim(&line[6..]) == b"error" {
                        self.error = true;
                    }
                    return;
                }
                let Some(data) = line.strip_prefix(b"data:") else {
                    return;
                };
                let data = trim(data);
                if has_object_field(data, b"\"usage\"") {
                    self.usage_line(data);
                }
                if self.format == Format::OpenAi && has_object_field(data, b"\"error\"") {
                    self.error_line(data);
                }
            }
            Format::Responses => {
                if let Some(name) = line.strip_prefix(b"event:") {
                    if matches!(trim(name), b"error" | b"response.failed") {
                        self.error = true;
                    }
                    return;
                }
                let Some(data) = line.strip_prefix(b"data:") else {
                    return;
                };
                let data = trim(data);
                let ends = RESPONSES_END_EVENTS
                    .iter()
                    .any(|e| contains(data, e.as_bytes()));
                if ends || contains(data, b"\"type\":\"error\"") {
                    self.responses_line(data);
                }
            }
            Format::Ollama => {
                let data = trim(line);
                if contains(data, b"eval_count\"") {
                    self.usage_line(data);
                }
                if contains(data, b"\"error\"") {
                    self.error_line(data);
                }
            }
        }
    }

    fn usage_line(&mut self, data: &[u8]) {
        match self.format {
            Format::OpenAi => {
                if let Ok(OpenAiUsageOnly { usage: Some(u) }) = serde_json::from_slice(data) {
                    self.usage = Some(crate::openai::usage_from_wire(&u));
                }
            }
            Format::Anthropic => {
                let Ok(b) = serde_json::from_slice::<AnthropicUsageOnly>(data) else {
                    return;
                };
                for u in [b.message.and_then(|m| m.usage), b.usage]
                    .into_iter()
                    .flatten()
                {
                    let merged = match self.anthropic {
                        Some(prev) => prev.merge(u),
                        None => u,
                    };
                    self.anthropic = Some(merged);
                    self.usage = Some(crate::anthropic::usage_from_wire(&merged));
                }
            }
            Format::Responses => self.responses_line(data),
            Format::Ollama => {
                if let Ok(b) = serde_json::from_slice::<OllamaUsageOnly>(data) {
                    if b.prompt_eval_count.is_some() || b.eval_count.is_some() {
                        self.usage = Some(crate::ollama::usage_from_counts(
                            b.prompt_eval_count,
                            b.eval_count,
                        ));
                    }
                }
            }
        }
    }

    /// A Responses event that may end the stream or report an error
    /// (found by a byte search, so possibly neither).
    fn responses_line(&mut self, data: &[u8]) {
        let Ok(ev) = serde_json::from_slice::<ResponsesEvent>(data) else {
            return;
        };
        if ev.kind == "error" || ev.kind == "response.failed" {
            self.error = true;
        }
        if RESPONSES_END_EVENTS.contains(&ev.kind.as_str()) {
            if let Some(u) = ev.response.and_then(ResponsesUsageOnly::usage) {
                self.usage = Some(u);
            }
        }
    }

    fn error_line(&mut self, data: &[u8]) {
        if let Ok(ErrorOnly { error: Some(_) }) = serde_json::from_slice(data) {
            self.error = true;
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `key` occurs with an object or a value other than `null` after
/// it (`"usage":null`, which some hosts put on every chunk, does not count).
fn has_object_field(hay: &[u8], key: &[u8]) -> bool {
    let mut from = 0;
    while from + key.len() <= hay.len() {
        let Some(i) = hay[from..].windows(key.len()).position(|w| w == key) else {
            return false;
        };
        let after = trim(&hay[from + i + key.len()..]);
        if let Some(v) = after.strip_prefix(b":") {
            let v = trim(v);
            if !v.starts_with(b"null") {
                return true;
            }
        }
        from += i + key.len();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scan_split(format: Format, input: &[u8], split: usize) -> UsageScanner {
        let mut s = UsageScanner::new(format);
        s.feed(&input[..split]);
        s.feed(&input[split..]);
        s.finish();
        s
    }

    /// The quick scan answers as decoding the whole body would, whatever
    /// the body.
    #[test]
    fn quick_bodies_match_whole_decoding() {
        let bodies: &[&[u8]] = &[
            br#"{"id":"x","choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":99}}"}}],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#,
            br#"{"usage":{"prompt_tokens":7,"completion_tokens":3},"choices":[{"message":{"content":"a\\"}}]}"#,
            br#"{"usage":null}"#,
            br#"{"usage":"lots"}"#,
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            br#"{"us\u0061ge":{"prompt_tokens":5,"completion_tokens":1}}"#,
            br#"[{"prompt_tokens":5}]"#,
            br#"{"usage":{"prompt_tokens":5}} trailing"#,
            br#"{"choices":[{"text":"}"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}"#,
            br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":4}}"#,
            br#"{"type":"message_start","message":{"content":[],"usage":{"input_tokens":3,"output_tokens":1}}}"#,
            br#"{"message":"not an object","usage":{"input_tokens":3,"output_tokens":1}}"#,
            br#"{"message":{"usage":{"input_tokens":1,"output_tokens":1}},"usage":{"input_tokens":9,"output_tokens":2}}"#,
            br#"{"model":"m","done":true,"prompt_eval_count":26,"eval_count":290}"#,
            br#"{"model":"m","done":true,"eval_count":2}"#,
            br#"{"prompt_eval_count":"26"}"#,
            br#"{"prompt_eval_count":null,"eval_count":null}"#,
            br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"\"usage\":{}"}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12}}"#,
            br#"{"usage":{"input_tokens":"9"}}"#,
            b"{}",
            b"",
            b"not json",
        ];
        for body in bodies {
            for format in [
                Format::OpenAi,
                Format::Anthropic,
                Format::Ollama,
                Format::Responses,
            ] {
                assert_eq!(
                    from_body(format, body),
                    from_whole_body(format, body),
                    "{format:?} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        // The quick scan is what answered the first body.
        assert!(top_members(bodies[0], ["usage"]).is_some());
    }

    #[test]
    fn bodies() {
        let u = from_body(
            Format::OpenAi,
            br#"{"id":"x","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3));
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(2), Some(1)));
        // Embeddings report prompt tokens only.
        let u = from_body(
            Format::OpenAi,
            br#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 0));
        assert_eq!(from_body(Format::OpenAi, br#"{"choices":[]}"#), None);
        assert_eq!(from_body(Format::OpenAi, b"not json"), None);

        let u = from_body(
            Format::Anthropic,
            br#"{"type":"message","content":[],"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":4,"cache_creation_input_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (15, 5));
        assert_eq!(u.cached_tokens, Some(4));

        let u = from_body(
            Format::Ollama,
            br#"{"model":"m","message":{"role":"assistant","content":"hi"},"done":true,"prompt_eval_count":26,"eval_count":290}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (26, 290));
        assert_eq!(
            from_body(Format::Ollama, br#"{"done":false,"message":{}}"#),
            None
        );
    }

    const OPENAI_STREAM: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"the \\\"usage\\\": field\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn openai_stream_split_anywhere() {
        for split in 0..OPENAI_STREAM.len() {
            let s = scan_split(Format::OpenAi, OPENAI_STREAM, split);
            let u = s.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3), "{split}");
            assert!(!s.saw_error());
        }
        // Fed byte by byte.
        let mut s = UsageScanner::new(Format::OpenAi);
        for b in OPENAI_STREAM {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.usage().map(|u| u.total_tokens()), Some(10));
    }

    #[test]
    fn openai_stream_without_usage_and_with_error() {
        let mut s = UsageScanner::new(Format::OpenAi);
        s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n");
        assert_eq!(s.usage(), None);
        let mut s = UsageScanner::new(Format::OpenAi);
        assert!(s.feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"));
        assert!(s.saw_error());
    }

    const ANTHROPIC_STREAM: &[u8] = b"event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_stream_merges_start_and_delta() {
        for split in 0..ANTHROPIC_STREAM.len() {
            let s = scan_split(Format::Anthropic, ANTHROPIC_STREAM, split);
            let u = s.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (30, 15), "{split}");
            assert_eq!(u.cached_tokens, Some(5));
        }
        let mut s = UsageScanner::new(Format::Anthropic);
        s.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n");
        assert!(s.saw_error());
    }

    #[test]
    fn anthropic_stream_cut_midway_keeps_input_side() {
        // Cut inside the first content delta: message_start's usage is known.
        let cut = ANTHROPIC_STREAM
            .windows(10)
            .position(|w| w == b"text_delta")
            .unwrap();
        let mut s = UsageScanner::new(Format::Anthropic);
        s.feed(&ANTHROPIC_STREAM[..cut]);
        let u = s.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (30, 1));
    }

    const OLLAMA_STREAM: &[u8] = b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"eval_count\\\" \"},\"done\":false}\n\
{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":26,\"eval_count\":290}";

    #[test]
    fn ollama_stream_with_and_without_final_newline() {
        for split in 0..OLLAMA_STREAM.len() {
            let s = scan_split(Format::Ollama, OLLAMA_STREAM, split);
            let u = s.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (26, 290), "{split}");
        }
        // Cut before the final line: nothing known.
        let cut = OLLAMA_STREAM.iter().position(|&b| b == b'\n').unwrap() + 30;
        let mut s = UsageScanner::new(Format::Ollama);
        s.feed(&OLLAMA_STREAM[..cut]);
        assert_eq!(s.usage(), None);
        let mut s = UsageScanner::new(Format::Ollama);
        s.feed(b"{\"error\":\"model crashed\"}\n");
        assert!(s.saw_error());
    }

    #[test]
    fn overlong_line_is_skipped_not_buffered() {
        let mut s = UsageScanner::new(Format::OpenAi);
        let big = vec![b'x'; MAX_CARRY + 10];
        s.feed(b"data: ");
        s.feed(&big);
        assert!(s.carry.is_empty());
        s.feed(b"more\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n");
        assert_eq!(s.usage().map(|u| u.completion_tokens), Some(2));
    }

    /// What the Responses encoder writes, the meter reads: a stream in any
    /// pieces, a whole answer, and a failed stream as an error.
    #[test]
    fn responses_encoder_output_is_read_back() {
        use crate::ir::{
            ChatChunk, ChatResponse, Choice, ChoiceDelta, FinishReason, Message, Role, StreamError,
        };
        use crate::responses::{encode_response, stream::StreamEncoder};
        let usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 7,
            cached_tokens: Some(3),
            reasoning_tokens: None,
        };
        let mut enc = StreamEncoder::new("resp_1".into(), "m".into(), 1, Default::default());
        let mut bytes = enc.start().to_vec();
        let text = ChatChunk {
            choices: vec![ChoiceDelta {
                content: Some("usage \"input_tokens\":99 response.completed".into()),
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        };
        let end = ChatChunk {
            choices: vec![ChoiceDelta {
                finish_reason: Some(FinishReason::Stop),
                ..ChoiceDelta::default()
            }],
            usage: Some(usage),
            ..ChatChunk::default()
        };
        for c in [&text, &end] {
            if let Some(b) = enc.encode(c) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes.extend_from_slice(&enc.finish());
        // An unknown count is written as 0, and read back so.
        let want = Usage {
            reasoning_tokens: Some(0),
            ..usage
        };
        for split in [1, 7, 64, bytes.len()] {
            let mut s = UsageScanner::new(Format::Responses);
            for piece in bytes.chunks(split) {
                s.feed(piece);
            }
            s.finish();
            assert_eq!(s.usage(), Some(want), "{split}");
            assert!(!s.saw_error());
        }
        let resp = ChatResponse {
            id: String::new(),
            model: "m".into(),
            created: 1,
            choices: vec![Choice {
                index: 0,
                message: Message::text(Role::Assistant, "x"),
                finish_reason: Some(FinishReason::Stop),
            }],
            usage: Some(usage),
            system_fingerprint: None,
        };
        let whole = encode_response(&resp, "resp_1", 1, &Default::default());
        assert_eq!(
            from_body(Format::Responses, whole.to_string().as_bytes()),
            Some(want)
        );
        let mut enc = StreamEncoder::new("resp_2".into(), "m".into(), 1, Default::default());
        let failed = enc.error(&StreamError {
            message: "x".into(),
            kind: "y".into(),
        });
        let mut s = UsageScanner::new(Format::Responses);
        s.feed(&failed);
        assert!(s.saw_error());
    }

    #[test]
    fn responses_bodies() {
        let u = from_body(
            Format::Responses,
            br#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":4},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 3));
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(4), Some(1)));
        assert_eq!(
            from_body(Format::Responses, br#"{"id":"resp_1","usage":null}"#),
            None
        );
    }

    const RESPONSES_STREAM: &[u8] = b"event: response.created\n\
data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"error\":null,\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"response.completed \\\"usage\\\":{\\\"input_tokens\\\":99}\",\"logprobs\":[]}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"error\":null,\"output\":[],\"usage\":{\"input_tokens\":20,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":5,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":25}}}\n\n";

    #[test]
    fn responses_stream_split_anywhere() {
        for split in 0..RESPONSES_STREAM.len() {
            let s = scan_split(Format::Responses, RESPONSES_STREAM, split);
            let u = s.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (20, 5), "{split}");
            assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(8), Some(2)));
            assert!(!s.saw_error());
        }
    }

    #[test]
    fn responses_stream_errors() {
        // Named events.
        for ev in [
            &b"event: error\ndata: {\"type\":\"error\",\"sequence_number\":3,\"code\":\"server_error\",\"message\":\"x\"}\n\n"[..],
            b"event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":3,\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"x\"},\"usage\":null}}\n\n",
        ] {
            let mut s = UsageScanner::new(Format::Responses);
            assert!(s.feed(ev));
            assert!(s.saw_error());
            // Without the event lines, the data says it.
            let data: Vec<u8> = ev
                .split(|&b| b == b'\n')
                .filter(|l| !l.starts_with(b"event:"))
                .flat_map(|l| l.iter().copied().chain([b'\n']))
                .collect();
            let mut s = UsageScanner::new(Format::Responses);
            assert!(s.feed(&data));
            assert!(s.saw_error());
        }
        // A failed response still reports what it used.
        let mut s = UsageScanner::new(Format::Responses);
        s.feed(b"data: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n");
        assert_eq!(s.usage().map(|u| u.total_tokens()), Some(5));
        // Text that mentions an error is not one.
        let mut s = UsageScanner::new(Format::Responses);
        s.feed(b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"type\\\":\\\"error\\\"\"}\n\n");
        assert!(!s.saw_error());
    }
}
