"""A tiny stdlib OpenAI-compatible upstream that checks the bearer key.

``GET /v1/models`` and ``POST /v1/chat/completions`` answer 401 with an
OpenAI error body unless ``Authorization: Bearer <key>`` matches, so
``/api/config/validate`` can tell a good key from a bad one. Chat answers
``"hello from <name>"`` and every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional


class KeyedUpstream:
    def __init__(self, name: str, key: str, models: Optional[List[str]] = None) -> None:
        self.name = name
        self.key = key
        self.models = list(models or [f"model-{name}"])
        self.requests: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    def start(self) -> "KeyedUpstream":
        mock = self

        class Handler(_Handler):
            upstream = mock

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name=f"upstream-{self.name}").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def record(self, entry: Dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def calls(self, method: str, path: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]


class _Handler(BaseHTTPRequestHandler):
    upstream: KeyedUpstream
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.upstream.key}":
            return True
        self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}})
        return False

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        self.upstream.record({"method": "GET", "path": path, "auth": self.headers.get("Authorization"), "body": None})
        if not self._authorized():
            return
        if path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": self.upstream.name}
                for m in self.upstream.models]})
        else:
            self._send(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                       "param": None, "code": None}})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        body = self._body()
        self.upstream.record({"method": "POST", "path": path, "auth": self.headers.get("Authorization"), "body": body})
        if not self._authorized():
            return
        if path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                       "param": None, "code": None}})
            return
        model = (body or {}).get("model", "")
        self._send(200, {
            "id": f"chatcmpl-{self.upstream.name}-{len(self.upstream.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hello from {self.upstream.name}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        })


def gateway_chat(base_url: str, model: str, text: str = "hi") -> Dict[str, Any]:
    """One non-streaming OpenAI chat request through the gateway at ``base_url``."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(base_url + "/v1/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        return json.loads(resp.read())
