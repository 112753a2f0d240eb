"""A full tool-calling round trip with the SDK, non-streamed and streamed."""

from __future__ import annotations

import openai

from helpers import WEATHER_TOOL, assert_upstream_auth, reassemble_tool_calls, tool_call_args
from mock_upstream import MockUpstream

TOOL_RESULT = "sunny, 21 degrees"


def test_tools_round_non_streamed(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = any_client.chat.completions.create(model="mock-model", messages=messages, tools=[WEATHER_TOOL])

    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert tool_call_args(call.function.arguments) == {"city": "Paris"}

    first_up = mock.last("/v1/chat/completions")
    assert first_up.body["tools"] == [WEATHER_TOOL], "tools must reach the upstream unchanged"

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
    r2 = any_client.chat.completions.create(model="mock-model", messages=messages, tools=[WEATHER_TOOL])

    assert r2.choices[0].finish_reason == "stop"
    assert not r2.choices[0].message.tool_calls
    assert TOOL_RESULT in (r2.choices[0].message.content or "")

    second_up = mock.last("/v1/chat/completions").body
    up_assistant = [m for m in second_up["messages"] if m.get("role") == "assistant"]
    assert up_assistant and up_assistant[0]["tool_calls"][0]["id"] == call.id
    assert up_assistant[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool_call_args(up_assistant[0]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    up_tool = [m for m in second_up["messages"] if m.get("role") == "tool"]
    assert up_tool == [{"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}]
    assert_upstream_auth(mock)


def test_tools_round_streamed(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]
    chunks = list(any_client.chat.completions.create(
        model="mock-model", messages=messages, tools=[WEATHER_TOOL], stream=True))

    assert len({c.id for c in chunks}) == 1
    calls, finish = reassemble_tool_calls(chunks)
    assert finish == "tool_calls"
    assert list(calls) == [0], f"expected one tool call at index 0, got indexes {list(calls)}"
    call = calls[0]
    assert call["id"] and call["type"] == "function"
    assert call["name"] == "get_weather"
    assert tool_call_args(call["arguments"]) == {"city": "Paris"}
    assert mock.last("/v1/chat/completions").body["stream"] is True

    messages.append({
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call["id"], "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]}}],
    })
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT})
    chunks2 = list(any_client.chat.completions.create(
        model="mock-model", messages=messages, tools=[WEATHER_TOOL], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks2 if c.choices)
    assert TOOL_RESULT in text
    calls2, finish2 = reassemble_tool_calls(chunks2)
    assert calls2 == {} and finish2 == "stop"

    up_tool = [m for m in mock.last("/v1/chat/completions").body["messages"] if m.get("role") == "tool"]
    assert up_tool and up_tool[0]["tool_call_id"] == call["id"]
    assert_upstream_auth(mock)


def test_parallel_tool_calls_streamed(any_client: openai.OpenAI) -> None:
    """Two tool calls in one streamed answer keep their own index, id and argument fragments."""
    chunks = list(any_client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "weather in Paris and London?"}],
        tools=[WEATHER_TOOL], stream=True))
    calls, finish = reassemble_tool_calls(chunks)
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert [tool_call_args(calls[i]["arguments"]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "London"}]
    assert all(calls[i]["name"] == "get_weather" and calls[i]["type"] == "function" for i in (0, 1))
    assert calls[0]["id"] and calls[1]["id"] and calls[0]["id"] != calls[1]["id"]
