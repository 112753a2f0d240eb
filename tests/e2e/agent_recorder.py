"""A recording fake upstream for real coding agents (stdlib only).

Claude Code (`claude -p`), Codex (`codex exec`), OpenCode (`opencode run`)
and Qwen Code (`qwen -p`) are pointed straight at this
server (or at llm-link, with this server as llm-link's upstream). It records
every request -- method, path with query, headers (secrets redacted), body --
and answers just enough of the Anthropic Messages API, the OpenAI
Responses API and Chat Completions for the agents to finish a turn:

- `POST /v1/messages[?beta=true]`: a Messages answer, SSE when `stream:true`,
  JSON otherwise. In scenario "tool", a request that offers tools and whose
  last user message carries no `tool_result` is answered with a `tool_use` of
  one of the offered tools (`Read` of `tool_file`, else `Bash` `ls`); a request
  carrying a `tool_result` gets the final text. At most `max_tool_calls` (1)
  tool calls per recorder, so an agent that compacts its history cannot loop.
- `POST /v1/messages/count_tokens`: `{"input_tokens": N}`.
- `POST /v1/responses`: a Responses SSE stream (created, in_progress,
  output_item.added, content_part.added, output_text.delta, output_text.done,
  content_part.done, output_item.done, completed with usage); JSON when
  `stream` is not true. In scenario "tool" the first turn is a
  `function_call` of the shell tool the request offered (`exec_command`,
  `shell_command`, `shell` or `local_shell`, argument shape chosen from the
  tool's schema) and the turn carrying `function_call_output` gets the text.
- `POST /v1/responses/compact`: a compacted history (one user message).
- `POST /v1/chat/completions` (OpenCode, Qwen Code): chunks (role, text or
  one tool call whose arguments come in one fragment, finish_reason, a usage
  chunk when `stream_options.include_usage`) then `[DONE]`; JSON when not
  streaming. In scenario "tool" the first turn calls the reader tool offered
  (`read` / `read_file` with the schema's path parameter and `tool_file`),
  else a shell tool with `command`; a request ending in a `tool` message
  gets the text.
- `GET /v1/models` (and `/models`): an OpenAI list (`data`) that also carries
  Codex's `models` key.
- WebSocket upgrade attempts (`Upgrade: websocket`): recorded, answered with
  `websocket_status` (426 by default) so the agent falls back to HTTP.
- Anything else: 404 with an OpenAI-style error body.

Use from Python:

    rec = Recorder(scenario="tool", tool_file="/tmp/x/hello.txt")
    rec.start(); ... rec.base_url ...; rec.stop(); rec.requests

or from a shell: `python agent_recorder.py --scenario plain --out rec.json`
prints `PORT <n>` on stdout, records until SIGTERM/SIGINT, then writes the
JSON list of requests to --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_HEADERS = {"authorization", "x-api-key", "proxy-authorization", "cookie",
                  "chatgpt-account-id", "openai-api-key", "api-key"}

# Headers kept in fixtures (everything else is transport noise).
FIXTURE_HEADERS = {"content-type", "accept", "user-agent", "anthropic-version",
                   "anthropic-beta", "anthropic-dangerous-direct-browser-access",
                   "openai-beta", "originator", "session_id", "session-id",
                   "thread-id", "conversation_id", "version", "upgrade", "connection",
                   "sec-websocket-version", "sec-websocket-protocol",
                   "sec-websocket-extensions",
                   "content-encoding", "authorization", "x-api-key"}

PLAIN_TEXT = "hi from the recorder"
FINAL_TEXT = "The tool ran; done."


def redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in SECRET_HEADERS else v)
            for k, v in headers.items()}


def fixture_view(rec: dict[str, Any]) -> dict[str, Any]:
    """One recorded request as stored in tests/e2e/fixtures/agents/*.json."""
    def keep(name: str) -> bool:
        n = name.lower()
        return n in FIXTURE_HEADERS or n.startswith(("x-", "anthropic-", "openai-"))
    headers = {k: v for k, v in rec["headers"].items() if keep(k)}
    return {"method": rec["method"], "path": rec["path"], "headers": headers,
            "body": rec["body"]}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- Anthropic

def _anthropic_last_user_has_tool_result(body: dict[str, Any]) -> bool:
    msgs = body.get("messages") or []
    for m in reversed(msgs):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, list):
            return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
        return False
    return False


def anthropic_tool_choice(body: dict[str, Any], tool_file: str | None) -> tuple[str, dict] | None:
    names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    if "Read" in names and tool_file:
        return "Read", {"file_path": tool_file}
    if "Bash" in names:
        return "Bash", {"command": "ls", "description": "List files in the working directory"}
    return None


def anthropic_blocks(body: dict[str, Any], scenario: str, tool_file: str | None) -> tuple[list, str]:
    """The content blocks and stop_reason for one Messages request."""
    if _anthropic_last_user_has_tool_result(body):
        return [{"type": "text", "text": FINAL_TEXT}], "end_turn"
    if scenario == "tool" and body.get("tools"):
        choice = anthropic_tool_choice(body, tool_file)
        if choice:
            name, inp = choice
            return [{"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": _new_id("toolu"), "name": name, "input": inp}], "tool_use"
    return [{"type": "text", "text": PLAIN_TEXT}], "end_turn"


def anthropic_json(body: dict[str, Any], blocks: list, stop: str) -> dict[str, Any]:
    return {"id": _new_id("msg"), "type": "message", "role": "assistant",
            "model": body.get("model", "claude"), "content": blocks,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 6,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


def anthropic_sse(body: dict[str, Any], blocks: list, stop: str) -> list[bytes]:
    msg = anthropic_json(body, [], None)  # type: ignore[arg-type]
    msg["stop_reason"] = None
    msg["usage"] = {"input_tokens": 12, "output_tokens": 1,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    out = [_sse("message_start", {"type": "message_start", "message": msg}),
           _sse("ping", {"type": "ping"})]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "text", "text": ""}}))
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": b["text"]}}))
        else:
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "tool_use", "id": b["id"],
                                                                      "name": b["name"], "input": {}}}))
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "input_json_delta",
                                                              "partial_json": json.dumps(b["input"])}}))
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(_sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 6}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


# ---------------------------------------------------------------- Responses

SHELL_TOOLS = ("exec_command", "shell_command", "shell", "local_shell")


def responses_tool_names(body: dict[str, Any]) -> list[str]:
    names = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            names.append(t.get("name") or t.get("type"))
    return names


def responses_shell_call(body: dict[str, Any], command: str) -> dict[str, Any] | None:
    """A function_call (or local_shell_call) item for the shell tool offered."""
    tools = {(t.get("name") or t.get("type")): t for t in body.get("tools") or [] if isinstance(t, dict)}
    call_id = _new_id("call")
    for name in SHELL_TOOLS:
        t = tools.get(name)
        if t is None:
            continue
        if name == "local_shell":
            return {"type": "local_shell_call", "id": _new_id("lsh"), "call_id": call_id,
                    "status": "completed",
                    "action": {"type": "exec", "command": ["bash", "-lc", command]}}
        props = ((t.get("parameters") or {}).get("properties") or {})
        if "cmd" in props:
            args = {"cmd": command}
        elif props.get("command", {}).get("type") == "array":
            args = {"command": ["bash", "-lc", command]}
        else:
            args = {"command": command}
        return {"type": "function_call", "id": _new_id("fc"), "call_id": call_id,
                "name": name, "arguments": json.dumps(args), "status": "completed"}
    return None


def _responses_has_tool_output(body: dict[str, Any]) -> bool:
    items = body.get("input")
    if not isinstance(items, list):
        return False
    return any(isinstance(i, dict) and i.get("type", "").endswith("_output") for i in items)


def responses_items(body: dict[str, Any], scenario: str, command: str) -> list[dict[str, Any]]:
    if scenario == "tool" and body.get("tools") and not _responses_has_tool_output(body):
        call = responses_shell_call(body, command)
        if call:
            return [call]
    text = FINAL_TEXT if _responses_has_tool_output(body) else PLAIN_TEXT
    return [{"type": "message", "id": _new_id("msg"), "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": text, "annotations": []}]}]


def responses_object(body: dict[str, Any], rid: str, status: str, output: list) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": rid, "object": "response", "created_at": int(time.time()),
                           "status": status, "model": body.get("model", "gpt"), "output": output,
                           "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
                           "error": None, "incomplete_details": None}
    if status == "completed":
        obj["usage"] = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 27}
    return obj


def responses_sse(body: dict[str, Any], items: list[dict[str, Any]]) -> list[bytes]:
    rid = _new_id("resp")
    seq = iter(range(10_000))
    def ev(name: str, data: dict[str, Any]) -> bytes:
        return _sse(name, {"type": name, "sequence_number": next(seq), **data})
    out = [ev("response.created", {"response": responses_object(body, rid, "in_progress", [])}),
           ev("response.in_progress", {"response": responses_object(body, rid, "in_progress", [])})]
    for idx, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            added = {**item, "status": "in_progress", "content": []}
            out.append(ev("response.output_item.added", {"output_index": idx, "item": added}))
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(ev("response.content_part.added", {"item_id": item["id"], "output_index": idx,
                                                          "content_index": 0, "part": part}))
            out.append(ev("response.output_text.delta", {"item_id": item["id"], "output_index": idx,
                                                         "content_index": 0, "delta": text, "logprobs": []}))
            out.append(ev("response.output_text.done", {"item_id": item["id"], "output_index": idx,
                                                        "content_index": 0, "text": text, "logprobs": []}))
            out.append(ev("response.content_part.done", {"item_id": item["id"], "output_index": idx,
                                                         "content_index": 0, "part": {**part, "text": text}}))
        elif item["type"] == "function_call":
            added = {**item, "status": "in_progress", "arguments": ""}
            out.append(ev("response.output_item.added", {"output_index": idx, "item": added}))
            out.append(ev("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": idx,
                                                                     "delta": item["arguments"]}))
            out.append(ev("response.function_call_arguments.done", {"item_id": item["id"], "output_index": idx,
                                                                    "arguments": item["arguments"]}))
        else:
            out.append(ev("response.output_item.added", {"output_index": idx, "item": item}))
        out.append(ev("response.output_item.done", {"output_index": idx, "item": item}))
    out.append(ev("response.completed", {"response": responses_object(body, rid, "completed", items)}))
    return out


# ---------------------------------------------------------- Chat Completions

# Tools an OpenAI-compatible agent may offer, by what they do: a file reader
# (OpenCode `read`, Qwen Code `read_file`, Cline `read_file`) or a shell.
CHAT_READ_TOOLS = ("read", "read_file", "Read", "view")
CHAT_SHELL_TOOLS = ("bash", "run_shell_command", "shell", "execute_command", "Bash")
PATH_PARAMS = ("filePath", "file_path", "absolute_path", "path")


def _chat_has_tool_result(body: dict[str, Any]) -> bool:
    msgs = body.get("messages") or []
    return bool(msgs) and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "tool"


def chat_tool_call(body: dict[str, Any], tool_file: str | None, command: str) -> dict[str, Any] | None:
    """A `tool_calls` entry for a reader (given `tool_file`) or shell tool offered."""
    tools = {}
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            tools[fn["name"]] = (fn.get("parameters") or {}).get("properties") or {}
    args: dict[str, Any] | None = None
    name = None
    if tool_file:
        for n in CHAT_READ_TOOLS:
            props = tools.get(n)
            key = next((k for k in PATH_PARAMS if props and k in props), None)
            if key:
                name, args = n, {key: tool_file}
                break
    if name is None:
        for n in CHAT_SHELL_TOOLS:
            props = tools.get(n)
            if props is not None and "command" in props:
                name, args = n, {"command": command}
                if "description" in props:
                    args["description"] = "List files in the working directory"
                break
    if name is None:
        return None
    return {"id": _new_id("call"), "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def chat_answer(body: dict[str, Any], scenario: str, tool_file: str | None,
                command: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(text, tool_calls) for one Chat Completions request."""
    if _chat_has_tool_result(body):
        return FINAL_TEXT, []
    if scenario == "tool" and body.get("tools"):
        call = chat_tool_call(body, tool_file, command)
        if call:
            return "Let me look.", [call]
    return PLAIN_TEXT, []


CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}


def chat_json(body: dict[str, Any], text: str | None, calls: list) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        msg["tool_calls"] = calls
    return {"id": _new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "gpt"),
            "choices": [{"index": 0, "message": msg, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": CHAT_USAGE}


def chat_sse(body: dict[str, Any], text: str | None, calls: list) -> list[bytes]:
    cid, created, model = _new_id("chatcmpl"), int(time.time()), body.get("model", "gpt")
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(c)}\n\n".encode()
    out = [chunk({"role": "assistant", "content": ""}, None)]
    if text:
        out.append(chunk({"content": text}, None))
    for i, c in enumerate(calls):
        out.append(chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                          "function": {"name": c["function"]["name"], "arguments": ""}}]}, None))
        out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": c["function"]["arguments"]}}]}, None))
    out.append(chunk({}, "tool_calls" if calls else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        u = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [], "usage": CHAT_USAGE}
        out.append(f"data: {json.dumps(u)}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


# ---------------------------------------------------------------- server

class Recorder:
    def __init__(self, scenario: str = "plain", tool_file: str | None = None,
                 shell_command: str = "ls", websocket_status: int = 426,
                 models_status: int = 200, max_tool_calls: int = 1) -> None:
        assert scenario in ("plain", "tool")
        # A fake that always answers a tool call loops forever with an agent
        # that compacts its history (the tool output disappears from input):
        # after max_tool_calls tool calls, every answer is text.
        self.max_tool_calls = max_tool_calls
        self.tool_calls = 0
        self.scenario = scenario
        self.tool_file = tool_file
        self.shell_command = shell_command
        self.websocket_status = websocket_status
        self.models_status = models_status
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Recorder":
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def handle(self) -> None:
                # Agents drop connections they gave up on (e.g. after a
                # refused WebSocket upgrade); that is not an error here.
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass

            def _read_body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("content-length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                raw = self._read_body()
                enc = (self.headers.get("content-encoding") or "").lower()
                note = None
                try:
                    if enc == "gzip":
                        raw = gzip.decompress(raw)
                    elif enc == "deflate":
                        raw = zlib.decompress(raw)
                    elif enc:
                        note = f"body left encoded ({enc})"
                except Exception as e:  # noqa: BLE001
                    note = f"could not decode {enc}: {e}"
                body: Any = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except Exception:  # noqa: BLE001
                        body = raw.decode("utf-8", "replace")
                rec = {"method": self.command, "path": self.path,
                       "headers": redact({k: v for k, v in self.headers.items()}),
                       "body": body, "t": time.time()}
                if note:
                    rec["note"] = note
                with recorder._lock:
                    recorder.requests.append(rec)
                try:
                    recorder._answer(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- answers

    def _scenario_now(self) -> str:
        with self._lock:
            return "plain" if self.tool_calls >= self.max_tool_calls else self.scenario

    def _count_tool_call(self) -> None:
        with self._lock:
            self.tool_calls += 1

    @staticmethod
    def _send_json(h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _send_sse(h: BaseHTTPRequestHandler, chunks: list[bytes], extra: dict[str, str] | None = None) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.send_header("connection", "close")
        h.end_headers()
        for c in chunks:
            h.wfile.write(c)
            h.wfile.flush()
        h.close_connection = True

    def _answer(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        path = h.path.split("?", 1)[0].rstrip("/")
        body = body if isinstance(body, dict) else {}
        if (h.headers.get("upgrade") or "").lower() == "websocket":
            self._send_json(h, self.websocket_status,
                            {"error": {"message": "websocket not supported here", "type": "invalid_request_error"}})
            return
        if h.command == "POST" and path.endswith("/messages/count_tokens"):
            self._send_json(h, 200, {"input_tokens": 42})
            return
        if h.command == "POST" and path.endswith("/messages"):
            blocks, stop = anthropic_blocks(body, self._scenario_now(), self.tool_file)
            if stop == "tool_use":
                self._count_tool_call()
            if body.get("stream"):
                self._send_sse(h, anthropic_sse(body, blocks, stop), {"request-id": _new_id("req")})
            else:
                self._send_json(h, 200, anthropic_json(body, blocks, stop))
            return
        if h.command == "POST" and path.endswith("/responses/compact"):
            self._send_json(h, 200, {"output": [
                {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "(compacted history)"}]}]})
            return
        if h.command == "POST" and path.endswith("/responses"):
            items = responses_items(body, self._scenario_now(), self.shell_command)
            if items and items[0]["type"] != "message":
                self._count_tool_call()
            if body.get("stream", True) is False:
                self._send_json(h, 200, responses_object(body, _new_id("resp"), "completed", items))
            else:
                self._send_sse(h, responses_sse(body, items))
            return
        if h.command == "POST" and path.endswith("/chat/completions"):
            text, calls = chat_answer(body, self._scenario_now(), self.tool_file, self.shell_command)
            if calls:
                self._count_tool_call()
            if body.get("stream"):
                self._send_sse(h, chat_sse(body, text, calls))
            else:
                self._send_json(h, 200, chat_json(body, text, calls))
            return
        if h.command in ("GET", "HEAD") and path.endswith("/models"):
            if self.models_status != 200:
                self._send_json(h, self.models_status, {"error": {"message": "no models here"}})
                return
            self._send_json(h, 200, {"object": "list",
                                     "data": [{"id": "test-model", "object": "model", "created": 0,
                                               "owned_by": "recorder", "type": "model",
                                               "display_name": "Test Model"}],
                                     "models": [], "has_more": False,
                                     "first_id": "test-model", "last_id": "test-model"})
            return
        self._send_json(h, 404, {"error": {"message": f"no route for {h.command} {path}",
                                           "type": "not_found"}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=("plain", "tool"), default="plain")
    ap.add_argument("--tool-file")
    ap.add_argument("--shell-command", default="ls")
    ap.add_argument("--websocket-status", type=int, default=426)
    ap.add_argument("--models-status", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rec = Recorder(a.scenario, a.tool_file, a.shell_command, a.websocket_status, a.models_status).start()
    print(f"PORT {rec.port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    rec.stop()
    with open(a.out, "w") as f:
        json.dump(rec.requests, f, indent=1)
    sys.exit(0)


if __name__ == "__main__":
    main()
