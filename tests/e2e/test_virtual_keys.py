"""Virtual keys (``llk-…``) end to end, with the official SDKs (issue 15).

A key made through the admin API (``POST /api/keys``) must work on every
client surface - ``openai`` (``Authorization: Bearer``), ``anthropic``
(``x-api-key``), ``ollama`` (``Authorization: Bearer``) - and every refusal
must come back in the caller's protocol before anything reaches a provider:

* wrong, revoked or expired key -> 401
* a model outside the key's ``models`` -> 403 naming the model
* a limit (``rpm``) -> 429 with ``Retry-After``
* a budget the request would exceed -> 429, OpenAI ``insufficient_quota``,
  Anthropic ``rate_limit_error``, Ollama ``{"error": ...}``

and the clear key must never show up again: not in a response body, not in
the gateway's log output, not in ``GET /api/keys``, not upstream.

Every client here records what it got (status, headers, body) through an
httpx response hook, so the wire shapes can be checked next to what the SDK
raised.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import anthropic
import httpx
import ollama
import openai
import pytest

from conftest import ADMIN_TOKEN
from mock_anthropic import MockAnthropic
from mock_ollama import MockOllama
from mock_upstream import MockUpstream
from multi import MODEL_OF, NO_TLS, Upstream

if TYPE_CHECKING:
    from conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
SDKS = ["openai", "anthropic", "ollama"]
# anthropic>=2 sends its api_key as `Authorization: Bearer`; "anthropic-x" is
# the same SDK given the key as an `x-api-key` header (what older SDKs and
# Claude Code send), so both credential headers are covered on that surface.
AUTH_SDKS = ["openai", "anthropic", "anthropic-x", "ollama"]
SDK_MODEL = {**MODEL_OF, "anthropic-x": MODEL_OF["anthropic"]}
WRONG_KEY = "llk-" + "0" * 40


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes
    request_headers: dict[str, str]


@dataclass
class Wire:
    """Every response the test's clients received, recorded by an httpx hook."""

    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, r: httpx.Response) -> None:
        r.read()  # the SDK then reads the cached body; fine for streams too
        with self._lock:
            self.seen.append(Seen(r.request.method, r.request.url.path, r.status_code,
                                  {k.lower(): v for k, v in r.headers.items()}, r.content,
                                  {k.lower(): v for k, v in r.request.headers.items()}))

    def hooks(self) -> dict[str, Any]:
        return {"event_hooks": {"response": [self.hook]}}

    def last(self) -> Seen:
        with self._lock:
            assert self.seen, "no response recorded"
            return self.seen[-1]


class Admin:
    """The admin API of a gateway, as the admin token."""

    def __init__(self, gw: "Gateway", wire: Wire) -> None:
        self.http = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 timeout=30.0, **NO_TLS, **wire.hooks())

    def create_key(self, name: str, **fields: Any) -> dict[str, Any]:
        r = self.http.post("/api/keys", json={"name": name, **fields})
        assert r.status_code == 201, f"POST /api/keys {fields}: {r.status_code} {r.text}"
        k = r.json()
        assert isinstance(k.get("key"), str) and k["key"].startswith("llk-"), k
        return k

    def revoke(self, key_id: int) -> None:
        r = self.http.delete(f"/api/keys/{key_id}")
        assert r.status_code == 200 and r.json().get("status") == "revoked", f"{r.status_code} {r.text}"

    def list_keys(self) -> httpx.Response:
        r = self.http.get("/api/keys")
        assert r.status_code == 200, f"{r.status_code} {r.text}"
        return r

    def price(self, model: str, provider: str, input_price: float, output_price: float) -> None:
        body = {"name": model, "model_id": model, "provider": provider,
                "input_price": input_price, "output_price": output_price}
        r = self.http.post("/api/v1/llm-models", json=body)
        assert r.status_code in (200, 201), f"POST /api/v1/llm-models {body}: {r.status_code} {r.text}"

    def close(self) -> None:
        self.http.close()


@dataclass
class Env:
    gw: "Gateway"
    admin: Admin
    wire: Wire
    mocks: dict[str, Any]  # kind -> mock
    _clients: list[Any] = field(default_factory=list)

    def openai(self, key: str) -> openai.OpenAI:
        c = openai.OpenAI(base_url=self.gw.base_url, api_key=key, max_retries=0, timeout=30.0,
                          http_client=openai.DefaultHttpxClient(**NO_TLS, **self.wire.hooks()))
        self._clients.append(c)
        return c

    def anthropic(self, key: str, *, x_api_key: bool = False) -> anthropic.Anthropic:
        cred: dict[str, Any] = {"api_key": None, "default_headers": {"x-api-key": key}} if x_api_key \
            else {"api_key": key}
        c = anthropic.Anthropic(base_url=self.gw.url, max_retries=0, timeout=30.0, **cred,
                                http_client=anthropic.DefaultHttpxClient(**NO_TLS, **self.wire.hooks()))
        self._clients.append(c)
        return c

    def ollama(self, key: str) -> ollama.Client:
        return ollama.Client(host=self.gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                             **NO_TLS, **self.wire.hooks())

    def upstream_requests(self) -> int:
        return sum(len(m.requests) for m in self.mocks.values())

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self.admin.close()


@pytest.fixture
def env(vkey_gateway: "Gateway", mock: MockUpstream, anthropic_mock: MockAnthropic,
        ollama_mock: MockOllama) -> Iterator[Env]:
    wire = Wire()
    e = Env(vkey_gateway, Admin(vkey_gateway, wire), wire,
            {"openai": mock, "anthropic": anthropic_mock, "ollama": ollama_mock})
    yield e
    e.close()


def chat(e: Env, sdk: str, key: str, model: str, *, stream: bool = False, max_tokens: int = 64) -> str:
    """One chat call with ``sdk``; the answer's text."""
    if sdk == "openai":
        c = e.openai(key)
        if stream:
            s = c.chat.completions.create(model=model, messages=HI, max_tokens=max_tokens, stream=True)
            return "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
        r = c.chat.completions.create(model=model, messages=HI, max_tokens=max_tokens)
        return r.choices[0].message.content or ""
    if sdk.startswith("anthropic"):
        a = e.anthropic(key, x_api_key=sdk == "anthropic-x")
        if stream:
            with a.messages.stream(model=model, max_tokens=max_tokens, messages=HI) as s:
                return "".join(s.text_stream)
        m = a.messages.create(model=model, max_tokens=max_tokens, messages=HI)
        return "".join(b.text for b in m.content if b.type == "text")
    o = e.ollama(key)
    opts = {"num_predict": max_tokens}
    if stream:
        return "".join(p.message.content or "" for p in o.chat(model=model, messages=HI, stream=True,
                                                                options=opts))
    return o.chat(model=model, messages=HI, options=opts).message.content or ""


# What each SDK raises for a status.
ERRORS: dict[str, dict[int, type[BaseException]]] = {
    "openai": {401: openai.AuthenticationError, 403: openai.PermissionDeniedError, 429: openai.RateLimitError},
    "anthropic": {401: anthropic.AuthenticationError, 403: anthropic.PermissionDeniedError,
                  429: anthropic.RateLimitError},
    "anthropic-x": {401: anthropic.AuthenticationError, 403: anthropic.PermissionDeniedError,
                    429: anthropic.RateLimitError},
    "ollama": {401: ollama.ResponseError, 403: ollama.ResponseError, 429: ollama.ResponseError},
}


def refused(e: Env, sdk: str, key: str, model: str, status: int, *, stream: bool = False) -> tuple[Any, Seen]:
    """The call fails with ``status`` in the SDK's exception type; no upstream request is made.

    Returns the exception and the raw response; checks the body is the
    caller's protocol's error shape.
    """
    before = e.upstream_requests()
    with pytest.raises(ERRORS[sdk][status]) as ei:
        chat(e, sdk, key, model, stream=stream)
    exc = ei.value
    if sdk == "ollama":
        assert exc.status_code == status, f"ollama: status {exc.status_code}, expected {status}: {exc}"
    else:
        assert exc.status_code == status, exc
    seen = e.wire.last()
    assert seen.status == status, seen
    assert seen.headers.get("content-type", "").startswith("application/json"), seen.headers
    body = json.loads(seen.body)
    if sdk == "openai":
        err = body.get("error")
        assert isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"], body
        assert isinstance(err.get("type"), str) and err["type"], body
    elif sdk.startswith("anthropic"):
        assert body.get("type") == "error" and isinstance(body.get("error"), dict), body
        assert isinstance(body["error"].get("type"), str) and body["error"].get("message"), body
    else:
        assert isinstance(body.get("error"), str) and body["error"], f"not Ollama's {{'error': '...'}}: {body}"
        assert exc.error == body["error"]
    assert e.upstream_requests() == before, (
        f"a refused {sdk} call reached an upstream: "
        f"{[(k, [(r.method, r.path) for r in m.requests]) for k, m in e.mocks.items()]}")
    return exc, seen


def message_of(sdk: str, seen: Seen) -> str:
    body = json.loads(seen.body)
    if sdk == "ollama":
        return body["error"]
    return body["error"]["message"]


# ---------------------------------------------------------------------------
# 1. A key works with every SDK against every kind of upstream
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("sdk", AUTH_SDKS)
def test_key_works_with_every_sdk_and_upstream(env: Env, sdk: str, stream: bool) -> None:
    key = env.admin.create_key(f"works-{sdk}")["key"]
    for kind, model in MODEL_OF.items():
        text = chat(env, sdk, key, model, stream=stream)
        assert text == "Hello from mock", f"{sdk} -> {kind} ({model}): {text!r}"
        sent = env.wire.last().request_headers
        if sdk == "anthropic-x":
            assert sent.get("x-api-key") == key and "authorization" not in sent, sent.keys()
        else:
            assert sent.get("authorization") == f"Bearer {key}", sent.keys()
        up = Upstream(kind, env.mocks[kind])
        assert len(up.chat_calls()) == 1, f"{kind}: {[(r.method, r.path) for r in up.mock.requests]}"
        # The gateway's own upstream credential goes upstream, never the client's key.
        for r in up.mock.requests:
            assert not any(key in v for v in r.headers.values()), f"key forwarded to {kind}: {r.headers}"
            assert key.encode() not in r.raw_body, f"key forwarded to {kind} in the body"
        up.assert_auth()


def test_key_works_as_bearer_and_x_api_key_on_each_surface(env: Env) -> None:
    """Either header works on every surface, not only the one its SDK uses."""
    key = env.admin.create_key("headers")["key"]
    calls = [
        ("/v1/chat/completions", {"model": "mock-model", "messages": HI}),
        ("/v1/messages", {"model": "claude-mock", "max_tokens": 16, "messages": HI}),
        ("/api/chat", {"model": "llama-mock", "messages": HI, "stream": False}),
    ]
    with httpx.Client(base_url=env.gw.url, timeout=30.0, **NO_TLS) as h:
        for path, body in calls:
            for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}):
                extra = {"anthropic-version": "2023-06-01"} if path == "/v1/messages" else {}
                r = h.post(path, json=body, headers={**headers, **extra})
                assert r.status_code == 200, f"{path} with {list(headers)}: {r.status_code} {r.text[:300]}"


# ---------------------------------------------------------------------------
# 2. Wrong, revoked and expired keys: 401 in each SDK, nothing upstream
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", AUTH_SDKS)
def test_wrong_key_is_401(env: Env, sdk: str) -> None:
    env.admin.create_key("someone")  # keys exist: the gateway needs a credential
    for stream in (False, True):
        _, seen = refused(env, sdk, WRONG_KEY, SDK_MODEL[sdk], 401, stream=stream)
        assert WRONG_KEY.encode() not in seen.body
    _, seen = refused(env, sdk, "sk-not-a-virtual-key", SDK_MODEL[sdk], 401)
    assert b"sk-not-a-virtual-key" not in seen.body


@pytest.mark.parametrize("sdk", AUTH_SDKS)
def test_revoked_key_is_401(env: Env, sdk: str) -> None:
    env.admin.create_key("stays")  # another key still exists
    k = env.admin.create_key(f"revoked-{sdk}")
    assert chat(env, sdk, k["key"], SDK_MODEL[sdk]) == "Hello from mock"
    env.admin.revoke(k["id"])
    for stream in (False, True):
        refused(env, sdk, k["key"], SDK_MODEL[sdk], 401, stream=stream)


@pytest.mark.parametrize("sdk", AUTH_SDKS)
def test_revoking_the_only_key_does_not_open_the_gateway(env: Env, sdk: str) -> None:
    k = env.admin.create_key(f"only-{sdk}")
    assert chat(env, sdk, k["key"], SDK_MODEL[sdk]) == "Hello from mock"
    env.admin.revoke(k["id"])
    refused(env, sdk, k["key"], SDK_MODEL[sdk], 401)
    # Nor may a caller with no credential at all get in.
    with httpx.Client(base_url=env.gw.url, timeout=30.0, **NO_TLS) as h:
        r = h.post("/v1/chat/completions", json={"model": "mock-model", "messages": HI})
        assert r.status_code == 401, f"no credential after revoking the only key: {r.status_code}"


def test_expired_key_is_401_in_every_sdk(env: Env) -> None:
    """One key, expiring 1.5 s after its creation (the API refuses past expiries)."""
    env.admin.create_key("stays")
    expires = int(time.time() * 1000) + 1500
    k = env.admin.create_key("expiring", expires_at=expires)
    # Wait for the wall clock to pass the expiry: that is what is tested.
    time.sleep(max(0.0, expires / 1000 - time.time()) + 0.05)
    for sdk in AUTH_SDKS:
        for stream in (False, True):
            _, seen = refused(env, sdk, k["key"], SDK_MODEL[sdk], 401, stream=stream)
            assert "expired" in message_of(sdk, seen), seen.body
    listed = {x["id"]: x for x in env.admin.list_keys().json()["keys"]}
    assert listed[k["id"]]["status"] == "expired", listed[k["id"]]


# ---------------------------------------------------------------------------
# 3. Model scope: 403 naming the model
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
def test_model_outside_the_keys_scope_is_403(env: Env, sdk: str) -> None:
    k = env.admin.create_key(f"scoped-{sdk}", models=["m-a"])
    for model in MODEL_OF.values():
        for stream in (False, True):
            exc, seen = refused(env, sdk, k["key"], model, 403, stream=stream)
            msg = message_of(sdk, seen)
            assert model in msg, f"the 403 must name the model {model!r}: {msg!r}"
            if sdk == "openai":
                assert exc.body.get("type") == "permission_error", exc.body
            elif sdk == "anthropic":
                assert json.loads(seen.body)["error"]["type"] == "permission_error", seen.body


def test_embeddings_outside_the_keys_scope_are_403(env: Env) -> None:
    k = env.admin.create_key("scoped-embed", models=["m-a"])["key"]
    with pytest.raises(openai.PermissionDeniedError) as oe:
        env.openai(k).embeddings.create(model="mock-embed", input="hi")
    assert "mock-embed" in oe.value.body["message"], oe.value.body
    with pytest.raises(ollama.ResponseError) as le:
        env.ollama(k).embed(model="embed-mock", input="hi")
    assert le.value.status_code == 403 and "embed-mock" in le.value.error, le.value
    assert env.upstream_requests() == 0


def test_model_inside_the_keys_scope_works(env: Env) -> None:
    k = env.admin.create_key("scoped", models=["m-a", "claude-mock"])
    for sdk in SDKS:
        assert chat(env, sdk, k["key"], "claude-mock") == "Hello from mock"
        refused(env, sdk, k["key"], "mock-model", 403)
    assert len(env.mocks["anthropic"].requests_to("/v1/messages")) == 3


def test_patched_scope_and_rotation_apply_at_once(env: Env) -> None:
    """PATCH models and POST /rotate change what the next request sees, with no restart."""
    k = env.admin.create_key("changing")
    assert chat(env, "openai", k["key"], "mock-model") == "Hello from mock"
    r = env.admin.http.patch(f"/api/keys/{k['id']}", json={"models": ["m-a"]})
    assert r.status_code == 200 and r.json()["models"] == ["m-a"] and "key" not in r.json(), r.text
    refused(env, "openai", k["key"], "mock-model", 403)
    r = env.admin.http.patch(f"/api/keys/{k['id']}", json={"models": None})
    assert r.status_code == 200 and r.json()["models"] is None, r.text
    r = env.admin.http.post(f"/api/keys/{k['id']}/rotate")
    assert r.status_code == 200, r.text
    new_key = r.json()["key"]
    assert new_key.startswith("llk-") and new_key != k["key"]
    for sdk in SDKS:
        refused(env, sdk, k["key"], MODEL_OF[sdk], 401)
        assert chat(env, sdk, new_key, MODEL_OF[sdk]) == "Hello from mock"


# ---------------------------------------------------------------------------
# 4. rpm: the third call in a minute is 429 with Retry-After
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
def test_rpm_limit_is_429_with_retry_after(env: Env, sdk: str) -> None:
    k = env.admin.create_key(f"rpm-{sdk}", rpm=2)
    model = MODEL_OF[sdk]
    assert chat(env, sdk, k["key"], model) == "Hello from mock"
    assert chat(env, sdk, k["key"], model, stream=True) == "Hello from mock"
    exc, seen = refused(env, sdk, k["key"], model, 429)
    ra = seen.headers.get("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, f"Retry-After: {ra!r}"
    if sdk == "openai":
        assert exc.response.headers.get("retry-after") == ra
        assert exc.body.get("type") == "rate_limit_error", exc.body
    elif sdk == "anthropic":
        assert exc.response.headers.get("retry-after") == ra
        assert exc.body["error"]["type"] == "rate_limit_error", exc.body
    # Two calls reached the upstream, not three.
    assert sum(len(m.requests) for m in env.mocks.values()) == 2


def test_rpm_limit_counts_calls_on_every_surface(env: Env) -> None:
    """One key's minute is shared by the three surfaces."""
    k = env.admin.create_key("rpm-shared", rpm=2)["key"]
    assert chat(env, "openai", k, "mock-model") == "Hello from mock"
    assert chat(env, "anthropic", k, "claude-mock") == "Hello from mock"
    _, seen = refused(env, "ollama", k, "llama-mock", 429)
    assert seen.headers.get("retry-after", "").isdigit(), seen.headers


def test_max_concurrency_is_429_while_a_request_is_in_flight(env: Env) -> None:
    """With ``max_concurrency: 1``, a second call while the first is held upstream is refused."""
    k = env.admin.create_key("one-at-a-time", max_concurrency=1)["key"]
    oa = env.mocks["openai"]
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, env, "openai", k, "mock-hold")
        try:
            assert oa.held.wait(10), f"the held request never reached the upstream: {first}"
            for sdk in SDKS:
                _, seen = refused(env, sdk, k, MODEL_OF[sdk], 429)
                assert seen.headers.get("retry-after", "").isdigit(), seen.headers
        finally:
            oa.release.set()
        assert first.result(10) == "Hello from mock"


# ---------------------------------------------------------------------------
# 5. Budget: refused before it would be exceeded, in each protocol
# ---------------------------------------------------------------------------

# Per million tokens: 1 token in costs 0.1, 1 token out costs 1.
IN_PRICE, OUT_PRICE = 100_000.0, 1_000_000.0
BUDGET = 60.0
MAX_TOKENS = 16  # a call reserves at most ~16 + a few input tokens' worth
PROVIDER_OF = {"openai": "oa", "anthropic": "an", "ollama": "ol"}


def _budget_cases() -> list[Any]:
    out = []
    for sdk in SDKS:
        for kind in SDKS:
            for stream in (False, True):
                out.append(pytest.param(sdk, kind, stream,
                                        id=f"{sdk}-to-{kind}-{'stream' if stream else 'json'}"))
    return out


@pytest.mark.parametrize(("sdk", "kind", "stream"), _budget_cases())
def test_budget_is_429_insufficient_quota_before_it_is_exceeded(env: Env, sdk: str, kind: str,
                                                               stream: bool) -> None:
    model = MODEL_OF[kind]
    env.admin.price(model, PROVIDER_OF[kind], IN_PRICE, OUT_PRICE)
    k = env.admin.create_key(f"budget-{sdk}", budget={"amount": BUDGET, "period": "total"})
    up = Upstream(kind, env.mocks[kind])
    ok = 0
    exc: Any = None
    for _ in range(20):
        before = env.upstream_requests()
        try:
            assert chat(env, sdk, k["key"], model, max_tokens=MAX_TOKENS, stream=stream) == "Hello from mock"
            ok += 1
        except (openai.APIStatusError, anthropic.APIStatusError, ollama.ResponseError) as e:
            exc = e
            assert env.upstream_requests() == before, "the refused call reached the upstream"
            break
    assert exc is not None, f"a budget of {BUDGET} never refused a call ({ok} calls went through)"
    assert ok >= 1, f"the first call should fit the budget: {exc}"
    seen = env.wire.last()
    assert seen.status == 429, seen
    body = json.loads(seen.body)
    if sdk == "openai":
        assert isinstance(exc, openai.RateLimitError), repr(exc)
        assert exc.code == "insufficient_quota", exc.body
        assert body["error"]["code"] == "insufficient_quota", body
    elif sdk == "anthropic":
        assert isinstance(exc, anthropic.RateLimitError), repr(exc)
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
    else:
        assert exc.status_code == 429, exc
        assert isinstance(body.get("error"), str) and body["error"], body
    # The upstream served only what the budget could pay for.
    calls = up.chat_calls()
    assert len(calls) == ok
    spent = sum(c.usage["input_tokens"] * IN_PRICE / 1e6 + c.usage["output_tokens"] * OUT_PRICE / 1e6
                for c in calls)
    assert spent <= BUDGET, f"{len(calls)} upstream calls cost {spent}, over the budget {BUDGET}"
    # A refused key stays refused.
    refused(env, sdk, k["key"], model, 429, stream=stream)


def test_budget_covers_streamed_legacy_completions(env: Env) -> None:
    env.admin.price("mock-model", "oa", IN_PRICE, OUT_PRICE)
    k = env.admin.create_key("legacy", budget={"amount": BUDGET, "period": "total"})["key"]
    c = env.openai(k)
    for _ in range(20):
        try:
            text = "".join(ch.choices[0].text for ch in
                           c.completions.create(model="mock-model", prompt="hi", max_tokens=MAX_TOKENS, stream=True)
                           if ch.choices)
            assert text, "empty completion"
        except openai.RateLimitError as e:
            assert e.code == "insufficient_quota", e.body
            break
    else:
        pytest.fail(f"20 streamed completions ({MAX_TOKENS} tokens at 1 each) never used up a budget of {BUDGET}")


@pytest.mark.parametrize("sdk", SDKS)
def test_a_call_dearer_than_the_whole_budget_is_refused_first_time(env: Env, sdk: str) -> None:
    """Worst case 200 x 1 > a budget of 50: refused before the upstream sees anything."""
    env.admin.price(MODEL_OF[sdk], PROVIDER_OF[sdk], IN_PRICE, OUT_PRICE)
    k = env.admin.create_key(f"small-{sdk}", budget={"amount": 50, "period": "monthly"})["key"]
    before = env.upstream_requests()
    with pytest.raises(ERRORS[sdk][429]) as ei:
        chat(env, sdk, k, MODEL_OF[sdk], max_tokens=200)
    assert env.upstream_requests() == before
    body = json.loads(env.wire.last().body)
    if sdk == "openai":
        assert ei.value.code == "insufficient_quota", body
    elif sdk == "anthropic":
        assert body["error"]["type"] == "rate_limit_error", body
    else:
        assert ei.value.status_code == 429 and isinstance(body.get("error"), str), body
    # A call that fits still goes through.
    assert chat(env, sdk, k, MODEL_OF[sdk], max_tokens=MAX_TOKENS) == "Hello from mock"


# ---------------------------------------------------------------------------
# 6. The clear key is shown once and never again
# ---------------------------------------------------------------------------


def test_key_is_never_shown_again(env: Env) -> None:
    created = env.admin.create_key("secret", models=["mock-model", "claude-mock", "llama-mock"])
    key = created["key"]
    n_create = len(env.wire.seen)  # the create answer is the one place the key may appear
    for sdk in AUTH_SDKS:
        for stream in (False, True):
            assert chat(env, sdk, key, SDK_MODEL[sdk], stream=stream) == "Hello from mock"
    # Errors with the key: a model out of scope (403), the rpm limit (429).
    for sdk in SDKS:
        refused(env, sdk, key, "fail-500", 403)
    r = env.admin.http.patch(f"/api/keys/{created['id']}", json={"rpm": 1})
    assert r.status_code == 200 and r.json()["rpm"] == 1, r.text
    chat(env, "ollama", key, "llama-mock")
    refused(env, "ollama", key, "llama-mock", 429)
    # And a wrong key, which must not be echoed either.
    refused(env, "anthropic", WRONG_KEY, "claude-mock", 401)
    listing = env.admin.list_keys()
    for path in ("/api/keys?status=active", "/api/audit", "/api/usage", "/api/v1/llm/usage"):
        r = env.admin.http.get(path)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    one = env.admin.http.get(f"/api/keys/{created['id']}")
    assert one.status_code == 200 and "key" not in one.json(), one.text
    assert "key" not in [x for x in listing.json()["keys"] if x["id"] == created["id"]][0]

    tail = key[-4:]
    for s in env.wire.seen[n_create:]:
        for secret in (key, WRONG_KEY, key[4:-4]):
            assert secret.encode() not in s.body, f"{s.method} {s.path} -> {s.status} shows a key: {s.body[:300]!r}"
            assert not any(secret in v for v in s.headers.values()), f"{s.method} {s.path} header: {s.headers}"
    assert f"llk-…{tail}" in listing.text, "the listing identifies the key by its hint"
    out = env.gw.output
    assert out, "the gateway printed nothing"
    for secret in (key, key[4:-4], WRONG_KEY):
        bad = [line for line in out.splitlines() if secret in line]
        assert not bad, f"the gateway logged a key: {bad[:3]}"
    for kind, m in env.mocks.items():
        for r in m.requests:
            assert not any(key in v for v in r.headers.values()) and key.encode() not in r.raw_body, kind


def test_concurrent_calls_do_not_overspend_the_budget(env: Env) -> None:
    """Reservations are atomic: 24 calls racing for a budget of three never buy a fourth.

    Input is free and an output token costs 1, so a call capped at 3 tokens
    reserves exactly what it spends (the mock answers 3 tokens): a budget of
    10 pays for exactly three calls, however they interleave.
    """
    env.admin.price("mock-model", "oa", 0.0, OUT_PRICE)
    k = env.admin.create_key("racing", budget={"amount": 10, "period": "total"})["key"]

    def one(_: int) -> str:
        try:
            return chat(env, "openai", k, "mock-model", max_tokens=3)
        except openai.RateLimitError as e:
            assert e.code == "insufficient_quota", e.body
            return "refused"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(24)))
    assert results.count("refused") + results.count("Hello from mock") == len(results), results
    calls = Upstream("openai", env.mocks["openai"]).chat_calls()
    assert [c.usage["output_tokens"] for c in calls] == [3] * len(calls), [c.usage for c in calls]
    assert results.count("Hello from mock") == len(calls) == 3, (
        f"{len(calls)} calls reached the upstream for a budget of three: {results}")
