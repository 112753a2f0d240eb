use super::stream::{StreamDecoder, StreamEncoder};
use super::*;
use crate::openai;
use crate::openai::stream::{ChunkDecoder, ChunkEncoder};
use crate::sse::SseParser;
use crate::test_support::{self, collect, decode_in_pieces, Collected};
use bytes::Bytes;

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("anthropic", name)
}

fn openai_fixture(name: &str) -> Vec<u8> {
    test_support::fixture("openai", name)
}

fn ok<T>(r: Result<T, DecodeError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn decode_stream(bytes: &[u8], split: usize) -> Vec<StreamEvent> {
    decode_in_pieces(StreamDecoder::new(), bytes, split)
}

fn decode_openai_stream(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_in_pieces(ChunkDecoder::new(), bytes, bytes.len())
}

/// Tool arguments compared as JSON, whatever their spacing.
fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Runs IR events through a [`StreamEncoder`], as the server would.
fn encode_anthropic(
    events: &[StreamEvent],
    reasoning: ReasoningOutput,
    start_first: bool,
) -> Vec<u8> {
    let mut enc = StreamEncoder::new("gw-1".into(), "claude-client-name".into(), reasoning);
    let mut out = Vec::new();
    if start_first {
        out.extend_from_slice(&enc.start());
    }
    for ev in events {
        match ev {
            StreamEvent::Chunk(c) => {
                if let Some(b) = enc.encode(c) {
                    out.extend_from_slice(&b);
                }
            }
            StreamEvent::Error(e) => out.extend_from_slice(&enc.error(e)),
            StreamEvent::Done => {}
        }
    }
    out.extend_from_slice(&enc.finish());
    out
}

/// What a strictly checked Anthropic stream contained.
#[derive(Debug, Default)]
struct Checked {
    /// (block type, accumulated text / thinking / input JSON, start block)
    blocks: Vec<(String, String, Value)>,
    message: Value,
    stop_reason: String,
    usage: Value,
    pings: usize,
}

/// Asserts the exact Anthropic event grammar: `message_start` first and
/// once; blocks started at consecutive indices from 0, one open at a time,
/// deltas of the open block's kind only, every block stopped; one
/// `message_delta` after the blocks; `message_stop` last and once; every
/// SSE event name equal to its JSON `type`; every tool input a JSON object.
fn check_sequence(bytes: &[u8]) -> Checked {
    let mut p = SseParser::new();
    let mut evs = p.feed(bytes).unwrap_or_else(|e| panic!("{e:?}"));
    evs.extend(p.finish());
    assert!(!evs.is_empty(), "empty stream");
    let mut c = Checked::default();
    let mut open: Option<usize> = None;
    let mut deltas = 0;
    let mut stopped = false;
    let mut started = false;
    for (n, ev) in evs.iter().enumerate() {
        let v: Value =
            serde_json::from_str(&ev.data).unwrap_or_else(|e| panic!("{e}: {}", ev.data));
        let ty = v["type"].as_str().unwrap_or_else(|| panic!("no type: {v}"));
        assert_eq!(ev.event.as_deref(), Some(ty), "event name must equal type");
        assert!(!stopped, "event after message_stop: {v}");
        if n == 0 {
            assert_eq!(ty, "message_start", "first event");
        }
        match ty {
            "message_start" => {
                assert!(!started, "second message_start");
                started = true;
                let m = &v["message"];
                assert!(m["id"].as_str().unwrap_or("").starts_with("msg_"), "{m}");
                assert_eq!(m["type"], "message");
                assert_eq!(m["role"], "assistant");
                assert_eq!(m["content"], json!([]));
                assert!(m["stop_reason"].is_null());
                assert!(m["stop_sequence"].is_null());
                assert!(m["usage"]["input_tokens"].is_u64());
                assert!(m["usage"]["output_tokens"].is_u64());
                c.message = m.clone();
            }
            "ping" => c.pings += 1,
            "content_block_start" => {
                assert!(open.is_none(), "block started while another is open");
                assert_eq!(deltas, 0, "block after message_delta");
                let index = v["index"].as_u64().unwrap_or(u64::MAX) as usize;
                assert_eq!(index, c.blocks.len(), "indices must be consecutive from 0");
                let block = v["content_block"].clone();
                let kind = block["type"].as_str().unwrap_or("").to_string();
                match kind.as_str() {
                    "text" => assert_eq!(block["text"], ""),
                    "thinking" => assert_eq!(block["thinking"], ""),
                    "tool_use" => {
                        assert!(!block["id"].as_str().unwrap_or("").is_empty());
                        assert!(!block["name"].as_str().unwrap_or("").is_empty());
                        assert_eq!(block["input"], json!({}));
                    }
                    other => panic!("unexpected block type {other}"),
                }
                c.blocks.push((kind, String::new(), block));
                open = Some(index);
            }
            "content_block_delta" => {
                let i = open.unwrap_or_else(|| panic!("delta with no open block: {v}"));
                assert_eq!(
                    v["index"].as_u64(),
                    Some(i as u64),
                    "delta for another block"
                );
                let d = &v["delta"];
                let block = &mut c.blocks[i];
                match (block.0.as_str(), d["type"].as_str().unwrap_or("")) {
                    ("text", "text_delta") => block.1.push_str(d["text"].as_str().unwrap_or("")),
                    ("tool_use", "input_json_delta") => {
                        block.1.push_str(d["partial_json"].as_str().unwrap_or(""))
                    }
                    ("thinking", "thinking_delta") => {
                        block.1.push_str(d["thinking"].as_str().unwrap_or(""))
                    }
                    ("thinking", "signature_delta") => {}
                    (b, dt) => panic!("{dt} in a {b} block"),
                }
            }
            "content_block_stop" => {
                assert_eq!(
                    open.take().map(|i| i as u64),
                    v["index"].as_u64(),
                    "stop of a block that is not open"
                );
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with a block open");
                assert_eq!(deltas, 0, "second message_delta");
                deltas += 1;
                assert!(v["delta"]["stop_sequence"].is_null());
                c.stop_reason = v["delta"]["stop_reason"].as_str().unwrap_or("").to_string();
                assert!(v["usage"]["output_tokens"].is_u64());
                c.usage = v["usage"].clone();
            }
            "message_stop" => {
                assert_eq!(deltas, 1, "message_stop without message_delta");
                stopped = true;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(stopped, "no message_stop");
    for (kind, acc, _) in &c.blocks {
        if kind == "tool_use" {
            let input = if acc.is_empty() { "{}" } else { acc.as_str() };
            assert!(json_of(input).is_object(), "tool input {input}");
        }
    }
    c
}

// ---- requests ----

#[test]
fn full_request_decodes_every_field() {
    let req = ok(decode_messages_request(&fixture(
        "messages_request_full.json",
    )));
    assert_eq!(req.model, "claude-sonnet-4-20250514");
    assert_eq!(req.max_tokens, Some(1024));
    assert_eq!(req.max_tokens_field, MaxTokensField::MaxTokens);
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User,
            Role::Assistant,
            Role::User
        ]
    );
    assert_eq!(
        req.messages[0].text_content(),
        "You are a careful travel assistant.\n\nAnswer in one short paragraph."
    );
    let user = &req.messages[1];
    assert_eq!(user.content.len(), 3);
    assert!(matches!(
        &user.content[1],
        ContentPart::Image(Image { source: ImageSource::Base64 { media_type, data }, detail: None })
            if media_type == "image/png" && data.starts_with("iVBORw0KGgo")
    ));
    assert_eq!(
        user.content[2],
        ContentPart::Image(Image {
            source: ImageSource::Url("https://upload.example.org/eiffel.jpg".into()),
            detail: None
        })
    );
    let asst = &req.messages[2];
    assert_eq!(
        asst.text_content(),
        "That is Paris. Let me check the weather and the time."
    );
    assert_eq!(
        asst.reasoning.as_deref(),
        Some("The tower is the Eiffel Tower, so Paris.")
    );
    assert_eq!(asst.tool_calls.len(), 2);
    assert_eq!(asst.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(asst.tool_calls[0].name, "get_weather");
    assert_eq!(
        asst.tool_calls[0].arguments,
        r#"{"city":"Paris","unit":"celsius"}"#
    );
    assert_eq!(asst.tool_calls[1].name, "get_time");
    // Tool results first, in order, then the rest of that user turn.
    assert_eq!(
        req.messages[3].tool_call_id.as_deref(),
        Some("toolu_01A09q90qw90lq917835lq9")
    );
    assert_eq!(req.messages[3].text_content(), "18°C, sunny");
    let failed = &req.messages[4];
    assert_eq!(
        failed.tool_call_id.as_deref(),
        Some("toolu_01B7xk2mT4vQ8pL3nR6sW1yZ")
    );
    assert_eq!(failed.text_content(), "Error: time service unavailable");
    assert!(failed.has_images());
    assert_eq!(req.messages[5].text_content(), "Skip the time if it fails.");
    assert_eq!(
        req.messages[6].text_content(),
        "It is Paris: 18°C and sunny."
    );
    assert_eq!(req.tools.len(), 2);
    assert_eq!(req.tools[0].name, "get_weather");
    assert_eq!(
        req.tools[0].description.as_deref(),
        Some("Current weather for a city")
    );
    assert_eq!(req.tools[0].parameters["required"], json!(["city"]));
    assert_eq!(req.tools[1].name, "get_time");
    assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(req.parallel_tool_calls, Some(false));
    assert_eq!(req.stop, vec!["\n\nHuman:".to_string(), "END".to_string()]);
    assert_eq!(req.temperature, Some(0.3));
    assert_eq!(req.top_p, Some(0.95));
    assert_eq!(req.top_k, Some(40));
    assert_eq!(req.user.as_deref(), Some("user-7f3a"));
    assert!(req.stream);
    assert_eq!(req.extra.len(), 2);
    assert_eq!(req.extra["thinking"]["budget_tokens"], 2048);
    assert_eq!(req.extra["service_tier"], "auto");
}

#[test]
fn max_tokens_is_required_except_for_count_tokens() {
    let body =
        br#"{"model":"claude-3-5-haiku-latest","messages":[{"role":"user","content":"hi"}]}"#;
    let err = decode_messages_request(body).err();
    let err = err.unwrap_or_else(|| panic!("accepted a request without max_tokens"));
    assert_eq!(err.field, "max_tokens");
    assert!(err.message.contains("required"), "{err}");
    let req = ok(decode_count_tokens_request(body));
    assert_eq!(req.max_tokens, None);
    assert_eq!(req.messages.len(), 1);
}

#[test]
fn simple_shapes_decode() {
    let req = ok(decode_messages_request(
        br#"{"model":"m","max_tokens":5,"system":"Be brief.","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"redacted_thinking","data":"xyz"},{"type":"text","text":"hello"}]},{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc body"}}]}],"tool_choice":{"type":"tool","name":"f"},"tools":[{"name":"f","input_schema":{"type":"object"}}]}"#,
    ));
    assert_eq!(req.messages[0], Message::text(Role::System, "Be brief."));
    assert_eq!(req.messages[1], Message::text(Role::User, "hi"));
    assert_eq!(req.messages[2].text_content(), "hello");
    assert_eq!(req.messages[2].reasoning, None);
    assert_eq!(req.messages[3].text_content(), "doc body");
    assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
    assert_eq!(req.parallel_tool_calls, None);
    assert!(!req.stream);
    for (choice, expect) in [
        ("any", ToolChoice::Required),
        ("none", ToolChoice::None),
        ("auto", ToolChoice::Auto),
    ] {
        let body = format!(
            r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"x"}}],"tool_choice":{{"type":"{choice}"}}}}"#
        );
        assert_eq!(
            ok(decode_messages_request(body.as_bytes())).tool_choice,
            Some(expect)
        );
    }
}

#[test]
fn bad_requests_name_the_field() {
    let m = r#""model":"m","max_tokens":10"#;
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#.into(),
            "model",
        ),
        (format!(r#"{{{m}}}"#), "messages"),
        (format!(r#"{{{m},"messages":[]}}"#), "messages"),
        (format!(r#"{{{m},"messages":"hi"}}"#), "messages"),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}},{{"role":"system","content":[{{"type":"image","source":{{}}}}]}}]}}"#
            ),
            "messages[1].content[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}},{{"role":"tool","content":"x"}}]}}"#
            ),
            "messages[1].role",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user"}}]}}"#),
            "messages[0].content",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":5}}]}}"#),
            "messages[0].content",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":[]}}]}}"#),
            "messages[0].content",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":[{{"text":"no type"}}]}}]}}"#),
            "messages[0].content[0].type",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"audio"}}]}}]}}"#),
            "messages[0].content[0].type",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"text"}}]}}]}}"#),
            "messages[0].content[0].text",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"text","text":"a"}},{{"type":"image","source":{{"type":"file","file_id":"f"}}}}]}}]}}"#
            ),
            "messages[0].content[1].source.type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","data":"AA"}}}}]}}]}}"#
            ),
            "messages[0].content[0].source.media_type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"tool_use","id":"t","name":"f","input":{{}}}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"assistant","content":[{{"type":"tool_result","tool_use_id":"t"}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"tool_result","content":"x"}}]}}]}}"#
            ),
            "messages[0].content[0].tool_use_id",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"tool_use","id":"a","name":"b"}}]}}]}}]}}"#
            ),
            "messages[0].content[0].content[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"assistant","content":[{{"type":"tool_use","name":"f","input":{{}}}}]}}]}}"#
            ),
            "messages[0].content[0].id",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"assistant","content":[{{"type":"image","source":{{"type":"url","url":"https://x/y.png"}}}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"document","source":{{"type":"base64","media_type":"application/pdf","data":"JVBERi0"}}}}]}}]}}"#
            ),
            "messages[0].content[0].source.type",
        ),
        (
            format!(
                r#"{{{m},"system":[{{"type":"image"}}],"messages":[{{"role":"user","content":"x"}}]}}"#
            ),
            "system[0].type",
        ),
        (
            format!(r#"{{{m},"system":7,"messages":[{{"role":"user","content":"x"}}]}}"#),
            "system",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"web_search_20250305","name":"web_search","max_uses":5}}]}}"#
            ),
            "tools[0].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tools":[{{"name":"ok","input_schema":{{"type":"object"}}}},{{"type":"bash_20250124","name":"bash"}}]}}"#
            ),
            "tools[1].type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tools":[{{"name":"f"}}]}}"#
            ),
            "tools[0].input_schema",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tools":[{{"name":"","input_schema":{{}}}}]}}"#
            ),
            "tools[0].name",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tool_choice":{{"type":"sometimes"}}}}"#
            ),
            "tool_choice.type",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"tool_choice":{{"type":"tool"}}}}"#
            ),
            "tool_choice.name",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"temperature":1.5}}"#),
            "temperature",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"top_p":"high"}}"#),
            "top_p",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"top_k":-3}}"#),
            "top_k",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"stop_sequences":"END"}}"#
            ),
            "stop_sequences",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"metadata":{{"user_id":5}}}}"#
            ),
            "metadata.user_id",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":"x"}}],"stream":"yes"}}"#),
            "stream",
        ),
        (
            r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#.into(),
            "max_tokens",
        ),
        (
            r#"{"model":"m","max_tokens":"lots","messages":[{"role":"user","content":"x"}]}"#
                .into(),
            "max_tokens",
        ),
    ];
    for (body, field) in &cases {
        let err = decode_messages_request(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(&err.field, field, "{body}: {err}");
        assert!(err.to_string().contains(field));
    }
    let err = decode_messages_request(b"{oops")
        .err()
        .map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("malformed JSON"));
}

#[test]
fn tool_error_marker_round_trips() {
    let body = br#"{"model":"m","max_tokens":9,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"boom"}]}]}"#;
    let req = ok(decode_messages_request(body));
    assert_eq!(req.messages[1].text_content(), "Error: boom");
    let wire = ok(encode_messages_request(&req, 100));
    let result = &wire["messages"][1]["content"][0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["content"], "Error: boom");
    let mut again = ok(decode_messages_request(wire.to_string().as_bytes()));
    assert_eq!(again.messages[1].text_content(), "Error: boom");
    again.max_tokens = req.max_tokens;
    assert_eq!(again, req);
    // An empty failed result still says so.
    let req = ok(decode_messages_request(
        br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true}]}]}"#,
    ));
    assert_eq!(req.messages[0].text_content(), "Error:");
    let wire = ok(encode_messages_request(&req, 100));
    assert_eq!(wire["messages"][0]["content"][0]["is_error"], true);
}

#[test]
fn request_round_trips_through_the_anthropic_wire() {
    let req = ok(decode_messages_request(&fixture(
        "messages_request_full.json",
    )));
    let wire = ok(encode_messages_request(&req, 4096));
    assert_eq!(
        wire["system"],
        "You are a careful travel assistant.\n\nAnswer in one short paragraph."
    );
    assert_eq!(wire["max_tokens"], 1024);
    assert!(wire.get("thinking").is_none(), "extra is not forwarded");
    assert!(wire.get("service_tier").is_none());
    let msgs = wire["messages"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
    // Reasoning is not replayed; text then tool_use blocks with parsed input.
    let asst = &msgs[1]["content"];
    assert_eq!(asst[0]["type"], "text");
    assert_eq!(asst[1]["type"], "tool_use");
    assert_eq!(
        asst[1]["input"],
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(asst.as_array().map(Vec::len), Some(3));
    let results = &msgs[2]["content"];
    assert_eq!(results[0]["type"], "tool_result");
    assert_eq!(results[0]["content"], "18°C, sunny");
    assert!(results[0].get("is_error").is_none());
    assert_eq!(results[1]["is_error"], true);
    assert_eq!(
        results[1]["content"][1]["source"]["media_type"],
        "image/gif"
    );
    assert_eq!(
        results[2],
        json!({"type": "text", "text": "Skip the time if it fails."})
    );
    assert_eq!(
        msgs[0]["content"][2]["source"],
        json!({"type": "url", "url": "https://upload.example.org/eiffel.jpg"})
    );
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(wire["tools"][1]["input_schema"]["required"], json!(["tz"]));
    assert!(wire["tools"][1].get("cache_control").is_none());
    assert_eq!(wire["metadata"], json!({"user_id": "user-7f3a"}));
    assert_eq!(wire["stop_sequences"], json!(["\n\nHuman:", "END"]));
    assert_eq!(
        (
            wire["temperature"].as_f64(),
            wire["top_p"].as_f64(),
            wire["top_k"].as_u64()
        ),
        (Some(0.3), Some(0.95), Some(40))
    );
    assert_eq!(wire["stream"], true);

    let again = ok(decode_messages_request(wire.to_string().as_bytes()));
    let mut expected = req.clone();
    expected.extra.clear();
    // Assistant reasoning is the one thing not replayed to Anthropic.
    expected.messages[2].reasoning = None;
    assert_eq!(again, expected);
}

#[test]
fn anthropic_request_as_openai() {
    let req = ok(decode_messages_request(&fixture(
        "messages_request_full.json",
    )));
    let oai = openai::encode_chat_request(
        &req,
        openai::RequestOptions {
            top_k: true,
            ..Default::default()
        },
    );
    let msgs = oai["messages"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            // the image a tool returned, moved out of the tool message
            "user",
            "user",
            "assistant",
            "user"
        ]
    );
    assert!(msgs[1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap_or("")
        .starts_with("data:image/png;base64,iVBORw0KGgo"));
    assert_eq!(
        msgs[1]["content"][2]["image_url"]["url"],
        "https://upload.example.org/eiffel.jpg"
    );
    let calls = &msgs[2]["tool_calls"];
    assert_eq!(calls[0]["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        json_of(calls[0]["function"]["arguments"].as_str().unwrap_or("")),
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(calls[1]["id"], "toolu_01B7xk2mT4vQ8pL3nR6sW1yZ");
    assert_eq!(msgs[3]["tool_call_id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(msgs[3]["content"], "18°C, sunny");
    assert_eq!(msgs[4]["tool_call_id"], "toolu_01B7xk2mT4vQ8pL3nR6sW1yZ");
    assert_eq!(
        msgs[5]["content"][1]["image_url"]["url"],
        "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    );
    assert_eq!(msgs[6]["content"], "Skip the time if it fails.");
    assert_eq!(
        oai["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(oai["tool_choice"], "auto");
    assert_eq!(oai["parallel_tool_calls"], false);
    assert_eq!(oai["max_tokens"], 1024);
    assert_eq!(oai["stop"], json!(["\n\nHuman:", "END"]));
    assert_eq!(oai["user"], "user-7f3a");
    assert_eq!(oai["top_k"], 40);
    assert_eq!(oai["stream"], true);
    // The OpenAI form is valid for the strict OpenAI decoder: the tool's
    // image moved out of the tool message into the next user message.
    assert_eq!(msgs[4]["content"], "Error: time service unavailable");
    let back = ok(openai::decode_chat_request(oai.to_string().as_bytes()));
    assert_eq!(back.tools, req.tools);
    assert_eq!(back.messages.len(), req.messages.len() + 1);
    for (a, b) in back.messages.iter().zip(&req.messages).take(5) {
        assert_eq!(
            (a.role, &a.tool_calls, &a.tool_call_id),
            (b.role, &b.tool_calls, &b.tool_call_id)
        );
    }
    assert_eq!(back.messages[5].role, Role::User);
    assert!(back.messages[5].has_images());
}

#[test]
fn openai_request_as_anthropic() {
    let mut req = ok(openai::decode_chat_request(&openai_fixture(
        "chat_request_full.json",
    )));
    let err = encode_messages_request(&req, 4096).err().map(|e| e.field);
    assert_eq!(
        err.as_deref(),
        Some("response_format"),
        "json_schema is refused, not dropped"
    );
    req.response_format = None;
    let wire = ok(encode_messages_request(&req, 4096));
    assert_eq!(wire["model"], "gpt-4o");
    assert_eq!(wire["system"], "You are terse.");
    let msgs = &wire["messages"];
    assert_eq!(msgs.as_array().map(Vec::len), Some(3));
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(
        msgs[0]["content"][1]["source"],
        json!({"type": "url", "url": "https://example.com/cat.png"})
    );
    assert_eq!(
        msgs[0]["content"][2]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[1]["content"],
        json!([{"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc", "content": "18C and sunny"}]})
    );
    assert_eq!(wire["tools"][0]["name"], "get_weather");
    assert_eq!(
        wire["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert!(wire["tools"][0].get("strict").is_none());
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(wire["max_tokens"], 256);
    assert_eq!(wire["stop_sequences"], json!(["\n\n", "END"]));
    assert_eq!(wire["temperature"], 0.2);
    assert_eq!(wire["top_p"], 0.9);
    assert_eq!(wire["stream"], true);
    for absent in [
        "seed",
        "metadata",
        "x_vendor_flag",
        "stream_options",
        "response_format",
        "n",
    ] {
        assert!(wire.get(absent).is_none(), "{absent} must not be sent");
    }
    // The Anthropic form decodes back to the same conversation.
    let back = ok(decode_messages_request(wire.to_string().as_bytes()));
    assert_eq!(back.messages.len(), req.messages.len());
    for (a, b) in back.messages.iter().zip(&req.messages) {
        assert_eq!(a.role, b.role);
        assert_eq!(a.tool_call_id, b.tool_call_id);
        assert_eq!(a.tool_calls, b.tool_calls);
        let strip = |parts: &[ContentPart]| -> Vec<ContentPart> {
            parts
                .iter()
                .map(|p| match p {
                    ContentPart::Image(i) => ContentPart::Image(Image {
                        source: i.source.clone(),
                        detail: None,
                    }),
                    t => t.clone(),
                })
                .collect()
        };
        assert_eq!(strip(&a.content), strip(&b.content));
    }
}

fn tool_call(id: &str, name: &str, args: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    }
}

fn tool_result(id: &str, text: &str) -> Message {
    let mut m = Message::text(Role::Tool, text);
    m.tool_call_id = Some(id.into());
    m
}

#[test]
fn encode_merges_turns_so_roles_alternate() {
    let mut asst = Message::new(Role::Assistant, Vec::new());
    asst.tool_calls = vec![
        tool_call(
            "functions.get_weather:0",
            "get_weather",
            r#"{"city":"Oslo"}"#,
        ),
        tool_call("call_2", "list", ""),
    ];
    asst.reasoning = Some("hidden".into());
    let req = ChatRequest {
        model: "claude".into(),
        messages: vec![
            Message::text(Role::System, "sys one"),
            Message::text(Role::User, "first"),
            Message::text(Role::User, "second"),
            asst,
            Message::text(Role::System, "sys two"),
            Message::text(Role::User, "an aside before the results"),
            tool_result("functions.get_weather:0", "rainy"),
            tool_result("call_2", "a, b"),
            Message::text(Role::User, "now answer"),
            Message::text(Role::Assistant, ""),
            Message::text(Role::Assistant, "Part one."),
            Message::text(Role::Assistant, "Part two."),
        ],
        seed: Some(7),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(0.5),
        n: Some(1),
        response_format: Some(ResponseFormat::Text),
        tool_choice: Some(ToolChoice::Required),
        ..ChatRequest::default()
    };
    let wire = ok(encode_messages_request(&req, 2048));
    assert_eq!(wire["system"], "sys one\n\nsys two");
    assert_eq!(wire["max_tokens"], 2048, "default max_tokens");
    assert!(
        wire.get("tool_choice").is_none(),
        "no tool_choice without tools"
    );
    for absent in [
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "stream",
    ] {
        assert!(wire.get(absent).is_none(), "{absent}");
    }
    let msgs = wire["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(msgs.len(), 4, "{wire:#}");
    assert_eq!(
        msgs[0],
        json!({"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]})
    );
    assert_eq!(
        msgs[1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "functions_get_weather_0", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "list", "input": {}}
        ]})
    );
    // One user message: both results first (same sanitised ids), then text.
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "functions_get_weather_0", "content": "rainy"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "a, b"},
            {"type": "text", "text": "an aside before the results"},
            {"type": "text", "text": "now answer"}
        ]})
    );
    assert_eq!(
        msgs[3]["content"],
        json!([{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}])
    );

    let mut with_tools = req.clone();
    with_tools.tools = vec![Tool {
        name: "get_weather".into(),
        description: None,
        parameters: json!({"type": "object"}),
        strict: Some(true),
    }];
    let wire = ok(encode_messages_request(&with_tools, 1));
    assert_eq!(wire["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        wire["tools"],
        json!([{"name": "get_weather", "input_schema": {"type": "object"}}])
    );
    with_tools.tool_choice = Some(ToolChoice::None);
    with_tools.parallel_tool_calls = Some(false);
    assert_eq!(
        ok(encode_messages_request(&with_tools, 1))["tool_choice"],
        json!({"type": "none"})
    );
    with_tools.tool_choice = None;
    assert_eq!(
        ok(encode_messages_request(&with_tools, 1))["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn encode_refuses_what_anthropic_cannot_express() {
    let base = ChatRequest {
        model: "claude".into(),
        messages: vec![Message::text(Role::User, "hi")],
        ..ChatRequest::default()
    };
    let field = |req: &ChatRequest| {
        encode_messages_request(req, 100)
            .err()
            .map(|e| (e.field, e.message))
    };
    assert!(field(&base).is_none());

    let req = ChatRequest {
        n: Some(2),
        ..base.clone()
    };
    assert_eq!(field(&req).map(|f| f.0).as_deref(), Some("n"));
    let req = ChatRequest {
        response_format: Some(ResponseFormat::JsonObject),
        ..base.clone()
    };
    assert_eq!(field(&req).map(|f| f.0).as_deref(), Some("response_format"));
    let req = ChatRequest {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "x".into(),
            schema: json!({}),
            strict: None,
            description: None,
        }),
        ..base.clone()
    };
    let (f, msg) = field(&req).unwrap_or_default();
    assert_eq!(f, "response_format");
    assert!(msg.contains("json_schema"), "{msg}");
    let req = ChatRequest {
        temperature: Some(1.5),
        ..base.clone()
    };
    let (f, msg) = field(&req).unwrap_or_default();
    assert_eq!(f, "temperature");
    assert!(msg.contains("0–1"), "{msg}");

    let mut asst = Message::new(Role::Assistant, Vec::new());
    asst.tool_calls = vec![tool_call("c1", "f", "{}"), tool_call("c2", "f", "{\"a\":")];
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi"), asst.clone()],
        ..base.clone()
    };
    assert_eq!(
        field(&req).map(|f| f.0).as_deref(),
        Some("messages[1].tool_calls[1].function.arguments")
    );
    asst.tool_calls[1].arguments = "[1,2]".into();
    let req = ChatRequest {
        messages: vec![Message::text(Role::User, "hi"), asst],
        ..base.clone()
    };
    assert_eq!(
        field(&req).map(|f| f.0).as_deref(),
        Some("messages[1].tool_calls[1].function.arguments")
    );

    let req = ChatRequest {
        messages: vec![Message::text(Role::Tool, "orphan")],
        ..base.clone()
    };
    assert_eq!(
        field(&req).map(|f| f.0).as_deref(),
        Some("messages[0].tool_call_id")
    );
    let req = ChatRequest {
        messages: vec![Message::text(Role::System, "only system")],
        ..base.clone()
    };
    assert_eq!(field(&req).map(|f| f.0).as_deref(), Some("messages"));
    let img = ContentPart::Image(Image {
        source: ImageSource::Url("https://x/y.png".into()),
        detail: None,
    });
    let req = ChatRequest {
        messages: vec![
            Message::text(Role::User, "hi"),
            Message::new(Role::Assistant, vec![img]),
        ],
        ..base.clone()
    };
    assert_eq!(
        field(&req).map(|f| f.0).as_deref(),
        Some("messages[1].content")
    );
}

#[test]
fn count_tokens_helpers() {
    let req = ok(decode_count_tokens_request(&fixture(
        "messages_request_full.json",
    )));
    let wire = ok(encode_count_tokens_request(&req));
    let mut keys: Vec<&String> = wire
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        ["messages", "model", "system", "tool_choice", "tools"]
    );
    assert_eq!(
        encode_count_tokens_response(42),
        json!({"input_tokens": 42})
    );
    assert_eq!(
        ok(decode_count_tokens_response(br#"{"input_tokens": 2095}"#)),
        2095
    );
    assert!(decode_count_tokens_response(br#"{"tokens": 1}"#).is_err());
}

#[test]
fn estimate_is_a_sane_heuristic() {
    let one = |text: &str| ChatRequest {
        messages: vec![Message::text(Role::User, text)],
        ..ChatRequest::default()
    };
    // 4 framing + ceil(12 / 4)
    assert_eq!(estimate_input_tokens(&one("Hello world!")), 7);
    // 4 framing + 4 CJK characters
    assert_eq!(estimate_input_tokens(&one("你好世界")), 8);
    let long = estimate_input_tokens(&one(&"word ".repeat(400)));
    assert_eq!(long, 4 + 500);
    let full = ok(decode_count_tokens_request(&fixture(
        "messages_request_full.json",
    )));
    let est = estimate_input_tokens(&full);
    // Three images and two tools dominate.
    assert!(
        est > 3 * ESTIMATE_IMAGE_TOKENS + ESTIMATE_TOOLS_OVERHEAD,
        "{est}"
    );
    assert!(
        est < 3 * ESTIMATE_IMAGE_TOKENS + ESTIMATE_TOOLS_OVERHEAD + 600,
        "{est}"
    );
    let mut no_tools = full.clone();
    no_tools.tools.clear();
    assert!(estimate_input_tokens(&no_tools) + ESTIMATE_TOOLS_OVERHEAD < est);
}

#[test]
fn count_estimate_counts_every_block_type() {
    let est = |body: Value| {
        let bytes = body.to_string();
        let obj = RawObject::parse(bytes.as_bytes()).unwrap();
        estimate_count_tokens(&obj).unwrap()
    };
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "Hello world!"}]});
    assert_eq!(
        est(base.clone()),
        7,
        "the same heuristic as estimate_input_tokens"
    );
    let with = |block: Value| {
        let mut b = base.clone();
        b["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "user", "content": [block]}));
        est(b) - 7 - 4
    };
    assert_eq!(
        with(json!({"type": "image", "source": {"type": "url", "url": "https://x/y.png"}})),
        ESTIMATE_IMAGE_TOKENS
    );
    // A 100 KB PDF: about 15k tokens; a small one at least the floor.
    let pdf = "A".repeat(400_000 * 4 / 3);
    let big = with(
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}),
    );
    assert!((70_000..90_000).contains(&big), "{big}");
    assert_eq!(
        with(
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "QUJD"}})
        ),
        ESTIMATE_DOCUMENT_TOKENS
    );
    assert_eq!(
        with(
            json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "abcdefgh"}})
        ),
        2
    );
    assert_eq!(
        with(json!({"type": "thinking", "thinking": "abcdabcd", "signature": "sig"})),
        2
    );
    assert_eq!(
        with(
            json!({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "abcd"}, {"type": "image", "source": {}}]})
        ),
        4 + 1 + ESTIMATE_IMAGE_TOKENS
    );
    assert!(
        with(
            json!({"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls -la"}})
        ) > 4
    );
    // A block type nobody knows yet counts by its JSON, never a 400 or 0.
    assert!(with(json!({"type": "future_block", "payload": "x".repeat(400)})) >= 100);
    // A system message inside messages (Claude Code) and top-level system.
    let mut b = base.clone();
    b["system"] = json!([{"type": "text", "text": "abcdabcd"}]);
    b["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "system", "content": "abcd"}));
    assert_eq!(est(b), 7 + (4 + 2) + (4 + 1));
    let mut b = base.clone();
    b["tools"] = json!([{"name": "t", "input_schema": {"type": "object"}}]);
    assert!(est(b) > 7 + ESTIMATE_TOOLS_OVERHEAD);
}

// ---- responses ----

#[test]
fn response_decodes_and_round_trips() {
    let resp = ok(decode_messages_response(&fixture(
        "messages_response_tool_use.json",
    )));
    assert_eq!(resp.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(resp.model, "claude-sonnet-4-20250514");
    let c = &resp.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        c.message.text_content(),
        "I'll look up the weather and the time."
    );
    assert_eq!(
        c.message.reasoning.as_deref(),
        Some("Two lookups are needed.")
    );
    assert_eq!(c.message.tool_calls.len(), 2);
    assert_eq!(
        c.message.tool_calls[0],
        tool_call(
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            r#"{"city":"Paris","unit":"celsius"}"#
        )
    );
    let u = resp.usage.unwrap_or_default();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
        (1520, 96, Some(1500))
    );

    let out = encode_messages_response(&resp, &resp.model, ReasoningOutput::Separate);
    assert_eq!(out["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["model"], "claude-sonnet-4-20250514");
    assert_eq!(out["stop_reason"], "tool_use");
    assert!(out["stop_sequence"].is_null());
    assert_eq!(
        out["content"][0],
        json!({"type": "thinking", "thinking": "Two lookups are needed.", "signature": ""})
    );
    assert_eq!(out["content"][1]["type"], "text");
    assert_eq!(
        out["content"][2]["input"],
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(out["content"][3]["name"], "get_time");
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 20, "cache_read_input_tokens": 1500, "output_tokens": 96})
    );
    let again = ok(decode_messages_response(out.to_string().as_bytes()));
    assert_eq!(again, resp);

    let inline = encode_messages_response(&resp, "m", ReasoningOutput::Inline);
    assert_eq!(
        inline["content"][0]["text"],
        "<think>Two lookups are needed.</think>\n\nI'll look up the weather and the time."
    );
    let dropped = encode_messages_response(&resp, "m", ReasoningOutput::Drop);
    assert_eq!(dropped["content"][0]["type"], "text");
    assert_eq!(dropped["content"].as_array().map(Vec::len), Some(3));
}

#[test]
fn openai_response_as_anthropic() {
    let resp = ok(openai::decode_chat_response(&openai_fixture(
        "chat_response_tool_calls.json",
    )));
    let out = encode_messages_response(&resp, "claude-via-gateway", ReasoningOutput::Separate);
    assert_eq!(out["id"], "msg_chatcmpl-9xYz");
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(out["content"][0]["type"], "tool_use");
    assert_eq!(
        out["content"][0]["id"],
        resp.choices[0].message.tool_calls[0].id
    );
    assert_eq!(out["content"][0]["input"], json!({"city": "Paris"}));
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 18, "cache_read_input_tokens": 64, "output_tokens": 40})
    );
    let back = ok(decode_messages_response(out.to_string().as_bytes()));
    // Anthropic reports no reasoning-token split; the rest survives.
    let strip =
        |u: Option<Usage>| u.map(|u| (u.prompt_tokens, u.completion_tokens, u.cached_tokens));
    assert_eq!(strip(back.usage), strip(resp.usage));
    assert_eq!(back.choices[0].message.tool_calls.len(), 2);
    for (a, b) in back.choices[0]
        .message
        .tool_calls
        .iter()
        .zip(&resp.choices[0].message.tool_calls)
    {
        assert_eq!((&a.id, &a.name), (&b.id, &b.name));
        assert_eq!(json_of(&a.arguments), json_of(&b.arguments));
    }
    // And the Anthropic fixture as an OpenAI answer.
    let resp = ok(decode_messages_response(&fixture(
        "messages_response_tool_use.json",
    )));
    let oai = openai::encode_chat_response(&resp, ReasoningOutput::Separate);
    assert_eq!(oai["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        oai["choices"][0]["message"]["reasoning_content"],
        "Two lookups are needed."
    );
    assert_eq!(oai["usage"]["prompt_tokens"], 1520);
    assert_eq!(oai["usage"]["prompt_tokens_details"]["cached_tokens"], 1500);
}

#[test]
fn stop_reasons_map_both_ways() {
    for (wire, ir) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("pause_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("model_context_window_exceeded", FinishReason::Length),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
        ("brand_new", FinishReason::Other("brand_new".into())),
    ] {
        assert_eq!(finish_reason_from_stop_reason(wire), ir);
    }
    for (ir, tools, wire) in [
        (Some(FinishReason::Stop), false, "end_turn"),
        (Some(FinishReason::Length), false, "max_tokens"),
        (Some(FinishReason::ToolCalls), true, "tool_use"),
        (Some(FinishReason::ContentFilter), false, "refusal"),
        (Some(FinishReason::Other("eos".into())), false, "end_turn"),
        (None, false, "end_turn"),
        // Hosts that say `stop` after tool calls still get their tools run.
        (Some(FinishReason::Stop), true, "tool_use"),
        (None, true, "tool_use"),
        (Some(FinishReason::Length), true, "max_tokens"),
    ] {
        assert_eq!(stop_reason_for(ir.as_ref(), tools), wire, "{ir:?} {tools}");
    }
}

#[test]
fn unusual_tool_arguments_and_ids() {
    assert_eq!(tool_input(""), json!({}));
    assert_eq!(tool_input("  "), json!({}));
    assert_eq!(tool_input(r#"{"a":1}"#), json!({"a": 1}));
    assert_eq!(tool_input(r#"{"a":"#), json!({"_raw": "{\"a\":"}));
    assert_eq!(tool_input("[1]"), json!({"_raw": "[1]"}));
    assert_eq!(message_id("msg_abc"), "msg_abc");
    assert_eq!(message_id("chatcmpl-1"), "msg_chatcmpl-1");
    assert_eq!(sanitize_tool_id("call_ok-1"), "call_ok-1");
    assert_eq!(sanitize_tool_id("functions.f:0"), "functions_f_0");
    let resp = ChatResponse {
        id: "x".into(),
        model: "m".into(),
        created: 0,
        choices: vec![],
        usage: None,
        system_fingerprint: None,
    };
    let out = encode_messages_response(&resp, "m", ReasoningOutput::Separate);
    assert_eq!(out["content"], json!([]));
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(out["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
    let err = decode_messages_response(
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert!(err
        .err()
        .map(|e| e.message)
        .unwrap_or_default()
        .contains("Overloaded"));
}

#[test]
fn error_shapes() {
    assert_eq!(
        error_body("invalid_request_error", "max_tokens: required"),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: required"}})
    );
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        assert_eq!(error_type_for_status(status), kind, "{status}");
        assert!(ERROR_TYPES.contains(&kind));
    }
    let body = br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"},"request_id":"req_1"}"#;
    assert_eq!(
        upstream_error_message(body).as_deref(),
        Some("model: claude-x")
    );
    assert_eq!(
        upstream_error_type(body).as_deref(),
        Some("not_found_error")
    );
    assert_eq!(upstream_error_message(b"<html>"), None);
    assert_eq!(upstream_error_type(br#"{"error":"x"}"#), None);
}

// ---- streams: decoding ----

fn tool_stream_expectation() -> Collected {
    (
        "Let me check both.".into(),
        String::new(),
        vec![
            (
                "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                "get_weather".into(),
                r#"{"city": "San Francisco, CA", "unit": "fahrenheit"}"#.into(),
            ),
            (
                "toolu_01Yb8rHq2mNfVp5wKc3dLx7A".into(),
                "get_time".into(),
                r#"{"tz": "America/Los_Angeles"}"#.into(),
            ),
        ],
        Some(FinishReason::ToolCalls),
        Some(Usage {
            prompt_tokens: 600,
            completion_tokens: 89,
            cached_tokens: Some(128),
            reasoning_tokens: None,
        }),
    )
}

#[test]
fn tool_use_stream_decodes() {
    let evs = decode_stream(&fixture("stream_tool_use.sse"), usize::MAX);
    assert_eq!(collect(&evs), tool_stream_expectation());
    assert_eq!(evs.last(), Some(&StreamEvent::Done));
    let StreamEvent::Chunk(first) = &evs[0] else {
        panic!("first event {:?}", evs[0]);
    };
    assert_eq!(first.id.as_deref(), Some("msg_014p7gG3wDgGV9EUtLvnow3U"));
    assert_eq!(first.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert_eq!(first.choices[0].role, Some(Role::Assistant));
    assert_eq!(first.usage.map(|u| u.prompt_tokens), Some(600));
    // Tool calls count from 0 although they are content blocks 1 and 2.
    let starts: Vec<(u32, Option<String>)> = evs
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Chunk(c) => c.choices[0]
                .tool_calls
                .first()
                .map(|t| (t.index, t.name.clone())),
            _ => None,
        })
        .filter(|(_, n)| n.is_some())
        .collect();
    assert_eq!(
        starts,
        vec![
            (0, Some("get_weather".into())),
            (1, Some("get_time".into()))
        ]
    );
    let mut d = StreamDecoder::new();
    let _ = ok(d.feed(&fixture("stream_tool_use.sse")));
    assert!(d.is_done());
}

#[test]
fn any_split_decodes_the_same() {
    for name in [
        "stream_tool_use.sse",
        "stream_thinking.sse",
        "stream_error_midway.sse",
    ] {
        let bytes = fixture(name);
        let whole = decode_stream(&bytes, usize::MAX);
        for size in (1..=40).chain([64, 97, 256, 1000]) {
            assert_eq!(
                decode_stream(&bytes, size),
                whole,
                "{name} in pieces of {size}"
            );
        }
        for at in 0..=bytes.len() {
            let mut d = StreamDecoder::new();
            let mut evs = ok(d.feed(&bytes[..at]));
            evs.extend(ok(d.feed(&bytes[at..])));
            evs.extend(ok(d.finish()));
            assert_eq!(evs, whole, "{name} split at byte {at}");
        }
    }
}

#[test]
fn data_only_and_crlf_streams_decode_the_same() {
    let bytes = fixture("stream_tool_use.sse");
    let text = String::from_utf8_lossy(&bytes);
    let data_only: String = text
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let crlf = text.replace('\n', "\r\n");
    let whole = decode_stream(&bytes, usize::MAX);
    assert_eq!(decode_stream(data_only.as_bytes(), 7), whole);
    assert_eq!(decode_stream(crlf.as_bytes(), 5), whole);
    // An event whose JSON lacks `type` is named by its `event:` line.
    let evs = decode_stream(b"event: message_stop\ndata: {}\n\n", 3);
    assert_eq!(evs, vec![StreamEvent::Done]);
    // Unknown events are skipped; garbage is an error.
    assert!(decode_stream(b"event: future\ndata: {\"type\":\"future\"}\n\n", 100).is_empty());
    assert!(StreamDecoder::new().feed(b"data: {nope\n\n").is_err());
}

#[test]
fn error_midway_is_an_event() {
    let evs = decode_stream(&fixture("stream_error_midway.sse"), 9);
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert!(
        matches!(&evs[1], StreamEvent::Chunk(c) if c.choices[0].content.as_deref() == Some("Partial"))
    );
    assert_eq!(
        evs[2],
        StreamEvent::Error(StreamError {
            message: "Overloaded".into(),
            kind: "overloaded_error".into()
        })
    );
}

#[test]
fn thinking_stream_decodes() {
    let evs = decode_stream(&fixture("stream_thinking.sse"), 11);
    let (content, reasoning, calls, finish, usage) = collect(&evs);
    assert_eq!(content, "27 × 453 = 12,231.");
    assert_eq!(
        reasoning,
        "27 * 453: 27 * 400 = 10800, 27 * 53 = 1431, total 12231."
    );
    assert!(calls.is_empty());
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(
        usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((36, 64))
    );
}

// ---- streams: encoding and cross-format ----

#[test]
fn openai_stream_through_the_anthropic_encoder() {
    // Text, then two tool calls whose fragments interleave.
    let oai = decode_openai_stream(&openai_fixture("stream_tool_calls.sse"));
    for start_first in [true, false] {
        let bytes = encode_anthropic(&oai, ReasoningOutput::Separate, start_first);
        let checked = check_sequence(&bytes);
        let kinds: Vec<&str> = checked.blocks.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(kinds, ["text", "tool_use", "tool_use"]);
        assert_eq!(checked.blocks[0].1, "Let me check. ");
        assert_eq!(checked.blocks[1].2["id"], "call_w");
        assert_eq!(checked.blocks[1].2["name"], "get_weather");
        assert_eq!(json_of(&checked.blocks[1].1), json!({"city": "Paris"}));
        assert_eq!(checked.blocks[2].2["id"], "call_t");
        assert_eq!(json_of(&checked.blocks[2].1), json!({"tz": "CET"}));
        assert_eq!(checked.stop_reason, "tool_use");
        assert_eq!(
            checked.usage,
            json!({"input_tokens": 50, "output_tokens": 30})
        );
        assert_eq!(checked.message["id"], "msg_gw-1");
        assert_eq!(checked.message["model"], "claude-client-name");
        assert!(checked.pings >= 1);

        for split in [1, 3, 50, usize::MAX] {
            let back = collect(&decode_stream(&bytes, split));
            let (content, reasoning, calls, finish, usage) = collect(&oai);
            assert_eq!(back.0, content);
            assert_eq!(back.1, reasoning);
            assert_eq!(back.2.len(), calls.len());
            for (a, b) in back.2.iter().zip(&calls) {
                assert_eq!((&a.0, &a.1), (&b.0, &b.1));
                assert_eq!(json_of(&a.2), json_of(&b.2));
            }
            assert_eq!(back.3, finish);
            assert_eq!(back.4, usage);
        }
    }
}

#[test]
fn openai_usage_after_finish_and_think_tags_reach_the_anthropic_client() {
    // Usage arrives in a chunk after the finish chunk.
    let oai = decode_openai_stream(&openai_fixture("stream_text_usage.sse"));
    let bytes = encode_anthropic(&oai, ReasoningOutput::Separate, true);
    let checked = check_sequence(&bytes);
    assert_eq!(checked.blocks.len(), 1);
    assert_eq!(checked.blocks[0].1, "Hello!");
    assert_eq!(checked.stop_reason, "end_turn");
    assert_eq!(
        checked.usage,
        json!({"input_tokens": 9, "cache_read_input_tokens": 0, "output_tokens": 3})
    );
    assert_eq!(collect(&decode_stream(&bytes, 4)), collect(&oai));

    // Inline <think> from the host becomes a thinking block, then text.
    let oai = decode_openai_stream(&openai_fixture("stream_think.sse"));
    let checked = check_sequence(&encode_anthropic(&oai, ReasoningOutput::Separate, false));
    let kinds: Vec<(&str, &str)> = checked
        .blocks
        .iter()
        .map(|b| (b.0.as_str(), b.1.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("thinking", "pondering more"), ("text", "Answer here.")]
    );
    let checked = check_sequence(&encode_anthropic(&oai, ReasoningOutput::Inline, false));
    let kinds: Vec<(&str, &str)> = checked
        .blocks
        .iter()
        .map(|b| (b.0.as_str(), b.1.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("text", "<think>pondering more</think>\n\nAnswer here.")]
    );
    let checked = check_sequence(&encode_anthropic(&oai, ReasoningOutput::Drop, false));
    let kinds: Vec<(&str, &str)> = checked
        .blocks
        .iter()
        .map(|b| (b.0.as_str(), b.1.as_str()))
        .collect();
    assert_eq!(kinds, [("text", "Answer here.")]);
}

#[test]
fn anthropic_stream_through_the_openai_encoder() {
    for name in ["stream_tool_use.sse", "stream_thinking.sse"] {
        let evs = decode_stream(&fixture(name), 13);
        let mut enc = ChunkEncoder::new(
            "chatcmpl-gw".into(),
            1,
            "gpt-alias".into(),
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
        let back = decode_openai_stream(&out);
        assert_eq!(collect(&back), collect(&evs), "{name}");
        assert_eq!(back.last(), Some(&StreamEvent::Done));
    }
    assert_eq!(
        collect(&decode_stream(&fixture("stream_tool_use.sse"), 1)),
        tool_stream_expectation()
    );
}

#[test]
fn anthropic_stream_round_trips_through_the_encoder() {
    for name in ["stream_tool_use.sse", "stream_thinking.sse"] {
        let evs = decode_stream(&fixture(name), usize::MAX);
        let bytes = encode_anthropic(&evs, ReasoningOutput::Separate, true);
        let checked = check_sequence(&bytes);
        let again = decode_stream(&bytes, 17);
        assert_eq!(collect(&again), collect(&evs), "{name}");
        if name == "stream_thinking.sse" {
            assert_eq!(checked.blocks[0].0, "thinking");
            assert_eq!(checked.blocks[0].2["signature"], "");
            assert_eq!(checked.stop_reason, "end_turn");
        } else {
            assert_eq!(
                checked.usage,
                json!({"input_tokens": 472, "cache_read_input_tokens": 128, "output_tokens": 89})
            );
        }
    }
}

fn chunk(delta: ChoiceDelta) -> ChatChunk {
    ChatChunk {
        choices: vec![delta],
        ..ChatChunk::default()
    }
}

fn tool_frag(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
    chunk(ChoiceDelta {
        tool_calls: vec![ToolCallDelta {
            index,
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            arguments: args.into(),
        }],
        ..ChoiceDelta::default()
    })
}

fn text_chunk(t: &str) -> ChatChunk {
    chunk(ChoiceDelta {
        content: Some(t.into()),
        ..ChoiceDelta::default()
    })
}

#[test]
fn encoder_start_finish_and_error_are_well_formed() {
    let mut enc = StreamEncoder::new("msg_x".into(), "m".into(), ReasoningOutput::Separate);
    let start = String::from_utf8_lossy(&enc.start()).to_string();
    assert!(start.starts_with("event: message_start\ndata: "), "{start}");
    assert!(
        start.ends_with("event: ping\ndata: {\"type\":\"ping\"}\n\n"),
        "{start}"
    );
    assert!(enc.start().is_empty(), "start is idempotent");
    assert_eq!(enc.id(), "msg_x");
    let mut all = start.into_bytes();
    let first = enc.encode(&text_chunk("Hi")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&first).contains("message_start"));
    all.extend_from_slice(&first);
    assert!(enc.encode(&text_chunk("")).is_none(), "nothing to send");
    all.extend_from_slice(&StreamEncoder::ping());
    all.extend_from_slice(&enc.finish());
    assert!(enc.finish().is_empty(), "finish is idempotent");
    assert!(enc.encode(&text_chunk("late")).is_none());
    let checked = check_sequence(&all);
    assert_eq!(checked.blocks[0].1, "Hi");
    assert_eq!(checked.pings, 2);
    assert_eq!(checked.usage, json!({"output_tokens": 0}));

    // No content at all is still a complete message.
    let mut enc = StreamEncoder::new("e".into(), "m".into(), ReasoningOutput::Separate);
    let checked = check_sequence(&enc.finish());
    assert!(checked.blocks.is_empty());
    assert_eq!(checked.stop_reason, "end_turn");

    // Errors: Anthropic's shape; foreign kinds become api_error.
    let mut enc = StreamEncoder::new("e".into(), "m".into(), ReasoningOutput::Separate);
    let _ = enc.encode(&text_chunk("Part"));
    let err = enc.error(&StreamError {
        message: "upstream died".into(),
        kind: "server_error".into(),
    });
    assert_eq!(
        String::from_utf8_lossy(&err),
        "event: error\ndata: {\"error\":{\"message\":\"upstream died\",\"type\":\"api_error\"},\"type\":\"error\"}\n\n"
    );
    assert!(enc.finish().is_empty(), "an error ends the stream");
    let mut enc = StreamEncoder::new("e".into(), "m".into(), ReasoningOutput::Separate);
    let err = enc.error(&StreamError {
        message: "slow down".into(),
        kind: "overloaded_error".into(),
    });
    let evs = decode_stream(&err, 3);
    assert_eq!(
        evs,
        vec![StreamEvent::Error(StreamError {
            message: "slow down".into(),
            kind: "overloaded_error".into()
        })]
    );
}

#[test]
fn encoder_serialises_interleaved_and_late_tool_calls() {
    let mut enc = StreamEncoder::new("chatcmpl-9".into(), "m".into(), ReasoningOutput::Separate);
    let mut out = Vec::new();
    let mut push = |b: Option<Bytes>| out.extend_from_slice(&b.unwrap_or_default());
    // Usage on the very first chunk reaches message_start.
    push(enc.encode(&ChatChunk {
        usage: Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 0,
            cached_tokens: None,
            reasoning_tokens: None,
        }),
        ..text_chunk("Checking")
    }));
    push(enc.encode(&tool_frag(0, Some("call_a"), Some("alpha"), "{\"x\":")));
    // Call 1 starts (no id from this host) while call 0 is incomplete.
    push(enc.encode(&tool_frag(1, None, Some("beta"), "{\"y\"")));
    push(enc.encode(&tool_frag(1, None, None, ": 2}")));
    push(enc.encode(&tool_frag(0, None, None, " 1}")));
    // Call 2's name arrives after a nameless first fragment.
    push(enc.encode(&tool_frag(2, Some("call_c"), None, "")));
    push(enc.encode(&tool_frag(2, None, Some("gamma"), "{}")));
    push(enc.encode(&chunk(ChoiceDelta {
        finish_reason: Some(FinishReason::Stop),
        ..ChoiceDelta::default()
    })));
    push(enc.encode(&ChatChunk {
        usage: Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 7,
            cached_tokens: None,
            reasoning_tokens: None,
        }),
        ..ChatChunk::default()
    }));
    out.extend_from_slice(&enc.finish());
    let checked = check_sequence(&out);
    assert_eq!(checked.message["id"], "msg_chatcmpl-9");
    assert_eq!(checked.message["usage"]["input_tokens"], 11);
    let blocks: Vec<(String, String, String)> = checked
        .blocks
        .iter()
        .map(|(k, acc, b)| {
            (
                k.clone(),
                b["name"].as_str().unwrap_or("").to_string(),
                acc.clone(),
            )
        })
        .collect();
    assert_eq!(
        blocks,
        vec![
            ("text".into(), "".into(), "Checking".into()),
            ("tool_use".into(), "alpha".into(), "{\"x\": 1}".into()),
            ("tool_use".into(), "beta".into(), "{\"y\": 2}".into()),
            ("tool_use".into(), "gamma".into(), "{}".into()),
        ]
    );
    assert_eq!(checked.blocks[1].2["id"], "call_a");
    assert_eq!(checked.blocks[2].2["id"], "toolu_chatcmpl-9_1");
    assert_eq!(checked.blocks[3].2["id"], "call_c");
    // `stop` after tool calls is reported as tool_use.
    assert_eq!(checked.stop_reason, "tool_use");
    assert_eq!(
        checked.usage,
        json!({"input_tokens": 11, "output_tokens": 7})
    );
}

#[test]
fn encoder_handles_text_after_tools_and_inline_reasoning() {
    let mut enc = StreamEncoder::new("a".into(), "m".into(), ReasoningOutput::Inline);
    let mut out = Vec::new();
    let reasoning = chunk(ChoiceDelta {
        reasoning: Some("plan".into()),
        ..ChoiceDelta::default()
    });
    out.extend_from_slice(&enc.encode(&reasoning).unwrap_or_default());
    out.extend_from_slice(
        &enc.encode(&tool_frag(0, Some("t0"), Some("f"), "{\"a\":1}"))
            .unwrap_or_default(),
    );
    out.extend_from_slice(&enc.encode(&text_chunk("after")).unwrap_or_default());
    out.extend_from_slice(
        &enc.encode(&chunk(ChoiceDelta {
            finish_reason: Some(FinishReason::Length),
            ..ChoiceDelta::default()
        }))
        .unwrap_or_default(),
    );
    out.extend_from_slice(&enc.finish());
    let checked = check_sequence(&out);
    let blocks: Vec<(&str, &str)> = checked
        .blocks
        .iter()
        .map(|b| (b.0.as_str(), b.1.as_str()))
        .collect();
    assert_eq!(
        blocks,
        [
            ("text", "<think>plan</think>\n\n"),
            ("tool_use", "{\"a\":1}"),
            ("text", "after")
        ]
    );
    assert_eq!(checked.stop_reason, "max_tokens");

    // Reasoning that never closes is closed at the end.
    let mut enc = StreamEncoder::new("b".into(), "m".into(), ReasoningOutput::Inline);
    let mut out = enc.encode(&reasoning).unwrap_or_default().to_vec();
    out.extend_from_slice(&enc.finish());
    let checked = check_sequence(&out);
    assert_eq!(checked.blocks[0].1, "<think>plan</think>\n\n");
}

#[test]
fn huge_usage_counts_saturate() {
    let u = WireUsage {
        input_tokens: Some(u64::MAX),
        output_tokens: Some(u64::MAX),
        cache_creation_input_tokens: Some(1),
        cache_read_input_tokens: Some(1),
    };
    let usage = usage_from_wire(&u);
    assert_eq!(usage.prompt_tokens, u64::MAX);
    assert_eq!(usage.total_tokens(), u64::MAX);
}

#[test]
fn text_and_thinking_deltas_are_exact_json() {
    let mut enc = StreamEncoder::new("msg_x".into(), "m".into(), ReasoningOutput::Separate);
    enc.start();
    let out = enc
        .encode(&chunk(ChoiceDelta {
            reasoning: Some("hm \"ok\"".into()),
            ..ChoiceDelta::default()
        }))
        .unwrap_or_default();
    let out2 = enc.encode(&text_chunk("a\nb é \u{1}")).unwrap_or_default();
    let mut p = SseParser::new();
    let mut evs = p.feed(&out).unwrap_or_else(|e| panic!("{e:?}"));
    evs.extend(p.feed(&out2).unwrap_or_else(|e| panic!("{e:?}")));
    let deltas: Vec<Value> = evs
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .map(|e| serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {}", e.data)))
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "thinking_delta", "thinking": "hm \"ok\""}}),
            json!({"type": "content_block_delta", "index": 1,
                   "delta": {"type": "text_delta", "text": "a\nb é \u{1}"}}),
        ]
    );
}

/// Claude Code puts reminders in `system` messages between turns; they stay
/// system messages, in place, for an OpenAI or Ollama upstream.
#[test]
fn mid_conversation_system_messages_stay_in_place() {
    let body = br#"{"model":"m","max_tokens":100,"system":"You are Claude Code.",
        "messages":[
            {"role":"user","content":"Hello"},
            {"role":"system","content":[{"type":"text","text":"remember"},{"type":"text","text":"be brief"}]},
            {"role":"user","content":"Again"}]}"#;
    let req = decode_messages_request(body).unwrap_or_else(|e| panic!("{e}"));
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::System, Role::User]);
    assert_eq!(req.messages[2].text_content(), "remember\n\nbe brief");
    let oa = openai::encode_chat_request(&req, openai::RequestOptions::default());
    let oa_roles: Vec<&str> = oa["messages"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(oa_roles, ["system", "user", "system", "user"]);
    assert_eq!(oa["messages"][2]["content"], "remember\n\nbe brief");
    let ol = crate::ollama::encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    let ol_roles: Vec<&str> = ol["messages"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["role"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ol_roles, ["system", "user", "system", "user"]);
    // Back to Anthropic (a translating route), every system text goes to
    // the top-level `system`, as documented.
    let an = encode_messages_request(&req, 4096).unwrap_or_else(|e| panic!("{e}"));
    assert!(an["messages"]
        .as_array()
        .is_some_and(|a| a.iter().all(|m| m["role"] != "system")));
}
