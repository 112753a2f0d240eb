"""Chat completions through llm-link, non-streamed and streamed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import openai

from helpers import assert_upstream_auth
from mock_upstream import HELLO_TEXT, MockUpstream

if TYPE_CHECKING:
    from conftest import Gateway

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello please"},
]
PROMPT_TOKENS = 3 + 3  # mock counts whitespace-separated words of every message
COMPLETION_TOKENS = 3


def test_chat_non_streamed(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    r = any_client.chat.completions.create(model="mock-model", messages=MESSAGES)

    assert r.object == "chat.completion"
    assert r.id
    assert r.model == "mock-model"
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == HELLO_TEXT
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS)

    up = mock.requests_to("/v1/chat/completions")
    assert len(up) == 1, f"expected exactly one upstream call, got {len(up)}"
    assert up[0].body["model"] == "mock-model"
    assert up[0].body["messages"] == MESSAGES
    assert not up[0].body.get("stream")
    assert_upstream_auth(mock)


def test_chat_streamed_with_usage(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    stream = any_client.chat.completions.create(
        model="mock-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)

    assert len(chunks) >= 3, f"expected several chunks, got {len(chunks)}"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and all(ids), f"chunk ids differ or are empty: {ids}"
    assert all(c.model == "mock-model" for c in chunks)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == HELLO_TEXT
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 2, "the answer should arrive as several deltas, not one blob"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]

    last = chunks[-1]
    assert last.choices == [], f"last chunk should have empty choices, got {last.choices}"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS)
    assert [c for c in chunks if c.usage is not None] == [last], "usage must be only on the final chunk"

    up = mock.last("/v1/chat/completions")
    assert up.body["stream"] is True
    assert up.body["model"] == "mock-model"
    assert_upstream_auth(mock)


def test_chat_streamed_without_usage_has_no_usage_chunk(any_client: openai.OpenAI) -> None:
    """A client that did not ask for usage must not get an extra `choices: []` chunk
    (many clients index choices[0] unconditionally)."""
    chunks = list(any_client.chat.completions.create(model="mock-model", messages=MESSAGES, stream=True))
    assert chunks
    assert all(c.choices for c in chunks), "got a chunk with empty choices although include_usage was not set"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == HELLO_TEXT
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_sse_framing(any_gateway: Gateway) -> None:
    body = {"model": "mock-model", "messages": MESSAGES, "stream": True}
    with any_gateway.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode("utf-8")
    events = [e for e in raw.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert events[-1].strip() == "data: [DONE]", f"stream must end with data: [DONE], got {events[-1]!r}"
    for ev in events[:-1]:
        data_lines = [ln for ln in ev.split("\n") if ln.startswith("data:")]
        assert len(data_lines) == 1, f"bad SSE event: {ev!r}"
        obj = json.loads(data_lines[0][len("data:"):].strip())
        assert obj["object"] == "chat.completion.chunk"
    assert raw.count("[DONE]") == 1
