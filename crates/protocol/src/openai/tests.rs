use super::stream::{ChunkDecoder, ChunkEncoder};
use super::*;
use crate::sse::SseParser;
use crate::test_support::{self, collect, decode_in_pieces};

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("openai", name)
}

fn decode_stream(bytes: &[u8], split: usize) -> Vec<StreamEvent> {
    decode_in_pieces(ChunkDecoder::new(), bytes, split)
}

#[test]
fn full_request_decodes_every_field() {
    let req =
        decode_chat_request(&fixture("chat_request_full.json")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.model, "gpt-4o");
    assert_eq!(req.messages.len(), 4);
    assert_eq!(req.messages[0].role, Role::System);
    let user = &req.messages[1];
    assert_eq!(user.content.len(), 3);
    assert_eq!(
        user.content[1],
        ContentPart::Image(Image {
            source: ImageSource::Url("https://example.com/cat.png".into()),
            detail: Some("low".into())
        })
    );
    assert_eq!(
        user.content[2],
        ContentPart::Image(Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            },
            detail: None
        })
    );
    assert_eq!(req.messages[2].tool_calls[0].name, "get_weather");
    assert_eq!(
        req.messages[2].tool_calls[0].arguments,
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(req.messages[3].role, Role::Tool);
    assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("call_abc"));
    assert_eq!(req.tools.len(), 1);
    assert_eq!(req.tools[0].strict, Some(true));
    assert_eq!(
        req.tool_choice,
        Some(ToolChoice::Function("get_weather".into()))
    );
    assert_eq!(req.parallel_tool_calls, Some(false));
    assert_eq!(req.temperature, Some(0.2));
    assert_eq!(req.top_p, Some(0.9));
    assert_eq!(req.max_tokens, Some(256));
    assert_eq!(req.max_tokens_field, MaxTokensField::MaxCompletionTokens);
    assert_eq!(req.stop, vec!["\n\n".to_string(), "END".to_string()]);
    assert_eq!(req.seed, Some(42));
    assert!(
        matches!(req.response_format, Some(ResponseFormat::JsonSchema { ref name, .. }) if name == "answer")
    );
    assert!(req.stream);
    assert!(req.include_usage);
    assert!(req.extra.contains_key("metadata"));
    assert!(req.extra.contains_key("x_vendor_flag"));
    assert!(!req.extra.contains_key("model"));
}

#[test]
fn request_round_trips_through_the_model() {
    let req =
        decode_chat_request(&fixture("chat_request_full.json")).unwrap_or_else(|e| panic!("{e}"));
    let wire = encode_chat_request(
        &req,
        RequestOptions {
            legacy_max_tokens: false,
            forward_extra: true,
            top_k: true,
        },
    );
    let again = decode_chat_request(wire.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, req);
    assert_eq!(wire["max_completion_tokens"], 256);
    assert_eq!(wire["x_vendor_flag"][1], 2.5);
    // Legacy hosts get max_tokens instead.
    let legacy = encode_chat_request(
        &req,
        RequestOptions {
            legacy_max_tokens: true,
            forward_extra: false,
            top_k: true,
        },
    );
    assert_eq!(legacy["max_tokens"], 256);
    assert!(legacy.get("max_completion_tokens").is_none());
    assert!(legacy.get("x_vendor_flag").is_none());
}

#[test]
fn bad_requests_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
        (r#"{"model":"m","messages":"oops"}"#, "messages"),
        (r#"{"model":"m","messages":[]}"#, "messages"),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            "messages[0].role",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":7}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
            "messages[0].tool_call_id",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"description":"no name"}}]}"#,
            "tools[0].function.name",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#,
            "tool_choice",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
        ),
    ];
    for (body, field) in cases {
        let err = decode_chat_request(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(&err.field, field, "{body}: {err}");
        assert!(err.to_string().contains(field));
    }
    let err = decode_chat_request(b"{not json")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("malformed JSON"), "{err}");
}

#[test]
fn response_with_tool_calls_and_cached_usage() {
    let resp = decode_chat_response(&fixture("chat_response_tool_calls.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.id, "chatcmpl-9xYz");
    let c = &resp.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(c.message.tool_calls.len(), 2);
    assert_eq!(c.message.tool_calls[1].name, "get_time");
    let u = resp.usage.unwrap_or_default();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
        (82, 40, Some(64))
    );
    let out = encode_chat_response(&resp, ReasoningOutput::Separate);
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(out["usage"]["total_tokens"], 122);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
    let again = decode_chat_response(out.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, resp);
}

#[test]
fn think_blocks_never_leak_into_content() {
    let resp = decode_chat_response(&fixture("chat_response_think.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let m = &resp.choices[0].message;
    assert_eq!(m.text_content(), "Hello!");
    assert_eq!(m.reasoning.as_deref(), Some("\nThe user greets me.\n"));
    let out = encode_chat_response(&resp, ReasoningOutput::Separate);
    assert_eq!(out["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "\nThe user greets me.\n"
    );
    let dropped = encode_chat_response(&resp, ReasoningOutput::Drop);
    assert!(dropped["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    let inline = encode_chat_response(&resp, ReasoningOutput::Inline);
    assert!(inline["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .starts_with("<think>"));

    for split in [1, 3, 7, 64, 4096] {
        let evs = decode_stream(&fixture("stream_think.sse"), split);
        let (content, reasoning, _, finish, _) = collect(&evs);
        assert_eq!(content, "Answer here.", "split {split}");
        assert_eq!(reasoning, "pondering more", "split {split}");
        assert_eq!(finish, Some(FinishReason::Stop));
    }
}

#[test]
fn stream_with_usage_chunk() {
    for split in [1, 5, 100, 100_000] {
        let evs = decode_stream(&fixture("stream_text_usage.sse"), split);
        let (content, _, _, finish, usage) = collect(&evs);
        assert_eq!(content, "Hello!");
        assert_eq!(finish, Some(FinishReason::Stop));
        assert_eq!(usage.map(|u| u.total_tokens()), Some(12));
        assert_eq!(evs.last(), Some(&StreamEvent::Done));
    }
}

#[test]
fn tool_call_fragments_interleaved_with_text() {
    for split in [1, 2, 13, 100_000] {
        let evs = decode_stream(&fixture("stream_tool_calls.sse"), split);
        let (content, _, calls, finish, usage) = collect(&evs);
        assert_eq!(content, "Let me check. ");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0],
            (
                "call_w".into(),
                "get_weather".into(),
                "{\"city\": \"Paris\"}".into()
            )
        );
        assert_eq!(
            calls[1],
            (
                "call_t".into(),
                "get_time".into(),
                "{\"tz\":\"CET\"}".into()
            )
        );
        assert_eq!(finish, Some(FinishReason::ToolCalls));
        assert_eq!(usage.map(|u| u.completion_tokens), Some(30));
    }
}

#[test]
fn error_mid_stream_is_an_event() {
    let evs = decode_stream(&fixture("stream_error_midway.sse"), 9);
    assert!(
        matches!(&evs[0], StreamEvent::Chunk(c) if c.choices[0].content.as_deref() == Some("Partial"))
    );
    match &evs[1] {
        StreamEvent::Error(e) => {
            assert_eq!(e.kind, "server_error");
            assert!(e.message.contains("server had an error"));
        }
        other => panic!("expected error, got {other:?}"),
    }
}

/// Decodes a fixture, re-encodes it for an OpenAI client, and decodes that
/// again: the client sees the same content, tool calls and usage, under one id.
#[test]
fn encoder_round_trip_keeps_one_id_and_usage() {
    for name in ["stream_tool_calls.sse", "stream_text_usage.sse"] {
        let evs = decode_stream(&fixture(name), 4096);
        let mut enc = ChunkEncoder::new(
            "chatcmpl-gw1".into(),
            1,
            "m".into(),
            true,
            ReasoningOutput::Separate,
        );
        let mut out = Vec::new();
        for ev in &evs {
            if let StreamEvent::Chunk(c) = ev {
                if let Some(b) = enc.encode(c) {
                    out.extend_from_slice(&b);
                }
            }
        }
        out.extend_from_slice(&enc.finish());
        let mut p = SseParser::new();
        let frames = p.feed(&out).unwrap_or_default();
        assert_eq!(frames.last().map(|f| f.data.as_str()), Some("[DONE]"));
        for f in &frames[..frames.len() - 1] {
            let v: Value = serde_json::from_str(&f.data).unwrap_or_default();
            assert_eq!(v["id"], "chatcmpl-gw1");
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        // The usage chunk has no choices and comes last.
        let usage_frame: Value =
            serde_json::from_str(&frames[frames.len() - 2].data).unwrap_or_default();
        assert_eq!(usage_frame["choices"], serde_json::json!([]));
        assert!(usage_frame["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);
        // First delta has the role.
        let first: Value = serde_json::from_str(&frames[0].data).unwrap_or_default();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let again = decode_stream(&out, 4096);
        assert_eq!(collect(&again), collect(&evs));
    }
}

#[test]
fn encoder_without_include_usage_sends_no_usage_chunk() {
    let evs = decode_stream(&fixture("stream_text_usage.sse"), 4096);
    let mut enc = ChunkEncoder::new("x".into(), 1, "m".into(), false, ReasoningOutput::Separate);
    let mut out = Vec::new();
    for ev in &evs {
        if let StreamEvent::Chunk(c) = ev {
            if let Some(b) = enc.encode(c) {
                out.extend_from_slice(&b);
            }
        }
    }
    out.extend_from_slice(&enc.finish());
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("\"usage\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(enc.usage().map(|u| u.total_tokens()), Some(12));
}

#[test]
fn embeddings_codec() {
    let req = decode_embedding_request(br#"{"model":"e","input":["a","b"],"dimensions":8}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        req.input,
        EmbeddingInput::Text(vec!["a".into(), "b".into()])
    );
    assert_eq!(encode_embedding_request(&req)["dimensions"], 8);
    assert_eq!(
        decode_embedding_request(br#"{"model":"e","input":[]}"#)
            .err()
            .map(|e| e.field),
        Some("input".into())
    );
    let resp = decode_embedding_response(br#"{"object":"list","model":"e","data":[{"object":"embedding","index":1,"embedding":[0.5]},{"object":"embedding","index":0,"embedding":[0.25]}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.data, vec![vec![0.25], vec![0.5]]);
    let out = encode_embedding_response(&resp);
    assert_eq!(out["data"][1]["embedding"][0], 0.5);
}

#[test]
fn upstream_error_messages_in_any_shape() {
    assert_eq!(
        upstream_error_message(br#"{"error":{"message":"bad key"}}"#).as_deref(),
        Some("bad key")
    );
    assert_eq!(
        upstream_error_message(br#"{"error":"nope"}"#).as_deref(),
        Some("nope")
    );
    assert_eq!(
        upstream_error_message(br#"{"message":"m"}"#).as_deref(),
        Some("m")
    );
    assert_eq!(upstream_error_message(b"<html>"), None);
}

#[test]
fn images_from_tool_results_move_to_a_user_message() {
    let mut tool = Message::new(
        Role::Tool,
        vec![
            ContentPart::Text("screenshot taken".into()),
            ContentPart::Image(Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "AAAA".into(),
                },
                detail: None,
            }),
        ],
    );
    tool.tool_call_id = Some("call_1".into());
    let mut asst = Message::new(Role::Assistant, vec![]);
    asst.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "shot".into(),
        arguments: "{}".into(),
    }];
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "go"), asst, tool],
        ..Default::default()
    };
    let wire = encode_chat_request(&req, RequestOptions::default());
    let msgs = wire["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["content"], "screenshot taken");
    assert_eq!(msgs[3]["role"], "user");
    assert_eq!(
        msgs[3]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AAAA"
    );
    // And the result is valid for our own strict decoder.
    assert!(decode_chat_request(wire.to_string().as_bytes()).is_ok());
}

#[test]
fn top_k_only_where_the_host_takes_it() {
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "x")],
        top_k: Some(40),
        ..Default::default()
    };
    assert!(encode_chat_request(&req, RequestOptions::default())
        .get("top_k")
        .is_none());
    let opts = RequestOptions {
        top_k: true,
        ..Default::default()
    };
    assert_eq!(encode_chat_request(&req, opts)["top_k"], 40);
}

#[test]
fn huge_choice_index_is_not_an_allocation() {
    let body = b"data: {\"choices\":[{\"index\":4294967295,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let events = decode_stream(body, body.len());
    let mut enc = ChunkEncoder::new("id".into(), 0, "m".into(), false, ReasoningOutput::Inline);
    let mut sent = 0;
    for ev in &events {
        if let StreamEvent::Chunk(c) = ev {
            assert_eq!(c.choices[0].index, u32::MAX);
            sent += enc.encode(c).map_or(0, |b| b.len());
        }
    }
    assert!(sent > 0);
}

#[test]
fn text_or_token_inputs_take_four_shapes_and_name_their_type() {
    let shapes = [
        (r#""a""#, EmbeddingInput::Text(vec!["a".into()])),
        (
            r#"["a","b"]"#,
            EmbeddingInput::Text(vec!["a".into(), "b".into()]),
        ),
        ("[1,2]", EmbeddingInput::Tokens(vec![vec![1, 2]])),
        (
            "[[1],[2,3]]",
            EmbeddingInput::Tokens(vec![vec![1], vec![2, 3]]),
        ),
    ];
    for (input, want) in shapes {
        let body = format!(r#"{{"model":"e","input":{input}}}"#);
        let req = decode_embedding_request(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.input, want, "{body}");
        let body = format!(r#"{{"model":"c","prompt":{input}}}"#);
        let obj = RawObject::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            validate_completion_request(&obj).ok().as_deref(),
            Some("c"),
            "{body}"
        );
    }
    let err = decode_embedding_request(br#"{"model":"e","input":{"x":1}}"#).err();
    assert_eq!(
        err.map(|e| (e.field, e.message)),
        Some((
            "input".to_string(),
            "data did not match any variant of untagged enum WireEmbeddingInput".to_string()
        ))
    );
    let obj = RawObject::parse(br#"{"model":"c","prompt":7}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        validate_completion_request(&obj)
            .err()
            .map(|e| (e.field, e.message)),
        Some((
            "prompt".to_string(),
            "data did not match any variant of untagged enum WirePrompt".to_string()
        ))
    );
}
