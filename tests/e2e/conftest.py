"""Fixtures for llm-link end-to-end tests.

* ``mock``            - a running mock OpenAI upstream (see mock_upstream.py)
* ``gateway``         - factory: start the built llm-link binary with given args
* ``single_gateway``  - llm-link in single-provider mode in front of ``mock``
* ``config_gateway``  - llm-link started from a TOML config in front of ``mock``
* ``client`` / ``config_client`` - openai.OpenAI clients for those gateways
* ``anthropic_mock`` / ``ollama_mock`` - mock Anthropic and Ollama upstreams
* ``matrix_gateway``  - llm-link from a TOML config with three providers: the
  OpenAI mock (``oa``), the Anthropic mock (``an``) and the Ollama mock (``ol``)
* ``upstream``        - parametrised over those three (see multi.py)
* ``vkey_gateway``    - the same three providers, with a SQLite database in a
  temporary data dir and an admin token (``ADMIN_TOKEN``): virtual keys,
  catalog prices, limits and budgets
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_anthropic import ANTHROPIC_KEY, MockAnthropic  # noqa: E402
from mock_ollama import MockOllama  # noqa: E402
from mock_upstream import MockUpstream  # noqa: E402
from multi import Upstream  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "llm-link"

CLIENT_KEY = "test-client-key"
UPSTREAM_KEY = "upstream-secret"

READY_RE = re.compile(r"llm-link listening on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 20.0
HEALTH_TIMEOUT_S = 5.0
STOP_GRACE_S = 5.0

# Never let a proxy from the environment intercept loopback traffic (neither
# the test's httpx clients nor the gateway's reqwest client).
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
for _v in _PROXY_VARS:
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
# Nor let the anthropic / ollama SDKs pick up credentials or hosts from the shell.
for _v in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OLLAMA_HOST", "OLLAMA_API_KEY"):
    os.environ.pop(_v, None)

# Provider-key env vars the gateway might pick up from the developer's shell.
_PROVIDER_KEY_VARS = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ZHIPU_API_KEY", "ALIYUN_API_KEY",
    "VOLCENGINE_API_KEY", "TENCENT_API_KEY", "DEEPSEEK_API_KEY", "MOONSHOT_API_KEY",
    "OPENAI_BASE_URL",
)


def binary_path() -> Path:
    env = os.environ.get("LLM_LINK_BIN")
    p = Path(env) if env else DEFAULT_BIN
    if not p.is_absolute():
        p = (REPO_ROOT / p).resolve()
    return p


# ---------------------------------------------------------------------------
# Mock upstream
# ---------------------------------------------------------------------------


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    m = MockUpstream().start()
    try:
        yield m
    finally:
        m.stop()


# ---------------------------------------------------------------------------
# Gateway process
# ---------------------------------------------------------------------------


class Gateway:
    """A running llm-link process."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.port: int | None = None
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, name="llm-link-output", daemon=True)
        self._reader.start()

    # Output is drained for the whole life of the process so the pipe never
    # fills; the ready line is detected on the way.
    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                self._lines.append(line)
            if self.port is None:
                m = READY_RE.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._ready.set()
        self._ready.set()  # EOF: process gone; wake the waiter

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_ready(self) -> None:
        cmd = " ".join(self.args)
        if not self._ready.wait(START_TIMEOUT_S) or self.port is None:
            try:
                rc = self.proc.wait(0.5)
                state = f"the process exited with code {rc} before printing it"
            except subprocess.TimeoutExpired:
                state = f"still running after {START_TIMEOUT_S:.0f}s"
            pytest.fail(
                f"llm-link never printed 'llm-link listening on http://127.0.0.1:PORT' ({state})."
                f"\ncommand: {cmd}\n--- output so far ---\n{self.output}",
                pytrace=False,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = httpx.get(f"{self.url}/health", timeout=1.0, verify=False)  # plain HTTP: skip TLS setup
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.05)
        pytest.fail(
            f"llm-link GET /health did not return 200 within {HEALTH_TIMEOUT_S:.0f}s (last: {last}; "
            f"exit code: {self.proc.poll()}).\ncommand: {cmd}\n--- output ---\n{self.output}",
            pytrace=False,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL of the gateway (ends in /v1)."""
        return f"{self.url}/v1"

    # verify=False: the gateway is plain HTTP on loopback; it only spares httpx
    # building a TLS context (~30 ms) per client.
    def client(self, api_key: str = CLIENT_KEY, **kw: object) -> openai.OpenAI:
        kw.setdefault("http_client", openai.DefaultHttpxClient(verify=False))
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                             timeout=kw.pop("timeout", 30.0), **kw)  # type: ignore[arg-type]

    def http(self, api_key: str | None = CLIENT_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, verify=False)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_GRACE_S)
        # The gateway runs in its own session/process group (start_new_session):
        # make sure nothing it spawned outlives the test.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(2.0)
        return self.proc.returncode


def _gateway_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_KEY_VARS
           and not k.startswith("LLM_LINK_")}
    home = tmp_path / "home"
    data = tmp_path / "data"
    home.mkdir(exist_ok=True)
    data.mkdir(exist_ok=True)
    # Keep the gateway's state (SQLite file etc.) out of the developer's home.
    env.update({
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LLM_LINK_DATA_DIR": str(data),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "RUST_BACKTRACE": "1",
    })
    return env


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Factory: ``gateway("serve", "--provider", ...)`` starts llm-link and waits until ready.

    ``--host 127.0.0.1 --port 0`` are appended to the given arguments.
    """
    started: list[Gateway] = []
    request.node._llm_link_gateways = started  # for the failure report hook

    def start(*args: str, env: dict[str, str] | None = None) -> Gateway:
        binary = binary_path()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(f"llm-link binary not found at {binary}; build it (cargo build -p llm-link) "
                        f"or set LLM_LINK_BIN", pytrace=False)
        full_env = _gateway_env(tmp_path)
        full_env.update(env or {})
        gw = Gateway([str(binary), *args, "--host", "127.0.0.1", "--port", "0"], full_env)
        started.append(gw)
        gw.wait_ready()
        return gw

    yield start

    panics = []
    for gw in started:
        gw.stop()
        if "panicked at" in gw.output:
            panics.append(gw.output)
    if panics:
        pytest.fail("llm-link panicked during the test:\n" + "\n---\n".join(panics), pytrace=False)


def single_provider_args(mock: MockUpstream) -> list[str]:
    return ["serve", "--provider", "openai-compatible", "--base-url", mock.base_url,
            "--model", "mock-model", "--api-key", UPSTREAM_KEY, "--auth-key", CLIENT_KEY]


CONFIG_MODELS = ["mock-model", "mock-embed", "fail-500", "fail-429", "fail-401"]


def write_config(path: Path, mock: MockUpstream) -> Path:
    models = ", ".join(f'"{m}"' for m in CONFIG_MODELS)
    path.write_text(
        f"""\
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{mock.base_url}"
api_key = "{UPSTREAM_KEY}"
models = [{models}]

[aliases]
"gpt-4" = "mock/mock-model"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def single_gateway(gateway: GatewayFactory, mock: MockUpstream) -> Gateway:
    return gateway(*single_provider_args(mock))


@pytest.fixture
def config_gateway(gateway: GatewayFactory, mock: MockUpstream, tmp_path: Path) -> Gateway:
    cfg = write_config(tmp_path / "llm-link.toml", mock)
    return gateway("serve", "--config", str(cfg), "--auth-key", CLIENT_KEY)


@pytest.fixture
def client(single_gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = single_gateway.client()
    yield c
    c.close()


@pytest.fixture
def config_client(config_gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = config_gateway.client()
    yield c
    c.close()


@pytest.fixture(params=["single", "config"])
def any_gateway(request: pytest.FixtureRequest) -> Gateway:
    """The same test against single-provider mode and config-file mode."""
    name = "single_gateway" if request.param == "single" else "config_gateway"
    return request.getfixturevalue(name)


@pytest.fixture
def any_client(any_gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = any_gateway.client()
    yield c
    c.close()


# ---------------------------------------------------------------------------
# Anthropic and Ollama upstreams; a gateway in front of all three mocks
# ---------------------------------------------------------------------------


@pytest.fixture
def anthropic_mock() -> Iterator[MockAnthropic]:
    m = MockAnthropic().start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def ollama_mock() -> Iterator[MockOllama]:
    m = MockOllama().start()
    try:
        yield m
    finally:
        m.stop()


MATRIX_OPENAI_MODELS = ["mock-model", "mock-embed", "fail-429", "fail-500"]
MATRIX_ANTHROPIC_MODELS = ["claude-mock", "claude-fail-429", "claude-fail-500", "claude-break"]
MATRIX_OLLAMA_MODELS = ["llama-mock", "embed-mock", "llama-fail-500", "llama-break"]


def write_matrix_config(path: Path, mock: MockUpstream, anthropic_mock: MockAnthropic,
                        ollama_mock: MockOllama, openai_models: list[str] = MATRIX_OPENAI_MODELS) -> Path:
    def names(models: list[str]) -> str:
        return ", ".join(f'"{m}"' for m in models)

    path.write_text(
        f"""\
[[providers]]
name = "oa"
kind = "openai-compatible"
base_url = "{mock.base_url}"
api_key = "{UPSTREAM_KEY}"
models = [{names(openai_models)}]

[[providers]]
name = "an"
kind = "anthropic"
base_url = "{anthropic_mock.base_url}"
api_key = "{ANTHROPIC_KEY}"
models = [{names(MATRIX_ANTHROPIC_MODELS)}]

[[providers]]
name = "ol"
kind = "ollama"
base_url = "{ollama_mock.base_url}"
models = [{names(MATRIX_OLLAMA_MODELS)}]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def matrix_gateway(gateway: GatewayFactory, mock: MockUpstream, anthropic_mock: MockAnthropic,
                   ollama_mock: MockOllama, tmp_path: Path) -> Gateway:
    cfg = write_matrix_config(tmp_path / "matrix.toml", mock, anthropic_mock, ollama_mock)
    # No database: these tests are about the wire formats, and skipping the
    # SQLite file, master key and migrations makes each start ~5x faster
    # (the single/config gateways above keep the default storage).
    return gateway("serve", "--config", str(cfg), "--auth-key", CLIENT_KEY, "--database", "none")


ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def vkey_gateway(gateway: GatewayFactory, mock: MockUpstream, anthropic_mock: MockAnthropic,
                 ollama_mock: MockOllama, tmp_path: Path) -> Gateway:
    """The matrix gateway with a database (virtual keys need one) and an admin token.

    ``oa`` also serves ``mock-hold`` (a request the mock holds until
    ``mock.release`` is set). The SQLite file lives in a data dir of the test's own; ``--log-level debug``
    so a test that looks for leaked secrets in the output sees every line.
    """
    cfg = write_matrix_config(tmp_path / "matrix.toml", mock, anthropic_mock, ollama_mock,
                              MATRIX_OPENAI_MODELS + ["mock-hold"])
    data = tmp_path / "vkey-data"
    data.mkdir()
    return gateway("serve", "--config", str(cfg), "--data-dir", str(data),
                   "--admin-token", ADMIN_TOKEN, "--log-level", "debug")


@pytest.fixture(params=["anthropic", "openai", "ollama"])
def upstream(request: pytest.FixtureRequest, mock: MockUpstream, anthropic_mock: MockAnthropic,
             ollama_mock: MockOllama) -> Upstream:
    """One of the three upstream kinds behind ``matrix_gateway`` (see multi.Upstream)."""
    m = {"openai": mock, "anthropic": anthropic_mock, "ollama": ollama_mock}[request.param]
    return Upstream(request.param, m)


# ---------------------------------------------------------------------------
# Show the gateway's output next to any failing test.
# ---------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, gw in enumerate(getattr(item, "_llm_link_gateways", [])):
            report.sections.append((f"llm-link #{i} output ({report.when})", gw.output or "<no output>"))
