"""An upstream that drops the connection mid-stream: the client gets an in-band error of its protocol.

``claude-break`` (Anthropic mock) and ``llama-break`` (Ollama mock) send the
first text delta and then drop the connection without finishing the chunked
body. Once a stream has started the HTTP status is already 200, so the
contract is an in-band error: an Anthropic ``error`` event, an Ollama
``{"error": ...}`` line, an OpenAI ``{"error": {...}}`` chunk. A stream that
just ends (or, worse, ends with a normal stop) would make a truncated answer
look complete.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anthropic
import ollama
import openai
import pytest

from multi import anthropic_client, anthropic_sse_events, ndjson_lines, ollama_client, parse_sse

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
BREAKING = ["claude-break", "llama-break"]


@pytest.mark.parametrize("model", BREAKING)
def test_anthropic_client_gets_error_event(matrix_gateway: "Gateway", model: str) -> None:
    with matrix_gateway.http() as http:
        r = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                      json={"model": model, "max_tokens": 50, "stream": True, "messages": HI})
    assert r.status_code == 200, r.text
    events = anthropic_sse_events(r.text)
    types = [e["type"] for e in events]
    assert types[0] == "message_start", types
    assert "Hello" in "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert types[-1] == "error", f"a broken upstream stream must end with an error event: {types}"
    assert "message_stop" not in types, f"a truncated answer must not look complete: {types}"
    err = events[-1]["error"]
    assert isinstance(err.get("type"), str) and isinstance(err.get("message"), str) and err["message"], err
    assert "127.0.0.1" not in err["message"], err

    with anthropic_client(matrix_gateway.url) as c, \
            pytest.raises(anthropic.APIError):
        with c.messages.stream(model=model, max_tokens=50, messages=HI) as s:
            s.get_final_message()


@pytest.mark.parametrize("model", BREAKING)
def test_ollama_client_gets_error_line(matrix_gateway: "Gateway", model: str) -> None:
    with matrix_gateway.http() as http:
        r = http.post("/api/chat", json={"model": model, "messages": HI})
    assert r.status_code == 200, r.text
    lines = ndjson_lines(r.text)
    assert lines and "error" in lines[-1], f"a broken upstream stream must end with an error line: {lines}"
    assert isinstance(lines[-1]["error"], str) and lines[-1]["error"]
    assert not any(line.get("done") is True and "error" not in line for line in lines), (
        f"a truncated answer must not end with a normal done line: {lines}")

    with ollama_client(matrix_gateway.url) as c, \
            pytest.raises(ollama.ResponseError):
        list(c.chat(model=model, messages=HI, stream=True))


@pytest.mark.parametrize("model", BREAKING)
def test_openai_client_gets_error_chunk(matrix_gateway: "Gateway", model: str) -> None:
    with matrix_gateway.http() as http:
        r = http.post("/v1/chat/completions", json={"model": model, "messages": HI, "stream": True})
    assert r.status_code == 200, r.text
    datas = [d for _, d in parse_sse(r.text)]
    objs = [json.loads(d) for d in datas if d != "[DONE]"]
    assert objs and "error" in objs[-1], f"a broken upstream stream must end with an error chunk: {datas}"
    finishes = [c["choices"][0].get("finish_reason") for c in objs if c.get("choices")]
    assert not any(finishes), f"a truncated answer must not carry a finish_reason: {finishes}"

    with matrix_gateway.client() as c, \
            pytest.raises(openai.APIError):
        list(c.chat.completions.create(model=model, messages=HI, stream=True))
