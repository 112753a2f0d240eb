"""The official ``anthropic`` SDK against llm-link's Anthropic surface.

Every chat test runs against the three upstream kinds behind one gateway
(``matrix_gateway``): the Anthropic mock (pass-through), the OpenAI mock and
the Ollama mock (translation). Besides what the SDK returns, each test checks
what reached the upstream, in that upstream's native shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

import anthropic
import pytest

from mock_anthropic import MockAnthropic
from mock_ollama import MockOllama
from mock_upstream import MockUpstream
from multi import (ANTHROPIC_TOOL_ID_RE, ANTHROPIC_WEATHER_TOOL, CLIENT_KEY, OPENAI_CHAT_PARAMS, PNG_B64,
                   TOOL_RESULT, WEATHER_SCHEMA, Upstream, anthropic_client, anthropic_sse_events,
                   assert_anthropic_error, check_anthropic_stream, http_client)

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
WEATHER_Q = "What is the weather in Paris?"


@pytest.fixture
def anth(matrix_gateway: "Gateway") -> Iterator[anthropic.Anthropic]:
    c = anthropic_client(matrix_gateway.url)
    yield c
    c.close()


def _usage(u: Any) -> dict[str, int]:
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}


def _no_chat_upstream_calls(*mocks: Any) -> None:
    for m in mocks:
        chat = [r for r in m.requests if r.method == "POST"]
        assert chat == [], f"no upstream should have been called, got {[(r.method, r.path) for r in chat]}"


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def test_text_non_streamed(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    r = anth.messages.create(model=upstream.model, max_tokens=256, system="You are terse.", messages=HI)

    assert r.type == "message" and r.role == "assistant"
    assert r.id.startswith("msg_"), r.id
    assert r.model == upstream.model
    assert [b.type for b in r.content] == ["text"], r.content
    assert r.content[0].text == "Hello from mock"
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert _usage(r.usage) == upstream.last_usage(), "usage must be the upstream's numbers"

    body = upstream.last_chat().body
    assert upstream.system(body) == "You are terse.", f"system prompt upstream: {body}"
    assert upstream.non_system_roles(body) == ["user"] and upstream.user_text(body) == "hi"
    assert upstream.max_tokens(body) == 256
    if upstream.kind == "ollama":
        assert body.get("stream") is False, "non-streamed: ask Ollama for stream:false (it streams by default)"
    else:
        assert not body.get("stream"), body
    upstream.assert_auth()


def test_text_stream_helper(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    with anth.messages.stream(model=upstream.model, max_tokens=256, messages=HI) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == "Hello from mock"
    assert len(pieces) >= 2, f"the text must arrive in several deltas, got {pieces}"
    assert final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == "Hello from mock"
    assert _usage(final.usage) == upstream.last_usage(), "streamed usage must be the upstream's numbers"
    body = upstream.last_chat().body
    assert body.get("stream") is True
    upstream.assert_auth()


def test_text_stream_raw_events(matrix_gateway: "Gateway", upstream: Upstream) -> None:
    """The exact SSE grammar, pings included (the SDK hides pings and unnamed events)."""
    with matrix_gateway.http() as http, http.stream(
            "POST", "/v1/messages", headers={"anthropic-version": "2023-06-01"},
            json={"model": upstream.model, "max_tokens": 100, "messages": HI, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        text = r.read().decode()
    events = anthropic_sse_events(text)
    assert any(e["type"] == "ping" for e in events), f"no ping event: {[e['type'] for e in events]}"
    msg = check_anthropic_stream(events)
    assert msg["content"] == [{"type": "text", "text": "Hello from mock"}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["message"]["model"] == upstream.model
    up = upstream.last_usage()
    # Input tokens belong in message_start; a translated stream only learns them at
    # the end, so message_delta may carry them instead (the SDK reads both).
    if upstream.kind == "anthropic":
        assert msg["message"]["usage"]["input_tokens"] == up["input_tokens"]
    assert {k: msg["usage"].get(k) for k in up} == up, (
        f"message_start + message_delta usage must be the upstream's: {msg['usage']} vs {up}")
    assert msg["delta_usage"].get("output_tokens") == up["output_tokens"], (
        f"message_delta must carry the output tokens: {msg['delta_usage']} vs {up}")


def test_stream_true_sdk_iteration(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    events = list(anth.messages.create(model=upstream.model, max_tokens=100, messages=HI, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop", types
    assert types[-2] == "message_delta" and events[-2].delta.stop_reason == "end_turn"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Hello from mock"


# ---------------------------------------------------------------------------
# Stop reasons and sampling parameters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_stop_reason_max_tokens(anth: anthropic.Anthropic, upstream: Upstream, stream: bool) -> None:
    if stream:
        with anth.messages.stream(model=upstream.model, max_tokens=2, messages=HI) as s:
            r = s.get_final_message()
    else:
        r = anth.messages.create(model=upstream.model, max_tokens=2, messages=HI)
    assert r.content[0].text == "Hello from"
    assert r.stop_reason == "max_tokens", f"upstream length stop must map to max_tokens, got {r.stop_reason}"
    assert upstream.max_tokens(upstream.last_chat().body) == 2


def test_sampling_parameters_reach_upstream(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    # anthropic>=2 dropped temperature/top_p/top_k from create()'s signature; the
    # Messages API (and llm-link) still take them, so send them as extra body.
    extra: dict[str, Any] = {"temperature": 0.25, "top_p": 0.5}
    if upstream.kind != "openai":  # OpenAI has no top_k
        extra["top_k"] = 7
    r = anth.messages.create(model=upstream.model, max_tokens=77, messages=HI, stop_sequences=["ZZZ"],
                             extra_body=extra)
    assert r.content[0].text == "Hello from mock"
    body = upstream.last_chat().body
    assert upstream.max_tokens(body) == 77
    assert upstream.param(body, "temperature") == 0.25
    assert upstream.param(body, "top_p") == 0.5
    assert upstream.param(body, "stop_sequences") == ["ZZZ"]
    if "top_k" in extra:
        assert upstream.param(body, "top_k") == 7


def test_anthropic_only_fields_not_sent_to_openai(anth: anthropic.Anthropic, mock: MockUpstream) -> None:
    """Anthropic-only fields (thinking, ...) stay out of a chat/completions body; metadata.user_id -> user."""
    r = anth.messages.create(model="mock-model", max_tokens=50, messages=HI, thinking={"type": "disabled"},
                             metadata={"user_id": "u-1"})
    assert r.content[0].text == "Hello from mock"
    body = mock.last("/v1/chat/completions").body
    leaked = set(body) - OPENAI_CHAT_PARAMS
    assert not leaked, f"Anthropic-only fields sent to the OpenAI upstream: {sorted(leaked)}: {body}"
    assert body.get("user") == "u-1", body


def test_stop_sequence_passthrough(anth: anthropic.Anthropic, anthropic_mock: MockAnthropic,
                                   matrix_gateway: "Gateway") -> None:
    r = anth.messages.create(model="claude-mock", max_tokens=50, messages=HI, stop_sequences=[" mock"])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == " mock" and r.content[0].text == "Hello from"


# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------


def _first_turn(anth: anthropic.Anthropic, model: str, question: str, stream: bool) -> anthropic.types.Message:
    kw: dict[str, Any] = dict(model=model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL],
                              messages=[{"role": "user", "content": question}])
    if stream:
        with anth.messages.stream(**kw) as s:
            return s.get_final_message()
    return anth.messages.create(**kw)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_round(anth: anthropic.Anthropic, upstream: Upstream, stream: bool) -> None:
    r = _first_turn(anth, upstream.model, WEATHER_Q, stream)
    assert r.stop_reason == "tool_use", f"stop_reason {r.stop_reason}: {r.content}"
    uses = [b for b in r.content if b.type == "tool_use"]
    assert len(uses) == 1, r.content
    use = uses[0]
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}
    assert use.id and ANTHROPIC_TOOL_ID_RE.match(use.id), f"tool_use id {use.id!r} is not a valid Anthropic id"
    assert _usage(r.usage) == upstream.last_usage()

    first = upstream.last_chat().body
    assert upstream.tool_defs(first) == [("get_weather", "Get the current weather for a city", WEATHER_SCHEMA)], (
        f"tool definitions upstream: {first.get('tools')}")

    messages = [
        {"role": "user", "content": WEATHER_Q},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    kw: dict[str, Any] = dict(model=upstream.model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL], messages=messages)
    if stream:
        with anth.messages.stream(**kw) as s:
            r2 = s.get_final_message()
    else:
        r2 = anth.messages.create(**kw)
    assert r2.stop_reason == "end_turn", r2
    assert [b.type for b in r2.content] == ["text"], r2.content
    assert r2.content[0].text == f"The weather is: {TOOL_RESULT}"

    second = upstream.last_chat().body
    calls = upstream.tool_calls(second)
    assert [(c[1], c[2]) for c in calls] == [("get_weather", {"city": "Paris"})], f"assistant turn upstream: {second}"
    results = upstream.tool_results(second)
    assert [t for _, t in results] == [TOOL_RESULT], f"tool results upstream: {second}"
    if upstream.kind != "ollama":  # Ollama links results by position, not id
        assert calls[0][0] and results[0][0] == calls[0][0], f"result id must answer the call id: {calls} {results}"
    upstream.assert_auth()


def test_parallel_tool_calls_streamed(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    r = _first_turn(anth, upstream.model, "weather in Paris and London?", stream=True)
    uses = [b for b in r.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "Paris"}, {"city": "London"}], r.content
    assert len({u.id for u in uses}) == 2 and all(ANTHROPIC_TOOL_ID_RE.match(u.id) for u in uses)
    assert r.stop_reason == "tool_use"

    messages = [
        {"role": "user", "content": "weather in Paris and London?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"},
            {"type": "tool_result", "tool_use_id": uses[1].id, "content": [{"type": "text", "text": "rainy"}]}]},
    ]
    with anth.messages.stream(model=upstream.model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL],
                              messages=messages) as s:
        r2 = s.get_final_message()
    assert r2.content[0].text == "The weather is: sunny rainy"
    body = upstream.last_chat().body
    assert [t for _, t in upstream.tool_results(body)] == ["sunny", "rainy"]
    if upstream.kind != "ollama":
        call_ids = [c[0] for c in upstream.tool_calls(body)]
        assert [i for i, _ in upstream.tool_results(body)] == call_ids


def test_tool_use_raw_stream_fragments(matrix_gateway: "Gateway", upstream: Upstream) -> None:
    """tool_use arrives as content_block_start (input {}) + input_json_delta fragments."""
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                      json={"model": upstream.model, "max_tokens": 300, "stream": True,
                            "tools": [ANTHROPIC_WEATHER_TOOL],
                            "messages": [{"role": "user", "content": WEATHER_Q}]})
    assert r.status_code == 200, r.text
    events = anthropic_sse_events(r.text)
    msg = check_anthropic_stream(events)
    uses = [b for b in msg["content"] if b["type"] == "tool_use"]
    assert len(uses) == 1 and uses[0]["input"] == {"city": "Paris"} and uses[0]["name"] == "get_weather"
    assert msg["stop_reason"] == "tool_use"
    frags = [e for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"]
    assert frags, "no input_json_delta events"


def test_tool_error_result_and_tool_choice(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    """is_error results and tool_choice any reach the upstream without breaking the round."""
    if upstream.kind == "ollama":
        # Ollama cannot force a tool call: a clear 400 rather than a silent drop.
        with pytest.raises(anthropic.BadRequestError) as ei:
            anth.messages.create(model=upstream.model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL],
                                 tool_choice={"type": "any"}, messages=[{"role": "user", "content": WEATHER_Q}])
        err = assert_anthropic_error(ei.value.response, 400, "invalid_request_error")
        assert "tool_choice" in err["message"], err
        assert upstream.chat_calls() == []
        return
    r = anth.messages.create(model=upstream.model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL],
                             tool_choice={"type": "any"}, messages=[{"role": "user", "content": WEATHER_Q}])
    use = next(b for b in r.content if b.type == "tool_use")
    first = upstream.last_chat().body
    if upstream.kind == "openai":
        assert first.get("tool_choice") == "required", f"tool_choice any -> required: {first.get('tool_choice')}"
    elif upstream.kind == "anthropic":
        assert first.get("tool_choice") == {"type": "any"}
    r2 = anth.messages.create(model=upstream.model, max_tokens=300, tools=[ANTHROPIC_WEATHER_TOOL], messages=[
        {"role": "user", "content": WEATHER_Q},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "is_error": True,
                                      "content": "city not found"}]}])
    assert "city not found" in r2.content[0].text


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_image_reaches_upstream_natively(anth: anthropic.Anthropic, upstream: Upstream, stream: bool) -> None:
    content = [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
               {"type": "text", "text": "What is in this image?"}]
    kw: dict[str, Any] = dict(model=upstream.model, max_tokens=100, messages=[{"role": "user", "content": content}])
    if stream:
        with anth.messages.stream(**kw) as s:
            r = s.get_final_message()
    else:
        r = anth.messages.create(**kw)
    assert r.content[0].text == "Hello from mock"
    body = upstream.last_chat().body
    images = upstream.images(body)
    expected_type = None if upstream.kind == "ollama" else "image/png"
    assert images == [(expected_type, PNG_B64)], f"image upstream: {images}"
    assert "What is in this image?" in upstream.user_text(body)


# ---------------------------------------------------------------------------
# count_tokens, models
# ---------------------------------------------------------------------------


def test_count_tokens(anth: anthropic.Anthropic, upstream: Upstream, matrix_gateway: "Gateway") -> None:
    short = anth.messages.count_tokens(model=upstream.model, system="Be terse.", messages=HI,
                                       tools=[ANTHROPIC_WEATHER_TOOL]).input_tokens
    if upstream.kind == "anthropic":
        counted = upstream.mock.last("/v1/messages/count_tokens")
        assert short == counted.usage["input_tokens"], "count_tokens must be Anthropic's exact answer"
        assert counted.body["tools"] == [ANTHROPIC_WEATHER_TOOL] and counted.body["system"] == "Be terse."
        return
    assert isinstance(short, int) and short > 0
    long = anth.messages.count_tokens(model=upstream.model, system="Be terse.", tools=[ANTHROPIC_WEATHER_TOOL],
                                      messages=[{"role": "user", "content": "word " * 400}]).input_tokens
    assert long > short + 100, f"the estimate must grow with the input: {short} -> {long}"
    assert upstream.mock.requests == [], "an estimate must not call the upstream"


def test_models_list_in_anthropic_shape(anth: anthropic.Anthropic) -> None:
    models = list(anth.models.list())
    ids = [m.id for m in models]
    for want in ("claude-mock", "mock-model", "llama-mock"):
        assert want in ids, ids
    assert all(m.type == "model" for m in models)


# ---------------------------------------------------------------------------
# Path prefix and authentication styles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_anthropic_path_prefix(matrix_gateway: "Gateway", kind: str, mock: MockUpstream,
                               anthropic_mock: MockAnthropic) -> None:
    model = {"anthropic": "claude-mock", "openai": "mock-model"}[kind]
    with anthropic_client(matrix_gateway.url + "/anthropic") as c:
        r = c.messages.create(model=model, max_tokens=50, messages=HI)
        assert r.content[0].text == "Hello from mock"
        with c.messages.stream(model=model, max_tokens=50, messages=HI) as s:
            assert s.get_final_text() == "Hello from mock"
        assert c.messages.count_tokens(model=model, messages=HI).input_tokens > 0


@pytest.mark.parametrize("method, path", [("GET", "/anthropic/v1/models"), ("POST", "/anthropic/v1/complete"),
                                          ("GET", "/anthropic/v1/nothing")])
def test_other_anthropic_prefixed_routes_answer_in_anthropic_shape(matrix_gateway: "Gateway", method: str,
                                                                   path: str) -> None:
    """GET /anthropic/v1/models may be served (Anthropic list) or be a 404; either way in Anthropic's shape."""
    with http_client(matrix_gateway.url, headers={"x-api-key": CLIENT_KEY,
                                                  "anthropic-version": "2023-06-01"}) as http:
        r = http.request(method, path, json={"model": "claude-mock", "prompt": "hi"} if method == "POST" else None)
    if path.endswith("/models") and r.status_code == 200:
        assert "claude-mock" in [m["id"] for m in r.json()["data"]], r.text
        return
    assert_anthropic_error(r, 404, "not_found_error")


def test_x_api_key_header_is_accepted(matrix_gateway: "Gateway", anthropic_mock: MockAnthropic) -> None:
    """Claude Code and older SDKs send the key as x-api-key."""
    with http_client(matrix_gateway.url) as http:
        r = http.post("/v1/messages", headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-mock", "max_tokens": 20, "messages": HI})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "Hello from mock"
    fwd = anthropic_mock.last("/v1/messages")
    assert fwd.header("x-api-key") == "anthropic-secret", "the gateway must swap in its own upstream key"


# ---------------------------------------------------------------------------
# Pass-through (Anthropic client -> Anthropic upstream): bytes are kept
# ---------------------------------------------------------------------------


def test_passthrough_request_and_response_bytes(matrix_gateway: "Gateway", anthropic_mock: MockAnthropic) -> None:
    sent = (b'{ "model" : "claude-mock",\n  "max_tokens": 40, "metadata": {"user_id": "u-42"},'
            b' "service_tier": "auto",  "messages": [{"role": "user", "content": "hi"}] }')
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", content=sent, headers={
            "content-type": "application/json", "anthropic-version": "2023-06-01",
            "anthropic-beta": "token-efficient-tools-2025-02-19"})
    assert r.status_code == 200, r.text
    up = anthropic_mock.last("/v1/messages")
    assert up.raw_body == sent, f"request not forwarded byte for byte:\n{up.raw_body!r}\n{sent!r}"
    assert up.header("anthropic-beta") == "token-efficient-tools-2025-02-19", "anthropic-beta must be forwarded"
    assert up.header("anthropic-version") == "2023-06-01", "the client's anthropic-version must be forwarded"
    assert r.content == up.response, "response not forwarded byte for byte"


def test_passthrough_stream_bytes(matrix_gateway: "Gateway", anthropic_mock: MockAnthropic) -> None:
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                      json={"model": "claude-mock", "max_tokens": 300, "stream": True,
                            "tools": [ANTHROPIC_WEATHER_TOOL], "messages": [{"role": "user", "content": WEATHER_Q}]})
    assert r.status_code == 200, r.text
    up = anthropic_mock.last("/v1/messages")
    assert r.content == up.response, "a same-format stream must be forwarded byte for byte"


# ---------------------------------------------------------------------------
# Errors: the SDK's own exception types, Anthropic-shaped bodies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unknown_model_is_not_found(anth: anthropic.Anthropic, stream: bool, mock: MockUpstream,
                                    anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> None:
    with pytest.raises(anthropic.NotFoundError) as ei:
        anth.messages.create(model="no-such-model", max_tokens=10, messages=HI, stream=stream)
    err = assert_anthropic_error(ei.value.response, 404, "not_found_error")
    assert "no-such-model" in err["message"], err
    _no_chat_upstream_calls(mock, anthropic_mock, ollama_mock)


def test_wrong_key_is_authentication_error(matrix_gateway: "Gateway", mock: MockUpstream,
                                           anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> None:
    with anthropic_client(matrix_gateway.url, api_key="wrong-key") as c, \
            pytest.raises(anthropic.AuthenticationError) as ei:
        c.messages.create(model="claude-mock", max_tokens=10, messages=HI)
    err = assert_anthropic_error(ei.value.response, 401, "authentication_error")
    assert "wrong-key" not in err["message"]
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/anthropic/v1/messages"):
        # A fresh connection per request: see test_keepalive.py for reuse after a 401.
        with http_client(matrix_gateway.url) as http:
            r = http.post(path, headers={"anthropic-version": "2023-06-01"},
                          json={"model": "claude-mock", "max_tokens": 10, "messages": HI})
        assert_anthropic_error(r, 401, "authentication_error")
    _no_chat_upstream_calls(mock, anthropic_mock, ollama_mock)


@pytest.mark.parametrize("body, needle", [
    ({"model": "claude-mock", "messages": HI}, "max_tokens"),
    ({"model": "mock-model", "messages": HI}, "max_tokens"),
    ({"model": "claude-mock", "max_tokens": 10}, "messages"),
    ({"model": "mock-model", "max_tokens": 10, "messages": "hi"}, "messages"),
    ({"max_tokens": 10, "messages": HI}, "model"),
], ids=["no-max-tokens-anthropic", "no-max-tokens-openai", "no-messages", "messages-not-list", "no-model"])
def test_bad_request_is_invalid_request_error(matrix_gateway: "Gateway", body: dict[str, Any], needle: str,
                                              mock: MockUpstream, anthropic_mock: MockAnthropic,
                                              ollama_mock: MockOllama) -> None:
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    err = assert_anthropic_error(r, 400, "invalid_request_error")
    assert needle in err["message"], f"the 400 should name {needle!r}: {err}"
    _no_chat_upstream_calls(mock, anthropic_mock, ollama_mock)


def test_invalid_json_is_400(matrix_gateway: "Gateway") -> None:
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", content=b'{"model": "claude-mock", "messages": [',
                      headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
    assert_anthropic_error(r, 400, "invalid_request_error")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["claude-fail-429", "fail-429"], ids=["anthropic-up", "openai-up"])
def test_upstream_429_is_rate_limit_error(anth: anthropic.Anthropic, model: str, stream: bool) -> None:
    with pytest.raises(anthropic.RateLimitError) as ei:
        anth.messages.create(model=model, max_tokens=10, messages=HI, stream=stream)
    assert ei.value.status_code == 429
    assert_anthropic_error(ei.value.response, 429, "rate_limit_error")
    assert ei.value.response.headers.get("retry-after") == "7", dict(ei.value.response.headers)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_500_is_502(anth: anthropic.Anthropic, upstream: Upstream, stream: bool) -> None:
    with pytest.raises(anthropic.APIStatusError) as ei:
        anth.messages.create(model=upstream.fail_500, max_tokens=10, messages=HI, stream=stream)
    assert ei.value.status_code == 502, f"upstream 5xx must map to 502, got {ei.value.status_code}"
    err = assert_anthropic_error(ei.value.response, 502)
    assert "127.0.0.1" not in err["message"] and "secret" not in ei.value.response.text
    assert upstream.chat_calls(), "the upstream was never called"


def test_upstream_error_detail_in_anthropic_shape(anth: anthropic.Anthropic) -> None:
    """An upstream 4xx from a translated provider still reaches the client in Anthropic's error shape."""
    # The OpenAI mock refuses a tool result that answers no call: an invalid conversation
    # can't be caught by the gateway for a translated target, so the upstream's 400 must come back.
    with pytest.raises(anthropic.BadRequestError) as ei:
        anth.messages.create(model="mock-model", max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}]}])
    assert_anthropic_error(ei.value.response, 400, "invalid_request_error")


def test_json_decoding_of_tool_input_keeps_types(anth: anthropic.Anthropic, upstream: Upstream) -> None:
    """Non-trivial tool input (nested, unicode, numbers) survives a full round in both directions."""
    tricky = {"city": "Zürich \"HQ\"", "days": 3, "opts": {"metric": True, "tags": ["a", "b"]}}
    use = {"type": "tool_use", "id": "toolu_01TrickyAAAAAAAAAAAAAAA", "name": "get_weather", "input": tricky}
    r = anth.messages.create(model=upstream.model, max_tokens=100, tools=[ANTHROPIC_WEATHER_TOOL], messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "ok"}]}])
    assert r.content[0].text == "The weather is: ok"
    calls = upstream.tool_calls(upstream.last_chat().body)
    assert [(c[1], c[2]) for c in calls] == [("get_weather", tricky)], calls
    if upstream.kind == "openai":
        raw = next(m for m in upstream.last_chat().body["messages"] if m.get("tool_calls"))
        assert json.loads(raw["tool_calls"][0]["function"]["arguments"]) == tricky


# ---------------------------------------------------------------------------
# The SDK's beta client (what Claude Code uses): `?beta=true` and betas
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_beta_client_with_betas(anth: anthropic.Anthropic, upstream: Upstream, stream: bool) -> None:
    """``client.beta.messages`` posts to ``/v1/messages?beta=true`` with an ``anthropic-beta`` list; every
    upstream answers, and an Anthropic upstream receives the betas unchanged."""
    betas = ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    # `?beta=true` as Claude Code sends it (explicit: SDK versions differ on adding it themselves).
    kw: dict[str, Any] = {"model": upstream.model, "max_tokens": 64, "betas": betas,
                          "system": "You are terse.", "messages": HI, "extra_query": {"beta": "true"}}
    if stream:
        with anth.beta.messages.stream(**kw) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
    else:
        final = anth.beta.messages.create(**kw)
        text = "".join(b.text for b in final.content if b.type == "text")
    assert text == "Hello from mock" and final.stop_reason == "end_turn"
    body = upstream.last_chat().body
    assert upstream.system(body) == "You are terse." and upstream.user_text(body) == "hi"
    if upstream.kind == "anthropic":
        up = upstream.mock.last("/v1/messages")
        assert up.header("anthropic-beta") == ",".join(betas), up.header("anthropic-beta")
    upstream.assert_auth()
