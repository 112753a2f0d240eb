"""A stdlib-only mock of the Ollama HTTP API, used as llm-link's upstream.

Shapes follow Ollama's docs/api.md and the ``ollama`` SDK's types:
``/api/chat`` and ``/api/generate`` answer NDJSON (``application/x-ndjson``,
one JSON object per line) unless the request says ``"stream": false`` (the
default is to stream, as in Ollama); every line has ``model``,
``created_at``, ``done``; the final line has ``done: true``, ``done_reason``,
``total_duration``, ``load_duration``, ``prompt_eval_count``,
``prompt_eval_duration``, ``eval_count`` and ``eval_duration``. Tool calls are
``{"function": {"name", "arguments": {...}}}`` with *object* arguments and no
id, sent whole in one line. Also ``/api/embed``, ``/api/embeddings``,
``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``; errors are
``{"error": "..."}``.

Requests are checked the way Ollama's Go decoder would (400 otherwise):
``content`` is a string, ``images`` are plain base64 strings (no ``data:``
prefix), ``tool_calls[].function.arguments`` is an object, ``tools`` are
``{"type": "function", "function": {...}}``, ``options`` is an object.

Behaviour (same script as the other mocks):

* unknown model -> 404 ``model "x" not found, try pulling it first``;
  ``llama-fail-500`` -> 500; ``llama-break`` streamed -> one line, then the
  connection is dropped (no final line, no terminating chunk)
* a coding agent's ``Bash`` / ``exec_command`` tool + "list the files" ->
  a call running ``ls``; the ``tool`` messages answering it -> "The listing
  shows: <result>" (see agent_script.py)
* a ``tool`` message -> "The weather is: <tool contents>"
* tools + last user message mentioning "weather" -> a ``get_weather`` call
  with ``{"city": "Paris"}`` (and London); ``done_reason`` stays ``"stop"``
  as in Ollama
* anything else -> "Hello from mock"; ``options.num_predict`` below the word
  count cuts it (``done_reason: "length"``)
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agent_script import AGENT_CALLS, agent_call, listing_answer
from mock_upstream import HELLO_PIECES, HELLO_TEXT, MockUpstream, _Handler, count_tokens, embedding_for

MODELS = ["llama-mock:latest", "embed-mock:latest", "llama-fail-500:latest", "llama-break:latest"]
OLLAMA_VERSION = "0.12.6"
CONTEXT_LENGTH = 131072

# Distinctive token accounting: a fixed prompt overhead (the chat template),
# one per word, a fixed cost per image.
PROMPT_OVERHEAD = 17
IMAGE_TOKENS = 31


def canonical(model: str) -> str:
    return model if ":" in model else model + ":latest"


def created_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class MockOllama(MockUpstream):
    """The Ollama API on an ephemeral port; ``root_url`` is the base URL to configure."""

    def _handler_base(self) -> type:
        return _OllamaHandler

    @property
    def base_url(self) -> str:  # Ollama's base URL is the host root
        return self.root_url


def _check_images(images: Any, where: str) -> None:
    if images is None:
        return
    if not isinstance(images, list):
        raise BadRequest(f"json: cannot unmarshal {type(images).__name__} into Go struct field {where}.images "
                         f"of type []api.ImageData")
    for img in images:
        if not isinstance(img, str):
            raise BadRequest(f"json: cannot unmarshal {type(img).__name__} into Go struct field {where}.images "
                             f"of type api.ImageData")
        try:
            base64.b64decode(img, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("illegal base64 data at input byte 4") from None


def validate_chat(body: dict[str, Any]) -> None:
    msgs = body.get("messages")
    if msgs is not None and not isinstance(msgs, list):
        raise BadRequest("json: cannot unmarshal object into Go struct field ChatRequest.messages of type "
                         "[]api.Message")
    for m in msgs or []:
        if not isinstance(m, dict):
            raise BadRequest("json: cannot unmarshal into Go struct field ChatRequest.messages of type api.Message")
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"invalid role: {m.get('role')!r}")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise BadRequest(f"json: cannot unmarshal {type(content).__name__} into Go struct field "
                             f"ChatRequest.messages.content of type string")
        _check_images(m.get("images"), "ChatRequest.messages")
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise BadRequest("json: cannot unmarshal into Go struct field ChatRequest.messages.tool_calls "
                                 "of type []api.ToolCall")
            for tc in calls:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest("json: cannot unmarshal into Go struct field "
                                     "ChatRequest.messages.tool_calls.function of type api.ToolCallFunction")
                if not isinstance(fn.get("arguments"), dict):
                    raise BadRequest(f"json: cannot unmarshal {type(fn.get('arguments')).__name__} into Go struct "
                                     f"field ToolCallFunction.messages.tool_calls.function.arguments of type "
                                     f"api.ToolCallFunctionArguments")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("json: cannot unmarshal into Go struct field ChatRequest.tools of type api.Tools")
        for t in tools:
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str):
                raise BadRequest("json: cannot unmarshal into Go struct field ChatRequest.tools of type api.Tool")
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                raise BadRequest("json: cannot unmarshal into Go struct field "
                                 "ToolFunction.tools.function.parameters")
    if "options" in body and body["options"] is not None and not isinstance(body["options"], dict):
        raise BadRequest("json: cannot unmarshal into Go struct field ChatRequest.options of type "
                         "map[string]interface {}")


@dataclass
class _Answer:
    text: str
    pieces: list[str]
    tool_calls: list[dict[str, Any]]
    done_reason: str = "stop"

    def eval_count(self) -> int:
        if self.tool_calls:
            return sum(count_tokens(json.dumps(tc["function"]["arguments"])) + 3 for tc in self.tool_calls)
        return count_tokens(self.text)


def _pieces(text: str) -> list[str]:
    if text == HELLO_TEXT:
        return list(HELLO_PIECES)
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _limit(answer: _Answer, options: Any) -> _Answer:
    limit = options.get("num_predict") if isinstance(options, dict) else None
    if isinstance(limit, int) and limit > 0 and not answer.tool_calls and count_tokens(answer.text) > limit:
        text = " ".join(answer.text.split(" ")[:limit])
        return _Answer(text, _pieces(text), [], "length")
    return answer


def _plan_agent(body: dict[str, Any]) -> _Answer | None:
    """A coding agent's tool round (agent_script.py), or None."""
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    # Ollama tool calls have no ids: a tool message answers the assistant
    # message with tool calls before it.
    results, agent_turn = [], False
    for m in msgs:
        if m.get("role") == "assistant":
            agent_turn = any(isinstance(tc, dict) and (tc.get("function") or {}).get("name") in AGENT_CALLS
                             for tc in m.get("tool_calls") or [])
        elif m.get("role") == "tool" and agent_turn:
            results.append(m.get("content") or "")
    if results:
        text = listing_answer(results)
        return _Answer(text, _pieces(text), [])
    users = [m for m in msgs if m.get("role") == "user"]
    offered = [(t.get("function") or {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    call = agent_call(offered, (users[-1].get("content") or "") if users else "")
    if call is None:
        return None
    return _Answer("", [], [{"function": {"name": call[0], "arguments": call[1]}}])


def plan_chat(body: dict[str, Any]) -> _Answer:
    agent = _plan_agent(body)
    if agent is not None:
        return agent
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    tool_msgs = [m for m in msgs if m.get("role") == "tool"]
    if tool_msgs:
        text = "The weather is: " + " ".join(m.get("content") or "" for m in tool_msgs)
        return _limit(_Answer(text, _pieces(text), []), body.get("options"))
    users = [m for m in msgs if m.get("role") == "user"]
    last = (users[-1].get("content") or "") if users else ""
    if body.get("tools") and "weather" in last.lower():
        cities = ["Paris"] + (["London"] if "london" in last.lower() else [])
        calls = [{"function": {"name": "get_weather", "arguments": {"city": c}}} for c in cities]
        return _Answer("", [], calls)
    return _limit(_Answer(HELLO_TEXT, list(HELLO_PIECES), []), body.get("options"))


def prompt_eval_count(body: dict[str, Any]) -> int:
    n = PROMPT_OVERHEAD
    for m in body.get("messages") or []:
        n += count_tokens(m.get("content") or "") + IMAGE_TOKENS * len(m.get("images") or [])
    n += count_tokens(body.get("prompt") or "") + count_tokens(body.get("system") or "")
    n += IMAGE_TOKENS * len(body.get("images") or [])
    return n


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "8.0B", "quantization_level": "Q4_K_M"}


class _OllamaHandler(_Handler):
    server_version = "mock-ollama/1.0"

    def _common_headers(self) -> None:
        pass

    def _json(self, status: int, obj: Any) -> None:
        self._send_json(status, obj, content_type="application/json; charset=utf-8")

    def _error(self, status: int, message: str, *_: Any, **__: Any) -> None:  # type: ignore[override]
        self._json(status, {"error": message})

    def _start_ndjson(self) -> None:
        self._capture(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _line(self, obj: Any) -> None:
        self._write_chunk(json.dumps(obj).encode() + b"\n")

    def _end_ndjson(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- dispatch --------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._record(b"")
        path = self.path.split("?")[0]
        if path == "/api/tags":
            self._json(200, {"models": [{
                "name": m, "model": m, "modified_at": "2025-05-01T10:00:00.123456789Z", "size": 4920753328,
                "digest": "a" * 64, "details": _details()} for m in MODELS]})
        elif path == "/api/version":
            self._json(200, {"version": OLLAMA_VERSION})
        elif path == "/api/ps":
            self._json(200, {"models": []})
        elif path == "/":
            data = b"Ollama is running"
            self._capture(200, data)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._error(404, "404 page not found")

    def do_DELETE(self) -> None:  # noqa: N802
        self._record(self._read_body())
        self._error(404, "model not found")

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        body = self._record(raw)
        path = self.path.split("?")[0]
        routes = {"/api/chat": self._chat, "/api/generate": self._generate, "/api/embed": self._embed,
                  "/api/embeddings": self._embeddings, "/api/show": self._show}
        handler = routes.get(path)
        if handler is None:
            self._error(404, "404 page not found")
            return
        if not isinstance(body, dict):
            self._error(400, "invalid character looking for beginning of value")
            return
        model = body.get("model") if path != "/api/show" else (body.get("model") or body.get("name"))
        if not isinstance(model, str) or not model:
            self._error(400, "model is required")
            return
        if canonical(model) not in MODELS:
            self._error(404, f'model "{model}" not found, try pulling it first')
            return
        if canonical(model) == "llama-fail-500:latest":
            self._error(500, "llama runner process has terminated: exit status 2")
            return
        try:
            handler(body)
        except BadRequest as e:
            self._error(e.status, e.message)

    # ---- chat / generate -------------------------------------------------
    def _final(self, body: dict[str, Any], answer: _Answer, n_in: int) -> dict[str, Any]:
        return {"done_reason": answer.done_reason, "done": True, "total_duration": 1_234_567_890,
                "load_duration": 12_345_678, "prompt_eval_count": n_in, "prompt_eval_duration": 123_456_789,
                "eval_count": answer.eval_count(), "eval_duration": 987_654_321}

    def _chat(self, body: dict[str, Any]) -> None:
        validate_chat(body)
        model = body["model"]
        msgs = body.get("messages") or []
        if not msgs:
            self._json(200, {"model": model, "created_at": created_at(),
                             "message": {"role": "assistant", "content": ""}, "done_reason": "load",
                             "done": True})
            return
        answer = plan_chat(body)
        n_in = prompt_eval_count(body)
        self._set_usage(n_in, answer.eval_count())
        if body.get("stream", True) is False:
            message: dict[str, Any] = {"role": "assistant", "content": answer.text}
            if answer.tool_calls:
                message["tool_calls"] = answer.tool_calls
            self._json(200, {"model": model, "created_at": created_at(), "message": message,
                             **self._final(body, answer, n_in)})
            return
        self._start_ndjson()
        if answer.tool_calls:
            self._line({"model": model, "created_at": created_at(),
                        "message": {"role": "assistant", "content": "", "tool_calls": answer.tool_calls},
                        "done": False})
        for piece in answer.pieces:
            self._line({"model": model, "created_at": created_at(),
                        "message": {"role": "assistant", "content": piece}, "done": False})
            if canonical(model) == "llama-break:latest":
                self.close_connection = True  # drop the connection mid-stream
                return
        self._line({"model": model, "created_at": created_at(), "message": {"role": "assistant", "content": ""},
                    **self._final(body, answer, n_in)})
        self._end_ndjson()

    def _generate(self, body: dict[str, Any]) -> None:
        model = body["model"]
        _check_images(body.get("images"), "GenerateRequest")
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise BadRequest("json: cannot unmarshal into Go struct field GenerateRequest.prompt of type string")
        if not prompt and not body.get("images"):
            self._json(200, {"model": model, "created_at": created_at(), "response": "", "done": True,
                             "done_reason": "load"})
            return
        answer = _limit(_Answer(HELLO_TEXT, list(HELLO_PIECES), []), body.get("options"))
        n_in = prompt_eval_count(body)
        self._set_usage(n_in, answer.eval_count())
        final = {**self._final(body, answer, n_in), "context": [1, 2, 3]}
        if body.get("stream", True) is False:
            self._json(200, {"model": model, "created_at": created_at(), "response": answer.text, **final})
            return
        self._start_ndjson()
        for piece in answer.pieces:
            self._line({"model": model, "created_at": created_at(), "response": piece, "done": False})
        self._line({"model": model, "created_at": created_at(), "response": "", **final})
        self._end_ndjson()

    # ---- embeddings ------------------------------------------------------
    def _embed(self, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if isinstance(inp, str):
            inputs = [inp]
        elif isinstance(inp, list) and all(isinstance(x, str) for x in inp):
            inputs = inp
        else:
            raise BadRequest("invalid input type")
        n = sum(count_tokens(t) for t in inputs) + 2 * len(inputs)
        self._set_usage(n)
        self._json(200, {"model": body["model"], "embeddings": [embedding_for(t) for t in inputs],
                         "total_duration": 14_143_917, "load_duration": 1_019_500, "prompt_eval_count": n})

    def _embeddings(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt is required")
        self._json(200, {"embedding": embedding_for(prompt)})

    def _show(self, body: dict[str, Any]) -> None:
        model = canonical(body.get("model") or body.get("name"))
        caps = ["embedding"] if model.startswith("embed") else ["completion", "tools", "vision"]
        self._json(200, {
            "license": "", "modelfile": f"FROM {model}\n", "parameters": "num_ctx 4096",
            "template": "{{ .Prompt }}", "details": _details(),
            "model_info": {"general.architecture": "llama", "general.parameter_count": 8030261248,
                           "llama.context_length": CONTEXT_LENGTH, "llama.embedding_length": 4096},
            "capabilities": caps, "modified_at": "2025-05-01T10:00:00.123456789Z",
        })


if __name__ == "__main__":  # manual use: python mock_ollama.py
    with MockOllama() as m:
        print(f"mock Ollama upstream at {m.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
