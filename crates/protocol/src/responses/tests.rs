use super::stream::StreamEncoder;
use super::*;
use crate::sse::SseParser;
use proptest::prelude::*;

fn ok<T>(r: Result<T, DecodeError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn decode(v: Value) -> ResponsesRequest {
    ok(decode_request(v.to_string().as_bytes()))
}

fn decode_err(v: Value) -> DecodeError {
    match decode_request(v.to_string().as_bytes()) {
        Ok(r) => panic!("decoded: {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn string_input_is_one_user_message() {
    let r = decode(json!({"model": "m", "input": "Hi there"}));
    assert_eq!(r.chat.model, "m");
    assert_eq!(r.chat.messages, vec![Message::text(Role::User, "Hi there")]);
    assert_eq!(
        r.input_items,
        vec![
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]})
        ]
    );
    assert!(r.store);
    assert!(!r.chat.stream);
    assert_eq!(r.previous_response_id, None);
    // The API's defaults, echoed.
    assert_eq!(r.echo["tool_choice"], "auto");
    assert_eq!(r.echo["parallel_tool_calls"], true);
    assert_eq!(r.echo["tools"], json!([]));
    assert_eq!(r.echo["text"]["format"], json!({"type": "text"}));
    assert_eq!(r.echo["store"], true);
    assert_eq!(r.echo["truncation"], "disabled");
    assert_eq!(r.echo["metadata"], json!({}));
    assert!(r.echo["instructions"].is_null());
    assert!(r.echo["previous_response_id"].is_null());
}

/// What Codex sends, in shape: every item kind it replays, its tools
/// (function, custom `apply_patch`, `web_search`) and its request fields.
fn codex_like() -> Value {
    json!({
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Fix it"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think"}], "content": null, "encrypted_content": "gAAAA"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
            {"type": "function_call", "name": "shell", "arguments": "{\"command\":[\"ls\"]}", "call_id": "call_a"},
            {"type": "function_call", "name": "shell", "arguments": "{\"command\":[\"pwd\"]}", "call_id": "call_b"},
            {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "/w"}]},
            {"type": "custom_tool_call", "call_id": "call_c", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_c", "output": "Done"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "x"}},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Run", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}},
            {"type": "custom", "name": "apply_patch", "description": "Patch files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
            {"type": "web_search", "external_web_access": true}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conv-1",
        "client_metadata": {"x": "y"},
        "service_tier": "priority",
        "text": {"verbosity": "low", "format": {"type": "json_schema", "name": "out", "strict": true, "schema": {"type": "object"}}},
        "truncation": "auto",
        "max_output_tokens": 500,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u1",
        "metadata": {"k": "v"}
    })
}

#[test]
fn codex_request_decodes() {
    let r = decode(codex_like());
    let c = &r.chat;
    assert!(c.stream && c.include_usage);
    assert!(!r.store);
    assert_eq!(c.max_tokens, Some(500));
    assert_eq!(c.temperature, Some(0.5));
    assert_eq!(c.top_p, Some(0.9));
    assert_eq!(c.parallel_tool_calls, Some(false));
    assert_eq!(c.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(c.user.as_deref(), Some("u1"));
    assert_eq!(c.extra.get("reasoning_effort"), Some(&json!("high")));
    assert_eq!(c.extra.len(), 1);
    assert_eq!(c.extra_wire, Some("openai"));
    assert_eq!(
        c.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
            description: None
        })
    );
    // Tools: the function as is, the custom tool as a one-string function,
    // web_search dropped.
    assert_eq!(c.tools.len(), 2);
    assert_eq!(c.tools[0].name, "shell");
    assert_eq!(c.tools[0].strict, Some(false));
    assert_eq!(c.tools[1].name, "apply_patch");
    assert_eq!(c.tools[1].parameters["required"], json!(["input"]));
    let description = c.tools[1].description.clone().unwrap_or_default();
    assert!(description.starts_with("Patch files\n\n"), "{description}");
    assert!(description.contains("start: begin_patch"));
    assert_eq!(r.dropped_tools, ["web_search"]);
    assert!(r.custom_tools().is_custom("apply_patch"));
    assert!(!r.custom_tools().is_custom("shell"));

    let m = &c.messages;
    let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::User
        ]
    );
    assert_eq!(m[0].text_content(), "You are Codex.");
    assert_eq!(m[1].text_content(), "<permissions>");
    assert_eq!(
        m[2].content[1],
        ContentPart::Image(Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            },
            detail: Some("high".into())
        })
    );
    // Reasoning, the assistant text and both calls: one message.
    assert_eq!(m[3].reasoning.as_deref(), Some("Think"));
    assert_eq!(m[3].text_content(), "Looking.");
    let ids: Vec<&str> = m[3].tool_calls.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["call_a", "call_b"]);
    assert_eq!(m[3].tool_calls[0].arguments, "{\"command\":[\"ls\"]}");
    assert_eq!(m[4].tool_call_id.as_deref(), Some("call_a"));
    assert_eq!(m[4].text_content(), "a.txt");
    assert_eq!(m[5].tool_call_id.as_deref(), Some("call_b"));
    assert_eq!(m[5].text_content(), "/w");
    assert_eq!(m[6].tool_calls[0].name, "apply_patch");
    assert_eq!(
        serde_json::from_str::<Value>(&m[6].tool_calls[0].arguments).ok(),
        Some(json!({"input": "*** Begin Patch"}))
    );
    assert_eq!(m[7].tool_call_id.as_deref(), Some("call_c"));
    assert_eq!(m[8].text_content(), "thanks");

    // Echo: as given.
    assert_eq!(r.echo["instructions"], "You are Codex.");
    assert_eq!(r.echo["store"], false);
    assert_eq!(
        r.echo["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );
    assert_eq!(r.echo["text"]["verbosity"], "low");
    assert_eq!(r.echo["tools"].as_array().map(Vec::len), Some(3));
    assert_eq!(r.echo["max_output_tokens"], 500);
    assert_eq!(r.echo["metadata"], json!({"k": "v"}));
    assert_eq!(r.echo["service_tier"], "priority");
    assert_eq!(r.input_items.len(), 12);
}

#[test]
fn codex_recorded_request_with_a_namespace_tool_decodes() {
    // Codex 0.169.0's second request of a tool round, as recorded
    // (tests/e2e/fixtures/agents/codex_tool.json): function tools, a
    // `namespace` of sub-agent tools, `web_search`, and the call replayed.
    let fixture = include_str!("../../../../tests/e2e/fixtures/agents/codex_tool.json");
    let reqs: Vec<Value> =
        ok(serde_json::from_str(fixture).map_err(|e| DecodeError::body(e.to_string())));
    for req in &reqs {
        let r = decode(req["body"].clone());
        let names: Vec<&str> = r.chat.tools.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"exec_command"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("multi_agent_v1__")),
            "{names:?}"
        );
        assert_eq!(r.dropped_tools, ["web_search"]);
    }
    let last = decode(reqs[reqs.len() - 1]["body"].clone());
    let call = last
        .chat
        .messages
        .iter()
        .flat_map(|m| m.tool_calls.iter())
        .next()
        .unwrap_or_else(|| panic!("no replayed call"));
    assert_eq!(call.name, "exec_command");
    assert_eq!(last.chat.messages.last().map(|m| m.role), Some(Role::Tool));
}

#[test]
fn namespaced_tools_flatten_and_calls_come_back_with_their_namespace() {
    let body = json!({
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": "spawn"},
            {"type": "function_call", "call_id": "c0", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c0", "output": "ok"}
        ],
        "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
            "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]}]
    });
    let r = decode(body.clone());
    assert_eq!(r.chat.tools.len(), 1);
    assert_eq!(r.chat.tools[0].name, "multi_agent_v1__spawn_agent");
    let replayed = &r.chat.messages[1].tool_calls[0];
    assert_eq!(replayed.name, "multi_agent_v1__spawn_agent");
    // The model calls the flat name; the client gets name and namespace.
    let resp = answer("", None, &[("c1", "multi_agent_v1__spawn_agent", "{}")]);
    let v = encode_response(&resp, "resp_1", 1, &r.echo);
    let item = &v["output"][0];
    assert_eq!(item["type"], "function_call", "{v}");
    assert_eq!(item["name"], "spawn_agent", "{v}");
    assert_eq!(item["namespace"], "multi_agent_v1", "{v}");
    // A bad inner tool names its whole path.
    let mut bad = body;
    bad["tools"][0]["tools"][0]["name"] = json!("");
    assert_eq!(decode_err(bad).field, "tools[0].tools[0].name");
}

#[test]
fn other_forms_decode() {
    let r = decode(json!({
        "model": "m",
        "input": [
            {"type": "message", "role": "system", "content": "Be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "opaque"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": {"a": 1}},
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_object"}},
        "previous_response_id": "resp_prev",
        "tools": [{"type": "function", "name": "f"}]
    }));
    let m = &r.chat.messages;
    assert_eq!(m.len(), 3);
    assert_eq!(m[0], Message::text(Role::System, "Be brief"));
    assert!(m[1].has_images());
    // An encrypted-only reasoning item is skipped, so the call joins the
    // assistant message before it; object arguments become their text.
    assert_eq!(m[2].text_content(), "No.");
    assert_eq!(m[2].reasoning, None);
    assert_eq!(m[2].tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(r.chat.tool_choice, Some(ToolChoice::Function("f".into())));
    assert_eq!(r.chat.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(r.previous_response_id.as_deref(), Some("resp_prev"));
    assert_eq!(r.echo["previous_response_id"], "resp_prev");
    assert_eq!(
        r.chat.tools[0].parameters,
        json!({"type": "object", "properties": {}})
    );
    // Without input, a continuation is still a request.
    let r = decode(json!({"model": "m", "previous_response_id": "resp_1"}));
    assert!(r.chat.messages.is_empty());
    for (choice, want) in [
        (json!("none"), ToolChoice::None),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "allowed_tools", "mode": "required", "tools": []}),
            ToolChoice::Required,
        ),
        (
            json!({"type": "custom", "name": "apply_patch"}),
            ToolChoice::Function("apply_patch".into()),
        ),
    ] {
        let r = decode(json!({"model": "m", "input": "x", "tool_choice": choice}));
        assert_eq!(r.chat.tool_choice, Some(want));
    }
}

#[test]
fn bad_fields_are_named() {
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 5}), "input"),
        (json!({"model": "m", "input": []}), "input"),
        (json!({"model": "m", "input": [5]}), "input[0]"),
        (
            json!({"model": "m", "input": [{"content": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "message", "role": "bot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"type": "message", "role": "user"}]}),
            "input[0].content",
        ),
        (
            json!({"model": "m", "input": ["x", {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_audio"}]}]}),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_audio"}]}]}),
            "input[1].content[1].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            "input[0].content[0].text",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "", "arguments": "{}"}]}),
            "input[0].name",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "bogus"}]}]}),
            "input[0].output[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "mystery"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "mcp", "server_url": "x"}]}),
            "tools[1].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"name": "f"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "function"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
            "tool_choice.type",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
        ),
        (json!({"model": "m", "input": "x", "top_p": 2}), "top_p"),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": "many"}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
            "text.format.name",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": [1]}),
            "metadata",
        ),
        (json!({"model": "m", "input": "x", "store": "yes"}), "store"),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
    ];
    for (body, field) in cases {
        let e = decode_err(body.clone());
        assert_eq!(e.field, field, "{body} → {e}");
    }
}

fn answer(text: &str, reasoning: Option<&str>, calls: &[(&str, &str, &str)]) -> ChatResponse {
    let mut message = Message::new(
        Role::Assistant,
        if text.is_empty() {
            Vec::new()
        } else {
            vec![ContentPart::Text(text.into())]
        },
    );
    message.reasoning = reasoning.map(str::to_string);
    message.tool_calls = calls
        .iter()
        .map(|(id, name, args)| ToolCall {
            id: (*id).into(),
            name: (*name).into(),
            arguments: (*args).into(),
        })
        .collect();
    ChatResponse {
        id: "up-1".into(),
        model: "m".into(),
        created: 1,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(if calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            }),
        }],
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: Some(2),
            reasoning_tokens: None,
        }),
        system_fingerprint: None,
    }
}

fn echo() -> Map<String, Value> {
    decode(json!({"model": "m", "input": "x"})).echo
}

#[test]
fn encode_text_answer() {
    let v = encode_response(&answer("Hello", None, &[]), "resp_1", 100, &echo());
    assert_eq!(v["id"], "resp_1");
    assert_eq!(v["object"], "response");
    assert_eq!(v["created_at"], 100);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "m");
    assert!(v["error"].is_null());
    assert!(v["incomplete_details"].is_null());
    assert!(v.get("output_text").is_none());
    assert_eq!(
        v["output"],
        json!([{
            "id": "msg_1_0", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello"}],
        }])
    );
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 10, "input_tokens_details": {"cached_tokens": 2},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        })
    );
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["store"], true);
}

#[test]
fn encode_reasoning_and_tool_calls() {
    let resp = answer(
        "Let me look.",
        Some("Plan"),
        &[
            ("call_a", "shell", "{\"command\":[\"ls\"]}"),
            ("call_b", "apply_patch", "{\"input\":\"*** Begin Patch\"}"),
        ],
    );
    let echo = decode(codex_like()).echo;
    let v = encode_response(&resp, "resp_x", 5, &echo);
    let out = v["output"].as_array().cloned().unwrap_or_default();
    assert_eq!(out.len(), 4);
    assert_eq!(
        out[0],
        json!({"id": "rs_x_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan"}]})
    );
    assert_eq!(out[1]["type"], "message");
    assert_eq!(out[1]["id"], "msg_x_1");
    assert_eq!(
        out[2],
        json!({
            "id": "fc_x_2", "type": "function_call", "status": "completed",
            "arguments": "{\"command\":[\"ls\"]}", "call_id": "call_a", "name": "shell",
        })
    );
    // A tool that was custom in the request answers as a custom call.
    assert_eq!(
        out[3],
        json!({
            "id": "ctc_x_3", "type": "custom_tool_call", "status": "completed",
            "call_id": "call_b", "name": "apply_patch", "input": "*** Begin Patch",
        })
    );
    assert_eq!(v["status"], "completed");
    assert_eq!(v["instructions"], "You are Codex.");
}

#[test]
fn encode_length_stop_is_incomplete() {
    let mut resp = answer("Cut sho", None, &[]);
    resp.choices[0].finish_reason = Some(FinishReason::Length);
    let v = encode_response(&resp, "resp_1", 1, &echo());
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["output"][0]["status"], "incomplete");
    resp.choices[0].finish_reason = Some(FinishReason::ContentFilter);
    let v = encode_response(&resp, "resp_1", 1, &echo());
    assert_eq!(v["incomplete_details"], json!({"reason": "content_filter"}));
    // No usage known: null, as the API allows.
    resp.usage = None;
    assert!(encode_response(&resp, "resp_1", 1, &echo())["usage"].is_null());
}

#[test]
fn output_items_decode_back_as_history() {
    let resp = answer(
        "Looking",
        Some("Plan"),
        &[
            ("call_a", "shell", "{}"),
            ("call_b", "apply_patch", "{\"input\":\"P\"}"),
        ],
    );
    let mut r = decode(codex_like());
    let customs = r.custom_tools();
    let mut history = r.input_items.clone();
    history.extend(output_items(&resp, "resp_1", &customs));
    let mut next = decode(json!({
        "model": "m",
        "instructions": "New rules",
        "previous_response_id": "resp_1",
        "input": [
            {"type": "function_call_output", "call_id": "call_a", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "call_b", "output": "patched"}
        ]
    }));
    ok(next.apply_history(&history));
    let m = &next.chat.messages;
    assert_eq!(m[0], Message::text(Role::System, "New rules"));
    // The earlier request's instructions are not carried over.
    assert_eq!(
        m.iter()
            .filter(|m| m.text_content() == "You are Codex.")
            .count(),
        0
    );
    let n = m.len();
    assert_eq!(m[n - 3].role, Role::Assistant);
    assert_eq!(m[n - 3].reasoning.as_deref(), Some("Plan"));
    assert_eq!(m[n - 3].text_content(), "Looking");
    assert_eq!(m[n - 3].tool_calls, resp.choices[0].message.tool_calls);
    assert_eq!(m[n - 2].tool_call_id.as_deref(), Some("call_a"));
    assert_eq!(m[n - 1].tool_call_id.as_deref(), Some("call_b"));
    // The same history decodes once more as it did.
    let before = r.chat.messages.len();
    ok(r.apply_history(&[]));
    assert_eq!(r.chat.messages.len(), before);
}

#[test]
fn errors_use_the_openai_body() {
    assert_eq!(
        error_body("bad", "invalid_request_error", None, Some("input")),
        json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": null}})
    );
}

// ---- streams ----

fn text_chunk(content: Option<&str>, reasoning: Option<&str>) -> ChatChunk {
    ChatChunk {
        choices: vec![ChoiceDelta {
            content: content.map(str::to_string),
            reasoning: reasoning.map(str::to_string),
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    }
}

fn tool_chunk(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
    ChatChunk {
        choices: vec![ChoiceDelta {
            tool_calls: vec![ToolCallDelta {
                index,
                id: id.map(str::to_string),
                name: name.map(str::to_string),
                arguments: args.into(),
            }],
            ..ChoiceDelta::default()
        }],
        ..ChatChunk::default()
    }
}

fn end_chunk(reason: FinishReason, usage: Option<Usage>) -> ChatChunk {
    ChatChunk {
        choices: vec![ChoiceDelta {
            finish_reason: Some(reason),
            ..ChoiceDelta::default()
        }],
        usage,
        ..ChatChunk::default()
    }
}

fn run(enc: &mut StreamEncoder, events: &[StreamEvent]) -> Vec<u8> {
    let mut out = enc.start().to_vec();
    let mut errored = false;
    for ev in events {
        match ev {
            StreamEvent::Chunk(c) => {
                if let Some(b) = enc.encode(c) {
                    out.extend_from_slice(&b);
                }
            }
            StreamEvent::Error(e) => {
                out.extend_from_slice(&enc.error(e));
                errored = true;
            }
            StreamEvent::Done => {}
        }
    }
    if !errored {
        out.extend_from_slice(&enc.finish());
    }
    out
}

/// What a checked stream held.
#[derive(Debug, Default)]
struct Checked {
    types: Vec<String>,
    /// Per output index: the item of `output_item.done`, and the text its
    /// deltas add up to.
    items: Vec<(Value, String)>,
    last: Value,
}

/// Asserts the Responses event grammar: event name equal to `type`,
/// sequence numbers 0, 1, 2…; created, in_progress first; items opened at
/// consecutive output indexes, one at a time, each delta and part event
/// naming the open item, each closed by a done that repeats what the
/// deltas added up to; one final event (completed / incomplete / failed),
/// last.
fn check(bytes: &[u8]) -> Checked {
    let mut p = SseParser::new();
    let mut evs = p.feed(bytes).unwrap_or_else(|e| panic!("{e:?}"));
    evs.extend(p.finish());
    let mut c = Checked::default();
    let mut open: Option<(usize, String, String)> = None;
    let mut ended = false;
    for (n, ev) in evs.iter().enumerate() {
        let v: Value =
            serde_json::from_str(&ev.data).unwrap_or_else(|e| panic!("{e}: {}", ev.data));
        let ty = v["type"].as_str().unwrap_or_default().to_string();
        assert_eq!(ev.event.as_deref(), Some(ty.as_str()), "event name = type");
        assert_eq!(v["sequence_number"], json!(n), "sequence number of {v}");
        assert!(!ended, "event after the end: {v}");
        match n {
            0 => assert_eq!(ty, "response.created"),
            1 => assert_eq!(ty, "response.in_progress"),
            _ => {}
        }
        let index = v["output_index"].as_u64().map(|i| i as usize);
        let item_id = v["item_id"].as_str().map(str::to_string);
        if ty != "response.output_item.added" {
            if let (Some(i), Some((oi, oid, _))) = (index, &open) {
                assert_eq!(i, *oi, "{v}");
                if let Some(id) = &item_id {
                    assert_eq!(id, oid, "{v}");
                }
            } else if index.is_some() {
                panic!("event for no open item: {v}");
            }
        }
        match ty.as_str() {
            "response.created" | "response.in_progress" => {
                assert_eq!(v["response"]["status"], "in_progress");
                assert_eq!(v["response"]["output"], json!([]));
            }
            "response.output_item.added" => {
                assert!(open.is_none(), "item added while another is open: {v}");
                assert_eq!(index, Some(c.items.len()), "consecutive indexes");
                let item = &v["item"];
                if item["type"] != "reasoning" {
                    assert_eq!(item["status"], "in_progress");
                }
                match item["type"].as_str() {
                    Some("function_call") => assert_eq!(item["arguments"], ""),
                    Some("custom_tool_call") => assert_eq!(item["input"], ""),
                    Some("message") => assert_eq!(item["content"], json!([])),
                    Some("reasoning") => assert_eq!(item["summary"], json!([])),
                    other => panic!("item type {other:?}"),
                }
                let id = item["id"].as_str().unwrap_or_default().to_string();
                open = Some((c.items.len(), id, String::new()));
            }
            "response.output_text.delta"
            | "response.function_call_arguments.delta"
            | "response.reasoning_summary_text.delta"
            | "response.custom_tool_call_input.delta" => {
                if let Some((_, _, text)) = open.as_mut() {
                    text.push_str(v["delta"].as_str().unwrap_or_default());
                }
            }
            "response.output_text.done" | "response.reasoning_summary_text.done" => {
                let want = open.as_ref().map(|o| o.2.clone()).unwrap_or_default();
                assert_eq!(v["text"], json!(want));
            }
            "response.function_call_arguments.done" => {
                let want = open.as_ref().map(|o| o.2.clone()).unwrap_or_default();
                assert_eq!(v["arguments"], json!(want));
                assert!(v["name"].is_string());
            }
            "response.custom_tool_call_input.done" => {
                let want = open.as_ref().map(|o| o.2.clone()).unwrap_or_default();
                assert_eq!(v["input"], json!(want));
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                assert_eq!(v["part"]["text"], "");
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let want = open.as_ref().map(|o| o.2.clone()).unwrap_or_default();
                assert_eq!(v["part"]["text"], json!(want));
            }
            "response.output_item.done" => {
                let Some((_, id, text)) = open.take() else {
                    panic!("done without an open item: {v}");
                };
                assert_eq!(v["item"]["id"], json!(id));
                c.items.push((v["item"].clone(), text));
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                ended = true;
                if ty != "response.failed" {
                    assert!(open.is_none(), "item left open at the end");
                }
                c.last = v["response"].clone();
                let items: Vec<Value> = c.items.iter().map(|(i, _)| i.clone()).collect();
                assert_eq!(c.last["output"], json!(items), "final output = items done");
            }
            other => panic!("unexpected event {other}"),
        }
        c.types.push(ty);
    }
    assert!(ended, "no final event");
    c
}

fn encoder(echo: Map<String, Value>) -> StreamEncoder {
    StreamEncoder::new("resp_1".into(), "m".into(), 100, echo)
}

fn chunks(list: Vec<ChatChunk>) -> Vec<StreamEvent> {
    list.into_iter().map(StreamEvent::Chunk).collect()
}

const USAGE: Usage = Usage {
    prompt_tokens: 10,
    completion_tokens: 5,
    cached_tokens: Some(2),
    reasoning_tokens: None,
};

#[test]
fn streamed_text() {
    let mut enc = encoder(echo());
    let bytes = run(
        &mut enc,
        &chunks(vec![
            text_chunk(Some("Hel"), None),
            text_chunk(Some("lo"), None),
            end_chunk(FinishReason::Stop, Some(USAGE)),
        ]),
    );
    let c = check(&bytes);
    assert_eq!(
        c.types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let whole = encode_response(&answer("Hello", None, &[]), "resp_1", 100, &echo());
    assert_eq!(c.last, whole);
    assert_eq!(enc.response(), whole);
    assert_eq!(enc.usage(), Some(USAGE));
    // The delta event, byte for byte.
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1_0\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hel\",\"logprobs\":[]}\n\n"), "{text}");
    // Nothing after the end.
    assert!(enc.finish().is_empty());
    assert!(enc.encode(&text_chunk(Some("x"), None)).is_none());
}

#[test]
fn streamed_two_tool_calls_interleaved() {
    let mut enc = encoder(echo());
    let bytes = run(
        &mut enc,
        &chunks(vec![
            tool_chunk(0, Some("call_a"), Some("f"), ""),
            tool_chunk(0, None, None, "{\"x\":"),
            // The second call starts before the first is complete: it waits.
            tool_chunk(1, Some("call_b"), Some("g"), "{\"y\""),
            tool_chunk(0, None, None, "1}"),
            tool_chunk(1, None, None, ":2}"),
            end_chunk(FinishReason::ToolCalls, Some(USAGE)),
        ]),
    );
    let c = check(&bytes);
    assert_eq!(c.items.len(), 2);
    assert_eq!(c.items[0].1, "{\"x\":1}");
    assert_eq!(c.items[1].1, "{\"y\":2}");
    assert_eq!(c.items[0].0["call_id"], "call_a");
    assert_eq!(c.items[1].0["name"], "g");
    let whole = encode_response(
        &answer(
            "",
            None,
            &[("call_a", "f", "{\"x\":1}"), ("call_b", "g", "{\"y\":2}")],
        ),
        "resp_1",
        100,
        &echo(),
    );
    assert_eq!(c.last, whole);
    assert_eq!(
        c.types[2..]
            .iter()
            .filter(|t| *t == "response.output_item.added")
            .count(),
        2
    );
}

#[test]
fn streamed_reasoning_then_text() {
    let mut enc = encoder(echo());
    let bytes = run(
        &mut enc,
        &chunks(vec![
            text_chunk(None, Some("Think")),
            text_chunk(None, Some("ing")),
            text_chunk(Some("Done"), None),
            end_chunk(FinishReason::Stop, None),
        ]),
    );
    let c = check(&bytes);
    assert_eq!(
        &c.types[2..9],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    );
    let mut whole = answer("Done", Some("Thinking"), &[]);
    whole.usage = None;
    assert_eq!(c.last, encode_response(&whole, "resp_1", 100, &echo()));
    assert!(String::from_utf8_lossy(&bytes).contains("\"summary_index\":0,\"delta\":\"Think\""));
}

#[test]
fn streamed_length_stop_is_incomplete() {
    let mut enc = encoder(echo());
    let bytes = run(
        &mut enc,
        &chunks(vec![
            text_chunk(Some("Cut"), None),
            end_chunk(FinishReason::Length, Some(USAGE)),
        ]),
    );
    let c = check(&bytes);
    assert_eq!(
        c.types.last().map(String::as_str),
        Some("response.incomplete")
    );
    let mut whole = answer("Cut", None, &[]);
    whole.choices[0].finish_reason = Some(FinishReason::Length);
    assert_eq!(c.last, encode_response(&whole, "resp_1", 100, &echo()));
    assert_eq!(c.last["output"][0]["status"], "incomplete");
}

#[test]
fn streamed_custom_tool_call() {
    let echo = decode(codex_like()).echo;
    let mut enc = encoder(echo.clone());
    let bytes = run(
        &mut enc,
        &chunks(vec![
            tool_chunk(
                0,
                Some("call_p"),
                Some("apply_patch"),
                "{\"input\":\"*** Be",
            ),
            tool_chunk(0, None, None, "gin Patch\"}"),
            end_chunk(FinishReason::ToolCalls, None),
        ]),
    );
    let c = check(&bytes);
    assert_eq!(c.items[0].0["type"], "custom_tool_call");
    assert_eq!(c.items[0].1, "*** Begin Patch");
    let mut whole = answer(
        "",
        None,
        &[("call_p", "apply_patch", "{\"input\":\"*** Begin Patch\"}")],
    );
    whole.usage = None;
    assert_eq!(c.last, encode_response(&whole, "resp_1", 100, &echo));
}

#[test]
fn error_mid_stream_fails_the_response() {
    let mut enc = encoder(echo());
    let events = vec![
        StreamEvent::Chunk(text_chunk(None, Some("Hmm"))),
        StreamEvent::Chunk(text_chunk(Some("Part"), None)),
        StreamEvent::Error(StreamError {
            message: "upstream went away".into(),
            kind: "overloaded_error".into(),
        }),
    ];
    let bytes = run(&mut enc, &events);
    let c = check(&bytes);
    assert_eq!(c.types.last().map(String::as_str), Some("response.failed"));
    assert_eq!(c.last["status"], "failed");
    assert_eq!(
        c.last["error"],
        json!({"code": "server_is_overloaded", "message": "upstream went away"})
    );
    // The reasoning item had closed; the message had not.
    assert_eq!(c.last["output"].as_array().map(Vec::len), Some(1));
    assert_eq!(enc.response(), c.last);
    assert!(enc.finish().is_empty());
    assert!(enc
        .error(&StreamError {
            message: "again".into(),
            kind: "x".into()
        })
        .is_empty());
    // An error before anything: the opening events, then the failure.
    let mut enc = encoder(echo());
    let c = check(&enc.error(&StreamError {
        message: "no".into(),
        kind: "server_error".into(),
    }));
    assert_eq!(
        c.types,
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
}

/// Cuts `text` into pieces at the given byte fractions (on char boundaries).
fn pieces(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (text.len() + 1))
        .filter(|&c| text.is_char_boundary(c))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in at {
        out.push(text[start..c].to_string());
        start = c;
    }
    out.push(text[start..].to_string());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// However the upstream splits reasoning, text and two calls' arguments
    /// (and interleaves the calls), the events are well formed, the deltas
    /// add up to the input, and the final object is the whole answer's.
    #[test]
    fn any_split_is_well_formed(
        reasoning in "[a-zé ]{0,12}",
        text in "[a-z\"\\\\\n 漢]{0,20}",
        a in "[a-z0-9]{0,10}",
        b in "[a-z0-9]{0,10}",
        cuts in proptest::collection::vec(0usize..64, 0..8),
        interleave in any::<bool>(),
    ) {
        let args_a = json!({"a": a}).to_string();
        let args_b = json!({"b": b}).to_string();
        let mut list = Vec::new();
        for p in pieces(&reasoning, &cuts) {
            list.push(text_chunk(None, Some(&p)));
        }
        for p in pieces(&text, &cuts) {
            list.push(text_chunk(Some(&p), None));
        }
        let pa = pieces(&args_a, &cuts);
        let pb = pieces(&args_b, &cuts);
        let mut calls = vec![tool_chunk(0, Some("call_a"), Some("f"), "")];
        let mut b_calls = vec![tool_chunk(1, Some("call_b"), Some("g"), "")];
        calls.extend(pa.iter().map(|p| tool_chunk(0, None, None, p)));
        b_calls.extend(pb.iter().map(|p| tool_chunk(1, None, None, p)));
        if interleave {
            let mut ia = calls.into_iter();
            let mut ib = b_calls.into_iter();
            loop {
                match (ia.next(), ib.next()) {
                    (None, None) => break,
                    (x, y) => list.extend(x.into_iter().chain(y)),
                }
            }
        } else {
            list.extend(calls);
            list.extend(b_calls);
        }
        list.push(end_chunk(FinishReason::ToolCalls, Some(USAGE)));
        let mut enc = encoder(echo());
        let c = check(&run(&mut enc, &chunks(list)));
        let whole = answer(
            &text,
            (!reasoning.is_empty()).then_some(reasoning.as_str()),
            &[("call_a", "f", &args_a), ("call_b", "g", &args_b)],
        );
        prop_assert_eq!(&c.last, &encode_response(&whole, "resp_1", 100, &echo()));
        let added = c.types.iter().filter(|t| *t == "response.output_item.added").count();
        prop_assert_eq!(added, c.items.len());
        let mut i = 0;
        if !reasoning.is_empty() {
            prop_assert_eq!(&c.items[i].1, &reasoning);
            i += 1;
        }
        if !text.is_empty() {
            prop_assert_eq!(&c.items[i].1, &text);
            i += 1;
        }
        prop_assert_eq!(&c.items[i].1, &args_a);
        prop_assert_eq!(&c.items[i + 1].1, &args_b);
    }
}

#[test]
fn encrypted_reasoning_is_fingerprinted_found_in_pieces_and_stripped() {
    let body = json!({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-first"},
        {"type": "message", "role": "assistant", "content": "ok"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAA-second"}
    ]})
    .to_string();
    let h = first_encrypted(body.as_bytes());
    assert!(h.is_some());
    // The same string in an answer (any spacing) has the same fingerprint.
    let answer = br#"{"output": [{"type": "reasoning", "encrypted_content" :  "gAAAA-first"}]}"#;
    assert_eq!(first_encrypted(answer), h);
    assert_ne!(
        first_encrypted(br#"{"encrypted_content":"gAAAA-second"}"#),
        h
    );
    assert_eq!(first_encrypted(br#"{"encrypted_content": null}"#), None);
    assert_eq!(first_encrypted(b"{}"), None);
    // Found whatever the pieces.
    let sse = format!(
        "event: response.output_item.done\ndata: {}\n\n",
        json!({"type": "response.output_item.done", "item": {"type": "reasoning", "encrypted_content": "gAAAA-first"}})
    );
    for cut in 1..sse.len() {
        let mut sc = EncryptedScanner::default();
        let a = sc.feed(&sse.as_bytes()[..cut]);
        let b = sc.feed(&sse.as_bytes()[cut..]);
        assert_eq!(a.or(b), h, "cut at {cut}");
    }
    // Stripped from every input item, nothing else touched.
    let stripped = strip_encrypted(body.as_bytes()).unwrap_or_default();
    let v: Value =
        ok(serde_json::from_slice(&stripped).map_err(|e| DecodeError::body(e.to_string())));
    assert_eq!(v["input"].as_array().map(Vec::len), Some(4));
    assert!(v["input"][1].get("encrypted_content").is_none(), "{v}");
    assert_eq!(v["input"][1]["id"], "rs_1");
    assert_eq!(strip_encrypted(br#"{"input": "hi"}"#), None);
}
