"""Self-tests of the Anthropic mock: the official ``anthropic`` SDK talks to it directly.

No llm-link binary needed. They show the mock behaves (and refuses) like the
real Messages API, so a failure in test_anthropic_*.py is the gateway's.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from mock_anthropic import ANTHROPIC_KEY, InvalidRequest, MockAnthropic, validate_messages_request
from multi import (ANTHROPIC_WEATHER_TOOL, NO_TLS, PNG_B64, TOOL_RESULT, anthropic_client, anthropic_sse_events,
                   assert_anthropic_error, check_anthropic_stream)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def direct(anthropic_mock: MockAnthropic):
    c = anthropic_client(anthropic_mock.base_url, api_key=ANTHROPIC_KEY)
    yield c
    c.close()


def _post(mock: MockAnthropic, body: Any, headers: dict[str, str] | None = None,
          path: str = "/v1/messages") -> httpx.Response:
    h = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    h.update(headers or {})
    return httpx.post(mock.base_url + path, json=body, headers={k: v for k, v in h.items() if v is not None},
                      **NO_TLS)


def test_text(direct: anthropic.Anthropic, anthropic_mock: MockAnthropic) -> None:
    r = direct.messages.create(model="claude-mock", max_tokens=50, system="Be terse.", messages=HI)
    assert r.type == "message" and r.role == "assistant" and r.id.startswith("msg_")
    assert [b.type for b in r.content] == ["text"] and r.content[0].text == "Hello from mock"
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert {"input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens} \
        == anthropic_mock.last("/v1/messages").usage


def test_raw_stream_grammar(anthropic_mock: MockAnthropic) -> None:
    with httpx.stream("POST", anthropic_mock.base_url + "/v1/messages", **NO_TLS,
                      headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-mock", "max_tokens": 50, "messages": HI, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = anthropic_sse_events(text)
    assert any(e["type"] == "ping" for e in events)
    msg = check_anthropic_stream(events)
    assert msg["content"] == [{"type": "text", "text": "Hello from mock"}]
    assert msg["stop_reason"] == "end_turn"
    assert len([e for e in events if e["type"] == "content_block_delta"]) == 3


def test_tool_round_streamed(direct: anthropic.Anthropic, anthropic_mock: MockAnthropic) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with direct.messages.stream(model="claude-mock", max_tokens=200, messages=msgs,
                                tools=[ANTHROPIC_WEATHER_TOOL]) as s:
        events = [e for e in s]
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tu = final.content[1]
    assert tu.name == "get_weather" and tu.input == {"city": "Paris"} and tu.id.startswith("toolu_")
    assert len([e for e in events if e.type == "input_json"]) >= 3, "tool input must arrive in fragments"
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": TOOL_RESULT}]}]
    r2 = direct.messages.create(model="claude-mock", max_tokens=200, messages=msgs, tools=[ANTHROPIC_WEATHER_TOOL])
    assert r2.stop_reason == "end_turn" and TOOL_RESULT in r2.content[0].text


def test_stop_reasons(direct: anthropic.Anthropic) -> None:
    r = direct.messages.create(model="claude-mock", max_tokens=2, messages=HI)
    assert r.stop_reason == "max_tokens" and r.content[0].text == "Hello from"
    r = direct.messages.create(model="claude-mock", max_tokens=50, messages=HI, stop_sequences=[" mock"])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == " mock" and r.content[0].text == "Hello from"


def test_count_tokens_and_models(direct: anthropic.Anthropic, anthropic_mock: MockAnthropic) -> None:
    n = direct.messages.count_tokens(model="claude-mock", messages=HI).input_tokens
    assert n == anthropic_mock.last("/v1/messages/count_tokens").usage["input_tokens"] > 0
    assert "claude-mock" in [m.id for m in direct.models.list()]


def test_sdk_errors(direct: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as e429:
        direct.messages.create(model="claude-fail-429", max_tokens=5, messages=HI)
    assert e429.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.NotFoundError):
        direct.messages.create(model="claude-nope", max_tokens=5, messages=HI)
    with pytest.raises(anthropic.InternalServerError):
        direct.messages.create(model="claude-fail-500", max_tokens=5, messages=HI)
    with anthropic_client(str(direct.base_url), api_key="wrong") as bad, \
            pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-mock", max_tokens=5, messages=HI)


TOOL_USE = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}


@pytest.mark.parametrize("body, headers, needle", [
    ({"model": "claude-mock", "messages": HI}, None, "max_tokens"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": HI}, {"anthropic-version": None}, "anthropic-version"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}] + HI}, None, "role"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": HI + HI}, None, "alternate"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}, None, "non-empty"),
    ({"model": "claude-mock", "max_tokens": 5,
      "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, None, "non-empty"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": HI, "stream_options": {}}, None, "Extra inputs"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": HI, "temperature": 1.5}, None, "temperature"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": HI,
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, None, "tools.0"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_B64}}]}]},
     None, "does not match"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [
        HI[0], {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": "thanks"}]},
     None, "without `tool_result`"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [
        HI[0], {"role": "assistant", "content": [TOOL_USE]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01B", "content": "x"}]}]},
     None, "tool_use"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [
        HI[0], {"role": "assistant", "content": [dict(TOOL_USE, id="call 1")]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call 1", "content": "x"}]}]},
     None, "pattern"),
    ({"model": "claude-mock", "max_tokens": 5, "messages": [
        HI[0], {"role": "assistant", "content": [dict(TOOL_USE, input='{"city": "Paris"}')]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "x"}]}]},
     None, "dictionary"),
], ids=["no-max-tokens", "no-version", "system-role", "not-alternating", "empty-string", "empty-text-block",
        "extra-field", "temperature", "openai-tool-shape", "image-mismatch", "unanswered-tool-use",
        "unknown-tool-result", "bad-tool-id", "string-tool-input"])
def test_validation_like_the_real_api(anthropic_mock: MockAnthropic, body: Any, headers: Any, needle: str) -> None:
    r = _post(anthropic_mock, body, headers)
    err = assert_anthropic_error(r, 400, "invalid_request_error")
    assert needle in err["message"], err


def test_valid_round_with_image_and_blocks(anthropic_mock: MockAnthropic) -> None:
    body = {"model": "claude-mock", "max_tokens": 5, "system": [{"type": "text", "text": "sys"}], "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG_B64}},
                                     {"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}, TOOL_USE]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A",
                                      "content": [{"type": "text", "text": "sunny"}]}]}]}
    r = _post(anthropic_mock, body)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "The weather is: sunny"


def test_claude_code_beta_shapes_need_their_betas() -> None:
    """What Claude Code sends with its anthropic-beta header is accepted only with those betas."""
    body = {"model": "claude-mock", "max_tokens": 10, "output_config": {"effort": "high"},
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "system", "content": [{"type": "text", "text": "# Environment"}]}],
            "tools": [{"name": "Later", "description": "d", "input_schema": {"type": "object"},
                       "defer_loading": True}]}
    validate_messages_request(body, betas=frozenset({"mid-conversation-tool-changes-2026-07-01",
                                                     "advanced-tool-use-2025-11-20"}))
    with pytest.raises(InvalidRequest, match="defer_loading"):
        validate_messages_request(body, betas=frozenset({"per-turn-control-2026-07-01"}))
    with pytest.raises(InvalidRequest, match=r"messages\.1\.role"):
        validate_messages_request(body, betas=frozenset({"advanced-tool-use-2025-11-20"}))
