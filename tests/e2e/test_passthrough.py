"""Unknown fields survive in both directions (OpenAI client -> OpenAI upstream)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai

from mock_upstream import MockUpstream

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]


def test_unknown_response_field_kept_sdk(any_client: openai.OpenAI) -> None:
    r = any_client.chat.completions.create(model="mock-model", messages=HI)
    assert r.model_extra is not None and r.model_extra.get("x_mock_extra") == "kept", r.model_extra
    assert r.system_fingerprint == "fp_mock0001"


def test_unknown_response_field_kept_raw(any_gateway: "Gateway") -> None:
    with any_gateway.http() as http:
        r = http.post("/v1/chat/completions", json={"model": "mock-model", "messages": HI})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["x_mock_extra"] == "kept"


def test_unknown_request_field_forwarded(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    any_client.chat.completions.create(
        model="mock-model", messages=HI, temperature=0.25, max_tokens=17, user="u-1",
        extra_body={"x_client_extra": 1, "x_nested": {"a": [1, 2]}})
    body = mock.last("/v1/chat/completions").body
    assert body["x_client_extra"] == 1
    assert body["x_nested"] == {"a": [1, 2]}
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 17
    assert body["user"] == "u-1"


def test_unknown_request_field_forwarded_streamed(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    list(any_client.chat.completions.create(
        model="mock-model", messages=HI, stream=True, extra_body={"x_client_extra": "s"}))
    body = mock.last("/v1/chat/completions").body
    assert body["x_client_extra"] == "s"
    assert body["stream"] is True
