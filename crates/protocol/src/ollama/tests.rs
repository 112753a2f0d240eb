use super::stream::{ChatStreamEncoder, NdjsonDecoder};
use super::*;
use crate::openai;
use crate::sse::SseParser;
use crate::test_support::{self, collect, decode_in_pieces};

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("ollama", name)
}

fn openai_fixture(name: &str) -> Vec<u8> {
    test_support::fixture("openai", name)
}

fn chat(body: &str) -> ChatRequest {
    decode_chat_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn decode_ndjson(bytes: &[u8], split: usize) -> Vec<StreamEvent> {
    decode_in_pieces(NdjsonDecoder::new(), bytes, split)
}

fn decode_sse(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_in_pieces(openai::stream::ChunkDecoder::new(), bytes, bytes.len())
}

/// Splits NDJSON output into parsed lines, checking each ends with `\n`.
fn lines(bytes: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.ends_with('\n'),
        "NDJSON must end with a newline: {text}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn encode_all(enc: &mut ChatStreamEncoder, events: &[StreamEvent], timings: Timings) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        if let StreamEvent::Chunk(c) = ev {
            if let Some(b) = enc.encode(c) {
                out.extend_from_slice(&b);
            }
        }
    }
    out.extend_from_slice(&enc.finish(timings, "2025-01-01T00:00:01Z".into()));
    out
}

// ---------------------------------------------------------------------------
// Time and images
// ---------------------------------------------------------------------------

#[test]
fn rfc3339_known_timestamps() {
    assert_eq!(rfc3339_from_unix_nanos(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339_from_unix_nanos(1_700_000_000_500_000_000),
        "2023-11-14T22:13:20.5Z"
    );
    assert_eq!(
        rfc3339_from_unix_nanos(1_721_680_408_123_456_789),
        "2024-07-22T20:33:28.123456789Z"
    );
    assert_eq!(
        rfc3339_from_unix_nanos(951_782_400 * 1_000_000_000),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339_from_unix_nanos(4_107_542_400 * 1_000_000_000 + 1),
        "2100-03-01T00:00:00.000000001Z"
    );
    assert_eq!(
        rfc3339_from_unix_nanos(86_399 * 1_000_000_000 + 10_000_000),
        "1970-01-01T23:59:59.01Z"
    );
}

#[test]
fn rfc3339_parses_back() {
    assert_eq!(unix_secs_from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        unix_secs_from_rfc3339("2024-07-22T20:33:28.123456789Z"),
        Some(1_721_680_408)
    );
    assert_eq!(
        unix_secs_from_rfc3339("2023-08-04T08:52:19.385406455-07:00"),
        Some(1_691_164_339)
    );
    assert_eq!(
        unix_secs_from_rfc3339("2000-02-29T01:00:00+01:00"),
        Some(951_782_400)
    );
    for bad in [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-07-22T20:33:28",
        "1969-12-31T23:59:59Z",
    ] {
        assert_eq!(unix_secs_from_rfc3339(bad), None, "{bad}");
    }
    // Every day for ~300 years survives the round trip.
    for day in (0..110_000u128).step_by(7) {
        let nanos = day * 86_400_000_000_000 + 3_723_000_000_000;
        let text = rfc3339_from_unix_nanos(nanos);
        assert_eq!(
            unix_secs_from_rfc3339(&text).map(u128::from),
            Some(nanos / 1_000_000_000),
            "{text}"
        );
    }
}

#[test]
fn image_media_types_are_sniffed() {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    assert_eq!(sniff_image_media_type(png), "image/png");
    assert_eq!(sniff_image_media_type("/9j/4AAQSkZJRgABAQ"), "image/jpeg");
    assert_eq!(sniff_image_media_type("_9j_4AAQSkZJRgABAQ"), "image/jpeg");
    assert_eq!(sniff_image_media_type("R0lGODlhAQABAIAAAA"), "image/gif");
    assert_eq!(
        sniff_image_media_type("UklGRhoAAABXRUJQVlA4TA0AAAAv"),
        "image/webp"
    );
    // Line breaks inside the base64 do not matter.
    assert_eq!(sniff_image_media_type("/9j/\n4AAQ"), "image/jpeg");
    // Unknown or junk: PNG, the most common.
    assert_eq!(sniff_image_media_type("AAAAAAAA"), "image/png");
    assert_eq!(sniff_image_media_type(""), "image/png");
    assert_eq!(sniff_image_media_type("!!!"), "image/png");
    assert_eq!(sniff_image_media_type("UklGRg=="), "image/png");
}

// ---------------------------------------------------------------------------
// Requests, client side
// ---------------------------------------------------------------------------

#[test]
fn full_chat_request_decodes_every_field() {
    let req =
        decode_chat_request(&fixture("chat_request_full.json")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.model, "llama3.2-vision:11b");
    assert_eq!(req.messages.len(), 7);
    assert_eq!(req.messages[0].role, Role::System);
    assert_eq!(
        req.messages[0].text_content(),
        "You are a helpful travel assistant."
    );

    // Images first (as Ollama places them), then the text.
    let user = &req.messages[1];
    assert_eq!(user.role, Role::User);
    assert_eq!(user.content.len(), 3);
    match (&user.content[0], &user.content[1], &user.content[2]) {
        (ContentPart::Image(a), ContentPart::Image(b), ContentPart::Text(t)) => {
            assert!(
                matches!(&a.source, ImageSource::Base64 { media_type, data } if media_type == "image/png" && data.starts_with("iVBORw0KGgo"))
            );
            assert!(
                matches!(&b.source, ImageSource::Base64 { media_type, data } if media_type == "image/jpeg" && data.starts_with("/9j/"))
            );
            assert!(t.starts_with("What is in these pictures"));
        }
        other => panic!("unexpected parts {other:?}"),
    }

    let asst = &req.messages[2];
    assert_eq!(asst.role, Role::Assistant);
    assert!(asst.content.is_empty());
    assert_eq!(
        asst.reasoning.as_deref(),
        Some("The first photo shows the Eiffel Tower, so Paris. I need the weather and the local time.")
    );
    assert_eq!(asst.tool_calls.len(), 2);
    assert_eq!(asst.tool_calls[0].id, "call_2_0");
    assert_eq!(asst.tool_calls[0].name, "get_current_weather");
    let args: Value = serde_json::from_str(&asst.tool_calls[0].arguments).unwrap_or_default();
    assert_eq!(args, json!({"location": "Paris, FR", "format": "celsius"}));
    assert_eq!(asst.tool_calls[1].id, "call_2_1");
    assert_eq!(
        asst.tool_calls[1].arguments,
        r#"{"timezone":"Europe/Paris"}"#
    );

    // Results come back in the other order; matched by name.
    assert_eq!(req.messages[3].role, Role::Tool);
    assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("call_2_1"));
    assert_eq!(req.messages[3].text_content(), "14:05");
    assert_eq!(req.messages[4].tool_call_id.as_deref(), Some("call_2_0"));
    assert_eq!(req.messages[5].role, Role::Assistant);
    assert!(req.messages[5].tool_calls.is_empty());

    assert_eq!(req.tools.len(), 2);
    assert_eq!(req.tools[0].name, "get_current_weather");
    assert_eq!(
        req.tools[0].description.as_deref(),
        Some("Get the current weather for a location")
    );
    assert_eq!(req.tools[0].parameters["required"][1], "format");
    assert_eq!(req.tools[1].description, None);
    assert_eq!(req.tool_choice, None);

    match &req.response_format {
        Some(ResponseFormat::JsonSchema { name, schema, .. }) => {
            assert_eq!(name, "response");
            assert_eq!(schema["properties"]["temperature"]["type"], "integer");
        }
        other => panic!("format: {other:?}"),
    }
    assert_eq!(req.temperature, Some(0.2));
    assert_eq!(req.top_p, Some(0.9));
    assert_eq!(req.top_k, Some(40));
    assert_eq!(req.max_tokens, Some(256));
    assert_eq!(
        req.stop,
        vec!["<|eot_id|>".to_string(), "\n\nUser:".to_string()]
    );
    assert_eq!(req.seed, Some(42));
    assert!(req.stream, "stream defaults to true");
    assert!(req.include_usage);
    assert_eq!(req.reasoning_output, ReasoningOutput::Separate);
    // The original options, keep_alive and think are kept verbatim.
    assert_eq!(req.extra["options"]["num_ctx"], 8192);
    assert_eq!(req.extra["options"]["repeat_penalty"], 1.1);
    assert_eq!(req.extra["options"]["temperature"], 0.2);
    assert_eq!(req.extra["keep_alive"], "10m");
    assert_eq!(req.extra["think"], true);
    for mapped in ["model", "messages", "tools", "format", "stream"] {
        assert!(
            !req.extra.contains_key(mapped),
            "{mapped} leaked into extra"
        );
    }
}

#[test]
fn stream_defaults_to_true() {
    let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
    assert!(chat(&format!("{{{base}}}")).stream);
    assert!(chat(&format!("{{{base},\"stream\":null}}")).stream);
    assert!(chat(&format!("{{{base},\"stream\":true}}")).stream);
    let off = chat(&format!("{{{base},\"stream\":false}}"));
    assert!(!off.stream);
    assert!(!off.include_usage);
}

#[test]
fn think_and_format_variants() {
    let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
    let req = |extra: &str| chat(&format!("{{{base},{extra}}}"));
    assert_eq!(
        req(r#""think":false"#).reasoning_output,
        ReasoningOutput::Drop
    );
    assert_eq!(
        req(r#""think":true"#).reasoning_output,
        ReasoningOutput::Separate
    );
    assert_eq!(
        req(r#""think":"high""#).reasoning_output,
        ReasoningOutput::Separate
    );
    assert_eq!(req(r#""think":"high""#).extra["think"], "high");
    assert_eq!(
        req(r#""format":"json""#).response_format,
        Some(ResponseFormat::JsonObject)
    );
    assert_eq!(req(r#""format":"""#).response_format, None);
    assert_eq!(req(r#""format":null"#).response_format, None);
    // Roles are case-insensitive, as in Ollama.
    let r = chat(r#"{"model":"m","messages":[{"role":"USER","content":"hi"}]}"#);
    assert_eq!(r.messages[0].role, Role::User);
    // Unknown top-level fields are kept for an Ollama upstream.
    assert_eq!(req(r#""logprobs":true"#).extra["logprobs"], true);
    assert!(!req(r#""keep_alive":null"#).extra.contains_key("keep_alive"));
}

#[test]
fn bad_requests_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
        (
            r#"{"model":" ","messages":[{"role":"user","content":"hi"}]}"#,
            "model",
        ),
        (r#"{"model":"m"}"#, "messages"),
        (r#"{"model":"m","messages":"oops"}"#, "messages"),
        (r#"{"model":"m","messages":[]}"#, "messages"),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            "messages[0].role",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":["x"]}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x","images":[5]}]}"#,
            "messages[0].images[0]",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x","images":[""]}]}"#,
            "messages[0].images[0]",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"arguments":{}}}]}]}"#,
            "messages[1].tool_calls[0].function.name",
        ),
        (
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":[1]}}]}]}"#,
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function"}]}]}"#,
            "messages[0].tool_calls[0].function",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"function":{"name":"f"}}]}]}"#,
            "messages[0].tool_calls",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"description":"no name"}}]}"#,
            "tools[0].function.name",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval","function":{"name":"f"}}]}"#,
            "tools[0].type",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"format":"xml"}"#,
            "format",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"think":"maybe"}"#,
            "think",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"keep_alive":[1]}"#,
            "keep_alive",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":"hot"}"#,
            "options",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"temperature":"hot"}}"#,
            "options.temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"temperature":-1}}"#,
            "options.temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"top_p":3}}"#,
            "options.top_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"top_k":-5}}"#,
            "options.top_k",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"top_k":2.5}}"#,
            "options.top_k",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":-3}}"#,
            "options.num_predict",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"stop":[1]}}"#,
            "options.stop[0]",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"seed":"x"}}"#,
            "options.seed",
        ),
    ];
    for (body, field) in cases {
        let err = decode_chat_request(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(&err.field, field, "{body}: {err}");
        assert!(err.to_string().contains(field));
    }
    let err = decode_chat_request(br#"{"model":"m","messages":[]}"#)
        .err()
        .map(|e| e.message);
    assert_eq!(err.as_deref(), Some("must contain at least one message"));
    assert!(decode_chat_request(b"{not json").is_err());
    assert!(decode_chat_request(b"[]").is_err());
}

#[test]
fn num_predict_and_numeric_options() {
    let with = |opts: &str| {
        chat(&format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"options":{opts}}}"#
        ))
    };
    assert_eq!(with(r#"{"num_predict":-1}"#).max_tokens, None);
    assert_eq!(with(r#"{"num_predict":-2}"#).max_tokens, None);
    assert_eq!(with(r#"{"num_predict":null}"#).max_tokens, None);
    assert_eq!(with(r#"{"num_predict":128}"#).max_tokens, Some(128));
    assert_eq!(with(r#"{"num_predict":128.0}"#).max_tokens, Some(128));
    let r = with(
        r#"{"top_k":40.0,"seed":-3,"stop":"END","presence_penalty":0.5,"frequency_penalty":1}"#,
    );
    assert_eq!(r.top_k, Some(40));
    assert_eq!(r.seed, Some(-3));
    assert_eq!(r.stop, vec!["END".to_string()]);
    assert_eq!(r.presence_penalty, Some(0.5));
    assert_eq!(r.frequency_penalty, Some(1.0));
    // Temperatures above OpenAI's 2 are Ollama's business.
    assert_eq!(with(r#"{"temperature":3}"#).temperature, Some(3.0));
}

#[test]
fn tool_results_are_matched_to_calls() {
    // In order, without names.
    let r = chat(
        r#"{"model":"m","messages":[
        {"role":"user","content":"go"},
        {"role":"assistant","content":"","tool_calls":[
            {"function":{"name":"a","arguments":{}}},
            {"function":{"name":"b","arguments":{"x":1}}}]},
        {"role":"tool","content":"ra"},
        {"role":"tool","content":"rb"},
        {"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{}}}]},
        {"role":"tool","tool_name":"a","content":"ra2"},
        {"role":"tool","tool_name":"a","content":"ra3"},
        {"role":"tool","tool_name":"b","content":"late b"},
        {"role":"tool","tool_name":"nobody","content":"orphan"}
    ]}"#,
    );
    let ids: Vec<Option<&str>> = r
        .messages
        .iter()
        .map(|m| m.tool_call_id.as_deref())
        .collect();
    assert_eq!(
        ids,
        vec![
            None,
            None,
            Some("call_1_0"),
            Some("call_1_1"),
            None,
            Some("call_4_0"),
            // Answered twice: the most recent call with that name.
            Some("call_4_0"),
            // From an earlier turn: the most recent call named `b`.
            Some("call_1_1"),
            // No call asked for it: an id of its own, the name kept.
            Some("call_8"),
        ]
    );
    assert_eq!(r.messages[8].name.as_deref(), Some("nobody"));
    assert_eq!(r.messages[1].tool_calls[0].arguments, "{}");

    // Explicit ids (newer Ollama, some clients) win.
    let r = chat(
        r#"{"model":"m","messages":[
        {"role":"assistant","tool_calls":[{"id":"call_abc","function":{"name":"a","arguments":"{\"q\":1}"}}]},
        {"role":"tool","tool_call_id":"call_abc","tool_name":"a","content":"r"}
    ]}"#,
    );
    assert_eq!(r.messages[0].tool_calls[0].id, "call_abc");
    assert_eq!(r.messages[0].tool_calls[0].arguments, "{\"q\":1}");
    assert_eq!(r.messages[1].tool_call_id.as_deref(), Some("call_abc"));
}

#[test]
fn image_sources_other_than_base64() {
    let r = chat(
        r#"{"model":"m","messages":[{"role":"user","content":"x","images":[
        "data:image/webp;base64,UklGRhoAAABXRUJQ","https://example.com/cat.png"]}]}"#,
    );
    assert_eq!(
        r.messages[0].content[0],
        ContentPart::Image(Image {
            source: ImageSource::Base64 {
                media_type: "image/webp".into(),
                data: "UklGRhoAAABXRUJQ".into()
            },
            detail: None
        })
    );
    assert!(matches!(
        &r.messages[0].content[1],
        ContentPart::Image(Image { source: ImageSource::Url(u), .. }) if u == "https://example.com/cat.png"
    ));
    // Only images, no text: no empty text part.
    let r = chat(r#"{"model":"m","messages":[{"role":"user","images":["iVBORw0KGgo="]}]}"#);
    assert_eq!(r.messages[0].content.len(), 1);
    // No content at all: one empty text part, so the message survives.
    let r = chat(r#"{"model":"m","messages":[{"role":"user"}]}"#);
    assert_eq!(
        r.messages[0].content,
        vec![ContentPart::Text(String::new())]
    );
}

#[test]
fn generate_request_becomes_a_chat() {
    let req = decode_generate_request(&fixture("generate_request.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.model, "llava:7b");
    assert_eq!(req.messages.len(), 2);
    assert_eq!(req.messages[0].role, Role::System);
    assert_eq!(
        req.messages[0].text_content(),
        "You describe images briefly."
    );
    assert_eq!(req.messages[1].role, Role::User);
    assert!(matches!(
        &req.messages[1].content[0],
        ContentPart::Image(Image { source: ImageSource::Base64 { media_type, .. }, .. }) if media_type == "image/gif"
    ));
    assert_eq!(
        req.messages[1].text_content(),
        "What is in this picture? Respond using JSON"
    );
    assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(req.max_tokens, None);
    assert_eq!(req.temperature, Some(0.0));
    assert_eq!(req.seed, Some(7));
    assert!(!req.stream);
    assert_eq!(req.extra["suffix"], "}");
    assert_eq!(req.extra["raw"], false);
    assert_eq!(req.extra["keep_alive"], 300);
    assert_eq!(req.extra["options"]["num_predict"], -1);
    assert!(req.extra.contains_key("template"));
    assert!(!req.extra.contains_key("prompt"));
    assert!(!req.extra.contains_key("system"));

    let minimal = decode_generate_request(br#"{"model":"m","prompt":"hi"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(minimal.stream);
    assert_eq!(minimal.messages.len(), 1);
    assert_eq!(minimal.messages[0].text_content(), "hi");

    for (body, field) in [
        (r#"{"model":"m","prompt":""}"#, "prompt"),
        (r#"{"model":"m"}"#, "prompt"),
        (r#"{"prompt":"hi"}"#, "model"),
        (r#"{"model":"m","prompt":7}"#, "prompt"),
        (r#"{"model":"m","prompt":"x","images":"abc"}"#, "images"),
        (
            r#"{"model":"m","prompt":"x","options":{"num_predict":"many"}}"#,
            "options.num_predict",
        ),
    ] {
        let err = decode_generate_request(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(err.field, field, "{body}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Requests, provider side
// ---------------------------------------------------------------------------

#[test]
fn chat_request_round_trips() {
    let req =
        decode_chat_request(&fixture("chat_request_full.json")).unwrap_or_else(|e| panic!("{e}"));
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    let again = decode_chat_request(wire.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, req);

    // The wire body is what Ollama documents.
    let original: Value =
        serde_json::from_slice(&fixture("chat_request_full.json")).unwrap_or_default();
    assert_eq!(wire["options"], original["options"]);
    assert_eq!(wire["format"], original["format"]);
    assert_eq!(wire["keep_alive"], "10m");
    assert_eq!(wire["think"], true);
    assert_eq!(wire["stream"], true);
    assert_eq!(
        wire["messages"][1]["images"],
        original["messages"][1]["images"]
    );
    assert_eq!(
        wire["messages"][2]["tool_calls"],
        original["messages"][2]["tool_calls"]
    );
    assert_eq!(
        wire["messages"][2]["thinking"],
        original["messages"][2]["thinking"]
    );
    assert_eq!(wire["messages"][3]["tool_name"], "get_time");
    assert_eq!(wire["messages"][4]["tool_name"], "get_current_weather");
    assert_eq!(wire["tools"], original["tools"]);
}

#[test]
fn generate_request_encodes_as_chat() {
    let req = decode_generate_request(&fixture("generate_request.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire["stream"], false);
    assert_eq!(wire["format"], "json");
    // -1 ("no limit") survives though the model has no number for it.
    assert_eq!(wire["options"]["num_predict"], -1);
    assert_eq!(wire["options"]["seed"], 7);
    assert_eq!(wire["keep_alive"], 300);
    assert_eq!(
        wire["messages"][1]["images"][0],
        "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
    );
    // /api/chat has no suffix, raw or template.
    assert!(wire.get("suffix").is_none());
    assert!(wire.get("raw").is_none());
    assert!(wire.get("template").is_none());
}

#[test]
fn openai_request_encodes_for_ollama() {
    let mut req = openai::decode_chat_request(&openai_fixture("chat_request_full.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let forced = req.tool_choice.take();
    // The fixture has an image by URL, which Ollama cannot fetch.
    let err = encode_chat_request(&req).err();
    assert_eq!(
        err.as_ref().map(|e| e.field.as_str()),
        Some("messages[1].content")
    );
    assert!(err
        .map(|e| e.message)
        .unwrap_or_default()
        .contains("inline"));
    req.messages[1].content.retain(|p| {
        !matches!(
            p,
            ContentPart::Image(Image {
                source: ImageSource::Url(_),
                ..
            })
        )
    });
    // Nor can it be forced to call a tool.
    req.tool_choice = forced;
    assert_eq!(
        encode_chat_request(&req).err().map(|e| e.field),
        Some("tool_choice".into())
    );
    req.tool_choice = Some(ToolChoice::Auto);
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire["model"], "gpt-4o");
    assert_eq!(wire["stream"], true);
    assert_eq!(wire["messages"][1]["images"][0], "iVBORw0KGgo=");
    assert_eq!(
        wire["messages"][2]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(wire["messages"][3]["role"], "tool");
    assert_eq!(wire["messages"][3]["tool_name"], "get_weather");
    assert_eq!(wire["options"]["temperature"], 0.2);
    assert_eq!(wire["options"]["num_predict"], 256);
    assert_eq!(wire["options"]["seed"], 42);
    assert_eq!(wire["options"]["stop"], json!(["\n\n", "END"]));
    assert_eq!(wire["format"]["type"], "object");
    // OpenAI-only fields are not sent to Ollama.
    for key in ["metadata", "x_vendor_flag", "stream_options", "tool_choice"] {
        assert!(wire.get(key).is_none(), "{key}");
    }
    // tool_choice none: the tools are simply not offered.
    req.tool_choice = Some(ToolChoice::None);
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    assert!(wire.get("tools").is_none());
}

#[test]
fn encode_refuses_what_ollama_cannot_express() {
    let mut req = chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#);
    req.n = Some(2);
    assert_eq!(
        encode_chat_request(&req).err().map(|e| e.field),
        Some("n".into())
    );
    req.n = Some(1);
    assert!(encode_chat_request(&req).is_ok());
    req.tool_choice = Some(ToolChoice::Function("f".into()));
    assert_eq!(
        encode_chat_request(&req).err().map(|e| e.field),
        Some("tool_choice".into())
    );
    req.tool_choice = None;
    let mut asst = Message::new(Role::Assistant, Vec::new());
    asst.tool_calls.push(ToolCall {
        id: "c1".into(),
        name: "f".into(),
        arguments: "{\"a\":".into(),
    });
    req.messages.push(asst.clone());
    assert_eq!(
        encode_chat_request(&req).err().map(|e| e.field),
        Some("messages[1].tool_calls[0].function.arguments".into())
    );
    req.messages[1].tool_calls[0].arguments = "[1,2]".into();
    assert!(encode_chat_request(&req).is_err());
    req.messages[1].tool_calls[0].arguments = String::new();
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        wire["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({})
    );
    // Non-streaming is said explicitly (Ollama streams by default); no
    // empty options object.
    req.stream = false;
    let wire = encode_chat_request(&req).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire["stream"], false);
    assert!(wire.get("options").is_none());
}

#[test]
fn cross_format_to_openai_has_valid_ids_and_data_urls() {
    let req =
        decode_chat_request(&fixture("chat_request_full.json")).unwrap_or_else(|e| panic!("{e}"));
    let wire = openai::encode_chat_request(&req, openai::RequestOptions::default());
    let msgs = wire["messages"].as_array().cloned().unwrap_or_default();
    // Every tool message answers a call id the preceding assistant made.
    let call_ids: Vec<String> = msgs[2]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(call_ids, vec!["call_2_0", "call_2_1"]);
    assert_eq!(msgs[3]["tool_call_id"], "call_2_1");
    assert_eq!(msgs[4]["tool_call_id"], "call_2_0");
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"format":"celsius","location":"Paris, FR"}"#
    );
    let parts = msgs[1]["content"].as_array().cloned().unwrap_or_default();
    assert!(parts[0]["image_url"]["url"]
        .as_str()
        .unwrap_or("")
        .starts_with("data:image/png;base64,iVBORw0KGgo"));
    assert!(parts[1]["image_url"]["url"]
        .as_str()
        .unwrap_or("")
        .starts_with("data:image/jpeg;base64,/9j/"));
    assert_eq!(wire["max_tokens"], 256);
    assert_eq!(wire["response_format"]["type"], "json_schema");
    assert_eq!(wire["response_format"]["json_schema"]["name"], "response");
    // And the OpenAI decoder accepts the result.
    let back =
        openai::decode_chat_request(wire.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.messages.len(), req.messages.len());
    assert_eq!(back.messages[3].tool_call_id.as_deref(), Some("call_2_1"));
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

#[test]
fn chat_response_decodes() {
    let resp = decode_chat_response(&fixture("chat_response_tool_calls.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.id, "");
    assert_eq!(resp.model, "qwen3:8b");
    assert_eq!(resp.created, 1_745_870_522);
    let c = &resp.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    assert!(c.message.content.is_empty());
    assert_eq!(
        c.message.reasoning.as_deref(),
        Some("The user wants the weather in two cities; call the tool twice.")
    );
    assert_eq!(c.message.tool_calls.len(), 2);
    assert_eq!(c.message.tool_calls[0].id, "call_0");
    assert_eq!(c.message.tool_calls[1].id, "call_1");
    assert_eq!(c.message.tool_calls[1].name, "get_current_weather");
    let args: Value = serde_json::from_str(&c.message.tool_calls[1].arguments).unwrap_or_default();
    assert_eq!(args["location"], "Toronto, CA");
    assert_eq!(
        resp.usage,
        Some(Usage {
            prompt_tokens: 147,
            completion_tokens: 46,
            cached_tokens: None,
            reasoning_tokens: None
        })
    );
}

#[test]
fn chat_response_done_reasons_and_inline_think() {
    let resp = decode_chat_response(
        br#"{"model":"deepseek-r1","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"<think>hmm</think>\n\nHello"},"done":true,"done_reason":"length","eval_count":5}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = &resp.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::Length));
    assert_eq!(c.message.text_content(), "Hello");
    assert_eq!(c.message.reasoning.as_deref(), Some("hmm"));
    assert_eq!(
        resp.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((0, 5))
    );
    let load = decode_chat_response(
        br#"{"model":"m","created_at":"x","message":{"role":"assistant","content":""},"done":true,"done_reason":"load"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load.created, 0);
    assert_eq!(
        load.choices[0].finish_reason,
        Some(FinishReason::Other("load".into()))
    );
    assert!(decode_chat_response(br#"{"error":"model 'x' not found"}"#)
        .err()
        .map(|e| e.message)
        .unwrap_or_default()
        .contains("model 'x' not found"));
    assert!(decode_chat_response(b"not json").is_err());
}

#[test]
fn chat_response_encodes_for_ollama_clients() {
    let resp = decode_chat_response(&fixture("chat_response_tool_calls.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let timings = Timings {
        total_ns: 2_000,
        load_ns: 10,
        prompt_eval_ns: 300,
        eval_ns: 1_500,
    };
    let out = encode_chat_response(
        &resp,
        "qwen3:8b",
        "2025-04-28T20:02:02.140489Z",
        timings,
        ReasoningOutput::Separate,
    );
    let original: Value =
        serde_json::from_slice(&fixture("chat_response_tool_calls.json")).unwrap_or_default();
    assert_eq!(out["model"], "qwen3:8b");
    assert_eq!(out["created_at"], "2025-04-28T20:02:02.140489Z");
    assert_eq!(out["message"]["role"], "assistant");
    assert_eq!(out["message"]["content"], "");
    assert_eq!(out["message"]["thinking"], original["message"]["thinking"]);
    // Whole calls, arguments as objects, no ids (Zed's parser wants
    // exactly one key per call).
    assert_eq!(
        out["message"]["tool_calls"],
        json!([
            {"function": {"name": "get_current_weather", "arguments": {"location": "Paris, FR", "format": "celsius"}}},
            {"function": {"name": "get_current_weather", "arguments": {"location": "Toronto, CA", "format": "celsius"}}}
        ])
    );
    assert_eq!(out["done_reason"], "stop");
    assert_eq!(out["done"], true);
    assert_eq!(out["total_duration"], 2_000);
    assert_eq!(out["load_duration"], 10);
    assert_eq!(out["prompt_eval_count"], 147);
    assert_eq!(out["prompt_eval_duration"], 300);
    assert_eq!(out["eval_count"], 46);
    assert_eq!(out["eval_duration"], 1_500);
    // And it decodes back to the same message.
    let again = decode_chat_response(out.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.choices, resp.choices);
    assert_eq!(again.usage, resp.usage);

    let inline = encode_chat_response(&resp, "m", "t", timings, ReasoningOutput::Inline);
    assert!(inline["message"].get("thinking").is_none());
    assert!(inline["message"]["content"]
        .as_str()
        .unwrap_or("")
        .starts_with("<think>The user wants"));
    let dropped = encode_chat_response(&resp, "m", "t", timings, ReasoningOutput::Drop);
    assert!(dropped["message"].get("thinking").is_none());
    assert_eq!(dropped["message"]["content"], "");

    // Reasons Ollama has no word for are reported as stop.
    let mut r = resp.clone();
    r.choices[0].finish_reason = Some(FinishReason::Length);
    assert_eq!(
        encode_chat_response(&r, "m", "t", timings, ReasoningOutput::Drop)["done_reason"],
        "length"
    );
    r.choices[0].finish_reason = Some(FinishReason::ContentFilter);
    assert_eq!(
        encode_chat_response(&r, "m", "t", timings, ReasoningOutput::Drop)["done_reason"],
        "stop"
    );
    // Arguments that are not JSON are passed as a string.
    r.choices[0].message.tool_calls[0].arguments = "{broken".into();
    let out = encode_chat_response(&r, "m", "t", timings, ReasoningOutput::Drop);
    assert_eq!(
        out["message"]["tool_calls"][0]["function"]["arguments"],
        "{broken"
    );
    // No usage, no choices: zeros and an empty message, never a panic.
    r.usage = None;
    r.choices.clear();
    let out = encode_chat_response(&r, "m", "t", Timings::default(), ReasoningOutput::Separate);
    assert_eq!(out["message"]["content"], "");
    assert_eq!(out["eval_count"], 0);
}

#[test]
fn generate_response_encodes() {
    let mut message = Message::text(Role::Assistant, "The sky is blue.");
    message.reasoning = Some("Rayleigh".into());
    let resp = ChatResponse {
        id: "x".into(),
        model: "upstream".into(),
        created: 0,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(FinishReason::Stop),
        }],
        usage: Some(Usage {
            prompt_tokens: 26,
            completion_tokens: 290,
            ..Usage::default()
        }),
        system_fingerprint: None,
    };
    let out = encode_generate_response(
        &resp,
        "llama3.2",
        "2023-08-04T19:22:45.499127Z",
        Timings::default(),
        ReasoningOutput::Separate,
    );
    assert_eq!(out["model"], "llama3.2");
    assert_eq!(out["response"], "The sky is blue.");
    assert_eq!(out["thinking"], "Rayleigh");
    assert_eq!(out["done"], true);
    assert_eq!(out["done_reason"], "stop");
    assert_eq!(out["prompt_eval_count"], 26);
    assert_eq!(out["eval_count"], 290);
    assert!(out.get("message").is_none());
    assert!(out.get("context").is_none());
    let dropped =
        encode_generate_response(&resp, "m", "t", Timings::default(), ReasoningOutput::Drop);
    assert!(dropped.get("thinking").is_none());
}

#[test]
fn error_body_shape() {
    assert_eq!(
        error_body("model \"x\" not found, try pulling it first"),
        json!({"error": "model \"x\" not found, try pulling it first"})
    );
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn ndjson_text_stream_split_anywhere() {
    let bytes = fixture("chat_stream_text.ndjson");
    let whole = decode_ndjson(&bytes, bytes.len());
    // Every split gives exactly the same events (even inside the emoji).
    for split in [1, 2, 3, 5, 7, 64, 333] {
        assert_eq!(decode_ndjson(&bytes, split), whole, "split {split}");
    }
    let (content, reasoning, calls, finish, usage) = collect(&whole);
    assert_eq!(
        content,
        "The sky is blue because of Rayleigh scattering. ☀️"
    );
    assert_eq!(reasoning, "");
    assert!(calls.is_empty());
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(
        usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((26, 12))
    );
    assert_eq!(whole.last(), Some(&StreamEvent::Done));
    match &whole[0] {
        StreamEvent::Chunk(c) => {
            assert_eq!(c.model.as_deref(), Some("llama3.2"));
            assert_eq!(c.created, Some(1_721_680_408));
            assert_eq!(c.id, None);
            assert_eq!(c.choices[0].role, Some(Role::Assistant));
        }
        other => panic!("{other:?}"),
    }
    // The role is only on the first chunk.
    let roles = whole
        .iter()
        .filter(|e| matches!(e, StreamEvent::Chunk(c) if c.choices[0].role.is_some()))
        .count();
    assert_eq!(roles, 1);
}

#[test]
fn ndjson_tool_call_stream() {
    let bytes = fixture("chat_stream_tool_calls.ndjson");
    let whole = decode_ndjson(&bytes, bytes.len());
    for split in [1, 4, 17, 100] {
        assert_eq!(decode_ndjson(&bytes, split), whole, "split {split}");
    }
    let (content, reasoning, calls, finish, usage) = collect(&whole);
    assert_eq!(content, "Let me check.");
    assert_eq!(
        reasoning,
        "The user asks about Paris weather; call the tool."
    );
    assert_eq!(
        calls,
        vec![
            (
                "call_0".to_string(),
                "get_current_weather".to_string(),
                r#"{"format":"celsius","location":"Paris, FR"}"#.to_string()
            ),
            (
                "call_1".to_string(),
                "get_time".to_string(),
                r#"{"timezone":"Europe/Paris"}"#.to_string()
            ),
        ]
    );
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    assert_eq!(usage.map(|u| u.total_tokens()), Some(248));
    assert_eq!(whole.last(), Some(&StreamEvent::Done));
}

#[test]
fn ndjson_error_line_is_an_event() {
    let mut d = NdjsonDecoder::new();
    let evs = d
        .feed(&fixture("chat_stream_error.ndjson"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&evs[0], StreamEvent::Chunk(c) if c.choices[0].content.as_deref() == Some("Partial"))
    );
    match &evs[1] {
        StreamEvent::Error(e) => {
            assert_eq!(e.kind, "upstream_error");
            assert!(e.message.contains("unexpected EOF"));
        }
        other => panic!("expected error, got {other:?}"),
    }
    assert!(!d.is_done());
    let mut d = NdjsonDecoder::new();
    assert!(d.feed(b"{\"model\": oops}\n").is_err());
}

#[test]
fn ndjson_last_line_without_newline_and_inline_think() {
    let body = concat!(
        "{\"model\":\"deepseek-r1\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"<thi\"},\"done\":false}\r\n",
        "\n",
        "{\"model\":\"deepseek-r1\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"nk>plan</think>\\n\\nAnswer\"},\"done\":false}\n",
        "{\"model\":\"deepseek-r1\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":3,\"eval_count\":9}"
    );
    let mut d = NdjsonDecoder::new();
    let mut evs = d.feed(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!d.is_done());
    evs.extend(d.finish().unwrap_or_else(|e| panic!("{e}")));
    assert!(d.is_done());
    let (content, reasoning, _, finish, usage) = collect(&evs);
    assert_eq!(content, "Answer");
    assert_eq!(reasoning, "plan");
    assert_eq!(finish, Some(FinishReason::Length));
    assert_eq!(usage.map(|u| u.completion_tokens), Some(9));
    // A generate-style stream (`response`) decodes too.
    let evs = decode_ndjson(
        b"{\"model\":\"m\",\"created_at\":\"x\",\"response\":\"Hi\",\"done\":false}\n{\"model\":\"m\",\"created_at\":\"x\",\"response\":\"\",\"done\":true}\n",
        5,
    );
    assert_eq!(collect(&evs).0, "Hi");
}

#[test]
fn openai_stream_into_ollama_ndjson() {
    let events = decode_sse(&openai_fixture("stream_tool_calls.sse"));
    let mut enc = ChatStreamEncoder::new(
        "llama3.2".into(),
        "2025-01-01T00:00:00Z".into(),
        ReasoningOutput::Separate,
        false,
    );
    let timings = Timings {
        total_ns: 9,
        load_ns: 1,
        prompt_eval_ns: 2,
        eval_ns: 3,
    };
    let out = encode_all(&mut enc, &events, timings);
    let ls = lines(&out);
    assert_eq!(ls.len(), 4, "{}", String::from_utf8_lossy(&out));
    // Text first.
    assert_eq!(ls[0]["message"]["content"], "Let me check. ");
    assert_eq!(ls[0]["message"]["role"], "assistant");
    assert_eq!(ls[0]["done"], false);
    assert_eq!(ls[0]["model"], "llama3.2");
    assert_eq!(ls[0]["created_at"], "2025-01-01T00:00:00Z");
    // One line per completed call, arguments parsed into objects.
    for (l, name, args) in [
        (&ls[1], "get_weather", json!({"city": "Paris"})),
        (&ls[2], "get_time", json!({"tz": "CET"})),
    ] {
        assert_eq!(l["done"], false);
        assert_eq!(l["message"]["content"], "");
        let calls = l["message"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0],
            json!({"function": {"name": name, "arguments": args}})
        );
    }
    // The final line.
    let last = &ls[3];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    assert_eq!(last["created_at"], "2025-01-01T00:00:01Z");
    assert_eq!(last["prompt_eval_count"], 50);
    assert_eq!(last["eval_count"], 30);
    assert_eq!(last["total_duration"], 9);
    assert_eq!(last["load_duration"], 1);
    assert_eq!(last["prompt_eval_duration"], 2);
    assert_eq!(last["eval_duration"], 3);
    assert_eq!(enc.usage().map(|u| u.total_tokens()), Some(80));
    assert_eq!(enc.finish_reason(), Some(&FinishReason::ToolCalls));
    // finish is idempotent.
    assert!(enc.finish(timings, "t".into()).is_empty());

    // Our own decoder reads it back as the same turn, under Ollama's ids.
    let back = decode_ndjson(&out, 11);
    let (content, _, calls, finish, usage) = collect(&back);
    assert_eq!(content, "Let me check. ");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[0].2, r#"{"city":"Paris"}"#);
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    assert_eq!(usage.map(|u| u.completion_tokens), Some(30));
}

#[test]
fn ollama_stream_into_openai_sse() {
    let events = decode_ndjson(&fixture("chat_stream_tool_calls.ndjson"), 9);
    let mut enc = openai::stream::ChunkEncoder::new(
        "chatcmpl-gw".into(),
        1,
        "qwen3:8b".into(),
        true,
        ReasoningOutput::Separate,
    );
    let mut out = Vec::new();
    for ev in &events {
        if let StreamEvent::Chunk(c) = ev {
            if let Some(b) = enc.encode(c) {
                out.extend_from_slice(&b);
            }
        }
    }
    out.extend_from_slice(&enc.finish());
    let frames = SseParser::new().feed(&out).unwrap_or_default();
    assert_eq!(frames.last().map(|f| f.data.as_str()), Some("[DONE]"));
    let again = decode_sse(&out);
    assert_eq!(collect(&again), collect(&events));
    let (content, reasoning, calls, finish, usage) = collect(&again);
    assert_eq!(content, "Let me check.");
    assert!(reasoning.starts_with("The user asks"));
    assert_eq!(calls[0].0, "call_0");
    assert_eq!(calls[1].0, "call_1");
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    assert_eq!(
        usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((187, 61))
    );

    // And the text stream keeps text and usage.
    let events = decode_ndjson(&fixture("chat_stream_text.ndjson"), 4096);
    let mut enc = openai::stream::ChunkEncoder::new(
        "x".into(),
        1,
        "m".into(),
        true,
        ReasoningOutput::Separate,
    );
    let mut out = Vec::new();
    for ev in &events {
        if let StreamEvent::Chunk(c) = ev {
            if let Some(b) = enc.encode(c) {
                out.extend_from_slice(&b);
            }
        }
    }
    out.extend_from_slice(&enc.finish());
    assert_eq!(collect(&decode_sse(&out)), collect(&events));
}

#[test]
fn ndjson_round_trip_through_encoder() {
    for name in ["chat_stream_text.ndjson", "chat_stream_tool_calls.ndjson"] {
        let events = decode_ndjson(&fixture(name), 4096);
        let mut enc = ChatStreamEncoder::new(
            "m".into(),
            "2025-01-01T00:00:00Z".into(),
            ReasoningOutput::Separate,
            false,
        );
        let out = encode_all(&mut enc, &events, Timings::default());
        for l in lines(&out) {
            // Every line has what Zed's strict parser requires.
            assert!(l["model"].is_string() && l["created_at"].is_string());
            assert!(l["done"].is_boolean());
            assert_eq!(l["message"]["role"], "assistant");
            assert!(l["message"]["content"].is_string());
        }
        assert_eq!(collect(&decode_ndjson(&out, 3)), collect(&events), "{name}");
    }
}

#[test]
fn stream_encoder_reasoning_modes_and_generate() {
    let chunk =
        |content: Option<&str>, reasoning: Option<&str>, finish: Option<FinishReason>| ChatChunk {
            choices: vec![ChoiceDelta {
                content: content.map(str::to_string),
                reasoning: reasoning.map(str::to_string),
                finish_reason: finish,
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        };
    let seq = [
        chunk(None, None, None),
        chunk(None, Some("step 1"), None),
        chunk(None, Some(", step 2"), None),
        chunk(Some("Done."), None, None),
        chunk(Some(""), None, Some(FinishReason::Length)),
    ];
    let run = |reasoning, generate| {
        let mut enc = ChatStreamEncoder::new("m".into(), "t0".into(), reasoning, generate);
        let mut out = Vec::new();
        for c in &seq {
            if let Some(b) = enc.encode(c) {
                out.extend_from_slice(&b);
            }
        }
        out.extend_from_slice(&enc.finish(Timings::default(), "t1".into()));
        lines(&out)
    };

    let sep = run(ReasoningOutput::Separate, false);
    assert_eq!(sep.len(), 4);
    assert_eq!(sep[0]["message"]["thinking"], "step 1");
    assert_eq!(sep[0]["message"]["content"], "");
    assert_eq!(sep[2]["message"]["content"], "Done.");
    assert!(sep[2]["message"].get("thinking").is_none());
    assert_eq!(sep[3]["done_reason"], "length");

    let inline = run(ReasoningOutput::Inline, false);
    let text: String = inline
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(text, "<think>step 1, step 2</think>\n\nDone.");

    let dropped = run(ReasoningOutput::Drop, false);
    assert_eq!(dropped.len(), 2);
    assert_eq!(dropped[0]["message"]["content"], "Done.");

    let generate = run(ReasoningOutput::Separate, true);
    assert_eq!(generate.len(), 4);
    assert_eq!(generate[0]["thinking"], "step 1");
    assert_eq!(generate[2]["response"], "Done.");
    assert_eq!(generate[3]["response"], "");
    assert_eq!(generate[3]["done"], true);
    assert!(generate.iter().all(|l| l.get("message").is_none()));

    // Reasoning left open at the end is closed before the final line.
    let mut enc = ChatStreamEncoder::new("m".into(), "t".into(), ReasoningOutput::Inline, false);
    let _ = enc.encode(&chunk(None, Some("hmm"), None));
    let tail = lines(&enc.finish(Timings::default(), "t".into()));
    assert_eq!(tail[0]["message"]["content"], "</think>\n\n");
    assert_eq!(tail[1]["done"], true);
}

#[test]
fn stream_encoder_tool_calls_at_finish_and_errors() {
    let frag = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| ChatChunk {
        choices: vec![ChoiceDelta {
            tool_calls: vec![ToolCallDelta {
                index,
                id: id.map(str::to_string),
                name: name.map(str::to_string),
                arguments: args.to_string(),
            }],
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    };
    let mut enc = ChatStreamEncoder::new("m".into(), "t".into(), ReasoningOutput::Separate, false);
    // Fragments are held back until the turn ends…
    assert!(enc
        .encode(&frag(1, Some("b"), Some("second"), "{\"n\":"))
        .is_none());
    assert!(enc
        .encode(&frag(0, Some("a"), Some("first"), "not json"))
        .is_none());
    assert!(enc.encode(&frag(1, None, None, "2}")).is_none());
    // …which here is the end of the stream, with no finish reason seen.
    let ls = lines(&enc.finish(Timings::default(), "t".into()));
    assert_eq!(ls.len(), 3);
    assert_eq!(
        ls[0]["message"]["tool_calls"][0]["function"]["name"],
        "first"
    );
    // Not JSON: sent as a string rather than lost.
    assert_eq!(
        ls[0]["message"]["tool_calls"][0]["function"]["arguments"],
        "not json"
    );
    assert_eq!(
        ls[1]["message"]["tool_calls"][0]["function"]["arguments"],
        json!({"n": 2})
    );
    assert_eq!(ls[2]["done_reason"], "stop");
    assert_eq!(ls[2]["eval_count"], 0);

    // An error ends the stream in Ollama's shape; pending calls are dropped.
    let mut enc = ChatStreamEncoder::new("m".into(), "t".into(), ReasoningOutput::Separate, false);
    assert!(enc.encode(&frag(0, Some("a"), Some("f"), "{}")).is_none());
    let err = enc.error("upstream timed out");
    assert_eq!(&err[..], b"{\"error\":\"upstream timed out\"}\n");
    assert!(enc.finish(Timings::default(), "t".into()).is_empty());

    // Chunks for other choices are ignored; usage-only chunks are remembered.
    let mut enc = ChatStreamEncoder::new("m".into(), "t".into(), ReasoningOutput::Separate, false);
    let other = ChatChunk {
        choices: vec![ChoiceDelta {
            index: 1,
            content: Some("no".into()),
            ..ChoiceDelta::default()
        }],
        usage: Some(Usage {
            prompt_tokens: 4,
            completion_tokens: 2,
            ..Usage::default()
        }),
        ..ChatChunk::default()
    };
    assert!(enc.encode(&other).is_none());
    let ls = lines(&enc.finish(Timings::default(), "t".into()));
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["prompt_eval_count"], 4);
    assert_eq!(ls[0]["eval_count"], 2);
}

// ---------------------------------------------------------------------------
// Embeddings and listing
// ---------------------------------------------------------------------------

#[test]
fn embed_requests_decode() {
    let req = decode_embed_request(
        br#"{"model":"all-minilm","input":["Why is the sky blue?","Why is the grass green?"],"truncate":false,"options":{"num_ctx":512},"keep_alive":"5m","dimensions":256}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(req.model, "all-minilm");
    assert_eq!(
        req.input,
        EmbeddingInput::Text(vec![
            "Why is the sky blue?".into(),
            "Why is the grass green?".into()
        ])
    );
    assert_eq!(req.dimensions, Some(256));
    assert_eq!(req.extra["truncate"], false);
    assert_eq!(req.extra["options"]["num_ctx"], 512);
    assert_eq!(req.extra["keep_alive"], "5m");
    // Provider side: the same body back.
    let wire = encode_embed_request(&req);
    assert_eq!(wire["input"][1], "Why is the grass green?");
    assert_eq!(wire["truncate"], false);
    assert_eq!(wire["options"]["num_ctx"], 512);
    assert_eq!(wire["dimensions"], 256);
    assert!(validate_embed_request(&req).is_ok());

    let one =
        decode_embed_request(br#"{"model":"m","input":"hello"}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.input, EmbeddingInput::Text(vec!["hello".into()]));

    for (body, field) in [
        (r#"{"model":"m","input":[]}"#, "input"),
        (r#"{"model":"m"}"#, "input"),
        (r#"{"model":"m","input":5}"#, "input"),
        (r#"{"model":"m","input":["a",2]}"#, "input[1]"),
        (r#"{"input":"a"}"#, "model"),
        (r#"{"model":"m","input":"a","truncate":"no"}"#, "truncate"),
        (r#"{"model":"m","input":"a","dimensions":-1}"#, "dimensions"),
    ] {
        let err = decode_embed_request(body.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(err.field, field, "{body}: {err}");
    }

    let legacy = decode_embeddings_legacy_request(
        br#"{"model":"all-minilm","prompt":"Here is an article about llamas...","keep_alive":0}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        legacy.input,
        EmbeddingInput::Text(vec!["Here is an article about llamas...".into()])
    );
    assert_eq!(legacy.extra["keep_alive"], 0);
    assert_eq!(
        decode_embeddings_legacy_request(br#"{"model":"m","prompt":""}"#)
            .err()
            .map(|e| e.field),
        Some("prompt".into())
    );

    // Token ids cannot go to Ollama.
    let tokens = EmbeddingRequest {
        input: EmbeddingInput::Tokens(vec![vec![1, 2]]),
        ..req
    };
    assert_eq!(
        validate_embed_request(&tokens).err().map(|e| e.field),
        Some("input".into())
    );
}

#[test]
fn embed_responses() {
    let resp = decode_embed_response(
        br#"{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221],[-0.0098027,0.06042469,0.025257962]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.model, "all-minilm");
    assert_eq!(resp.data.len(), 2);
    assert_eq!(resp.data[1][1], 0.06042469);
    assert_eq!(resp.usage.prompt_tokens, 8);
    let out = encode_embed_response(&resp, 14_143_917);
    assert_eq!(out["model"], "all-minilm");
    assert_eq!(out["embeddings"].as_array().map(Vec::len), Some(2));
    assert_eq!(out["total_duration"], 14_143_917);
    assert_eq!(out["load_duration"], 0);
    assert_eq!(out["prompt_eval_count"], 8);
    let legacy = encode_embeddings_legacy_response(&resp);
    assert_eq!(legacy.as_object().map(|o| o.len()), Some(1));
    assert_eq!(legacy["embedding"].as_array().map(Vec::len), Some(3));
    let empty = EmbeddingResponse {
        model: "m".into(),
        data: Vec::new(),
        usage: Usage::default(),
    };
    assert_eq!(
        encode_embeddings_legacy_response(&empty),
        json!({"embedding": []})
    );

    let old =
        decode_embed_response(br#"{"embedding":[0.5,0.25]}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.data, vec![vec![0.5, 0.25]]);
    assert!(decode_embed_response(br#"{"model":"m"}"#).is_err());
    assert!(decode_embed_response(br#"{"embeddings":"x"}"#).is_err());
}

#[test]
fn tags_listing() {
    let names = decode_tags_response(
        br#"{"models":[
        {"name":"deepseek-r1:latest","model":"deepseek-r1:latest","modified_at":"2025-05-10T08:06:48.639712648-07:00","size":4683075271,"digest":"0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163","details":{"parent_model":"","format":"gguf","family":"qwen2","families":["qwen2"],"parameter_size":"7.6B","quantization_level":"Q4_K_M"}},
        {"model":"llama3.2:3b"},
        {"name":""}
    ]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, vec!["deepseek-r1:latest", "llama3.2:3b"]);
    assert_eq!(
        decode_tags_response(br#"{"models":[]}"#).unwrap_or_default(),
        Vec::<String>::new()
    );
    assert!(decode_tags_response(br#"{"models":"x"}"#).is_err());

    let e = tag_entry("qwen2.5-coder:7b", "2025-01-01T00:00:00Z", "qwen2", "7.6B");
    assert_eq!(e["name"], "qwen2.5-coder:7b");
    assert_eq!(e["model"], "qwen2.5-coder:7b");
    assert_eq!(e["modified_at"], "2025-01-01T00:00:00Z");
    assert_eq!(e["size"], 4_560_000_000u64);
    let digest = e["digest"].as_str().unwrap_or("").to_string();
    assert_eq!(digest.len(), 64);
    assert!(digest
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        tag_entry("qwen2.5-coder:7b", "other", "x", "1B")["digest"],
        e["digest"],
        "the digest depends on the name only"
    );
    assert_ne!(
        tag_entry("qwen2.5-coder:8b", "", "", "")["digest"],
        e["digest"]
    );
    assert_eq!(
        e["details"],
        json!({
            "parent_model": "",
            "format": "gguf",
            "family": "qwen2",
            "families": ["qwen2"],
            "parameter_size": "7.6B",
            "quantization_level": "Q4_K_M",
        })
    );
    assert_eq!(tag_entry("x", "", "", "")["size"], 0);
    assert_eq!(tag_entry("x", "", "", "270M")["size"], 162_000_000u64);
    assert_eq!(
        tag_entry("x", "", "", "")["details"]["families"],
        Value::Null
    );
}

#[test]
fn a_line_that_never_ends_is_an_error_not_unbounded_memory() {
    let mut d = NdjsonDecoder::new();
    let piece = vec![b'x'; 1024 * 1024];
    let mut failed = false;
    for _ in 0..20 {
        if d.feed(&piece).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "17+ MiB without a newline was accepted");
    // The buffer was dropped with the error.
    assert!(d.feed(b"").is_ok());
}

#[test]
fn stream_encoder_text_lines_for_chat_and_generate() {
    let chunk = |content: &str, reasoning: Option<&str>| ChatChunk {
        choices: vec![ChoiceDelta {
            content: Some(content.to_string()),
            reasoning: reasoning.map(str::to_string),
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    };
    let mut chat = ChatStreamEncoder::new(
        "m\"x".into(),
        "2026-01-01T00:00:00Z".into(),
        ReasoningOutput::Separate,
        false,
    );
    let out = chat
        .encode(&chunk("hé \"q\"\n", Some("why")))
        .unwrap_or_default();
    let ls = lines(&out);
    assert_eq!(ls.len(), 1);
    assert_eq!(
        ls[0],
        json!({
            "model": "m\"x",
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "hé \"q\"\n", "thinking": "why"},
            "done": false,
        })
    );
    let mut generate = ChatStreamEncoder::new(
        "m".into(),
        "2026-01-01T00:00:00Z".into(),
        ReasoningOutput::Separate,
        true,
    );
    let ls = lines(&generate.encode(&chunk("a", None)).unwrap_or_default());
    assert_eq!(
        ls[0],
        json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "response": "a", "done": false})
    );
}

#[test]
fn tool_definitions_decode_as_openai_does_but_strict() {
    let body = |function: &str| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"function","function":{function}}}]}}"#
        )
    };
    let tools = |r: Result<ChatRequest, DecodeError>| r.map(|r| r.tools).map_err(|e| e.field);
    let plain = body(r#"{"name":"f","description":"d"}"#);
    let want = vec![Tool {
        name: "f".into(),
        description: Some("d".into()),
        parameters: json!({"type": "object", "properties": {}}),
        strict: None,
    }];
    assert_eq!(
        tools(decode_chat_request(plain.as_bytes())),
        Ok(want.clone())
    );
    assert_eq!(
        tools(openai::decode_chat_request(plain.as_bytes())),
        Ok(want.clone())
    );
    // OpenAI's `strict` is a flag; Ollama has none and ignores the key
    // whatever it holds, even twice.
    let strict = body(r#"{"name":"f","description":"d","strict":true}"#);
    assert_eq!(
        tools(decode_chat_request(strict.as_bytes())),
        Ok(want.clone())
    );
    let mut strict_tool = want.clone();
    strict_tool[0].strict = Some(true);
    assert_eq!(
        tools(openai::decode_chat_request(strict.as_bytes())),
        Ok(strict_tool)
    );
    let odd = body(r#"{"name":"f","description":"d","strict":"yes","strict":[1]}"#);
    assert_eq!(tools(decode_chat_request(odd.as_bytes())), Ok(want));
    assert_eq!(
        tools(openai::decode_chat_request(odd.as_bytes())),
        Err("tools[0].function.strict".to_string())
    );
}

mod ndjson_props {
    //! The NDJSON stream decoder: a stream cut anywhere decodes to the same
    //! text, reasoning and tool calls as the stream fed whole; any bytes at
    //! all never panic.
    use super::super::stream::NdjsonDecoder;
    use crate::ir::StreamEvent;
    use proptest::prelude::*;
    use serde_json::json;

    fn feed(wire: &[u8], cuts: &[usize]) -> Option<(String, Vec<String>, bool)> {
        let mut d = NdjsonDecoder::new();
        let mut events = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < wire.len() {
            let n = cuts
                .get(k)
                .copied()
                .unwrap_or(11)
                .clamp(1, wire.len() - pos);
            k += 1;
            events.extend(d.feed(&wire[pos..pos + n]).ok()?);
            pos += n;
        }
        events.extend(d.finish().ok()?);
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut done = false;
        for e in events {
            match e {
                StreamEvent::Chunk(c) => {
                    for ch in c.choices {
                        text.push_str(ch.content.as_deref().unwrap_or(""));
                        text.push_str(ch.reasoning.as_deref().unwrap_or(""));
                        for t in ch.tool_calls {
                            calls.push(format!("{:?}:{}", t.name, t.arguments));
                        }
                    }
                }
                StreamEvent::Done => done = true,
                StreamEvent::Error(_) => {}
            }
        }
        Some((text, calls, done))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_split_decodes_like_the_whole(
            pieces in proptest::collection::vec("[ -~]{0,20}", 0..10),
            call in proptest::option::of("[a-z]{1,8}"),
            cuts in proptest::collection::vec(1usize..30, 0..60),
        ) {
            let mut wire = String::new();
            for p in &pieces {
                let line = json!({"model": "m", "created_at": "2024-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": p}, "done": false});
                wire.push_str(&line.to_string());
                wire.push('\n');
            }
            if let Some(name) = &call {
                let line = json!({"model": "m", "message": {"role": "assistant", "content": "",
                    "tool_calls": [{"function": {"name": name, "arguments": {"x": 1}}}]}, "done": false});
                wire.push_str(&line.to_string());
                wire.push('\n');
            }
            let last = json!({"model": "m", "message": {"role": "assistant", "content": ""},
                "done": true, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 4});
            wire.push_str(&last.to_string());
            wire.push('\n');
            let whole = feed(wire.as_bytes(), &[wire.len()]);
            prop_assert!(whole.is_some());
            let split = feed(wire.as_bytes(), &cuts);
            prop_assert_eq!(&split, &whole);
            let (text, calls, done) = whole.unwrap_or_default();
            prop_assert_eq!(text, pieces.concat());
            prop_assert_eq!(calls.len(), usize::from(call.is_some()));
            prop_assert!(done);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(1usize..30, 0..60),
        ) {
            let _ = feed(&wire, &cuts);
        }
    }
}
