"""A Zed-shaped Ollama session, replayed with raw httpx exactly as Zed sends it.

Zed (crates/ollama + crates/language_models/src/provider/ollama.rs) talks to
its "Ollama" at ``api_url`` without any key:

1. ``GET /api/tags``; models whose name contains "-embed" are skipped;
2. ``POST /api/show {"model": name}`` per model; it reads ``capabilities``
   ("tools", "vision", "thinking") and the context length from
   ``model_info[<general.architecture>.context_length]``;
3. ``POST /api/chat`` with ``stream: true``, ``keep_alive: -1``, ``options``
   (``num_ctx``, ``num_predict: null``, ``stop: []``, ``temperature``,
   ``top_p: null``), ``think``, and ``tools`` as
   ``{"type": "function", "function": {name, description, parameters}}``;
4. it reads NDJSON line by line: every line must parse as
   ``{model, created_at, message: {role: "assistant", content: <string>, ...}, done}``;
   a line with ``message.tool_calls`` -> ``[{"function": {name, arguments: {...}}}]``;
   the ``done`` line's ``prompt_eval_count`` / ``eval_count`` become usage;
5. the tool round-trip: the assistant message comes back with ``content``,
   ``tool_calls`` (no ids: Ollama has none) and ``thinking: null``; the result
   as ``{"role": "tool", "tool_name": ..., "content": ...}``.

The gateway runs with ``--app zed`` in single-provider mode and no auth key.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conftest import binary_path
from mock_anthropic import ANTHROPIC_KEY, MockAnthropic
from mock_ollama import MockOllama
from mock_upstream import MockUpstream
from multi import OPENAI_CHAT_PARAMS, PNG_B64, TOOL_RESULT, Upstream, check_ollama_stream, http_client

if TYPE_CHECKING:
    from conftest import Gateway, GatewayFactory

ZED_SYSTEM = "You are a highly skilled software engineer with extensive knowledge in many programming languages."
ZED_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
    },
}


def _zed_line(obj: dict[str, Any], i: int) -> None:
    """What Zed's serde types (ChatResponseDelta / ChatMessage) require of every line."""
    assert isinstance(obj.get("model"), str), f"line {i}: model must be a string: {obj}"
    assert isinstance(obj.get("created_at"), str), f"line {i}: created_at must be a string: {obj}"
    assert isinstance(obj.get("done"), bool), f"line {i}: done must be a bool: {obj}"
    msg = obj.get("message")
    assert isinstance(msg, dict) and msg.get("role") == "assistant", f"line {i}: message.role: {obj}"
    assert isinstance(msg.get("content"), str), f"line {i}: message.content must be a string (Zed requires it): {obj}"
    for tc in msg.get("tool_calls") or []:
        assert set(tc) <= {"function", "id", "type"} and isinstance(tc.get("function"), dict), (
            f"line {i}: Zed parses tool calls as {{\"function\": {{...}}}}: {tc}")
        assert isinstance(tc["function"].get("name"), str), tc
        assert isinstance(tc["function"].get("arguments"), dict), f"line {i}: arguments must be an object: {tc}"
    for key in ("prompt_eval_count", "eval_count"):
        assert obj.get(key) is None or isinstance(obj[key], int), f"line {i}: {key}: {obj}"


def _stream_chat(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/chat and read it the way Zed does: line by line as it arrives."""
    lines: list[dict[str, Any]] = []
    with http.stream("POST", "/api/chat", json=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status_code == 200, f"/api/chat -> {r.status_code}: {r.read()!r}"
        assert r.headers.get("content-type", "").startswith("application/x-ndjson"), r.headers
        for line in r.iter_lines():
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise AssertionError(f"a line Zed cannot parse: {line!r}") from e
            _zed_line(obj, len(lines))
            lines.append(obj)
    return check_ollama_stream(lines)


def _setup(kind: str, gateway: "GatewayFactory", mock: MockUpstream, anthropic_mock: MockAnthropic,
           ollama_mock: MockOllama) -> tuple["Gateway", Upstream]:
    args = {
        "openai": ["--provider", "openai-compatible", "--base-url", mock.base_url, "--model", "mock-model",
                   "--api-key", "upstream-secret"],
        "anthropic": ["--provider", "anthropic", "--base-url", anthropic_mock.base_url, "--model", "claude-mock",
                      "--api-key", ANTHROPIC_KEY],
        "ollama": ["--provider", "ollama", "--base-url", ollama_mock.base_url, "--model", "llama-mock"],
    }[kind]
    gw = gateway("serve", "--app", "zed", *args)
    up = Upstream(kind, {"openai": mock, "anthropic": anthropic_mock, "ollama": ollama_mock}[kind])
    return gw, up


@pytest.mark.parametrize("kind", [
    "openai",
    pytest.param("anthropic", id="anthropic"),
    pytest.param("ollama", id="ollama"),
])
def test_zed_session(kind: str, gateway: "GatewayFactory", mock: MockUpstream, anthropic_mock: MockAnthropic,
                     ollama_mock: MockOllama) -> None:
    gw, up = _setup(kind, gateway, mock, anthropic_mock, ollama_mock)
    with http_client(gw.url) as http:  # Zed sends no key
        # 1. tags
        r = http.get("/api/tags", headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        listing = r.json()["models"]
        for m in listing:  # Zed's LocalModelListing: all required
            assert isinstance(m.get("name"), str) and isinstance(m.get("modified_at"), str), m
            assert isinstance(m.get("size"), int) and isinstance(m.get("digest"), str), m
            d = m.get("details")
            assert isinstance(d, dict), m
            for key in ("format", "family", "parameter_size", "quantization_level"):
                assert isinstance(d.get(key), str), f"details.{key} must be a string for Zed: {m}"
        names = [m["name"] for m in listing if "-embed" not in m["name"]]
        assert names, f"no chat model listed: {listing}"
        name = next((n for n in names if n.split(":")[0] == up.model), None)
        assert name is not None, f"{up.model} not in /api/tags: {names}"

        # 2. show
        r = http.post("/api/show", json={"model": name}, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        show = r.json()
        caps = show.get("capabilities")
        assert isinstance(caps, list) and "tools" in caps and "vision" in caps, (
            f"--app zed must advertise tools and vision: {caps}")
        info = show["model_info"]
        ctx = info[f"{info['general.architecture']}.context_length"]
        assert isinstance(ctx, int) and ctx >= 2048, info
        supports_thinking = "thinking" in caps

        # 3. first turn: a tool call
        system = {"role": "system", "content": ZED_SYSTEM}
        user = {"role": "user", "content": "What is the weather in Paris?"}
        body = {
            "model": name,
            "messages": [system, user],
            "stream": True,
            "keep_alive": -1,
            "options": {"num_ctx": ctx, "num_predict": None, "stop": [], "temperature": 1.0, "top_p": None},
            "tools": [ZED_TOOL],
            "think": supports_thinking,
        }
        first = _stream_chat(http, body)
        calls = first["tool_calls"]
        assert len(calls) == 1, f"expected one tool call: {first['lines']}"
        assert calls[0]["function"]["name"] == "get_weather"
        assert calls[0]["function"]["arguments"] == {"city": "Paris"}
        assert first["final"]["prompt_eval_count"] == up.last_usage()["input_tokens"]
        assert first["final"]["eval_count"] == up.last_usage()["output_tokens"]

        sent = up.last_chat().body
        assert up.system(sent) == ZED_SYSTEM
        assert [d[0] for d in up.tool_defs(sent)] == ["get_weather"]
        assert up.tool_defs(sent)[0][2] == ZED_TOOL["function"]["parameters"]
        assert sent.get("stream") is True
        if kind == "openai":
            assert sent.get("temperature") == 1.0
            leaked = set(sent) - OPENAI_CHAT_PARAMS
            assert not leaked, f"Ollama-only fields sent to the OpenAI upstream: {sorted(leaked)}"
        if kind == "ollama":
            assert sent.get("keep_alive") == -1 and sent.get("options", {}).get("num_ctx") == ctx

        # 4. second turn: Zed's assistant message (no ids) + a tool message
        assistant = {"role": "assistant", "content": first["text"],
                     "tool_calls": [{"function": {"name": c["function"]["name"],
                                                  "arguments": c["function"]["arguments"]}} for c in calls],
                     "thinking": None}
        tool = {"role": "tool", "tool_name": "get_weather", "content": TOOL_RESULT}
        second = _stream_chat(http, dict(body, messages=[system, user, assistant, tool]))
        assert second["tool_calls"] == []
        assert second["text"] == f"The weather is: {TOOL_RESULT}"
        assert second["final"]["prompt_eval_count"] == up.last_usage()["input_tokens"]

        sent2 = up.last_chat().body
        up_calls = up.tool_calls(sent2)
        assert [(c[1], c[2]) for c in up_calls] == [("get_weather", {"city": "Paris"})], sent2
        results = up.tool_results(sent2)
        assert [t for _, t in results] == [TOOL_RESULT]
        if kind != "ollama":
            assert results[0][0] == up_calls[0][0], "the tool result must answer the id given to the call upstream"
        if kind == "openai":
            leaked = set(sent2) - OPENAI_CHAT_PARAMS
            assert not leaked, f"Ollama-only fields sent to the OpenAI upstream: {sorted(leaked)}"


def test_zed_request_reaches_openai_with_openai_fields_only(gateway: "GatewayFactory", mock: MockUpstream,
                                                            anthropic_mock: MockAnthropic,
                                                            ollama_mock: MockOllama) -> None:
    """keep_alive / options / think are Ollama's: api.openai.com answers 400 'Unrecognized request argument'."""
    gw, up = _setup("openai", gateway, mock, anthropic_mock, ollama_mock)
    with http_client(gw.url) as http:
        out = _stream_chat(http, {
            "model": "mock-model", "stream": True, "keep_alive": -1, "tools": [ZED_TOOL], "think": False,
            "options": {"num_ctx": 32768, "num_predict": None, "stop": [], "temperature": 1.0, "top_p": None},
            "messages": [{"role": "user", "content": "hi"}],
        })
    assert out["text"] == "Hello from mock"
    sent = up.last_chat().body
    leaked = set(sent) - OPENAI_CHAT_PARAMS
    assert not leaked, (f"Ollama-only fields sent to the OpenAI upstream (api.openai.com answers 400 "
                        f"'Unrecognized request argument supplied'): {sorted(leaked)}")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_zed_parallel_tool_calls_one_per_line(kind: str, gateway: "GatewayFactory", mock: MockUpstream,
                                               anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> None:
    """Zed reads only the first tool call of each NDJSON line: translated calls go one per line."""
    gw, up = _setup(kind, gateway, mock, anthropic_mock, ollama_mock)
    with http_client(gw.url) as http:
        out = _stream_chat(http, {
            "model": up.model, "stream": True, "keep_alive": -1, "tools": [ZED_TOOL], "think": False,
            "options": {"num_ctx": 32768, "num_predict": None, "stop": [], "temperature": 1.0, "top_p": None},
            "messages": [{"role": "user", "content": "weather in Paris and London?"}],
        })
    per_line = [len(line["message"].get("tool_calls") or []) for line in out["lines"]]
    assert max(per_line) == 1, f"tool calls per line: {per_line}"
    assert [c["function"]["arguments"] for c in out["tool_calls"]] == [{"city": "Paris"}, {"city": "London"}]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_zed_image_message(kind: str, gateway: "GatewayFactory", mock: MockUpstream,
                           anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> None:
    """With vision advertised, Zed sends images as base64 strings on the user message."""
    gw, up = _setup(kind, gateway, mock, anthropic_mock, ollama_mock)
    with http_client(gw.url) as http:
        out = _stream_chat(http, {
            "model": up.model, "stream": True, "keep_alive": -1, "tools": [], "think": False,
            "options": {"num_ctx": 32768, "num_predict": None, "stop": [], "temperature": 1.0, "top_p": None},
            "messages": [{"role": "user", "content": "What is in this image?", "images": [PNG_B64]}],
        })
    assert out["text"] == "Hello from mock"
    expected_type = None if kind == "ollama" else "image/png"
    assert up.images(up.last_chat().body) == [(expected_type, PNG_B64)]


def test_zed_needs_no_key_but_other_clients_do_not_leak(gateway: "GatewayFactory", mock: MockUpstream) -> None:
    """Without --auth-key every surface is open (Zed's case); upstream still gets the gateway's key only."""
    gw = gateway("serve", "--app", "zed", "--provider", "openai-compatible", "--base-url", mock.base_url,
                 "--model", "mock-model", "--api-key", "upstream-secret")
    with http_client(gw.url) as http:
        assert http.get("/api/tags").status_code == 200
        assert http.get("/api/version").status_code == 200
        r = http.post("/api/chat", json={"model": "mock-model", "stream": False,
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["message"]["content"] == "Hello from mock", r.text
    assert mock.last("/v1/chat/completions").header("authorization") == "Bearer upstream-secret"


def test_apps_show_zed_settings() -> None:
    """`llm-link apps show zed` prints settings.json for Zed's Ollama provider."""
    out = subprocess.run([str(binary_path()), "apps", "show", "zed", "--url", "http://127.0.0.1:5555",
                          "--model", "mock-model"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    text = "\n".join(line for line in out.stdout.splitlines() if not line.lstrip().startswith("//"))
    settings = json.loads(text)
    ollama_cfg = settings["language_models"]["ollama"]
    assert ollama_cfg["api_url"] == "http://127.0.0.1:5555"
    model = ollama_cfg["available_models"][0]
    assert model["name"] == "mock-model"
    assert model["supports_tools"] is True and model["supports_images"] is True
    assert isinstance(model["max_tokens"], int) and model["max_tokens"] > 0
    assert re.search(r"zed", out.stdout, re.I)
