"""The official ``ollama`` SDK against llm-link's Ollama surface.

Chat tests run against the three upstream kinds behind one gateway
(``matrix_gateway``): the Ollama mock (pass-through), the OpenAI mock and the
Anthropic mock (translation). Besides what the SDK returns, each test checks
what reached the upstream, in that upstream's native shape.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterator

import ollama
import pytest

from mock_anthropic import MockAnthropic
from mock_ollama import MockOllama
from mock_upstream import MockUpstream, embedding_for
from multi import (CLIENT_KEY, OLLAMA_WEATHER_TOOL, OPENAI_CHAT_PARAMS, PNG_B64, PNG_BYTES, TOOL_RESULT,
                   WEATHER_SCHEMA, Upstream, check_ollama_stream, http_client, ndjson_lines, ollama_client)

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
WEATHER_Q = "What is the weather in Paris?"


def _client(gw: "Gateway", key: str | None = CLIENT_KEY) -> ollama.Client:
    return ollama_client(gw.url, key)


@pytest.fixture
def oc(matrix_gateway: "Gateway") -> Iterator[ollama.Client]:
    c = _client(matrix_gateway)
    yield c
    c.close()


RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _ts(value: Any) -> None:
    assert isinstance(value, str) and RFC3339_RE.match(value), f"created_at is not RFC 3339: {value!r}"


def _assert_usage(r: Any, upstream: Upstream) -> None:
    assert {"input_tokens": r.prompt_eval_count, "output_tokens": r.eval_count} == upstream.last_usage(), (
        "prompt_eval_count / eval_count must be the upstream's numbers")


def _no_post_upstream(*mocks: Any) -> None:
    for m in mocks:
        posts = [r for r in m.requests if r.method in ("POST", "DELETE")]
        assert posts == [], f"no upstream call expected, got {[(r.method, r.path) for r in posts]}"


# ---------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------


def test_chat_non_streamed(oc: ollama.Client, upstream: Upstream) -> None:
    r = oc.chat(model=upstream.model, stream=False,
                messages=[{"role": "system", "content": "You are terse."}, *HI],
                options={"temperature": 0.25, "top_p": 0.5, "num_predict": 99, "stop": ["ZZZ"]})
    assert r.model == upstream.model
    assert r.message.role == "assistant" and r.message.content == "Hello from mock"
    assert not r.message.tool_calls
    assert r.done is True and r.done_reason == "stop"
    _assert_usage(r, upstream)
    assert isinstance(r.total_duration, int) and r.total_duration >= 0
    _ts(r.created_at)

    body = upstream.last_chat().body
    assert upstream.system(body) == "You are terse."
    assert upstream.non_system_roles(body) == ["user"] and upstream.user_text(body) == "hi"
    assert upstream.max_tokens(body) == 99
    assert upstream.param(body, "temperature") == 0.25
    assert upstream.param(body, "top_p") == 0.5
    assert upstream.param(body, "stop_sequences") == ["ZZZ"]
    if upstream.kind == "ollama":
        assert body["stream"] is False
    upstream.assert_auth()


def test_chat_streamed(oc: ollama.Client, upstream: Upstream) -> None:
    parts = list(oc.chat(model=upstream.model, messages=HI, stream=True))
    assert len(parts) >= 3, f"expected several chunks, got {len(parts)}"
    assert all(p.done is False for p in parts[:-1]) and parts[-1].done is True
    assert "".join(p.message.content or "" for p in parts) == "Hello from mock"
    assert len([p for p in parts if p.message.content]) >= 2, "the text must be streamed, not sent whole"
    last = parts[-1]
    assert last.done_reason == "stop"
    _assert_usage(last, upstream)
    assert all(p.model == upstream.model for p in parts)
    assert upstream.last_chat().body.get("stream") is True
    upstream.assert_auth()


def test_chat_raw_ndjson(matrix_gateway: "Gateway", upstream: Upstream) -> None:
    """Default (no "stream") is NDJSON; each line is one JSON object; last line done with counts."""
    with matrix_gateway.http() as http:
        r = http.post("/api/chat", json={"model": upstream.model, "messages": HI})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson"), r.headers
    out = check_ollama_stream(ndjson_lines(r.text))
    assert out["text"] == "Hello from mock"
    assert out["final"]["prompt_eval_count"] == upstream.last_usage()["input_tokens"]
    assert out["final"]["eval_count"] == upstream.last_usage()["output_tokens"]
    assert r.text.endswith("\n"), "every NDJSON line ends with a newline"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_chat_num_predict_is_length(oc: ollama.Client, upstream: Upstream, stream: bool) -> None:
    res = oc.chat(model=upstream.model, messages=HI, options={"num_predict": 2}, stream=stream)
    parts = list(res) if stream else [res]
    assert "".join(p.message.content or "" for p in parts) == "Hello from"
    assert parts[-1].done_reason == "length", f"a max-token stop must be done_reason length: {parts[-1]}"


def test_chat_format_json_reaches_openai(oc: ollama.Client, mock: MockUpstream) -> None:
    oc.chat(model="mock-model", messages=HI, format="json")
    assert mock.last("/v1/chat/completions").body.get("response_format") == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    oc.chat(model="mock-model", messages=HI, format=schema)
    rf = mock.last("/v1/chat/completions").body.get("response_format") or {}
    assert rf.get("type") == "json_schema" and rf.get("json_schema", {}).get("schema") == schema, rf


def test_chat_keep_alive_and_unknown_options_accepted(oc: ollama.Client, upstream: Upstream) -> None:
    r = oc.chat(model=upstream.model, messages=HI, keep_alive="5m", think=False,
                options={"num_ctx": 8192, "seed": 42, "repeat_penalty": 1.1})
    assert r.message.content == "Hello from mock"
    body = upstream.last_chat().body
    if upstream.kind == "openai":
        assert body.get("seed") == 42
    if upstream.kind == "ollama":
        assert body.get("keep_alive") == "5m" and body["options"]["num_ctx"] == 8192


@pytest.mark.parametrize("endpoint", ["chat", "generate"])
def test_ollama_only_fields_not_sent_to_openai(oc: ollama.Client, mock: MockUpstream, endpoint: str) -> None:
    """Ollama-only fields (keep_alive, options, think, raw, context) stay out of a chat/completions body."""
    if endpoint == "chat":
        r = oc.chat(model="mock-model", messages=HI, keep_alive="5m", think=False,
                    options={"num_ctx": 8192, "seed": 42, "temperature": 0.5})
        assert r.message.content == "Hello from mock"
    else:
        r = oc.generate(model="mock-model", prompt="hi", keep_alive=-1, raw=True, context=[1, 2, 3],
                        options={"num_ctx": 8192})
        assert r.response == "Hello from mock"
    body = mock.last("/v1/chat/completions").body
    leaked = set(body) - OPENAI_CHAT_PARAMS
    assert not leaked, f"Ollama-only fields sent to the OpenAI upstream: {sorted(leaked)}: {body}"
    assert body.get("temperature") in (None, 0.5)


def test_load_model_with_empty_messages(oc: ollama.Client, upstream: Upstream) -> None:
    r = oc.chat(model=upstream.model, messages=[])
    assert r.done is True and r.done_reason == "load" and r.message.content == ""
    assert upstream.chat_calls() == [], "loading a model must not run a chat upstream"


# ---------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_generate(oc: ollama.Client, upstream: Upstream, stream: bool) -> None:
    res = oc.generate(model=upstream.model, prompt="Say hi", system="Be terse.", stream=stream)
    parts = list(res) if stream else [res]
    assert "".join(p.response for p in parts) == "Hello from mock"
    last = parts[-1]
    assert last.done is True and last.done_reason == "stop"
    assert all(p.done is False for p in parts[:-1])
    assert isinstance(last.prompt_eval_count, int) and isinstance(last.eval_count, int)
    if upstream.kind == "ollama":
        up = upstream.mock.last("/api/generate")
        assert up.body["prompt"] == "Say hi" and up.body["system"] == "Be terse."
        assert {"input_tokens": last.prompt_eval_count, "output_tokens": last.eval_count} == up.usage
        return
    _assert_usage(last, upstream)
    body = upstream.last_chat().body
    assert upstream.system(body) == "Be terse."
    assert upstream.non_system_roles(body) == ["user"] and upstream.user_text(body) == "Say hi"


def test_generate_with_image(oc: ollama.Client, upstream: Upstream) -> None:
    r = oc.generate(model=upstream.model, prompt="What is this?", images=[PNG_BYTES])
    assert r.response == "Hello from mock"
    if upstream.kind == "ollama":
        assert upstream.mock.last("/api/generate").body["images"] == [PNG_B64]
        return
    assert upstream.images(upstream.last_chat().body) == [("image/png", PNG_B64)]


# ---------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model, up", [("mock-embed", "openai"), ("embed-mock", "ollama")])
def test_embed(oc: ollama.Client, model: str, up: str, mock: MockUpstream, ollama_mock: MockOllama) -> None:
    r = oc.embed(model=model, input=["a", "b"])
    assert r.model == model
    assert [list(v) for v in r.embeddings] == [embedding_for("a"), embedding_for("b")]
    r1 = oc.embed(model=model, input="solo")
    assert [list(v) for v in r1.embeddings] == [embedding_for("solo")]
    if up == "openai":
        assert mock.last("/v1/embeddings").body["input"] in ("solo", ["solo"])
    else:
        upr = ollama_mock.last("/api/embed")
        assert upr.body["input"] in ("solo", ["solo"])
        assert r1.prompt_eval_count == upr.usage["input_tokens"]


@pytest.mark.parametrize("model", ["mock-embed", "embed-mock"])
def test_embeddings_legacy(oc: ollama.Client, model: str) -> None:
    r = oc.embeddings(model=model, prompt="a")
    assert list(r.embedding) == embedding_for("a")


def test_embed_on_anthropic_is_clear_400(oc: ollama.Client, anthropic_mock: MockAnthropic) -> None:
    with pytest.raises(ollama.ResponseError) as ei:
        oc.embed(model="claude-mock", input="a")
    assert ei.value.status_code == 400
    assert "embed" in ei.value.error.lower(), ei.value.error
    assert anthropic_mock.requests == []


# ---------------------------------------------------------------------------
# tags, show, ps, version
# ---------------------------------------------------------------------------


def test_list_models(oc: ollama.Client) -> None:
    models = oc.list().models
    names = [m.model for m in models]
    for want in ("mock-model", "claude-mock", "llama-mock", "embed-mock", "mock-embed"):
        assert want in names or f"{want}:latest" in names, names
    for m in models:
        assert m.details is not None and m.details.family and m.details.format, m
        assert m.modified_at is not None and m.digest is not None and m.size is not None, m


@pytest.mark.parametrize("model", ["mock-model", "claude-mock", "llama-mock", "llama-mock:latest"])
def test_show_chat_model(oc: ollama.Client, model: str) -> None:
    s = oc.show(model)
    assert s.capabilities and "completion" in s.capabilities and "tools" in s.capabilities, s.capabilities
    info = s.modelinfo or {}
    arch = info.get("general.architecture")
    assert isinstance(arch, str) and arch, info
    ctx = info.get(f"{arch}.context_length")
    assert isinstance(ctx, int) and ctx > 0, f"model_info lacks {arch}.context_length: {info}"
    assert s.details is not None and s.details.family


def test_show_embedding_model(oc: ollama.Client) -> None:
    s = oc.show("embed-mock")
    assert "embedding" in (s.capabilities or []) and "tools" not in (s.capabilities or []), s.capabilities


def test_show_unknown_is_404(oc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as ei:
        oc.show("no-such-model")
    assert ei.value.status_code == 404 and "no-such-model" in ei.value.error


def test_ps(oc: ollama.Client) -> None:
    r = oc.ps()
    assert isinstance(list(r.models), list)


def test_version_without_auth(matrix_gateway: "Gateway") -> None:
    with http_client(matrix_gateway.url) as http:
        r = http.get("/api/version")
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    assert isinstance(v, str) and len(v.split(".")) == 3 and all(p.isdigit() for p in v.split(".")), v


# ---------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------


def _collect(res: Any, stream: bool) -> tuple[str, list[Any], Any]:
    parts = list(res) if stream else [res]
    text = "".join(p.message.content or "" for p in parts)
    calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
    return text, calls, parts[-1]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_round(oc: ollama.Client, upstream: Upstream, stream: bool) -> None:
    msgs: list[Any] = [{"role": "user", "content": WEATHER_Q}]
    text, calls, last = _collect(oc.chat(model=upstream.model, messages=msgs, tools=[OLLAMA_WEATHER_TOOL],
                                         stream=stream), stream)
    assert len(calls) == 1, f"expected one tool call, got {calls}"
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}, "Ollama tool arguments are an object"
    assert last.done is True
    _assert_usage(last, upstream)
    first = upstream.last_chat().body
    assert upstream.tool_defs(first) == [("get_weather", "Get the current weather for a city", WEATHER_SCHEMA)]

    # What an Ollama client sends back: the assistant message (no call ids in Ollama's
    # format) and a tool message naming the tool.
    msgs += [{"role": "assistant", "content": text, "tool_calls": calls},
             {"role": "tool", "content": TOOL_RESULT, "tool_name": "get_weather"}]
    text2, calls2, last2 = _collect(oc.chat(model=upstream.model, messages=msgs, tools=[OLLAMA_WEATHER_TOOL],
                                            stream=stream), stream)
    assert calls2 == []
    assert text2 == f"The weather is: {TOOL_RESULT}"
    assert last2.done_reason == "stop"

    second = upstream.last_chat().body
    up_calls = upstream.tool_calls(second)
    assert [(c[1], c[2]) for c in up_calls] == [("get_weather", {"city": "Paris"})], second
    results = upstream.tool_results(second)
    assert [t for _, t in results] == [TOOL_RESULT]
    if upstream.kind != "ollama":
        assert up_calls[0][0] and results[0][0] == up_calls[0][0], (
            f"the gateway must link the tool result to the call id it gave upstream: {up_calls} {results}")
    upstream.assert_auth()


def test_parallel_tool_calls_streamed(oc: ollama.Client, upstream: Upstream) -> None:
    q = "weather in Paris and London?"
    text, calls, _ = _collect(oc.chat(model=upstream.model, messages=[{"role": "user", "content": q}],
                                      tools=[OLLAMA_WEATHER_TOOL], stream=True), True)
    assert [c.function.arguments for c in calls] == [{"city": "Paris"}, {"city": "London"}], calls
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": text, "tool_calls": calls},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            {"role": "tool", "content": "rainy", "tool_name": "get_weather"}]
    text2, _, _ = _collect(oc.chat(model=upstream.model, messages=msgs, tools=[OLLAMA_WEATHER_TOOL],
                                   stream=True), True)
    assert text2 == "The weather is: sunny rainy"
    body = upstream.last_chat().body
    assert [t for _, t in upstream.tool_results(body)] == ["sunny", "rainy"]
    if upstream.kind != "ollama":
        assert [i for i, _ in upstream.tool_results(body)] == [c[0] for c in upstream.tool_calls(body)]


def test_tool_message_without_tool_name(oc: ollama.Client, upstream: Upstream) -> None:
    """Older Ollama clients send tool results with content only."""
    msgs = [{"role": "user", "content": WEATHER_Q},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": TOOL_RESULT}]
    r = oc.chat(model=upstream.model, messages=msgs, tools=[OLLAMA_WEATHER_TOOL])
    assert r.message.content == f"The weather is: {TOOL_RESULT}"


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_image_reaches_upstream_natively(oc: ollama.Client, upstream: Upstream, stream: bool) -> None:
    res = oc.chat(model=upstream.model, stream=stream,
                  messages=[{"role": "user", "content": "What is in this image?", "images": [PNG_BYTES]}])
    text, _, _ = _collect(res, stream)
    assert text == "Hello from mock"
    body = upstream.last_chat().body
    expected_type = None if upstream.kind == "ollama" else "image/png"
    assert upstream.images(body) == [(expected_type, PNG_B64)], (
        f"the image must reach the {upstream.kind} upstream natively (media type sniffed from the bytes)")
    assert "What is in this image?" in upstream.user_text(body)


# ---------------------------------------------------------------------------
# pass-through bytes (Ollama client -> Ollama upstream)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_passthrough_bytes(matrix_gateway: "Gateway", ollama_mock: MockOllama, stream: bool) -> None:
    sent = (b'{"model": "llama-mock",  "messages": [{"role": "user", "content": "hi"}],'
            b' "stream": ' + (b"true" if stream else b"false") + b', "x_extra": {"k": [1, 2]}}')
    with matrix_gateway.http() as http:
        r = http.post("/api/chat", content=sent, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    up = ollama_mock.last("/api/chat")
    assert up.raw_body == sent, f"request not forwarded byte for byte: {up.raw_body!r}"
    assert r.content == up.response, "response not forwarded byte for byte"


# ---------------------------------------------------------------------------
# errors: ollama.ResponseError with the right status
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_unknown_model_is_404(oc: ollama.Client, stream: bool, mock: MockUpstream,
                              anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> None:
    with pytest.raises(ollama.ResponseError) as ei:
        res = oc.chat(model="no-such-model", messages=HI, stream=stream)
        if stream:
            list(res)
    assert ei.value.status_code == 404, ei.value
    assert "no-such-model" in ei.value.error
    _no_post_upstream(mock, anthropic_mock, ollama_mock)


def test_unknown_model_generate_and_embed_are_404(oc: ollama.Client) -> None:
    for call in (lambda: oc.generate(model="no-such-model", prompt="hi"),
                 lambda: oc.embed(model="no-such-model", input="a")):
        with pytest.raises(ollama.ResponseError) as ei:
            call()
        assert ei.value.status_code == 404, ei.value


def test_delete_and_pull_are_clear_400(oc: ollama.Client, ollama_mock: MockOllama) -> None:
    with pytest.raises(ollama.ResponseError) as ed:
        oc.delete("llama-mock")
    with pytest.raises(ollama.ResponseError) as ep:
        oc.pull("llama-mock")
    for e in (ed.value, ep.value):
        assert e.status_code == 400, e
        # ResponseError.error is the body's "error" string when the body is {"error": "..."}
        assert isinstance(e.error, str) and "model" in e.error.lower() and not e.error.lstrip().startswith("{"), e
    _no_post_upstream(ollama_mock)


def test_wrong_key_is_401(matrix_gateway: "Gateway", mock: MockUpstream, anthropic_mock: MockAnthropic,
                          ollama_mock: MockOllama) -> None:
    calls = (lambda c: c.chat(model="llama-mock", messages=HI),
             lambda c: list(c.chat(model="mock-model", messages=HI, stream=True)),
             lambda c: c.list(), lambda c: c.show("llama-mock"),
             lambda c: c.embed(model="embed-mock", input="a"))
    for key in ("wrong-key", None):
        for call in calls:
            # A fresh client (connection) per call: see test_keepalive.py for reuse after a 401.
            with _client(matrix_gateway, key) as c, pytest.raises(ollama.ResponseError) as ei:
                call(c)
            assert ei.value.status_code == 401, (key, ei.value)
            assert "wrong-key" not in ei.value.error
    _no_post_upstream(mock, anthropic_mock, ollama_mock)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_500_is_502(oc: ollama.Client, upstream: Upstream, stream: bool) -> None:
    with pytest.raises(ollama.ResponseError) as ei:
        res = oc.chat(model=upstream.fail_500, messages=HI, stream=stream)
        if stream:
            list(res)
    assert ei.value.status_code == 502, f"upstream 5xx must map to 502: {ei.value}"
    assert "127.0.0.1" not in ei.value.error and "secret" not in ei.value.error
    assert upstream.chat_calls(), "the upstream was never called"


def test_bad_json_is_400(matrix_gateway: "Gateway") -> None:
    with matrix_gateway.http() as http:
        r = http.post("/api/chat", content=b'{"model": "llama-mock", "messages": [',
                      headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert isinstance(r.json().get("error"), str) and r.json()["error"]
        r = http.post("/api/chat", json={"messages": HI})
        assert r.status_code == 400 and "model" in r.json()["error"], r.text
