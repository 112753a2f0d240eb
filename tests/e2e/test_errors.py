"""Errors come back as the SDK's own exception types with OpenAI-shaped bodies."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import openai
import pytest

from conftest import CLIENT_KEY, UPSTREAM_KEY
from helpers import assert_openai_error
from mock_upstream import MockUpstream

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]


def _assert_no_secrets(text: str, mock: MockUpstream) -> None:
    assert UPSTREAM_KEY not in text, f"upstream key leaked to the client: {text}"
    assert CLIENT_KEY not in text, f"client key echoed back: {text}"
    assert f"127.0.0.1:{mock.port}" not in text, f"internal upstream address leaked to the client: {text}"


# ---- routing / auth errors: the upstream must not be called -----------------

def test_unknown_model_is_404(config_client: openai.OpenAI, mock: MockUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        config_client.chat.completions.create(model="no-such-model", messages=HI)
    err = assert_openai_error(ei.value.response, 404)
    assert "no-such-model" in err["message"], f"404 message should name the model: {err}"
    assert mock.requests_to("/v1/chat/completions") == [], "unknown model must not reach the upstream"


def test_unknown_model_streamed_is_404(config_client: openai.OpenAI, mock: MockUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        config_client.chat.completions.create(model="no-such-model", messages=HI, stream=True)
    assert_openai_error(ei.value.response, 404)


def test_wrong_client_key_is_401(any_gateway: "Gateway", mock: MockUpstream) -> None:
    with any_gateway.client(api_key="wrong-key") as c, pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="mock-model", messages=HI)
    assert ei.value.status_code == 401
    err = assert_openai_error(ei.value.response, 401)
    assert "wrong-key" not in err["message"]
    assert mock.requests == [], "an unauthenticated request must not reach the upstream"


def test_missing_client_key_is_401(any_gateway: "Gateway", mock: MockUpstream) -> None:
    with any_gateway.http(api_key=None) as http:
        r = http.post("/v1/chat/completions", json={"model": "mock-model", "messages": HI})
    assert_openai_error(r, 401)
    assert mock.requests == []


# ---- upstream errors ---------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_429_is_rate_limit_error(config_client: openai.OpenAI, mock: MockUpstream, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        config_client.chat.completions.create(model="fail-429", messages=HI, stream=stream)
    assert ei.value.status_code == 429
    assert ei.value.response.headers.get("retry-after") == "7", dict(ei.value.response.headers)
    assert_openai_error(ei.value.response, 429)
    assert mock.requests_to("/v1/chat/completions"), "the upstream was never called"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_500_is_502(config_client: openai.OpenAI, mock: MockUpstream, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        config_client.chat.completions.create(model="fail-500", messages=HI, stream=stream)
    assert ei.value.status_code == 502, f"upstream 5xx must map to 502, got {ei.value.status_code}"
    assert_openai_error(ei.value.response, 502)
    _assert_no_secrets(ei.value.response.text, mock)
    assert mock.requests_to("/v1/chat/completions"), "the upstream was never called"


def test_upstream_rejected_our_key(config_client: openai.OpenAI, mock: MockUpstream) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        config_client.chat.completions.create(model="fail-401", messages=HI)
    # 401/403 or 502 are all defensible; 5xx other than 502, or 2xx, are not.
    assert ei.value.status_code in (401, 403, 502), ei.value.status_code
    err = assert_openai_error(ei.value.response, (401, 403, 502))
    msg = err["message"]
    assert re.search(r"upstream|provider", msg, re.I) and re.search(r"key|credential|auth", msg, re.I), (
        f"message should say the upstream rejected the gateway's key: {msg!r}")
    _assert_no_secrets(ei.value.response.text, mock)
    assert mock.requests_to("/v1/chat/completions"), "the upstream was never called"


# ---- malformed requests: 400 naming the field, upstream not called -----------

def test_messages_not_a_list_is_400(any_client: openai.OpenAI, mock: MockUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        any_client.chat.completions.create(model="mock-model", messages="oops")  # type: ignore[arg-type]
    err = assert_openai_error(ei.value.response, 400)
    assert "messages" in err["message"], f"400 message should name the field 'messages': {err}"
    assert mock.requests == [], "a malformed request must not reach the upstream"


def test_messages_missing_is_400(any_gateway: "Gateway", mock: MockUpstream) -> None:
    with any_gateway.http() as http:
        r = http.post("/v1/chat/completions", json={"model": "mock-model"})
    err = assert_openai_error(r, 400)
    assert "messages" in err["message"], err
    assert mock.requests == []


def test_invalid_json_is_400(any_gateway: "Gateway", mock: MockUpstream) -> None:
    with any_gateway.http() as http:
        r = http.post("/v1/chat/completions", content=b'{"model": "mock-model", "messages": [',
                      headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400)
    assert mock.requests == []


def test_unknown_route_is_openai_404(any_gateway: "Gateway") -> None:
    with any_gateway.http() as http:
        r = http.post("/v1/no-such-endpoint", json={})
    assert_openai_error(r, 404)
