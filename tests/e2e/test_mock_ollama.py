"""Self-tests of the Ollama mock: the official ``ollama`` SDK talks to it directly.

No llm-link binary needed. They show the mock behaves (and refuses) like a
real Ollama server, so a failure in test_ollama_*.py is the gateway's.
"""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import pytest

from mock_ollama import MockOllama
from mock_upstream import embedding_for
from multi import (NO_TLS, OLLAMA_WEATHER_TOOL, PNG_BYTES, TOOL_RESULT, check_ollama_stream, ndjson_lines,
                   ollama_client)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def direct(ollama_mock: MockOllama):
    c = ollama_client(ollama_mock.base_url, key=None)
    yield c
    c.close()


def test_chat(direct: ollama.Client, ollama_mock: MockOllama) -> None:
    r = direct.chat(model="llama-mock", messages=HI)
    assert r.message.role == "assistant" and r.message.content == "Hello from mock"
    assert r.done and r.done_reason == "stop"
    assert {"input_tokens": r.prompt_eval_count, "output_tokens": r.eval_count} == ollama_mock.last("/api/chat").usage
    assert ollama_mock.last("/api/chat").body["stream"] is False


def test_chat_stream_is_default(ollama_mock: MockOllama) -> None:
    r = httpx.post(ollama_mock.base_url + "/api/chat", json={"model": "llama-mock", "messages": HI}, **NO_TLS)
    assert r.headers["content-type"] == "application/x-ndjson"
    out = check_ollama_stream(ndjson_lines(r.text))
    assert out["text"] == "Hello from mock" and len(out["lines"]) == 4


def test_tool_round(direct: ollama.Client) -> None:
    msgs: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    parts = list(direct.chat(model="llama-mock", messages=msgs, tools=[OLLAMA_WEATHER_TOOL], stream=True))
    calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}
    msgs += [{"role": "assistant", "content": "", "tool_calls": calls},
             {"role": "tool", "content": TOOL_RESULT, "tool_name": "get_weather"}]
    r = direct.chat(model="llama-mock", messages=msgs, tools=[OLLAMA_WEATHER_TOOL])
    assert TOOL_RESULT in r.message.content


def test_generate_embed_list_show(direct: ollama.Client) -> None:
    assert direct.generate(model="llama-mock", prompt="hi").response == "Hello from mock"
    assert "".join(p.response for p in direct.generate(model="llama-mock", prompt="hi", stream=True)) \
        == "Hello from mock"
    assert direct.embed(model="embed-mock", input=["a", "b"]).embeddings == [embedding_for("a"), embedding_for("b")]
    assert direct.embeddings(model="embed-mock", prompt="a").embedding == embedding_for("a")
    assert "llama-mock:latest" in [m.model for m in direct.list().models]
    show = direct.show("llama-mock")
    assert "tools" in show.capabilities and show.modelinfo["llama.context_length"] > 0


def test_num_predict_is_length(direct: ollama.Client) -> None:
    r = direct.chat(model="llama-mock", messages=HI, options={"num_predict": 2})
    assert r.done_reason == "length" and r.message.content == "Hello from"


def test_images(direct: ollama.Client, ollama_mock: MockOllama) -> None:
    direct.chat(model="llama-mock", messages=[{"role": "user", "content": "what is this?", "images": [PNG_BYTES]}])
    img = ollama_mock.last("/api/chat").body["messages"][0]["images"][0]
    assert img.startswith("iVBOR")


def test_errors(direct: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as e404:
        direct.chat(model="nope", messages=HI)
    assert e404.value.status_code == 404 and "not found" in e404.value.error
    with pytest.raises(ollama.ResponseError) as e500:
        direct.chat(model="llama-fail-500", messages=HI)
    assert e500.value.status_code == 500


@pytest.mark.parametrize("message, needle", [
    ({"role": "user", "content": [{"type": "text", "text": "hi"}]}, "content of type string"),
    ({"role": "user", "content": "hi", "images": ["data:image/png;base64,iVBOR"]}, "base64"),
    ({"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}, "arguments"),
    ({"role": "developer", "content": "hi"}, "role"),
], ids=["content-list", "data-url-image", "string-arguments", "unknown-role"])
def test_validation_like_ollama(ollama_mock: MockOllama, message: Any, needle: str) -> None:
    r = httpx.post(ollama_mock.base_url + "/api/chat",
                   json={"model": "llama-mock", "messages": [message], "stream": False}, **NO_TLS)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
