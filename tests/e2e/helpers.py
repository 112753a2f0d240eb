"""Shared assertions and helpers for the e2e tests."""

from __future__ import annotations

import json
from typing import Any, Iterable

import httpx

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def assert_openai_error(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """Assert an OpenAI-shaped error body ``{"error": {"message", "type", "code"}}``.

    Returns the inner ``error`` object.
    """
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (
        f"expected HTTP {statuses}, got {response.status_code}: {response.text[:500]}"
    )
    ctype = response.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error content-type is {ctype!r}: {response.text[:500]}"
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
        f"error body is not {{'error': {{...}}}}: {body!r}"
    )
    err = body["error"]
    for key in ("message", "type", "code"):
        assert key in err, f"error object lacks {key!r}: {err!r}"
    assert isinstance(err["message"], str) and err["message"].strip(), f"empty error message: {err!r}"
    assert isinstance(err["type"], str) and err["type"].strip(), f"empty error type: {err!r}"
    assert err["code"] is None or isinstance(err["code"], (str, int)), f"bad error code: {err!r}"
    return err


def reassemble_tool_calls(chunks: Iterable[Any]) -> tuple[dict[int, dict[str, Any]], str | None]:
    """Rebuild tool calls from streamed ``ChatCompletionChunk``s the way an SDK user would.

    Returns ({index: {"id", "type", "name", "arguments"}}, finish_reason).
    """
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish = choice.finish_reason
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "type": None, "name": "", "arguments": ""})
                if tc.id:
                    assert slot["id"] in (None, tc.id), f"tool call {tc.index} changed id: {slot['id']} -> {tc.id}"
                    slot["id"] = tc.id
                if tc.type:
                    slot["type"] = tc.type
                if tc.function is not None:
                    if tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
    return calls, finish


def tool_call_args(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError as e:  # pragma: no cover - only on failure
        raise AssertionError(f"tool call arguments are not valid JSON: {arguments!r}") from e


def assert_upstream_auth(mock: Any, upstream_key: str = "upstream-secret",
                         client_key: str = "test-client-key") -> None:
    """Every request the mock got carried OUR upstream key and never the client's key."""
    assert mock.requests, "the mock upstream received no request at all"
    for req in mock.requests:
        assert req.header("authorization") == f"Bearer {upstream_key}", (
            f"{req.method} {req.path}: upstream Authorization was {req.header('authorization')!r}"
        )
        leaked = {k: v for k, v in req.headers.items() if client_key in v}
        assert not leaked, f"client key forwarded upstream in headers {leaked}"
        assert client_key.encode() not in req.raw_body, "client key forwarded upstream in the body"
