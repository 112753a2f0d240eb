"""Helpers for the multi-protocol tests (anthropic / ollama SDKs, Zed).

``Upstream`` wraps one of the three mocks and reads what the gateway sent it
in that upstream's *native* wire shape (system prompt, images, tool
definitions, tool calls, tool results, sampling parameters), so one test body
can check all three translations.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

import anthropic
import httpx
import ollama

from mock_anthropic import ANTHROPIC_KEY

CLIENT_KEY = "test-client-key"
UPSTREAM_KEY = "upstream-secret"

# All test traffic is plain HTTP on loopback, yet httpx builds a default TLS
# context (loading the CA bundle, ~30 ms) for every client unless told not to:
# on a suite that creates hundreds of clients that is most of the run time.
NO_TLS: dict[str, Any] = {"verify": False}


def http_client(base_url: str, **kw: Any) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=kw.pop("timeout", 30.0), **NO_TLS, **kw)


def anthropic_client(base_url: str, api_key: str = CLIENT_KEY, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=kw.pop("timeout", 30.0),
                               http_client=anthropic.DefaultHttpxClient(**NO_TLS), **kw)


def ollama_client(host: str, key: str | None = CLIENT_KEY) -> ollama.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return ollama.Client(host=host, headers=headers, timeout=30, **NO_TLS)


# 1x1 PNG.
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
           "AAAABJRU5ErkJggg==")
PNG_BYTES = base64.b64decode(PNG_B64)

TOOL_RESULT = "sunny, 21 degrees"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
ANTHROPIC_WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": WEATHER_SCHEMA,
}
# Ollama's tool shape is OpenAI's function-tool shape.
OLLAMA_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": WEATHER_SCHEMA,
    },
}

# The chat/completions parameters api.openai.com knows; anything else there is
# "Unrecognized request argument supplied" (400).
OPENAI_CHAT_PARAMS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
    "stream_options", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "user", "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format", "service_tier", "store",
    "metadata", "reasoning_effort", "modalities", "audio", "prediction", "web_search_options", "verbosity",
    "prompt_cache_key", "safety_identifier",
}

ANTHROPIC_TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")

MODEL_OF = {"openai": "mock-model", "anthropic": "claude-mock", "ollama": "llama-mock"}
FAIL_500_OF = {"openai": "fail-500", "anthropic": "claude-fail-500", "ollama": "llama-fail-500"}
CHAT_PATH_OF = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}


def _text(content: Any) -> str:
    """The text of a content value in any of the three shapes."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass
class Upstream:
    kind: str  # "openai" | "anthropic" | "ollama"
    mock: Any

    @property
    def model(self) -> str:
        return MODEL_OF[self.kind]

    @property
    def fail_500(self) -> str:
        return FAIL_500_OF[self.kind]

    @property
    def chat_path(self) -> str:
        return CHAT_PATH_OF[self.kind]

    def __repr__(self) -> str:
        return f"Upstream({self.kind})"

    # ---- recorded chat requests -------------------------------------------
    def chat_calls(self) -> list[Any]:
        return self.mock.requests_to(self.chat_path)

    def last_chat(self) -> Any:
        calls = self.chat_calls()
        assert calls, (f"the {self.kind} upstream got no {self.chat_path} request; it got: "
                       f"{[(r.method, r.path) for r in self.mock.requests]}")
        return calls[-1]

    def last_usage(self) -> dict[str, int]:
        req = self.last_chat()
        assert req.usage is not None, (
            f"the {self.kind} mock answered {req.status} without usage: {req.response[:300]!r}")
        return req.usage

    # ---- reading a native request body ------------------------------------
    def messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for m in body.get("messages") or [] if isinstance(m, dict)]

    def system(self, body: dict[str, Any]) -> str:
        if self.kind == "anthropic":
            return _text(body.get("system"))
        return "\n".join(_text(m.get("content")) for m in self.messages(body)
                         if m.get("role") in ("system", "developer"))

    def non_system_roles(self, body: dict[str, Any]) -> list[str]:
        return [m["role"] for m in self.messages(body) if m.get("role") not in ("system", "developer")]

    def user_text(self, body: dict[str, Any]) -> str:
        """Text of the last user message (tool results excluded)."""
        users = [m for m in self.messages(body) if m.get("role") == "user"]
        assert users, f"no user message upstream: {body}"
        return _text(users[-1].get("content"))

    def images(self, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        """(media type or None, base64 data) of every image in the request, native shapes only."""
        out: list[tuple[str | None, str]] = []
        for m in self.messages(body):
            if self.kind == "ollama":
                out += [(None, img) for img in m.get("images") or []]
                continue
            content = m.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if not isinstance(part, dict):
                    continue
                if self.kind == "anthropic" and part.get("type") == "image":
                    src = part["source"]
                    out.append((src.get("media_type"), src.get("data")))
                elif self.kind == "openai" and part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    m2 = re.match(r"^data:([^;,]+);base64,(.*)$", url, re.S)
                    assert m2, f"image_url is not a base64 data URL: {url[:80]}"
                    out.append((m2.group(1), m2.group(2)))
        return out

    def tool_defs(self, body: dict[str, Any]) -> list[tuple[str, str | None, Any]]:
        """(name, description, JSON schema) of every tool definition."""
        out = []
        for t in body.get("tools") or []:
            if self.kind == "anthropic":
                out.append((t["name"], t.get("description"), t.get("input_schema")))
            else:
                assert t.get("type") == "function", f"tool is not a function tool: {t}"
                fn = t["function"]
                out.append((fn["name"], fn.get("description"), fn.get("parameters")))
        return out

    def tool_calls(self, body: dict[str, Any]) -> list[tuple[str | None, str, Any]]:
        """(id, name, arguments as an object) of the tool calls of every assistant turn."""
        out: list[tuple[str | None, str, Any]] = []
        for m in self.messages(body):
            if m.get("role") != "assistant":
                continue
            if self.kind == "anthropic":
                content = m.get("content")
                for b in content if isinstance(content, list) else []:
                    if b.get("type") == "tool_use":
                        out.append((b["id"], b["name"], b["input"]))
            elif self.kind == "openai":
                for tc in m.get("tool_calls") or []:
                    args = tc["function"]["arguments"]
                    assert isinstance(args, str), f"OpenAI tool call arguments must be a JSON string: {tc}"
                    out.append((tc["id"], tc["function"]["name"], json.loads(args)))
            else:
                for tc in m.get("tool_calls") or []:
                    args = tc["function"]["arguments"]
                    assert isinstance(args, dict), f"Ollama tool call arguments must be an object: {tc}"
                    out.append((tc.get("id"), tc["function"]["name"], args))
        return out

    def tool_results(self, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        """(id the result answers, or None for Ollama, result text) of every tool result."""
        out: list[tuple[str | None, str]] = []
        for m in self.messages(body):
            if self.kind == "anthropic":
                content = m.get("content")
                for b in content if isinstance(content, list) else []:
                    if b.get("type") == "tool_result":
                        out.append((b["tool_use_id"], _text(b.get("content"))))
            elif m.get("role") == "tool":
                out.append((m.get("tool_call_id") if self.kind == "openai" else None, _text(m.get("content"))))
        return out

    def max_tokens(self, body: dict[str, Any]) -> Any:
        if self.kind == "ollama":
            return (body.get("options") or {}).get("num_predict")
        if self.kind == "openai":
            return body.get("max_completion_tokens", body.get("max_tokens"))
        return body.get("max_tokens")

    def param(self, body: dict[str, Any], name: str) -> Any:
        """A sampling parameter by its Anthropic name (temperature, top_p, top_k, stop_sequences)."""
        if self.kind == "ollama":
            key = {"stop_sequences": "stop"}.get(name, name)
            return (body.get("options") or {}).get(key)
        if self.kind == "openai":
            v = body.get({"stop_sequences": "stop"}.get(name, name))
            return [v] if name == "stop_sequences" and isinstance(v, str) else v
        return body.get(name)

    # ---- credentials ------------------------------------------------------
    def assert_auth(self) -> None:
        """Every request carried the gateway's upstream credential in this kind's header, never the client key."""
        reqs = self.mock.requests
        assert reqs, f"the {self.kind} upstream received no request at all"
        for r in reqs:
            leaked = {k: v for k, v in r.headers.items() if CLIENT_KEY in v}
            assert not leaked, f"client key forwarded to the {self.kind} upstream in headers {leaked}"
            assert CLIENT_KEY.encode() not in r.raw_body, "client key forwarded upstream in the body"
            if self.kind == "openai":
                assert r.header("authorization") == f"Bearer {UPSTREAM_KEY}", r.headers
            elif self.kind == "anthropic":
                assert r.header("x-api-key") == ANTHROPIC_KEY, f"{r.path}: x-api-key {r.header('x-api-key')!r}"
                assert r.header("anthropic-version"), f"{r.path}: no anthropic-version header"
            else:
                assert r.header("authorization") is None, f"{r.path}: Ollama upstream got {r.header('authorization')!r}"


# ---------------------------------------------------------------------------
# Anthropic wire helpers
# ---------------------------------------------------------------------------


def assert_anthropic_error(response: httpx.Response, status: int | tuple[int, ...],
                           type_: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` with the given status; returns ``error``."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (
        f"expected HTTP {statuses}, got {response.status_code}: {response.text[:500]}")
    ctype = response.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error content-type is {ctype!r}: {response.text[:300]}"
    body = response.json()
    assert isinstance(body, dict) and body.get("type") == "error" and isinstance(body.get("error"), dict), (
        f"not an Anthropic error body: {body!r}")
    err = body["error"]
    assert isinstance(err.get("type"), str) and err["type"], f"error.type missing: {err}"
    assert isinstance(err.get("message"), str) and err["message"].strip(), f"error.message missing: {err}"
    if type_ is not None:
        types = type_ if isinstance(type_, tuple) else (type_,)
        assert err["type"] in types, f"error.type {err['type']!r}, expected {types}: {err}"
    return err


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; comment lines dropped."""
    events = []
    for raw in re.split(r"\r?\n\r?\n", text):
        if not raw.strip():
            continue
        name, data = None, []
        for line in raw.splitlines():
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if name is None and not data:
            continue
        events.append((name, "\n".join(data)))
    return events


def anthropic_sse_events(text: str) -> list[dict[str, Any]]:
    """Parse an Anthropic SSE body; every event must be named after its data's ``type``."""
    out = []
    for name, data in parse_sse(text):
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise AssertionError(f"SSE data is not JSON: {data!r}") from e
        assert name is not None, f"SSE event without an 'event:' line (the SDK ignores those): {data}"
        assert obj.get("type") == name, f"event name {name!r} but data type {obj.get('type')!r}"
        out.append(obj)
    return out


def check_anthropic_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the Messages streaming grammar; return the reconstructed message.

    message_start, then for every content block (indexes 0, 1, ... in order,
    never interleaved) content_block_start / *_delta / content_block_stop, then
    exactly one message_delta and one message_stop; pings anywhere.
    """
    types = [e["type"] for e in events]
    body = [e for e in events if e["type"] != "ping"]
    assert body and body[0]["type"] == "message_start", f"first event must be message_start: {types}"
    assert body[-1]["type"] == "message_stop", f"last event must be message_stop: {types}"
    assert types.count("message_start") == 1 and types.count("message_stop") == 1, types
    assert types.count("message_delta") == 1, f"exactly one message_delta expected: {types}"
    assert body[-2]["type"] == "message_delta", f"message_delta must come right before message_stop: {types}"
    assert "error" not in types, f"in-band error event: {events}"
    start = body[0]["message"]
    assert start.get("type") == "message" and start.get("role") == "assistant", start
    assert start.get("content") == [], f"message_start content must be empty: {start}"
    assert start.get("stop_reason") is None, start
    assert isinstance(start.get("id"), str) and start["id"], start
    assert isinstance((start.get("usage") or {}).get("input_tokens"), int), f"message_start usage: {start}"
    blocks: list[dict[str, Any]] = []
    open_idx: int | None = None
    for e in body[1:-2]:
        t = e["type"]
        if t == "content_block_start":
            assert open_idx is None, f"block {e['index']} started while block {open_idx} is open: {types}"
            assert e["index"] == len(blocks), f"block index {e['index']}, expected {len(blocks)}"
            cb = dict(e["content_block"])
            if cb["type"] == "text":
                assert cb.get("text") == "", f"text block must start empty: {cb}"
            elif cb["type"] == "tool_use":
                assert cb.get("input") == {}, f"tool_use block must start with input {{}}: {cb}"
                assert cb.get("id") and cb.get("name"), cb
                cb["_json"] = ""
            elif cb["type"] == "thinking":
                cb.setdefault("thinking", "")
            blocks.append(cb)
            open_idx = e["index"]
        elif t == "content_block_delta":
            assert e["index"] == open_idx, f"delta for block {e['index']} while {open_idx} is open"
            d, b = e["delta"], blocks[e["index"]]
            if b["type"] == "text":
                assert d["type"] == "text_delta", f"text block got {d}"
                b["text"] += d["text"]
            elif b["type"] == "tool_use":
                assert d["type"] == "input_json_delta", f"tool_use block got {d}"
                b["_json"] += d["partial_json"]
            elif b["type"] == "thinking":
                assert d["type"] in ("thinking_delta", "signature_delta"), d
                b["thinking"] += d.get("thinking", "")
        elif t == "content_block_stop":
            assert e["index"] == open_idx, f"stop for block {e['index']} while {open_idx} is open"
            open_idx = None
        else:
            raise AssertionError(f"unexpected event {t!r} between message_start and message_delta: {types}")
    assert open_idx is None, f"block {open_idx} never stopped"
    for b in blocks:
        if b["type"] == "tool_use":
            raw = b.pop("_json")
            try:
                b["input"] = json.loads(raw) if raw else {}
            except ValueError as e:
                raise AssertionError(f"tool_use input fragments do not form JSON: {raw!r}") from e
    md = body[-2]
    usage = dict(start.get("usage") or {})
    usage.update({k: v for k, v in (md.get("usage") or {}).items() if v is not None})
    return {"message": start, "content": blocks, "stop_reason": md["delta"].get("stop_reason"),
            "stop_sequence": md["delta"].get("stop_sequence"), "usage": usage,
            "delta_usage": md.get("usage") or {}}


# ---------------------------------------------------------------------------
# Ollama wire helpers
# ---------------------------------------------------------------------------


def ndjson_lines(body: str) -> list[dict[str, Any]]:
    """Every non-empty line must be one JSON object."""
    out = []
    for line in body.split("\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"NDJSON line is not JSON: {line!r}") from e
        assert isinstance(obj, dict), f"NDJSON line is not an object: {line!r}"
        out.append(obj)
    return out


def check_ollama_stream(lines: Iterable[dict[str, Any]], *, field: str = "message") -> dict[str, Any]:
    """All lines but the last have done false, the last has done true with counts; returns totals."""
    lines = list(lines)
    assert lines, "empty NDJSON stream"
    for i, obj in enumerate(lines):
        assert "error" not in obj, f"in-band error on line {i}: {obj}"
        assert isinstance(obj.get("model"), str) and obj["model"], f"line {i} lacks model: {obj}"
        assert isinstance(obj.get("created_at"), str) and obj["created_at"], f"line {i} lacks created_at: {obj}"
        assert isinstance(obj.get("done"), bool), f"line {i} lacks done: {obj}"
        if field == "message":
            msg = obj.get("message")
            assert isinstance(msg, dict) and msg.get("role") == "assistant", f"line {i} message: {obj}"
            assert isinstance(msg.get("content"), str), f"line {i} message.content must be a string: {obj}"
        else:
            assert isinstance(obj.get("response"), str), f"line {i} response must be a string: {obj}"
    assert all(not o["done"] for o in lines[:-1]), f"done:true before the last line: {lines}"
    last = lines[-1]
    assert last["done"] is True, f"last line is not done:true: {last}"
    for key in ("prompt_eval_count", "eval_count", "total_duration"):
        assert isinstance(last.get(key), int), f"final line lacks {key}: {last}"
    assert isinstance(last.get("done_reason"), str), f"final line lacks done_reason: {last}"
    text = "".join((o.get("message") or {}).get("content", "") if field == "message" else o.get("response", "")
                   for o in lines)
    calls = [tc for o in lines for tc in ((o.get("message") or {}).get("tool_calls") or [])]
    return {"text": text, "tool_calls": calls, "final": last, "lines": lines}
