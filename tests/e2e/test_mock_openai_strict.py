"""Self-tests of the OpenAI mock's request validation (no llm-link binary needed).

The translation tests rely on the mock refusing what api.openai.com refuses:
tool calls whose ``arguments`` are not a string, tool messages that answer no
(or the wrong) ``tool_call_id``, assistant tool calls left unanswered, inline
images that are not data URLs; and on ``max_tokens`` producing a ``length``
stop.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from helpers import assert_openai_error
from mock_upstream import MockUpstream
from multi import NO_TLS

def _direct(mock: MockUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.base_url, api_key="upstream-secret", max_retries=0,
                         http_client=openai.DefaultHttpxClient(**NO_TLS))


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
Q = {"role": "user", "content": "weather?"}


@pytest.mark.parametrize("messages, needle", [
    ([Q, {"role": "assistant", "content": None, "tool_calls": [
        dict(CALL, function={"name": "get_weather", "arguments": {"city": "Paris"}})]},
      {"role": "tool", "tool_call_id": "call_1", "content": "x"}], "expected a string"),
    ([Q, {"role": "tool", "tool_call_id": "call_1", "content": "x"}], "preceeding message with 'tool_calls'"),
    ([Q, {"role": "assistant", "content": None, "tool_calls": [CALL]},
      {"role": "tool", "tool_call_id": "call_2", "content": "x"}], "tool_call"),
    ([Q, {"role": "assistant", "content": None, "tool_calls": [CALL]}, {"role": "user", "content": "hm"}],
     "did not have response messages: call_1"),
    ([Q, {"role": "assistant", "content": None, "tool_calls": [dict(CALL, id="")]},
      {"role": "tool", "tool_call_id": "", "content": "x"}], "tool_calls[0].id"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "iVBORw0KGgo="}}]}], "image_url"),
    ([{"role": "human", "content": "hi"}], "Supported values"),
], ids=["object-arguments", "orphan-tool", "wrong-id", "unanswered-call", "empty-id", "bare-base64-image",
        "bad-role"])
def test_refuses_like_the_real_api(mock: MockUpstream, messages: list[Any], needle: str) -> None:
    r = httpx.post(f"{mock.base_url}/chat/completions", json={"model": "mock-model", "messages": messages},
                   headers={"Authorization": "Bearer upstream-secret"}, **NO_TLS)
    err = assert_openai_error(r, 400)
    assert needle in err["message"], err


def test_stream_options_without_stream(mock: MockUpstream) -> None:
    r = httpx.post(f"{mock.base_url}/chat/completions", json={
        "model": "mock-model", "messages": [Q], "stream_options": {"include_usage": True}}, **NO_TLS)
    assert "stream_options" in assert_openai_error(r, 400)["message"]


def test_max_tokens_is_length(mock: MockUpstream) -> None:
    with _direct(mock) as c:
        r = c.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "Hello from"
        chunks = list(c.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}],
                                                max_completion_tokens=1, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello"
        assert chunks[-1].choices[0].finish_reason == "length"


def test_records_response_and_usage(mock: MockUpstream) -> None:
    with _direct(mock) as c:
        r = c.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi there"}])
    rec = mock.last("/v1/chat/completions")
    assert rec.status == 200 and rec.usage == {"input_tokens": 2, "output_tokens": 3}
    assert openai.types.chat.ChatCompletion.model_validate_json(rec.response).id == r.id
