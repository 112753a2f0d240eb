"""The host side of llm-link's hot-update protocol.

A desktop host owns one llm-link process. :class:`LlmLinkManager` starts it,
reads its health, validates keys, and changes provider/key/model in one of
two ways:

* :meth:`LlmLinkManager.update_config` -- the restart flow: ask the running
  instance for the new ``env_vars``/``cli_args``, stop it, start a new
  process with them, wait for a *new* ``instance_id`` on ``/api/health`` and
  check provider and model; if anything fails, restart the previous
  configuration and raise :class:`~llm_link_client.errors.RestartError`.
* :meth:`LlmLinkManager.switch` -- the in-process switch
  (``POST /api/config/switch``): no restart, the ``instance_id`` stays.

Only the standard library is used (``subprocess``, ``urllib``), so the
package installs anywhere.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, TypedDict, Union

from .errors import (
    ApiError,
    LlmLinkError,
    RestartError,
    StartError,
    ValidationError,
    VerificationError,
)


__all__ = [
    "LlmLinkManager",
    "LaunchConfig",
    "Health",
    "CurrentConfig",
    "ConfigUpdate",
    "ValidationResult",
    "PROVIDER_KEY_ENV",
    "canonical_provider",
    "key_env_for",
    "find_free_port",
    "default_binary",
]

#: Provider kind -> environment variable holding its upstream key, the same
#: table the server uses. ``None`` means the provider takes no key.
PROVIDER_KEY_ENV: Dict[str, Optional[str]] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "zhipu": "ZHIPU_API_KEY",
    "aliyun": "ALIYUN_API_KEY",
    "volcengine": "VOLCENGINE_API_KEY",
    "tencent": "TENCENT_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "moonshot": "MOONSHOT_API_KEY",
    "minimax": "MINIMAX_API_KEY",
    "openai-compatible": "OPENAI_COMPATIBLE_API_KEY",
    "ollama": None,
    "llamacpp": None,
}

# Alternative spellings the server accepts for a kind.
_PROVIDER_ALIASES: Dict[str, str] = {
    "openai_compatible": "openai-compatible",
    "openai-compat": "openai-compatible",
    "compatible": "openai-compatible",
    "glm": "zhipu",
    "bigmodel": "zhipu",
    "dashscope": "aliyun",
    "qwen": "aliyun",
    "ark": "volcengine",
    "doubao": "volcengine",
    "hunyuan": "tencent",
    "kimi": "moonshot",
    "claude": "anthropic",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
}

# Environment variables the manager controls through the command line; an
# inherited value would otherwise leak into the child (the server reads
# ``LLM_LINK_<FLAG>`` for every flag).
_CONTROLLED_ENV = (
    "LLM_LINK_HOST",
    "LLM_LINK_PORT",
    "LLM_LINK_PROVIDER",
    "LLM_LINK_MODEL",
    "LLM_LINK_API_KEY",
    "LLM_LINK_BASE_URL",
)


class Health(TypedDict, total=False):
    """``GET /api/health``."""

    status: str
    instance_id: int
    pid: int
    provider: str
    model: str
    version: str
    uptime_seconds: int


class CurrentConfig(TypedDict, total=False):
    """``GET /api/config/current`` (never contains a key)."""

    provider: str
    model: str
    has_api_key: bool
    has_base_url: bool


class ConfigUpdate(TypedDict, total=False):
    """Answer of ``POST /api/config/update`` and ``POST /api/config/switch``."""

    status: str
    message: str
    restart_required: bool
    current_instance_id: int
    env_vars: Dict[str, str]
    cli_args: Dict[str, Any]


class ValidationResult(TypedDict, total=False):
    """``POST /api/config/validate``."""

    status: str  # "valid" | "invalid"
    message: str
    models: List[str]


def canonical_provider(kind: str) -> str:
    """The server's canonical spelling of a provider kind (``"kimi"`` -> ``"moonshot"``)."""
    k = kind.strip().lower()
    return _PROVIDER_ALIASES.get(k, k)


def key_env_for(kind: str) -> Optional[str]:
    """The env var carrying the upstream key of ``kind``; ``None`` if it needs none.

    Unknown kinds get ``<KIND>_API_KEY``, the server's convention.
    """
    k = canonical_provider(kind)
    if k in PROVIDER_KEY_ENV:
        return PROVIDER_KEY_ENV[k]
    return k.upper().replace("-", "_").replace(".", "_") + "_API_KEY"


def find_free_port(host: str = "127.0.0.1") -> int:
    """Binds port 0 on ``host``, reads the port the OS chose and releases it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def default_binary() -> str:
    """``$LLM_LINK_BIN`` if set, else ``llm-link`` (looked up on ``PATH``)."""
    return os.environ.get("LLM_LINK_BIN") or "llm-link"


class LaunchConfig:
    """How to start llm-link: CLI arguments and extra environment variables.

    ``cli_args`` maps flag names to values the way ``/api/config/update``
    returns them (``{"provider": "zhipu", "model": "glm-4-flash",
    "base_url": ...}``); each ``key: value`` becomes ``--key value``
    (underscores become dashes, written ``--key=value``; ``True`` becomes a
    bare flag; ``None`` and ``False`` are skipped). ``env_vars`` holds the provider key. ``repr``
    never shows key values.
    """

    __slots__ = ("cli_args", "env_vars")

    def __init__(self, cli_args: Mapping[str, Any], env_vars: Optional[Mapping[str, str]] = None) -> None:
        self.cli_args: Dict[str, Any] = {k: v for k, v in cli_args.items() if v is not None}
        self.env_vars: Dict[str, str] = {str(k): str(v) for k, v in (env_vars or {}).items()}

    @classmethod
    def for_provider(
        cls,
        provider: str,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
    ) -> "LaunchConfig":
        """A first-start configuration built from the built-in key-variable table."""
        env: Dict[str, str] = {}
        var = key_env_for(provider)
        if api_key is not None and var:
            env[var] = api_key
        return cls({"provider": provider, "model": model, "base_url": base_url}, env)

    @property
    def provider(self) -> str:
        return str(self.cli_args.get("provider", ""))

    @property
    def model(self) -> Optional[str]:
        m = self.cli_args.get("model")
        return None if m is None else str(m)

    @property
    def base_url(self) -> Optional[str]:
        u = self.cli_args.get("base_url")
        return None if u is None else str(u)

    def argv(self) -> List[str]:
        """The command-line flags for these ``cli_args``."""
        out: List[str] = []
        for key, value in self.cli_args.items():
            flag = "--" + str(key).replace("_", "-")
            if value is True:
                out.append(flag)
            elif value is False or value is None:
                continue
            elif isinstance(value, (list, tuple)):
                out += [f"{flag}={item}" for item in value]
            else:
                # ``--flag=value`` so a value starting with ``-`` stays a value
                out.append(f"{flag}={value}")
        return out

    def __repr__(self) -> str:
        masked = {k: "***" for k in self.env_vars}
        return f"LaunchConfig(cli_args={self.cli_args!r}, env_vars={masked!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LaunchConfig)
            and other.cli_args == self.cli_args
            and other.env_vars == self.env_vars
        )


# Children still running when the interpreter exits are terminated.
_LIVE: "weakref.WeakSet[LlmLinkManager]" = weakref.WeakSet()


@atexit.register
def _terminate_children() -> None:  # pragma: no cover - exercised at exit
    for mgr in list(_LIVE):
        try:
            mgr._terminate_process(timeout=3.0)
        except Exception:
            pass


class LlmLinkManager:
    """Starts, hot-updates, restarts, verifies and stops one llm-link process.

    >>> with LlmLinkManager(binary="llm-link") as mgr:            # doctest: +SKIP
    ...     mgr.start("zhipu", "glm-4-flash", api_key="...")
    ...     mgr.update_config("deepseek", api_key="...", model="deepseek-chat")

    Args:
        binary: path of the ``llm-link`` executable; default ``$LLM_LINK_BIN``
            or ``llm-link`` on ``PATH``.
        host: address llm-link listens on and the manager talks to.
        port: listen port; a free one is picked when ``None``. The same port
            is used across restarts.
        extra_args: more flags for every start (``["--app", "zed"]``).
        env: extra environment for the process (on top of ``os.environ``).
        start_timeout: seconds to wait for a started process to answer
            ``/api/health`` (also the restart-verification timeout).
        stop_timeout: seconds to wait for a graceful exit before killing.
        poll_interval: seconds between ``/api/health`` polls.
        request_timeout: timeout of each HTTP request to llm-link.
        check_pid: require ``/api/health``'s ``pid`` to be the spawned
            process (turn off when ``binary`` is a wrapper that does not
            ``exec`` llm-link).
        on_output: called with every line llm-link prints (stdout and
            stderr, merged); the last lines are kept for error messages
            either way.
        on_status: called as ``on_status(status, detail)`` at each step of
            :meth:`update_config` (for a host's progress display):
            ``"validating"``, ``"preparing"`` (POST /api/config/update),
            ``"stopping"``, ``"starting"`` (old process gone, new one about
            to be spawned; ``detail`` has ``provider``, ``model`` and
            ``rollback``), ``"verifying"``, ``"rolling_back"``, then
            ``"success"`` or ``"failed"`` (``detail["error"]``). Exceptions
            raised by the callback are ignored.
    """

    def __init__(
        self,
        binary: Optional[Union[str, "os.PathLike[str]"]] = None,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        extra_args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        poll_interval: float = 0.05,
        request_timeout: float = 10.0,
        check_pid: bool = True,
        on_output: Optional[Callable[[str], None]] = None,
        on_status: Optional[Callable[[str, Mapping[str, Any]], None]] = None,
    ) -> None:
        self.binary = os.fspath(binary) if binary is not None else default_binary()
        self.host = host
        self.port = int(port) if port else find_free_port(host)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.check_pid = check_pid
        self.on_output = on_output
        self.on_status = on_status

        self._lock = threading.RLock()
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._launch: Optional[LaunchConfig] = None
        self._output: Deque[str] = collections.deque(maxlen=200)
        self._reader: Optional[threading.Thread] = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ info
    @property
    def base_url(self) -> str:
        """``http://host:port`` of the managed instance."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def process(self) -> Optional["subprocess.Popen[bytes]"]:
        """The running child process, if any."""
        return self._proc

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def launch_config(self) -> Optional[LaunchConfig]:
        """The configuration that reproduces the running instance (updated by
        :meth:`update_config` and :meth:`switch`)."""
        return self._launch

    @property
    def output(self) -> List[str]:
        """The last lines llm-link printed."""
        return list(self._output)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None,
                 timeout: Optional[float] = None) -> Any:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout or self.request_timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            parsed = _parse_json(raw)
            msg = parsed.get("message") if isinstance(parsed, dict) else None
            if not msg and isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                msg = parsed["error"].get("message")
            if not msg and isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                msg = parsed["error"]
            raise ApiError(method, path, e.code, str(msg or e.reason or "error"), parsed) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(method, path, None, str(reason)) from None
        parsed = _parse_json(raw)
        if not isinstance(parsed, dict):
            raise ApiError(method, path, 200, "answer is not a JSON object", parsed)
        return parsed

    def health(self) -> Health:
        """``GET /api/health``."""
        return self._request("GET", "/api/health")  # type: ignore[return-value]

    def current_config(self) -> CurrentConfig:
        """``GET /api/config/current`` (provider, model, has_api_key, has_base_url)."""
        return self._request("GET", "/api/config/current")  # type: ignore[return-value]

    def get_pid(self) -> int:
        """``GET /api/config/pid``."""
        return int(self._request("GET", "/api/config/pid")["pid"])

    def validate_key(self, provider: str, api_key: str, base_url: Optional[str] = None) -> ValidationResult:
        """``POST /api/config/validate``: the server lists the upstream's models with
        that key. Returns the answer; does not raise for ``"invalid"`` (see
        :meth:`ensure_valid_key`)."""
        body: Dict[str, Any] = {"provider": provider, "api_key": api_key}
        if base_url is not None:
            body["base_url"] = base_url
        return self._request("POST", "/api/config/validate", body,  # type: ignore[return-value]
                             timeout=max(self.request_timeout, 30.0))

    def ensure_valid_key(self, provider: str, api_key: str, base_url: Optional[str] = None) -> ValidationResult:
        """Like :meth:`validate_key` but raises :class:`ValidationError` unless valid."""
        res = self.validate_key(provider, api_key, base_url)
        if res.get("status") != "valid":
            raise ValidationError(provider, str(res.get("message") or "invalid key"), res.get("models"))
        return res

    # ------------------------------------------------------------- lifecycle
    def start(
        self,
        provider: str,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
    ) -> Health:
        """Spawns llm-link for ``provider`` and waits until ``/api/health`` answers.

        The key goes into the provider's env var (see :data:`PROVIDER_KEY_ENV`),
        never on the command line. Raises :class:`StartError` when the process
        cannot be spawned, exits, or is not healthy within ``start_timeout``;
        :class:`VerificationError` when it answers with another provider/model.
        """
        launch = LaunchConfig.for_provider(provider, model, api_key, base_url)
        with self._lock:
            if self.is_running():
                raise LlmLinkError(f"llm-link is already running (pid {self.pid}); use update_config(), switch() or stop()")
            try:
                health = self._launch_and_verify(launch, old_instance_id=None,
                                                 expect_provider=provider, expect_model=model)
            except LlmLinkError:
                self._terminate_process()
                raise
            self._launch = launch
            return health

    def update_config(
        self,
        provider: str,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        base_url: Optional[str] = None,
        validate: bool = True,
    ) -> Health:
        """The restart flow: change provider/key/model by restarting llm-link.

        1. if ``validate``: ``POST /api/config/validate``, raise
           :class:`ValidationError` when invalid (nothing is touched);
        2. ``POST /api/config/update`` -> ``env_vars``, ``cli_args`` and the
           current ``instance_id`` (an :class:`ApiError` here, e.g. an
           unknown provider, leaves the running instance untouched);
        3. stop the process (SIGTERM, then kill after ``stop_timeout``);
        4. start it with ``env_vars`` and ``cli_args``;
        5. poll ``/api/health`` until a new ``instance_id`` appears, then
           check provider and model.

        If step 4 or 5 fails, the previous configuration is started and
        verified again, and :class:`RestartError` is raised with
        ``rolled_back=True`` (``False`` when the rollback failed as well).
        Returns the new instance's health.
        """
        with self._lock:
            if not self.is_running() or self._launch is None:
                raise LlmLinkError("llm-link is not running under this manager; call start() first")
            try:
                return self._update_config(provider, api_key, model, base_url, validate)
            except LlmLinkError as exc:
                self._emit("failed", error=exc)
                raise

    def _update_config(
        self,
        provider: str,
        api_key: Optional[str],
        model: Optional[str],
        base_url: Optional[str],
        validate: bool,
    ) -> Health:
        assert self._launch is not None
        if validate:
            self._emit("validating", provider=provider)
            self.ensure_valid_key(provider, api_key or "", base_url)
        previous = self._launch
        prev_health = self.health()
        self._emit("preparing", provider=provider, model=model)
        body: Dict[str, Any] = {"provider": provider}
        if api_key is not None:
            body["api_key"] = api_key
        if model is not None:
            body["model"] = model
        if base_url is not None:
            body["base_url"] = base_url
        update: ConfigUpdate = self._request("POST", "/api/config/update", body)
        if update.get("status") not in (None, "success"):
            raise ApiError("POST", "/api/config/update", 200, str(update.get("message")), update)
        cli_args = dict(update.get("cli_args") or {})
        if not cli_args.get("provider"):
            raise ApiError("POST", "/api/config/update", 200, "answer has no cli_args.provider", update)
        new_launch = LaunchConfig(cli_args, update.get("env_vars") or {})
        old_id = update.get("current_instance_id", prev_health.get("instance_id"))

        self._emit("stopping", pid=self.pid, instance_id=old_id)
        self._terminate_process()
        try:
            health = self._launch_and_verify(
                new_launch, old_instance_id=old_id,
                expect_provider=new_launch.provider, expect_model=new_launch.model or model,
            )
        except LlmLinkError as exc:
            stage = "verify" if isinstance(exc, VerificationError) else "start"
            self._emit("rolling_back", stage=stage, error=exc)
            self._terminate_process()
            try:
                self._launch_and_verify(
                    previous, old_instance_id=old_id,
                    expect_provider=str(prev_health.get("provider") or previous.provider),
                    expect_model=str(prev_health.get("model") or previous.model or "") or None,
                    rollback=True,
                )
            except LlmLinkError as rb_exc:
                self._terminate_process()
                self._launch = None
                raise RestartError(stage, exc, rolled_back=False, rollback_error=rb_exc) from exc
            self._launch = previous
            raise RestartError(stage, exc, rolled_back=True) from exc
        self._launch = new_launch
        self._emit("success", provider=health.get("provider"), model=health.get("model"),
                   instance_id=health.get("instance_id"))
        return health

    def switch(
        self,
        provider: str,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        base_url: Optional[str] = None,
        validate: bool = False,
    ) -> Health:
        """The in-process switch: ``POST /api/config/switch``, no restart.

        Verifies that ``/api/health`` then shows the new provider and model
        with the *same* ``instance_id`` (else :class:`VerificationError`).
        A refused switch (unknown provider, provider cannot be built) is an
        :class:`ApiError` and leaves the running configuration as it was.
        With ``validate=True`` the key is checked first
        (:class:`ValidationError`). The manager's :attr:`launch_config` is
        updated so a later restart or rollback reproduces the new state.
        """
        with self._lock:
            if validate:
                self.ensure_valid_key(provider, api_key or "", base_url)
            before = self.health()
            body: Dict[str, Any] = {"provider": provider}
            if api_key is not None:
                body["api_key"] = api_key
            if model is not None:
                body["model"] = model
            if base_url is not None:
                body["base_url"] = base_url
            resp: ConfigUpdate = self._request("POST", "/api/config/switch", body)
            if resp.get("status") not in (None, "success"):
                raise ApiError("POST", "/api/config/switch", 200, str(resp.get("message")), resp)
            cli_args = dict(resp.get("cli_args") or {})
            expected = {
                "provider": str(cli_args.get("provider") or canonical_provider(provider)),
                "model": model if model is not None else cli_args.get("model"),
                "instance_id": before.get("instance_id"),
            }
            if resp.get("restart_required"):
                raise VerificationError("llm-link answered restart_required=true to an in-process switch",
                                        {"restart_required": False}, {"restart_required": True})
            after = self.health()
            _verify(expected, after, "in-process switch")
            if cli_args.get("provider"):
                self._launch = LaunchConfig(cli_args, resp.get("env_vars") or {})
            return after

    def stop(self, timeout: Optional[float] = None) -> Optional[int]:
        """Stops llm-link gracefully and returns its exit code.

        Asks ``POST /api/config/shutdown`` first (in-flight requests finish),
        falls back to SIGTERM, and kills the process when it has not exited
        after ``timeout`` (default ``stop_timeout``). Returns ``None`` when no
        process was running.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return None
            deadline = timeout if timeout is not None else self.stop_timeout
            if proc.poll() is None:
                try:
                    self._request("POST", "/api/config/shutdown", {}, timeout=min(5.0, deadline))
                    asked = True
                except ApiError:
                    asked = False  # not answering: go straight to SIGTERM
                if asked:
                    try:
                        proc.wait(timeout=deadline)
                    except subprocess.TimeoutExpired:
                        pass
            code = self._terminate_process(timeout=deadline)
            self._launch = None
            return code

    def close(self) -> None:
        """Stops llm-link if it is running (same as :meth:`stop`)."""
        self.stop()

    def __enter__(self) -> "LlmLinkManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- internals
    def _spawn(self, launch: LaunchConfig) -> "subprocess.Popen[bytes]":
        env = dict(os.environ)
        for name in _CONTROLLED_ENV:
            env.pop(name, None)
        env.update(self.env)
        env.update(launch.env_vars)
        argv = [self.binary, "--host", self.host, "--port", str(self.port), *launch.argv(), *self.extra_args]
        self._output.clear()
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as e:
            raise StartError(f"cannot run {self.binary!r}: {e}") from e
        self._proc = proc
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._pump, args=(proc,), name="llm-link-output", daemon=True)
        self._reader.start()
        return proc

    def _pump(self, proc: "subprocess.Popen[bytes]") -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._output.append(line)
            if self.on_output is not None:
                try:
                    self.on_output(line)
                except Exception:
                    pass
        proc.stdout.close()

    def _launch_and_verify(
        self,
        launch: LaunchConfig,
        old_instance_id: Optional[int],
        expect_provider: Optional[str],
        expect_model: Optional[str],
        rollback: bool = False,
    ) -> Health:
        self._emit("starting", provider=launch.provider, model=launch.model, rollback=rollback)
        proc = self._spawn(launch)
        health = self._wait_healthy(proc, old_instance_id)
        self._emit("verifying", instance_id=health.get("instance_id"), pid=health.get("pid"), rollback=rollback)
        expected: Dict[str, Any] = {}
        if expect_provider:
            expected["provider"] = canonical_provider(expect_provider)
        if expect_model:
            expected["model"] = expect_model
        _verify(expected, health, "start")
        return health

    def _wait_healthy(self, proc: "subprocess.Popen[bytes]", old_instance_id: Optional[int]) -> Health:
        deadline = time.monotonic() + self.start_timeout
        last_problem = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                self._join_reader()
                raise StartError(f"llm-link exited with code {code} before becoming healthy",
                                 exit_code=code, output=self.output)
            try:
                # short per-poll timeout: a live llm-link answers in milliseconds, and a
                # poll hanging on something else holding the port must not hide an exit
                h = self._request("GET", "/api/health", timeout=min(self.request_timeout, 0.5))
                if old_instance_id is not None and h.get("instance_id") == old_instance_id:
                    last_problem = f"still the old instance {old_instance_id}"
                elif self.check_pid and h.get("pid") not in (None, proc.pid):
                    last_problem = f"port {self.port} is answered by another process (pid {h.get('pid')})"
                elif h.get("status") not in (None, "ok"):
                    last_problem = f"status {h.get('status')!r}"
                else:
                    return h  # type: ignore[return-value]
            except ApiError as e:
                last_problem = str(e)
            if time.monotonic() >= deadline:
                raise StartError(
                    f"llm-link did not become healthy on {self.base_url} within {self.start_timeout:g}s "
                    f"({last_problem})",
                    output=self.output,
                )
            time.sleep(self.poll_interval)

    def _emit(self, status: str, **detail: Any) -> None:
        if self.on_status is not None:
            try:
                self.on_status(status, detail)
            except Exception:
                pass

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=1.0)

    def _terminate_process(self, timeout: Optional[float] = None) -> Optional[int]:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        wait = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._join_reader()
        self._proc = None
        _LIVE.discard(self)
        return proc.returncode


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def _verify(expected: Mapping[str, Any], actual: Mapping[str, Any], what: str) -> None:
    wrong = {k: v for k, v in expected.items() if v is not None and actual.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: expected {v!r}, got {actual.get(k)!r}" for k, v in wrong.items())
        raise VerificationError(f"after {what}, /api/health does not match ({detail})",
                                expected, {k: actual.get(k) for k in expected})

