"""HTTP/1.1 connection reuse after a rejected request.

SDKs (openai, anthropic, ollama: all httpx) keep connections alive and reuse
them. When the gateway answers before reading the request body (the auth
check rejects it), it must either keep the connection usable (read and drop
the body) or say ``Connection: close``. Closing it silently makes the client's
*next* request on that connection fail with "Server disconnected without
sending a response" (seen on ~4% of requests in a loop of wrong-key calls).

The test makes the race deterministic with a raw socket: headers first, the
body only after the 401 has arrived.
"""

from __future__ import annotations

import re
import socket
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Gateway

BODY = b'{"model": "claude-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


def _read_response(sock: socket.socket) -> tuple[str, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head.decode("latin-1"), rest


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/api/chat"])
def test_connection_usable_or_closed_explicitly_after_401(matrix_gateway: "Gateway", path: str) -> None:
    with socket.create_connection(("127.0.0.1", matrix_gateway.port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"anthropic-version: 2023-06-01\r\nContent-Length: {len(BODY)}\r\n\r\n".encode())
        first = _read_response(sock)
        assert first is not None, "no response at all"
        head = first[0]
        assert head.split("\r\n")[0].split(" ")[1] == "401", head
        if re.search(r"^connection:\s*close", head, re.I | re.M):
            return  # the gateway said it closes: fine
        time.sleep(0.1)
        try:
            sock.sendall(BODY)
            sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            second = _read_response(sock)
        except OSError as e:
            second = None
            detail = repr(e)
        else:
            detail = "connection closed"
        assert second is not None, (
            f"the 401 did not say 'Connection: close' but the connection was dropped ({detail}); "
            f"first response head:\n{head}")
        assert second[0].startswith("HTTP/1.1 200"), second[0]


def test_connection_reusable_after_authorized_errors(matrix_gateway: "Gateway") -> None:
    """Control: 404/400 answers given after the body was read keep the connection healthy."""
    with matrix_gateway.http() as http:
        for _ in range(30):
            for path, body, status in (
                    ("/v1/messages", {"model": "nope", "max_tokens": 5,
                                      "messages": [{"role": "user", "content": "hi"}]}, 404),
                    ("/v1/chat/completions", {"model": "mock-model"}, 400),
                    ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404)):
                r = http.post(path, json=body, headers={"anthropic-version": "2023-06-01"})
                assert r.status_code == status, r.text
