//! Micro-benchmarks of the wire codecs: a 100-chunk stream decoded and
//! encoded in each streaming format, a ~1 KB chat request decoded in each
//! client format (and only checked, as for a same-format upstream), the
//! usage read from 1 KB and 64 KB forwarded answers, and a 1 KB answer
//! written as JSON.
//!
//! Run: `cargo bench -p llm-link-protocol --bench codecs` (add `-- --quick`
//! for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use llm_link_protocol::ir::{
    ChatChunk, ChoiceDelta, FinishReason, ReasoningOutput, Role, ToolCallDelta, Usage,
};
use llm_link_protocol::{anthropic, ollama, openai};

/// Chunks in a stream: text deltas, then one tool call whose arguments
/// arrive in fragments, then a finish chunk, then usage.
const CHUNKS: usize = 100;
const TEXT_CHUNKS: usize = 80;

fn chunks() -> Vec<ChatChunk> {
    let mut out = Vec::with_capacity(CHUNKS);
    out.push(ChatChunk {
        choices: vec![ChoiceDelta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    });
    for i in 1..TEXT_CHUNKS {
        out.push(ChatChunk {
            choices: vec![ChoiceDelta {
                content: Some(format!("word{i} and \"more\" ")),
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        });
    }
    // The tool call: the head (id, name) then argument fragments.
    let args = r#"{"location": "San Francisco, CA", "unit": "celsius", "days": 3}"#;
    let fragments = CHUNKS - TEXT_CHUNKS - 3;
    let step = args.len().div_ceil(fragments);
    out.push(ChatChunk {
        choices: vec![ChoiceDelta {
            tool_calls: vec![ToolCallDelta {
                index: 0,
                id: Some("call_abc123".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            }],
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    });
    let mut start = 0;
    for _ in 0..fragments {
        let end = (start + step).min(args.len());
        out.push(ChatChunk {
            choices: vec![ChoiceDelta {
                tool_calls: vec![ToolCallDelta {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: args[start..end].to_string(),
                }],
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        });
        start = end;
    }
    assert_eq!(start, args.len(), "arguments not fully split");
    out.push(ChatChunk {
        choices: vec![ChoiceDelta {
            finish_reason: Some(FinishReason::ToolCalls),
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    });
    out.push(ChatChunk {
        usage: Some(Usage {
            prompt_tokens: 250,
            completion_tokens: 120,
            cached_tokens: None,
            reasoning_tokens: None,
        }),
        ..ChatChunk::default()
    });
    assert_eq!(out.len(), CHUNKS);
    out
}

fn encode_openai(chunks: &[ChatChunk]) -> Vec<u8> {
    let mut enc = openai::stream::ChunkEncoder::new(
        "chatcmpl-bench".into(),
        1_700_000_000,
        "mock-model".into(),
        true,
        ReasoningOutput::Separate,
    );
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = enc.encode(c) {
            out.extend_from_slice(&b);
        }
    }
    out.extend_from_slice(&enc.finish());
    out
}

fn encode_anthropic(chunks: &[ChatChunk]) -> Vec<u8> {
    let mut enc = anthropic::stream::StreamEncoder::new(
        "bench".into(),
        "mock-model".into(),
        ReasoningOutput::Separate,
    );
    let mut out = Vec::new();
    out.extend_from_slice(&enc.start());
    for c in chunks {
        if let Some(b) = enc.encode(c) {
            out.extend_from_slice(&b);
        }
    }
    out.extend_from_slice(&enc.finish());
    out
}

fn encode_ollama(chunks: &[ChatChunk]) -> Vec<u8> {
    let mut enc = ollama::stream::ChatStreamEncoder::new(
        "mock-model".into(),
        "2026-01-01T00:00:00Z".into(),
        ReasoningOutput::Separate,
        false,
    );
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = enc.encode(c) {
            out.extend_from_slice(&b);
        }
    }
    out.extend_from_slice(&enc.finish(
        ollama::Timings {
            total_ns: 1_000_000,
            load_ns: 0,
            prompt_eval_ns: 100_000,
            eval_ns: 900_000,
        },
        "2026-01-01T00:00:01Z".into(),
    ));
    out
}

/// Splits a stream into the frames (blank-line-separated SSE events, or
/// lines) as a network read would typically hand them over.
fn frames(stream: &[u8], sep: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= stream.len() {
        if &stream[i..i + sep.len()] == sep {
            out.push(stream[start..i + sep.len()].to_vec());
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < stream.len() {
        out.push(stream[start..].to_vec());
    }
    out
}

macro_rules! decode_all {
    ($dec:expr, $frames:expr) => {{
        let mut dec = $dec;
        let mut n = 0usize;
        for f in $frames {
            n += dec.feed(f).unwrap().len();
        }
        n += dec.finish().unwrap().len();
        n
    }};
}

fn bench_streams(c: &mut Criterion) {
    let chunks = chunks();
    let oa = encode_openai(&chunks);
    let an = encode_anthropic(&chunks);
    let ol = encode_ollama(&chunks);
    let oa_frames = frames(&oa, b"\n\n");
    let an_frames = frames(&an, b"\n\n");
    let ol_frames = frames(&ol, b"\n");

    // Sanity: each stream decodes into a fair number of events.
    assert!(decode_all!(openai::stream::ChunkDecoder::new(), &oa_frames) >= CHUNKS);
    assert!(decode_all!(anthropic::stream::StreamDecoder::new(), &an_frames) >= 10);
    assert!(decode_all!(ollama::stream::NdjsonDecoder::new(), &ol_frames) >= 10);

    let mut g = c.benchmark_group("stream_encode_100");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    g.bench_function("openai_sse", |b| {
        b.iter(|| encode_openai(black_box(&chunks)))
    });
    g.bench_function("anthropic_sse", |b| {
        b.iter(|| encode_anthropic(black_box(&chunks)))
    });
    g.bench_function("ollama_ndjson", |b| {
        b.iter(|| encode_ollama(black_box(&chunks)))
    });
    g.finish();

    let mut g = c.benchmark_group("stream_decode_100");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    g.bench_function("openai_sse", |b| {
        b.iter(|| decode_all!(openai::stream::ChunkDecoder::new(), black_box(&oa_frames)))
    });
    g.bench_function("anthropic_sse", |b| {
        b.iter(|| {
            decode_all!(
                anthropic::stream::StreamDecoder::new(),
                black_box(&an_frames)
            )
        })
    });
    g.bench_function("ollama_ndjson", |b| {
        b.iter(|| decode_all!(ollama::stream::NdjsonDecoder::new(), black_box(&ol_frames)))
    });
    g.finish();
}

const SYSTEM: &str = "You are a helpful assistant for a weather service. Answer briefly and \
    call the get_weather tool when the user asks about current or forecast conditions.";
const USER1: &str = "Hi! I'm planning a trip to San Francisco next week and would like to know \
    what the weather will be like, so I can decide what to pack for the trip.";
const ASSISTANT1: &str = "Sure, I can help with that. Which days will you be there, and do you \
    prefer the temperatures in celsius or fahrenheit?";
const USER2: &str = "Monday to Wednesday, and celsius please. Also, is it usually foggy in the \
    mornings around that time of the year?";
const TOOL_PARAMS: &str = r#"{"type": "object", "properties": {"location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}}, "required": ["location"]}"#;

fn openai_body() -> String {
    format!(
        r#"{{"model": "mock-model", "stream": true, "stream_options": {{"include_usage": true}}, "temperature": 0.7, "max_tokens": 512, "messages": [{{"role": "system", "content": "{SYSTEM}"}}, {{"role": "user", "content": "{USER1}"}}, {{"role": "assistant", "content": "{ASSISTANT1}"}}, {{"role": "user", "content": "{USER2}"}}], "tools": [{{"type": "function", "function": {{"name": "get_weather", "description": "Get the weather forecast for a location", "parameters": {TOOL_PARAMS}}}}}]}}"#
    )
}

fn anthropic_body() -> String {
    format!(
        r#"{{"model": "mock-model", "stream": true, "temperature": 0.7, "max_tokens": 512, "system": "{SYSTEM}", "messages": [{{"role": "user", "content": "{USER1}"}}, {{"role": "assistant", "content": [{{"type": "text", "text": "{ASSISTANT1}"}}]}}, {{"role": "user", "content": "{USER2}"}}], "tools": [{{"name": "get_weather", "description": "Get the weather forecast for a location", "input_schema": {TOOL_PARAMS}}}]}}"#
    )
}

fn ollama_body() -> String {
    format!(
        r#"{{"model": "mock-model", "stream": true, "options": {{"temperature": 0.7, "num_predict": 512}}, "messages": [{{"role": "system", "content": "{SYSTEM}"}}, {{"role": "user", "content": "{USER1}"}}, {{"role": "assistant", "content": "{ASSISTANT1}"}}, {{"role": "user", "content": "{USER2}"}}], "tools": [{{"type": "function", "function": {{"name": "get_weather", "description": "Get the weather forecast for a location", "parameters": {TOOL_PARAMS}}}}}]}}"#
    )
}

fn bench_requests(c: &mut Criterion) {
    let oa = openai_body();
    let an = anthropic_body();
    let ol = ollama_body();
    // Sanity: every body decodes, with its tool and all its messages.
    for req in [
        openai::decode_chat_request(oa.as_bytes()).unwrap(),
        anthropic::decode_messages_request(an.as_bytes()).unwrap(),
        ollama::decode_chat_request(ol.as_bytes()).unwrap(),
    ] {
        assert_eq!(req.tools.len(), 1);
        assert!(req.messages.len() >= 3);
    }

    let mut g = c.benchmark_group("request_decode_1k");
    g.throughput(Throughput::Bytes(oa.len() as u64));
    g.bench_function("openai", |b| {
        b.iter(|| openai::decode_chat_request(black_box(oa.as_bytes())).unwrap())
    });
    g.throughput(Throughput::Bytes(an.len() as u64));
    g.bench_function("anthropic", |b| {
        b.iter(|| anthropic::decode_messages_request(black_box(an.as_bytes())).unwrap())
    });
    g.throughput(Throughput::Bytes(ol.len() as u64));
    g.bench_function("ollama", |b| {
        b.iter(|| ollama::decode_chat_request(black_box(ol.as_bytes())).unwrap())
    });
    g.finish();

    // The light check of a body forwarded to a same-format upstream.
    use llm_link_protocol::json::RawObject;
    use llm_link_protocol::passthrough;
    let mut g = c.benchmark_group("request_check_1k");
    g.throughput(Throughput::Bytes(oa.len() as u64));
    g.bench_function("openai", |b| {
        b.iter(|| {
            passthrough::openai_chat(&RawObject::parse(black_box(oa.as_bytes())).unwrap()).unwrap()
        })
    });
    g.throughput(Throughput::Bytes(an.len() as u64));
    g.bench_function("anthropic", |b| {
        b.iter(|| {
            passthrough::anthropic_messages(
                &RawObject::parse(black_box(an.as_bytes())).unwrap(),
                true,
            )
            .unwrap()
        })
    });
    g.throughput(Throughput::Bytes(ol.len() as u64));
    g.bench_function("ollama", |b| {
        b.iter(|| {
            passthrough::ollama_chat(&RawObject::parse(black_box(ol.as_bytes())).unwrap()).unwrap()
        })
    });
    g.finish();
}

/// An OpenAI chat answer with `bytes` of content, usage last (as OpenAI
/// sends it).
fn openai_answer(bytes: usize) -> Vec<u8> {
    // Prose: a line break every ~90 bytes, a quoted word now and then.
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do \\\"eiusmod\\\" tempor.\\n";
    let text = line.repeat(bytes / line.len() + 1);
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":9,"completion_tokens":193,"total_tokens":202,"prompt_tokens_details":{{"cached_tokens":0}}}},"system_fingerprint":"fp_1"}}"#
    )
    .into_bytes()
}

fn bench_usage(c: &mut Criterion) {
    use llm_link_protocol::usage::{from_body, Format};
    let mut g = c.benchmark_group("usage_from_body");
    for (name, bytes) in [("openai_1k", 1024), ("openai_64k", 64 * 1024)] {
        let body = openai_answer(bytes);
        assert_eq!(
            from_body(Format::OpenAi, &body).unwrap().completion_tokens,
            193
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| from_body(Format::OpenAi, black_box(&body)).unwrap())
        });
    }
    g.finish();
}

/// A translated answer written for the client: `json::value_bytes` against
/// serde_json's writer (the same bytes).
fn bench_write(c: &mut Criterion) {
    use llm_link_protocol::json::value_bytes;
    let answer: serde_json::Value = serde_json::from_slice(&openai_answer(1024)).unwrap();
    assert_eq!(value_bytes(&answer), serde_json::to_vec(&answer).unwrap());
    let mut g = c.benchmark_group("answer_write_1k");
    g.bench_function("value_bytes", |b| {
        b.iter(|| value_bytes(black_box(&answer)))
    });
    g.bench_function("serde_json_to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&answer)).unwrap())
    });
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let plain = "lorem ipsum dolor sit amet ".repeat(40);
    for (name, t) in [("str_prose", &text), ("str_plain", &plain)] {
        g.bench_function(format!("{name}_write_str"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                llm_link_protocol::json::write_str(&mut out, black_box(t));
                out
            })
        });
        g.bench_function(format!("{name}_serde"), |b| {
            b.iter(|| serde_json::to_vec(black_box(t)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_streams,
    bench_requests,
    bench_usage,
    bench_write
);
criterion_main!(benches);
