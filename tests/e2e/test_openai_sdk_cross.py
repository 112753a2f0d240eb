"""The official ``openai`` SDK against Anthropic and Ollama upstreams (translation).

The OpenAI -> OpenAI pass-through is covered by test_chat.py / test_tools.py;
this completes the client x upstream matrix for OpenAI clients: text, streams
with usage, a full tool round, an image, stop reasons and errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import openai
import pytest

from helpers import WEATHER_TOOL, assert_openai_error, reassemble_tool_calls, tool_call_args
from mock_anthropic import MockAnthropic
from mock_ollama import MockOllama
from multi import CLIENT_KEY, PNG_B64, TOOL_RESULT, WEATHER_SCHEMA, Upstream

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
WEATHER_Q = "What is the weather in Paris?"


@pytest.fixture(params=["anthropic", "ollama"])
def up(request: pytest.FixtureRequest, anthropic_mock: MockAnthropic, ollama_mock: MockOllama) -> Upstream:
    return Upstream(request.param, anthropic_mock if request.param == "anthropic" else ollama_mock)


@pytest.fixture
def oai(matrix_gateway: "Gateway") -> Iterator[openai.OpenAI]:
    c = matrix_gateway.client()
    yield c
    c.close()


def test_text(oai: openai.OpenAI, up: Upstream) -> None:
    r = oai.chat.completions.create(model=up.model, max_tokens=64,
                                    messages=[{"role": "system", "content": "Be terse."}, *HI])
    assert r.object == "chat.completion" and r.model == up.model
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == "Hello from mock"
    assert r.choices[0].finish_reason == "stop"
    u = up.last_usage()
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (u["input_tokens"], u["output_tokens"])
    assert r.usage.total_tokens == u["input_tokens"] + u["output_tokens"]
    body = up.last_chat().body
    assert up.system(body) == "Be terse." and up.max_tokens(body) == 64
    up.assert_auth()


def test_stream_with_usage(oai: openai.OpenAI, up: Upstream) -> None:
    chunks = list(oai.chat.completions.create(model=up.model, messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from mock"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and chunks[-1].usage is not None and chunks[-1].choices == []
    u = up.last_usage()
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (u["input_tokens"], u["output_tokens"])


def test_length_finish(oai: openai.OpenAI, up: Upstream) -> None:
    r = oai.chat.completions.create(model=up.model, messages=HI, max_tokens=2)
    assert r.choices[0].message.content == "Hello from" and r.choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_round(oai: openai.OpenAI, up: Upstream, stream: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": WEATHER_Q}]
    if stream:
        chunks = list(oai.chat.completions.create(model=up.model, messages=messages, tools=[WEATHER_TOOL],
                                                  stream=True))
        calls, finish = reassemble_tool_calls(chunks)
        assert list(calls) == [0], calls
        call = calls[0]
        call_id, name, args = call["id"], call["name"], call["arguments"]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) or None
    else:
        r = oai.chat.completions.create(model=up.model, messages=messages, tools=[WEATHER_TOOL])
        finish = r.choices[0].finish_reason
        tcs = r.choices[0].message.tool_calls or []
        assert len(tcs) == 1, r
        call_id, name, args = tcs[0].id, tcs[0].function.name, tcs[0].function.arguments
        content = r.choices[0].message.content
    assert finish == "tool_calls"
    assert name == "get_weather" and tool_call_args(args) == {"city": "Paris"} and call_id
    assert up.tool_defs(up.last_chat().body) == [("get_weather", "Get the current weather for a city",
                                                 WEATHER_SCHEMA)]

    messages += [{"role": "assistant", "content": content, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}]
    r2 = oai.chat.completions.create(model=up.model, messages=messages, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == f"The weather is: {TOOL_RESULT}"
    assert r2.choices[0].finish_reason == "stop"
    body = up.last_chat().body
    assert [(c[1], c[2]) for c in up.tool_calls(body)] == [("get_weather", {"city": "Paris"})]
    assert [t for _, t in up.tool_results(body)] == [TOOL_RESULT]
    if up.kind == "anthropic":
        assert up.tool_results(body)[0][0] == up.tool_calls(body)[0][0] == call_id


def test_image(oai: openai.OpenAI, up: Upstream) -> None:
    r = oai.chat.completions.create(model=up.model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}])
    assert r.choices[0].message.content == "Hello from mock"
    expected_type = None if up.kind == "ollama" else "image/png"
    assert up.images(up.last_chat().body) == [(expected_type, PNG_B64)]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_500_is_502(oai: openai.OpenAI, up: Upstream, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        oai.chat.completions.create(model=up.fail_500, messages=HI, stream=stream)
    assert ei.value.status_code == 502
    assert_openai_error(ei.value.response, 502)


def test_anthropic_429_is_rate_limit(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        oai.chat.completions.create(model="claude-fail-429", messages=HI)
    assert_openai_error(ei.value.response, 429)
    assert ei.value.response.headers.get("retry-after") == "7"


def test_wrong_key(matrix_gateway: "Gateway", anthropic_mock: MockAnthropic) -> None:
    with matrix_gateway.client(api_key="nope") as c, pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="claude-mock", messages=HI)
    assert anthropic_mock.requests == []
    assert CLIENT_KEY != "nope"
