"""A stdlib-only mock of the OpenAI HTTP API, used as llm-link's upstream.

It mimics the real API field by field (chat.completion, chat.completion.chunk,
text_completion, embedding, list, model, OpenAI error bodies) and records
every request it receives so tests can assert what the gateway sent upstream.

Behaviour is chosen by the request:

* model ``fail-500`` -> 500 with an OpenAI ``server_error`` body
* model ``fail-429`` -> 429 with ``Retry-After: 7``
* model ``mock-hold`` -> sets ``mock.held``, waits for ``mock.release`` (10 s at
  most), then answers like any model: a request that stays in flight
* model ``fail-401`` -> 401 ``invalid_api_key``
* chat with ``tools`` whose last user message mentions "weather" and no
  ``tool`` message yet -> a ``get_weather`` tool call with
  ``{"city": "Paris"}`` (plus a second call for London when the message also
  mentions "London")
* chat with a ``tool`` message -> "The weather is: <tool content>"
* a coding agent's tools (Claude Code's ``Bash``, Codex's ``exec_command``)
  + "list the files" -> a call running ``ls``; its result -> "The listing
  shows: <result>" (see agent_script.py)
* anything else -> "Hello from mock"
* ``max_tokens`` / ``max_completion_tokens`` below the answer's word count
  -> the answer cut to that many words, ``finish_reason: "length"``

Requests are validated like the real API (400 ``invalid_request_error``):
known roles, content parts (inline images as ``data:image/...;base64,``
URLs), tool calls with string ``arguments`` and tool messages answering every
``tool_call_id`` of the assistant message right before them.

Every recorded request also carries the response bytes the mock sent and the
usage it reported (``RecordedRequest.response`` / ``.usage``).

Streaming uses HTTP/1.1 chunked transfer encoding and SSE ``data:`` lines
terminated by ``data: [DONE]``, like the real API.

``POST /v1/responses`` is the Responses API, following the same script (text
"Hello from mock", a ``get_weather`` ``function_call`` when ``tools`` are given
and the last user message mentions "weather", "The weather is: <output>" once
a ``function_call_output`` is in the input): a ``response`` object, or with
``"stream": true`` the real event sequence (``event:`` + ``data:`` lines, each
with a ``sequence_number`` from 0, no ``[DONE]``). Responses are kept (unless
``"store": false``) for ``previous_response_id`` and ``GET``/``DELETE
/v1/responses/{id}``; like the real API it refuses (400) an unknown
``previous_response_id`` and a ``function_call_output`` whose ``call_id``
answers no ``function_call`` of the conversation.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent_script import AGENT_CALLS, agent_call, listing_answer

HELLO_TEXT = "Hello from mock"
# Pieces the streamed hello is split into; "".join(HELLO_PIECES) == HELLO_TEXT.
HELLO_PIECES = ["Hello", " from", " mock"]
WEATHER_ARGS = {"city": "Paris"}
EMBED_DIM = 8
SYSTEM_FINGERPRINT = "fp_mock0001"

MODELS = [
    "mock-model",
    "mock-embed",
    "fail-500",
    "fail-429",
    "fail-401",
]

_id_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-mock{next(_id_counter):06d}{int(time.time() * 1000) % 100000:05d}"


def count_tokens(text: str) -> int:
    """Deterministic, crude token count: whitespace-separated words."""
    return max(1, len(text.split())) if text else 0


def embedding_for(text: str) -> list[float]:
    """Deterministic vector of EMBED_DIM float32-exact values for ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    # Values are k/256 - 0.5: exactly representable in float32, so base64
    # (float32) and float encodings compare equal.
    return [digest[i] / 256.0 - 0.5 for i in range(EMBED_DIM)]


def split_arguments(args: str, parts: int = 4) -> list[str]:
    """Split a JSON argument string into several fragments, like OpenAI does."""
    step = max(1, -(-len(args) // parts))
    return [args[i : i + step] for i in range(0, len(args), step)]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes
    body: Any  # parsed JSON, or None
    # Filled in while the mock answers: the status, the response body bytes
    # exactly as sent (de-chunked), and the usage the mock reported in the
    # normalised form {"input_tokens": n, "output_tokens": m}.
    status: int = 0
    response: bytes = b""
    usage: dict[str, int] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class MockUpstream:
    host: str = "127.0.0.1"
    requests: list[RecordedRequest] = field(default_factory=list)
    # Model ``mock-hold``: set when such a request arrives; it is answered once ``release`` is set.
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    # Responses API: stored responses by id, each {"response": obj, "items": conversation items}.
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------
    def _handler_base(self) -> type:
        """The request handler class; other mocks (Anthropic, Ollama) override this."""
        return _Handler

    def start(self) -> "MockUpstream":
        mock = self

        class Handler(self._handler_base()):  # type: ignore[misc]
            upstream = mock

        self._server = _QuietServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
            name="mock-upstream", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MockUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "mock upstream not started"
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # ---- recording -------------------------------------------------------
    def record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def last(self, path: str | None = None) -> RecordedRequest:
        with self._lock:
            reqs = [r for r in self.requests if path is None or r.path.split("?")[0] == path]
        assert reqs, f"mock upstream received no request{' to ' + path if path else ''}; " \
            f"got: {[(r.method, r.path) for r in self.requests]}"
        return reqs[-1]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def calls(self, path: str) -> list[RecordedRequest]:
        """Alias of ``requests_to`` (reads better in assertions)."""
        return self.requests_to(path)


# ---------------------------------------------------------------------------
# Request handling
# ---------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        # A client (the gateway) dropping an idle keep-alive connection is normal.
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    upstream: MockUpstream  # set by subclass
    protocol_version = "HTTP/1.1"
    server_version = "mock-openai/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean

    # ---- low-level I/O ---------------------------------------------------
    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline()  # CRLF after chunk
            return bytes(out)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _common_headers(self) -> None:
        self.send_header("x-request-id", _new_id("req"))
        self.send_header("openai-processing-ms", "12")
        self.send_header("openai-version", "2020-10-01")

    _current: RecordedRequest | None = None

    def _capture(self, status: int | None = None, data: bytes = b"") -> None:
        cur = self._current
        if cur is not None:
            if status is not None:
                cur.status = status
            cur.response += data

    def _send_json(self, status: int, obj: Any, extra_headers: dict[str, str] | None = None,
                   content_type: str = "application/json") -> None:
        data = json.dumps(obj).encode("utf-8")
        self._capture(status, data)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_sse(self) -> None:
        self._capture(200)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._common_headers()
        self.end_headers()
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self._capture(None, data)
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _sse(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj).encode("utf-8") + b"\n\n")

    def _end_sse(self) -> None:
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _error(self, status: int, message: str, type_: str, code: str | None,
               param: str | None = None, headers: dict[str, str] | None = None) -> None:
        self._send_json(
            status,
            {"error": {"message": message, "type": type_, "param": param, "code": code}},
            headers,
        )

    # ---- dispatch --------------------------------------------------------
    def _record(self, raw: bytes) -> Any:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        req = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw,
            body=body,
        )
        self._current = req
        self.upstream.record(req)
        return body

    def _set_usage(self, input_tokens: int, output_tokens: int | None = None) -> None:
        if self._current is not None:
            u = {"input_tokens": input_tokens}
            if output_tokens is not None:
                u["output_tokens"] = output_tokens
            self._current.usage = u

    def do_GET(self) -> None:  # noqa: N802
        self._record(b"")
        path = self.path.split("?")[0]
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [_model_obj(m) for m in MODELS]})
        elif path.startswith("/v1/responses/"):
            rid = path[len("/v1/responses/"):]
            stored = self.upstream.responses.get(rid)
            if stored is None:
                self._error(404, f"Response with id '{rid}' not found.", "invalid_request_error", None)
            else:
                self._send_json(200, stored["response"])
        elif path.startswith("/v1/models/"):
            model = path[len("/v1/models/"):]
            if model in MODELS:
                self._send_json(200, _model_obj(model))
            else:
                self._error(404, f"The model '{model}' does not exist", "invalid_request_error",
                            "model_not_found", "model")
        else:
            self._error(404, f"Invalid URL (GET {path})", "invalid_request_error", None)

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        body = self._record(raw)
        path = self.path.split("?")[0]
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._responses,
        }
        handler = routes.get(path)
        if handler is None:
            self._error(404, f"Invalid URL (POST {path})", "invalid_request_error", None)
            return
        if not isinstance(body, dict):
            self._error(400, "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly.)",
                        "invalid_request_error", None)
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._error(400, "you must provide a model parameter", "invalid_request_error", None)
            return
        if self._maybe_fail(model):
            return
        if model == "mock-hold":
            self.upstream.held.set()
            self.upstream.release.wait(10.0)
        handler(body)

    def do_DELETE(self) -> None:  # noqa: N802
        self._record(b"")
        path = self.path.split("?")[0]
        rid = path[len("/v1/responses/"):] if path.startswith("/v1/responses/") else None
        if rid is None:
            self._error(404, f"Invalid URL (DELETE {path})", "invalid_request_error", None)
        elif self.upstream.responses.pop(rid, None) is None:
            self._error(404, f"Response with id '{rid}' not found.", "invalid_request_error", None)
        else:
            self._send_json(200, {"id": rid, "object": "response", "deleted": True})

    def _maybe_fail(self, model: str) -> bool:
        if model == "fail-500":
            self._error(500, "The server had an error while processing your request. Sorry about that!",
                        "server_error", None)
        elif model == "fail-429":
            self._error(429, "Rate limit reached for requests on mock-org. Limit: 3 / min. "
                        "Please try again in 7s.", "requests", "rate_limit_exceeded",
                        headers={"Retry-After": "7", "x-ratelimit-remaining-requests": "0"})
        elif model == "fail-401":
            self._error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        else:
            return False
        return True

    # ---- chat ------------------------------------------------------------
    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "Invalid type for 'messages': expected an array of objects.",
                        "invalid_request_error", "invalid_type", "messages")
            return
        problem = _validate_chat(body)
        if problem is not None:
            message, param = problem
            self._error(400, message, "invalid_request_error", None, param)
            return
        model = body["model"]
        prompt_tokens = sum(count_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        plan = _plan_chat(body)
        self._set_usage(prompt_tokens, plan.completion_tokens())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._chat_stream(model, plan, prompt_tokens, include_usage)
        else:
            self._chat_json(model, plan, prompt_tokens)

    def _chat_json(self, model: str, plan: "_Plan", prompt_tokens: int) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None,
                                   "annotations": []}
        if plan.tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": tc["id"], "type": "function",
                 "function": {"name": tc["name"], "arguments": tc["arguments"]}}
                for tc in plan.tool_calls
            ]
        completion_tokens = plan.completion_tokens()
        self._send_json(200, {
            "id": _new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": plan.finish_reason}],
            "usage": _usage(prompt_tokens, completion_tokens),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "x_mock_extra": "kept",
        })

    def _chat_stream(self, model: str, plan: "_Plan", prompt_tokens: int, include_usage: bool) -> None:
        cid = _new_id("chatcmpl")
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                c["usage"] = None
            return c

        self._start_sse()
        if plan.tool_calls:
            self._sse(chunk({"role": "assistant", "content": None, "refusal": None}))
            for i, tc in enumerate(plan.tool_calls):
                self._sse(chunk({"tool_calls": [{
                    "index": i, "id": tc["id"], "type": "function",
                    "function": {"name": tc["name"], "arguments": ""}}]}))
                for frag in split_arguments(tc["arguments"]):
                    self._sse(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
        else:
            self._sse(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in plan.pieces:
                self._sse(chunk({"content": piece}))
        self._sse(chunk({}, plan.finish_reason))
        if include_usage:
            self._sse({
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [], "usage": _usage(prompt_tokens, plan.completion_tokens()),
            })
        self._end_sse()

    # ---- Responses API ---------------------------------------------------
    def _responses(self, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if isinstance(inp, str):
            items: list[Any] = [{"type": "message", "role": "user", "content": inp}]
        elif isinstance(inp, list):
            items = inp
        elif inp is None and body.get("previous_response_id"):
            items = []
        else:
            self._error(400, "Invalid type for 'input': expected one of a string or array of input items.",
                        "invalid_request_error", "invalid_type", "input")
            return
        history: list[Any] = []
        prev = body.get("previous_response_id")
        if prev is not None:
            stored = self.upstream.responses.get(prev)
            if stored is None:
                self._error(400, f"Previous response with id '{prev}' not found.", "invalid_request_error",
                            "previous_response_not_found", "previous_response_id")
                return
            history = list(stored["items"])
        conversation = history + items
        call_ids = {i.get("call_id") for i in conversation if isinstance(i, dict) and i.get("type") == "function_call"}
        for n, item in enumerate(items):
            if isinstance(item, dict) and item.get("type") == "function_call_output" \
                    and item.get("call_id") not in call_ids:
                self._error(400, f"No tool call found for function call output with call_id {item.get('call_id')}.",
                            "invalid_request_error", None, "input")
                return
        model = body["model"]
        outputs = [i for i in conversation if isinstance(i, dict) and i.get("type") == "function_call_output"]
        users = [i for i in conversation if isinstance(i, dict) and i.get("type", "message") == "message"
                 and i.get("role") == "user"]
        last_user = _text_of_item(users[-1]) if users else ""
        if outputs:
            plan = _Plan(text="The weather is: " + " ".join(str(o.get("output")) for o in outputs))
        elif body.get("tools") and "weather" in last_user.lower():
            plan = _Plan(tool_calls=[{"id": _new_id("call").replace("-", "_"), "name": "get_weather",
                                      "arguments": json.dumps(WEATHER_ARGS)}], finish_reason="tool_calls")
        else:
            plan = _Plan(text=HELLO_TEXT)
        input_tokens = count_tokens(str(body.get("instructions") or "")) + sum(
            count_tokens(_text_of_item(i)) for i in conversation if isinstance(i, dict)) + 3
        output_tokens = plan.completion_tokens() + 2
        self._set_usage(input_tokens, output_tokens)
        rid = _new_id("resp").replace("-", "_")
        msg_id = _new_id("msg").replace("-", "_")
        if plan.tool_calls:
            output = [{"id": _new_id("fc").replace("-", "_"), "type": "function_call", "status": "completed",
                       "arguments": tc["arguments"], "call_id": tc["id"], "name": tc["name"]}
                      for tc in plan.tool_calls]
        else:
            output = [{"id": msg_id, "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": plan.text, "annotations": [],
                                    "logprobs": []}]}]
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": input_tokens + output_tokens}
        final = _response_obj(rid, model, body, "completed", output, usage)
        if body.get("store", True):
            self.upstream.responses[rid] = {"response": final, "items": conversation + output}
        if body.get("stream"):
            self._responses_stream(final)
        else:
            self._send_json(200, final)

    def _responses_stream(self, final: dict[str, Any]) -> None:
        seq = itertools.count()

        def event(type_: str, **fields: Any) -> None:
            obj = {"type": type_, "sequence_number": next(seq), **fields}
            self._write_chunk(f"event: {type_}\ndata: ".encode() + json.dumps(obj).encode("utf-8") + b"\n\n")

        start = {**final, "status": "in_progress", "output": [], "usage": None}
        self._start_sse()
        event("response.created", response=start)
        event("response.in_progress", response=start)
        for idx, item in enumerate(final["output"]):
            if item["type"] == "message":
                part = item["content"][0]
                event("response.output_item.added", output_index=idx,
                      item={**item, "status": "in_progress", "content": []})
                empty = {**part, "text": ""}
                event("response.content_part.added", item_id=item["id"], output_index=idx, content_index=0,
                      part=empty)
                for piece in _pieces(part["text"]):
                    event("response.output_text.delta", item_id=item["id"], output_index=idx, content_index=0,
                          delta=piece, logprobs=[])
                event("response.output_text.done", item_id=item["id"], output_index=idx, content_index=0,
                      text=part["text"], logprobs=[])
                event("response.content_part.done", item_id=item["id"], output_index=idx, content_index=0,
                      part=part)
            else:
                event("response.output_item.added", output_index=idx,
                      item={**item, "status": "in_progress", "arguments": ""})
                for frag in split_arguments(item["arguments"]):
                    event("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                          delta=frag)
                event("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                      name=item["name"], arguments=item["arguments"])
            event("response.output_item.done", output_index=idx, item=item)
        event("response.completed", response=final)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- legacy completions ---------------------------------------------
    def _completions(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt_text = " ".join(p for p in prompt if isinstance(p, str))
        elif isinstance(prompt, str):
            prompt_text = prompt
        else:
            self._error(400, "Invalid type for 'prompt'", "invalid_request_error", "invalid_type", "prompt")
            return
        model = body["model"]
        cid = _new_id("cmpl")
        created = int(time.time())
        usage = _usage(count_tokens(prompt_text), count_tokens(HELLO_TEXT))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._start_sse()
            for i, piece in enumerate(HELLO_PIECES):
                last = i == len(HELLO_PIECES) - 1
                c: dict[str, Any] = {
                    "id": cid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [{"text": piece, "index": 0, "logprobs": None,
                                 "finish_reason": "stop" if last else None}],
                }
                if include_usage:
                    c["usage"] = None
                self._sse(c)
            if include_usage:
                self._sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                           "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [], "usage": usage})
            self._end_sse()
            return
        self._send_json(200, {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"text": HELLO_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        })

    # ---- embeddings ------------------------------------------------------
    def _embeddings(self, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if isinstance(inp, str):
            inputs = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str) for x in inp):
            inputs = inp
        else:
            self._error(400, "'input' is a required property and must be a string or an array of strings",
                        "invalid_request_error", "invalid_type", "input")
            return
        fmt = body.get("encoding_format") or "float"
        data = []
        for i, text in enumerate(inputs):
            vec = embedding_for(text)
            emb: Any = vec
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(count_tokens(t) for t in inputs)
        self._send_json(200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@dataclass
class _Plan:
    text: str | None = None
    pieces: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    finish_reason: str = "stop"

    def completion_tokens(self) -> int:
        if self.tool_calls:
            return sum(count_tokens(tc["arguments"]) + 1 for tc in self.tool_calls)
        return count_tokens(self.text or "")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _text_of_item(item: dict[str, Any]) -> str:
    """The text of a Responses input/output item (message content, tool output, call arguments)."""
    if item.get("type") == "function_call_output":
        return str(item.get("output") or "")
    if item.get("type") == "function_call":
        return str(item.get("arguments") or "")
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict)
                        and p.get("type") in ("input_text", "output_text", "text"))
    return ""


def _response_obj(rid: str, model: str, body: dict[str, Any], status: str, output: list[Any],
                  usage: dict[str, Any] | None) -> dict[str, Any]:
    """A Responses API ``response`` object, echoing the request's settings like the real API."""
    return {
        "id": rid, "object": "response", "created_at": int(time.time()), "status": status,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"), "model": model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs", 0), "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"), "usage": usage, "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _validate_chat(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """What the real API rejects with a 400 (message, param), or None.

    Checks the message grammar the way api.openai.com does: known roles,
    well-formed content parts (data: URLs for inline images), tool calls
    whose ``arguments`` are a JSON *string*, and tool messages that answer
    the tool calls of the assistant message right before them, every id.
    """
    if "stream_options" in body and not body.get("stream"):
        return ("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    messages = body["messages"]
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return (f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = m.get("role")
        if role not in _OPENAI_ROLES:
            return (f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                    f"'function', 'tool', and 'developer'.", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url", "input_audio", "file"):
                    return (f"Invalid value for '{where}.type'.", f"{where}.type")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    return (f"Missing required parameter: '{where}.text'.", f"{where}.text")
                if part["type"] == "image_url":
                    if role != "user":
                        return (f"Image content parts are only allowed for messages with role 'user', "
                                f"but found in message with role '{role}'.", where)
                    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
                    if not isinstance(url, str) or not (
                            url.startswith(("http://", "https://"))
                            or (url.startswith("data:image/") and ";base64," in url)):
                        return ("Invalid 'image_url': expected a URL or a data URL "
                                "(data:image/<type>;base64,<data>).", f"{where}.image_url.url")
        elif content is not None and not isinstance(content, str):
            return (f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects.",
                    f"messages[{i}].content")
        if role == "assistant" and m.get("tool_calls"):
            ids = []
            for j, tc in enumerate(m["tool_calls"]):
                where = f"messages[{i}].tool_calls[{j}]"
                if not isinstance(tc, dict) or not isinstance(tc.get("id"), str) or not tc["id"]:
                    return (f"Missing required parameter: '{where}.id'.", f"{where}.id")
                if tc.get("type") != "function":
                    return (f"Missing required parameter: '{where}.type'.", f"{where}.type")
                fn = tc.get("function")
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    return (f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name")
                if not isinstance(fn.get("arguments"), str):
                    got = type(fn.get("arguments")).__name__
                    return (f"Invalid type for '{where}.function.arguments': expected a string, "
                            f"but got {got} instead.", f"{where}.function.arguments")
                ids.append(tc["id"])
            answered = set()
            k = i + 1
            while k < len(messages) and isinstance(messages[k], dict) and messages[k].get("role") == "tool":
                answered.add(messages[k].get("tool_call_id"))
                k += 1
            missing = [x for x in ids if x not in answered]
            if missing:
                return ("An assistant message with 'tool_calls' must be followed by tool messages responding "
                        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                        + ", ".join(missing), f"messages.[{i}].role")
        if role == "tool":
            k = i - 1
            while k >= 0 and isinstance(messages[k], dict) and messages[k].get("role") == "tool":
                k -= 1
            prev = messages[k] if k >= 0 else None
            if not isinstance(prev, dict) or prev.get("role") != "assistant" or not prev.get("tool_calls"):
                return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                        "message with 'tool_calls'.", f"messages.[{i}].role")
            ids = [tc.get("id") for tc in prev["tool_calls"] if isinstance(tc, dict)]
            if m.get("tool_call_id") not in ids:
                return (f"Invalid parameter: 'tool_call_id' of '{m.get('tool_call_id')}' not found in "
                        f"'tool_calls' of previous message.", f"messages.[{i}].tool_call_id")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return ("Invalid type for 'tools': expected an array of objects.", "tools")
        for j, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
                return (f"Missing required parameter: 'tools[{j}].function'.", f"tools[{j}].function")
            if not isinstance(fn.get("name"), str) or not fn["name"]:
                return (f"Missing required parameter: 'tools[{j}].function.name'.", f"tools[{j}].function.name")
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                return (f"Invalid type for 'tools[{j}].function.parameters': expected an object.",
                        f"tools[{j}].function.parameters")
    return None


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _truncate(plan: _Plan, limit: int | None, finish: str = "length") -> _Plan:
    """A text answer longer than ``limit`` words is cut, like a max-token stop."""
    if limit is None or plan.tool_calls or not plan.text or count_tokens(plan.text) <= limit:
        return plan
    text = " ".join(plan.text.split(" ")[:limit])
    return _Plan(text=text, pieces=_pieces(text), finish_reason=finish)


def _plan_chat(body: dict[str, Any]) -> _Plan:
    return _truncate(_plan_chat_full(body), _max_tokens(body))


def _plan_agent(body: dict[str, Any]) -> _Plan | None:
    """A coding agent's tool round (agent_script.py), or None."""
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    agent_ids = {tc.get("id") for m in messages if m.get("role") == "assistant"
                 for tc in m.get("tool_calls") or []
                 if isinstance(tc, dict) and (tc.get("function") or {}).get("name") in AGENT_CALLS}
    results = [_text_of(m.get("content")) for m in messages
               if m.get("role") == "tool" and m.get("tool_call_id") in agent_ids]
    if results:
        text = listing_answer(results)
        return _Plan(text=text, pieces=_pieces(text))
    offered = [(t.get("function") or {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    call = agent_call(offered, _text_of(users[-1].get("content")) if users else "")
    if call is None:
        return None
    return _Plan(tool_calls=[{"id": _new_id("call").replace("-", "_"), "name": call[0],
                              "arguments": json.dumps(call[1])}], finish_reason="tool_calls")


def _plan_chat_full(body: dict[str, Any]) -> _Plan:
    agent = _plan_agent(body)
    if agent is not None:
        return agent
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    tool_msgs = [m for m in messages if m.get("role") == "tool"]
    if tool_msgs:
        text = "The weather is: " + " ".join(_text_of(m.get("content")) for m in tool_msgs)
        return _Plan(text=text, pieces=_pieces(text))
    users = [m for m in messages if m.get("role") == "user"]
    last_user = _text_of(users[-1].get("content")) if users else ""
    if body.get("tools") and "weather" in last_user.lower():
        cities = ["Paris"] + (["London"] if "london" in last_user.lower() else [])
        calls = [{"id": _new_id("call").replace("-", "_"), "name": "get_weather",
                  "arguments": json.dumps({"city": c})} for c in cities]
        return _Plan(tool_calls=calls, finish_reason="tool_calls")
    return _Plan(text=HELLO_TEXT, pieces=list(HELLO_PIECES))


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def _model_obj(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "mock-org"}


if __name__ == "__main__":  # manual use: python mock_upstream.py
    with MockUpstream() as m:
        print(f"mock OpenAI upstream at {m.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
