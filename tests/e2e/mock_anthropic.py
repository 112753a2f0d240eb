"""A stdlib-only mock of the Anthropic Messages API, used as llm-link's upstream.

Shapes follow the real API (and the ``anthropic`` SDK's types): ``message``
objects, the streaming event sequence (``message_start``,
``content_block_start`` / ``content_block_delta`` / ``content_block_stop`` per
block, a ``ping``, ``message_delta`` with ``stop_reason`` and usage,
``message_stop``), ``tool_use`` blocks whose input streams as
``input_json_delta`` fragments, ``/v1/messages/count_tokens``, ``/v1/models``
and error bodies ``{"type": "error", "error": {"type", "message"}}``.

It validates like the real API does, so a gateway that would be rejected by
api.anthropic.com is rejected here too (400 ``invalid_request_error``):

* ``x-api-key`` (or ``Authorization: Bearer``, which recent SDKs send) must
  be the configured key (401 ``authentication_error``), ``anthropic-version``
  must be present;
* ``model``, ``messages`` and ``max_tokens`` are required; unknown top-level
  fields are refused ("Extra inputs are not permitted");
* roles are ``user``/``assistant`` only (``system`` is a top-level field) and
  alternate; text blocks are non-empty; with Claude Code's betas
  (``anthropic-beta: per-turn-control-*`` or ``mid-conversation-tool-changes-*``)
  text-only ``system`` messages may also appear after the first message,
  outside the alternation, and with ``advanced-tool-use-*`` a tool may carry
  ``defer_loading``;
* images are ``{"type": "base64", "media_type", "data"}`` (or ``url``) with a
  supported media type that matches the bytes;
* every ``tool_use`` of an assistant turn is answered by a ``tool_result`` in
  the next user turn, and every ``tool_result`` answers a ``tool_use`` of the
  previous assistant turn; tool ids match ``^[a-zA-Z0-9_-]+$``; ``input`` is
  an object;
* tools are ``{"name", "description", "input_schema"}``; ``temperature`` is
  within [0, 1].

Behaviour is chosen by the request (same script as the OpenAI mock):

* model ``claude-fail-429`` -> 429 ``rate_limit_error`` with ``retry-after: 7``;
  ``claude-fail-500`` -> 500 ``api_error``; a model not in ``MODELS`` -> 404;
  ``claude-break`` streamed -> the stream stops after the first text delta
  and the connection is dropped (no terminating chunk)
* a coding agent's ``Bash`` / ``exec_command`` tool + "list the files" ->
  a ``tool_use`` running ``ls``; its ``tool_result`` -> "The listing shows:
  <result>" (see agent_script.py)
* a user turn with ``tool_result`` blocks -> "The weather is: <results>"
* tools + last user text mentioning "weather" -> "Let me check the weather."
  then ``get_weather`` tool_use with ``{"city": "Paris"}`` (and London)
* anything else -> "Hello from mock"; ``max_tokens`` below the word count cuts
  the text (``stop_reason: "max_tokens"``); a ``stop_sequences`` entry found in
  the text cuts it there (``stop_reason: "stop_sequence"``)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
import threading
from dataclasses import dataclass
from typing import Any

from agent_script import AGENT_CALLS, agent_call, listing_answer
from mock_upstream import HELLO_PIECES, HELLO_TEXT, MockUpstream, _Handler, count_tokens, split_arguments

ANTHROPIC_KEY = "anthropic-secret"
ANTHROPIC_VERSION = "2023-06-01"
MODELS = ["claude-mock", "claude-fail-429", "claude-fail-500", "claude-break"]
PREAMBLE = "Let me check the weather."

# Token accounting of this mock (distinctive on purpose, so a gateway that
# invents its own numbers is caught): a fixed overhead per request, one per
# word of text, a fixed cost per image and per tool definition.
REQUEST_OVERHEAD = 11
IMAGE_TOKENS = 57
TOOL_DEF_TOKENS = 23

_ALPHABET = string.ascii_letters + string.digits
_TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_config",
}
_MEDIA_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


class InvalidRequest(Exception):
    def __init__(self, message: str, status: int = 400, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.status, self.type = message, status, type_


@dataclass
class MockAnthropic(MockUpstream):
    """The Anthropic API on an ephemeral port; ``root_url`` is the base URL to configure."""

    api_key: str = ANTHROPIC_KEY

    def _handler_base(self) -> type:
        return _AnthropicHandler

    @property
    def base_url(self) -> str:  # Anthropic's base URL is the host root
        return self.root_url


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _check_image(block: dict[str, Any], where: str) -> None:
    src = block.get("source")
    if not isinstance(src, dict):
        raise InvalidRequest(f"{where}.source: Field required")
    if src.get("type") == "url":
        if not isinstance(src.get("url"), str):
            raise InvalidRequest(f"{where}.source.url: Field required")
        return
    if src.get("type") != "base64":
        raise InvalidRequest(f"{where}.source: Input tag '{src.get('type')}' found using 'type' does not match "
                             f"any of the expected tags: 'base64', 'url'")
    media = src.get("media_type")
    if media not in _MEDIA_MAGIC:
        raise InvalidRequest(f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                             f"'image/gif' or 'image/webp'")
    data = src.get("data")
    if not isinstance(data, str):
        raise InvalidRequest(f"{where}.source.base64.data: Field required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}.source.base64.data: invalid base64 data") from None
    if not raw.startswith(_MEDIA_MAGIC[media]):
        raise InvalidRequest(f"{where}.source.base64.data: Image does not match the provided media type {media}")


def _check_tool_result_content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a valid list")
    for k, b in enumerate(content):
        if not isinstance(b, dict) or b.get("type") not in ("text", "image", "document", "search_result"):
            raise InvalidRequest(f"{where}.content.{k}: Input tag found using 'type' does not match any of the "
                                 f"expected tags")
        if b["type"] == "text" and (not isinstance(b.get("text"), str) or not b["text"]):
            raise InvalidRequest(f"{where}.content.{k}: text content blocks must be non-empty")
        if b["type"] == "image":
            _check_image(b, f"{where}.content.{k}")


def validate_messages_request(body: Any, *, count_only: bool = False, betas: frozenset[str] = frozenset()) -> None:
    """Raise InvalidRequest where api.anthropic.com answers 400 (``betas``: the ``anthropic-beta`` header)."""
    system_messages = any(b.startswith(("per-turn-control-", "mid-conversation-tool-changes-")) for b in betas)
    tool_keys = {"name", "description", "input_schema", "type", "cache_control"} | (
        {"defer_loading"} if any(b.startswith("advanced-tool-use-") for b in betas) else set())
    if not isinstance(body, dict):
        raise InvalidRequest("There was an error parsing the body of your request.")
    for key in body:
        allowed = _TOP_LEVEL - ({"max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
                                 "metadata", "service_tier", "container"} if count_only else set())
        if key not in allowed:
            raise InvalidRequest(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    if not count_only:
        mt = body.get("max_tokens")
        if mt is None:
            raise InvalidRequest("max_tokens: Field required")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise InvalidRequest("max_tokens: Input should be a valid integer greater than or equal to 1")
    msgs = body.get("messages")
    if msgs is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(msgs, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not msgs:
        raise InvalidRequest("messages: at least one message is required")

    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for k, b in enumerate(system):
                if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
                    raise InvalidRequest(f"system.{k}: Input should be a valid text block")
        elif not isinstance(system, str):
            raise InvalidRequest("system: Input should be a valid string")

    t = body.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or not 0 <= t <= 1):
        raise InvalidRequest("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(x, str) for x in stops)):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise InvalidRequest(f"tools.{k}: Input should be a valid dictionary")
            for key in tool:
                if key not in tool_keys:
                    raise InvalidRequest(f"tools.{k}.custom.{key}: Extra inputs are not permitted")
            if not isinstance(tool.get("name"), str) or not re.match(r"^[a-zA-Z0-9_-]{1,128}$", tool["name"]):
                raise InvalidRequest(f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise InvalidRequest(f"tools.{k}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise InvalidRequest(f"tools.{k}.custom.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise InvalidRequest("tool_choice: Input tag found using 'type' does not match any of the expected "
                                 "tags: 'auto', 'any', 'tool', 'none'")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise InvalidRequest("tool_choice.tool.name: Field required")

    prev_role = None
    prev_tool_ids: list[str] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InvalidRequest(f"messages.{i}: Input should be a valid dictionary")
        role = m.get("role")
        if role == "system" and system_messages and i > 0:
            if not _result_text(m.get("content")).strip():
                raise InvalidRequest(f"messages.{i}: system messages must have non-empty text content")
            continue
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if role == prev_role:
            raise InvalidRequest(f'messages: roles must alternate between "user" and "assistant", but found '
                                 f'multiple "{role}" roles in a row')
        content = m.get("content")
        if content is None:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        last_assistant = role == "assistant" and i == len(msgs) - 1
        if isinstance(content, str):
            if not content and not last_assistant:
                raise InvalidRequest(f"messages.{i}: all messages must have non-empty content except for the "
                                     f"optional final assistant message")
            blocks: list[Any] = []
        elif isinstance(content, list):
            if not content and not last_assistant:
                raise InvalidRequest(f"messages.{i}: all messages must have non-empty content except for the "
                                     f"optional final assistant message")
            blocks = content
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid string or list")

        tool_use_ids: list[str] = []
        result_ids: list[str] = []
        for k, b in enumerate(blocks):
            where = f"messages.{i}.content.{k}"
            if not isinstance(b, dict) or not isinstance(b.get("type"), str):
                raise InvalidRequest(f"{where}: Input should be a valid dictionary")
            typ = b["type"]
            if typ == "text":
                if not isinstance(b.get("text"), str):
                    raise InvalidRequest(f"{where}.text.text: Field required")
                if not b["text"]:
                    raise InvalidRequest(f"{where}: text content blocks must be non-empty")
            elif typ == "image":
                _check_image(b, f"{where}.image")
            elif typ == "tool_use":
                if role != "assistant":
                    raise InvalidRequest(f"{where}: `tool_use` blocks can only be in `assistant` messages")
                tid = b.get("id")
                if not isinstance(tid, str) or not _TOOL_ID_RE.match(tid):
                    raise InvalidRequest(f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
                if not isinstance(b.get("name"), str) or not b["name"]:
                    raise InvalidRequest(f"{where}.tool_use.name: Field required")
                if not isinstance(b.get("input"), dict):
                    raise InvalidRequest(f"{where}.tool_use.input: Input should be a valid dictionary")
                tool_use_ids.append(tid)
            elif typ == "tool_result":
                if role != "user":
                    raise InvalidRequest(f"{where}: `tool_result` blocks can only be in `user` messages")
                tid = b.get("tool_use_id")
                if not isinstance(tid, str) or not _TOOL_ID_RE.match(tid):
                    raise InvalidRequest(f"{where}.tool_result.tool_use_id: String should match pattern "
                                         f"'^[a-zA-Z0-9_-]+$'")
                if "is_error" in b and not isinstance(b["is_error"], bool):
                    raise InvalidRequest(f"{where}.tool_result.is_error: Input should be a valid boolean")
                _check_tool_result_content(b.get("content"), f"{where}.tool_result")
                result_ids.append(tid)
            elif typ in ("thinking", "redacted_thinking", "document", "search_result", "server_tool_use",
                         "web_search_tool_result"):
                pass
            else:
                raise InvalidRequest(f"{where}: Input tag '{typ}' found using 'type' does not match any of the "
                                     f"expected tags")
        if prev_tool_ids:
            missing = [x for x in prev_tool_ids if x not in result_ids]
            if missing:
                raise InvalidRequest(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                                     f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                                     f"corresponding `tool_result` block in the next message.")
        unexpected = [x for x in result_ids if x not in prev_tool_ids]
        if unexpected:
            raise InvalidRequest(f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                                 f"blocks: {', '.join(unexpected)}. Each `tool_result` block must have a "
                                 f"corresponding `tool_use` block in the previous message.")
        prev_role, prev_tool_ids = role, tool_use_ids
    if prev_tool_ids:
        raise InvalidRequest(f"messages.{len(msgs) - 1}: `tool_use` ids were found without `tool_result` blocks "
                             f"immediately after: {', '.join(prev_tool_ids)}. Each `tool_use` block must have a "
                             f"corresponding `tool_result` block in the next message.")


# ---------------------------------------------------------------------------
# Token accounting and the answer script
# ---------------------------------------------------------------------------


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def input_tokens(body: dict[str, Any]) -> int:
    n = REQUEST_OVERHEAD
    system = body.get("system")
    n += count_tokens(system if isinstance(system, str) else _result_text(system))
    for m in body.get("messages") or []:
        for b in _text_blocks(m.get("content")):
            typ = b.get("type")
            if typ == "text":
                n += count_tokens(b.get("text", ""))
            elif typ == "image":
                n += IMAGE_TOKENS
            elif typ == "tool_use":
                n += count_tokens(json.dumps(b.get("input"))) + 1
            elif typ == "tool_result":
                n += count_tokens(_result_text(b.get("content"))) + 1
    n += TOOL_DEF_TOKENS * len(body.get("tools") or [])
    return n


@dataclass
class _Answer:
    blocks: list[dict[str, Any]]  # final content blocks
    stop_reason: str
    stop_sequence: str | None = None

    def output_tokens(self) -> int:
        n = 0
        for b in self.blocks:
            n += count_tokens(b["text"]) if b["type"] == "text" else count_tokens(json.dumps(b["input"])) + 2
        return n


def _pieces(text: str) -> list[str]:
    if text == HELLO_TEXT:
        return list(HELLO_PIECES)
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _plan_agent(body: dict[str, Any]) -> _Answer | None:
    """A coding agent's tool round (agent_script.py), or None."""
    blocks = [b for m in body["messages"] for b in _text_blocks(m["content"])]
    agent_ids = {b.get("id") for b in blocks if b.get("type") == "tool_use" and b.get("name") in AGENT_CALLS}
    results = [_result_text(b.get("content")) for b in blocks
               if b.get("type") == "tool_result" and b.get("tool_use_id") in agent_ids]
    if results:
        return _Answer([{"type": "text", "text": listing_answer(results)}], "end_turn")
    last_user = next((m for m in reversed(body["messages"]) if m["role"] == "user"), None)
    text = " ".join(b.get("text", "") for b in _text_blocks(last_user["content"]) if b.get("type") == "text") \
        if last_user else ""
    call = agent_call([t.get("name") for t in body.get("tools") or []], text)
    if call is None:
        return None
    return _Answer([{"type": "tool_use", "id": new_id("toolu_01", 22), "name": call[0], "input": call[1]}],
                   "tool_use")


def plan_answer(body: dict[str, Any]) -> _Answer:
    agent = _plan_agent(body)
    if agent is not None:
        return agent
    msgs = body["messages"]
    last_user = next((m for m in reversed(msgs) if m["role"] == "user"), None)
    blocks = _text_blocks(last_user["content"]) if last_user else []
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results:
        text = "The weather is: " + " ".join(_result_text(b.get("content")) for b in results)
        answer = _Answer([{"type": "text", "text": text}], "end_turn")
    else:
        user_text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        choice = (body.get("tool_choice") or {}).get("type")
        if body.get("tools") and "weather" in user_text.lower() and choice != "none":
            cities = ["Paris"] + (["London"] if "london" in user_text.lower() else [])
            out: list[dict[str, Any]] = [{"type": "text", "text": PREAMBLE}]
            out += [{"type": "tool_use", "id": new_id("toolu_01", 22), "name": "get_weather",
                     "input": {"city": c}} for c in cities]
            return _Answer(out, "tool_use")
        answer = _Answer([{"type": "text", "text": HELLO_TEXT}], "end_turn")
    text = answer.blocks[0]["text"]
    for stop in body.get("stop_sequences") or []:
        if stop and stop in text:
            return _Answer([{"type": "text", "text": text[: text.index(stop)]}], "stop_sequence", stop)
    limit = body.get("max_tokens")
    if isinstance(limit, int) and count_tokens(text) > limit:
        return _Answer([{"type": "text", "text": " ".join(text.split(" ")[:limit])}], "max_tokens")
    return answer


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class _AnthropicHandler(_Handler):
    server_version = "mock-anthropic/1.0"

    def _common_headers(self) -> None:
        self.send_header("request-id", new_id("req_011", 21))
        self.send_header("anthropic-organization-id", "00000000-0000-4000-8000-000000000000")

    def _error(self, status: int, message: str, type_: str = "invalid_request_error",  # type: ignore[override]
               code: str | None = None, param: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"type": "error", "error": {"type": type_, "message": message},
                                 "request_id": new_id("req_011", 21)}, headers)

    def _sse_event(self, name: str, obj: Any) -> None:
        self._write_chunk(f"event: {name}\ndata: ".encode() + json.dumps(obj).encode() + b"\n\n")

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _check_headers(self) -> bool:
        # The classic header is x-api-key; recent SDKs (anthropic>=2) send an
        # API key as "Authorization: Bearer", which the API accepts as well.
        key = self.headers.get("x-api-key")
        auth = self.headers.get("authorization") or ""
        if key is None and auth.startswith("Bearer "):
            key = auth[len("Bearer "):]
        if key != self.upstream.api_key:  # type: ignore[attr-defined]
            self._error(401, "invalid x-api-key", "authentication_error")
            return False
        if not self.headers.get("anthropic-version"):
            self._error(400, "anthropic-version: header is required")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        self._record(b"")
        path = self.path.split("?")[0]
        if not self._check_headers():
            return
        if path == "/v1/models":
            data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
                     "created_at": "2025-02-19T00:00:00Z"} for m in MODELS]
            self._send_json(200, {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
        else:
            self._error(404, f"Not found: GET {path}", "not_found_error")

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        body = self._record(raw)
        path = self.path.split("?")[0]
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            self._error(404, f"Not found: POST {path}", "not_found_error")
            return
        if not self._check_headers():
            return
        count_only = path.endswith("/count_tokens")
        try:
            betas = frozenset(b.strip() for b in (self.headers.get("anthropic-beta") or "").split(",") if b.strip())
            validate_messages_request(body, count_only=count_only, betas=betas)
        except InvalidRequest as e:
            self._error(e.status, e.message, e.type)
            return
        model = body["model"]
        if model not in MODELS:
            self._error(404, f"model: {model}", "not_found_error")
            return
        if model == "claude-fail-429":
            self._error(429, "Number of request tokens has exceeded your per-minute rate limit",
                        "rate_limit_error", headers={"retry-after": "7",
                                                     "anthropic-ratelimit-requests-remaining": "0"})
            return
        if model == "claude-fail-500":
            self._error(500, "Internal server error", "api_error")
            return
        n_in = input_tokens(body)
        if count_only:
            self._set_usage(n_in)
            self._send_json(200, {"input_tokens": n_in})
            return
        answer = plan_answer(body)
        n_out = answer.output_tokens()
        self._set_usage(n_in, n_out)
        msg_id = new_id("msg_01", 22)
        if body.get("stream"):
            self._stream(msg_id, model, answer, n_in, n_out)
            return
        self._send_json(200, {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": answer.blocks, "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence,
            "usage": {"input_tokens": n_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": n_out, "service_tier": "standard"},
        })

    def _stream(self, msg_id: str, model: str, answer: _Answer, n_in: int, n_out: int) -> None:
        self._capture(200)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._common_headers()
        self.end_headers()
        self._sse_event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": n_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 1, "service_tier": "standard"}}})
        for i, b in enumerate(answer.blocks):
            if b["type"] == "text":
                self._sse_event("content_block_start", {"type": "content_block_start", "index": i,
                                                        "content_block": {"type": "text", "text": ""}})
                if i == 0:
                    self._sse_event("ping", {"type": "ping"})
                for piece in _pieces(b["text"]):
                    self._sse_event("content_block_delta", {"type": "content_block_delta", "index": i,
                                                            "delta": {"type": "text_delta", "text": piece}})
                    if model == "claude-break":
                        self.close_connection = True  # drop the connection mid-stream
                        return
            else:
                self._sse_event("content_block_start", {"type": "content_block_start", "index": i,
                                                        "content_block": {"type": "tool_use", "id": b["id"],
                                                                          "name": b["name"], "input": {}}})
                for frag in [""] + split_arguments(json.dumps(b["input"])):
                    self._sse_event("content_block_delta", {
                        "type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": frag}})
            self._sse_event("content_block_stop", {"type": "content_block_stop", "index": i})
        self._sse_event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": answer.stop_reason,
                                                    "stop_sequence": answer.stop_sequence},
                                          "usage": {"output_tokens": n_out}})
        self._sse_event("message_stop", {"type": "message_stop"})
        self._end_chunked()


if __name__ == "__main__":  # manual use: python mock_anthropic.py
    with MockAnthropic() as m:
        print(f"mock Anthropic upstream at {m.base_url} (x-api-key: {m.api_key})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
