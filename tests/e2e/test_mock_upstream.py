"""Self-tests of the mock upstream: the official SDK talks to it directly.

These need no llm-link binary. They prove the mock is realistic enough that a
gateway failure in the other tests is the gateway's fault, not the mock's.
"""

from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

from helpers import WEATHER_TOOL, assert_openai_error, reassemble_tool_calls, tool_call_args
from mock_upstream import EMBED_DIM, HELLO_TEXT, MockUpstream, embedding_for


@pytest.fixture
def direct(mock: MockUpstream):
    c = openai.OpenAI(base_url=mock.base_url, api_key="upstream-secret", max_retries=0, timeout=10)
    yield c
    c.close()


def test_chat(direct: openai.OpenAI, mock: MockUpstream) -> None:
    r = direct.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == HELLO_TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra and r.model_extra["x_mock_extra"] == "kept"
    assert mock.last("/v1/chat/completions").header("authorization") == "Bearer upstream-secret"


def test_chat_stream(direct: openai.OpenAI) -> None:
    chunks = list(direct.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hi"}],
        stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == HELLO_TEXT
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage(direct: openai.OpenAI) -> None:
    chunks = list(direct.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_raw_sse_framing(mock: MockUpstream) -> None:
    with httpx.stream("POST", f"{mock.base_url}/chat/completions",
                      json={"model": "mock-model", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for ev in events[:-2]:
        assert ev.startswith("data: ")
        json.loads(ev[len("data: "):])


def test_tools_round(direct: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = direct.chat.completions.create(model="mock-model", messages=msgs, tools=[WEATHER_TOOL])
    tc = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert tc.function.name == "get_weather" and json.loads(tc.function.arguments) == {"city": "Paris"}
    msgs += [r.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": tc.id, "content": "sunny, 21C"}]
    r2 = direct.chat.completions.create(model="mock-model", messages=msgs, tools=[WEATHER_TOOL])
    assert "sunny, 21C" in r2.choices[0].message.content


def test_tools_stream(direct: openai.OpenAI) -> None:
    chunks = list(direct.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "weather in Paris and London?"}],
        tools=[WEATHER_TOOL], stream=True))
    calls, finish = reassemble_tool_calls(chunks)
    assert finish == "tool_calls"
    assert [tool_call_args(calls[i]["arguments"]) for i in sorted(calls)] == [{"city": "Paris"}, {"city": "London"}]
    assert all(c["id"] and c["type"] == "function" and c["name"] == "get_weather" for c in calls.values())
    # arguments really are fragmented
    frags = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])
             if tc.function and tc.function.arguments]
    assert len(frags) >= 6


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
def test_embeddings(direct: openai.OpenAI, fmt) -> None:
    kw = {"encoding_format": fmt} if fmt else {}
    r = direct.embeddings.create(model="mock-embed", input=["a", "b"], **kw)
    assert [d.index for d in r.data] == [0, 1]
    vecs = [d.embedding for d in r.data]
    if fmt == "base64":  # explicitly asked for base64: the SDK hands back the string
        vecs = [list(struct.unpack(f"<{EMBED_DIM}f", base64.b64decode(v))) for v in vecs]
    assert vecs == [embedding_for("a"), embedding_for("b")]
    assert all(len(v) == EMBED_DIM for v in vecs)


def test_completions(direct: openai.OpenAI) -> None:
    r = direct.completions.create(model="mock-model", prompt="Say hi")
    assert r.object == "text_completion" and r.choices[0].text == HELLO_TEXT


def test_models(direct: openai.OpenAI) -> None:
    ids = [m.id for m in direct.models.list()]
    assert "mock-model" in ids
    with pytest.raises(openai.NotFoundError):
        direct.models.retrieve("nope-model")


def test_errors(direct: openai.OpenAI, mock: MockUpstream) -> None:
    m = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as e429:
        direct.chat.completions.create(model="fail-429", messages=m)
    assert e429.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as e500:
        direct.chat.completions.create(model="fail-500", messages=m)
    assert_openai_error(e500.value.response, 500)
    with pytest.raises(openai.AuthenticationError) as e401:
        direct.chat.completions.create(model="fail-401", messages=m)
    assert e401.value.code == "invalid_api_key"


def test_chunked_request_body(mock: MockUpstream) -> None:
    body = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = httpx.post(f"{mock.base_url}/chat/completions", content=iter([body[:10], body[10:]]))
    assert r.status_code == 200
    assert mock.last().header("transfer-encoding") == "chunked"
    assert mock.last().body["model"] == "mock-model"


def test_extra_body_recorded(direct: openai.OpenAI, mock: MockUpstream) -> None:
    direct.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}],
                                   extra_body={"x_client_extra": 1})
    assert mock.last("/v1/chat/completions").body["x_client_extra"] == 1


# ---- Responses API ---------------------------------------------------------

RESPONSES_WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Get the weather",
                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                         "required": ["city"]}}


def test_responses(direct: openai.OpenAI, mock: MockUpstream) -> None:
    r = direct.responses.create(model="mock-model", input="hi", instructions="Be terse.",
                                prompt_cache_key="k", include=["reasoning.encrypted_content"])
    assert r.object == "response" and r.status == "completed" and r.output_text == HELLO_TEXT
    assert r.instructions == "Be terse." and r.prompt_cache_key == "k"
    assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    rec = mock.last("/v1/responses")
    assert rec.usage == {"input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens}
    assert rec.body["include"] == ["reasoning.encrypted_content"]
    assert direct.responses.retrieve(r.id).output_text == HELLO_TEXT
    direct.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        direct.responses.retrieve(r.id)


def test_responses_stream(direct: openai.OpenAI) -> None:
    with direct.responses.stream(model="mock-model", input="hi") as s:
        events = list(s)
        final = s.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == HELLO_TEXT
    assert final.output_text == HELLO_TEXT and final.id == events[0].response.id


def test_responses_tool_round(direct: openai.OpenAI) -> None:
    r1 = direct.responses.create(model="mock-model", input="weather in Paris?", tools=[RESPONSES_WEATHER_TOOL])
    call = r1.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    out = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    r2 = direct.responses.create(model="mock-model", previous_response_id=r1.id, input=[out])
    assert r2.output_text == "The weather is: sunny"
    # Like the real API: an output answering no call, an unknown previous response.
    with pytest.raises(openai.BadRequestError, match="No tool call found"):
        direct.responses.create(model="mock-model", input=[{**out, "call_id": "call_nope"}])
    with pytest.raises(openai.BadRequestError, match="Previous response"):
        direct.responses.create(model="mock-model", previous_response_id="resp_nope", input=[out])
