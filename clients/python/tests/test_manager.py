"""LlmLinkManager against the real llm-link binary and two keyed mock upstreams."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from typing import Any, Dict, List, Mapping, Optional

import pytest

from conftest import KEY_A, KEY_B, KIND
from keyed_upstream import KeyedUpstream, gateway_chat
from llm_link_client import (
    ApiError,
    LaunchConfig,
    LlmLinkManager,
    RestartError,
    StartError,
    ValidationError,
    VerificationError,
    key_env_for,
)


def _raw_get(mgr: LlmLinkManager, path: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(mgr.base_url + path, timeout=10) as resp:
        return resp.read().decode()


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _assert_on_a(mgr: LlmLinkManager, upstream_a: KeyedUpstream) -> Dict[str, Any]:
    h = mgr.health()
    assert h["status"] == "ok"
    assert (h["provider"], h["model"]) == (KIND, "model-a")
    assert h["pid"] == mgr.pid
    before = len(upstream_a.calls("POST", "/v1/chat/completions"))
    answer = gateway_chat(mgr.base_url, "model-a")
    assert answer["choices"][0]["message"]["content"] == "hello from a"
    calls = upstream_a.calls("POST", "/v1/chat/completions")
    assert len(calls) == before + 1 and calls[-1]["auth"] == f"Bearer {KEY_A}"
    return dict(h)


# --------------------------------------------------------------- pure helpers


def test_launch_config_argv_env_and_repr_hide_the_key() -> None:
    lc = LaunchConfig.for_provider("zhipu", "glm-4-flash", api_key="secret-key", base_url=None)
    assert lc.argv() == ["--provider=zhipu", "--model=glm-4-flash"]
    assert lc.env_vars == {"ZHIPU_API_KEY": "secret-key"}
    assert "secret-key" not in repr(lc)
    lc2 = LaunchConfig({"provider": "openai-compatible", "model": "m", "base_url": "http://x/v1", "verbose": True,
                        "quiet": False})
    assert lc2.argv() == ["--provider=openai-compatible", "--model=m", "--base-url=http://x/v1", "--verbose"]
    assert key_env_for("openai-compatible") == "OPENAI_COMPATIBLE_API_KEY"
    assert key_env_for("kimi") == "MOONSHOT_API_KEY"
    assert key_env_for("ollama") is None
    assert LaunchConfig.for_provider("ollama", api_key="x").env_vars == {}


# ------------------------------------------------------------------ start/info


def test_start_reports_health_config_and_pid(manager: LlmLinkManager) -> None:
    h = manager.health()
    assert h["status"] == "ok"
    assert h["provider"] == KIND and h["model"] == "model-a"
    assert h["pid"] == manager.pid
    assert isinstance(h["instance_id"], int) and h["instance_id"] > 0
    cfg = manager.current_config()
    assert cfg["provider"] == KIND and cfg["model"] == "model-a"
    assert cfg["has_api_key"] is True and cfg["has_base_url"] is True
    assert KEY_A not in _raw_get(manager, "/api/config/current")
    assert manager.get_pid() == manager.pid
    assert manager.launch_config is not None and manager.launch_config.model == "model-a"


def test_start_twice_is_refused(manager: LlmLinkManager, upstream_a: KeyedUpstream) -> None:
    with pytest.raises(Exception, match="already running"):
        manager.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)


def test_start_failure_is_a_start_error_with_exit_code(binary: str) -> None:
    mgr = LlmLinkManager(binary=binary)
    own = f"http://127.0.0.1:{mgr.port}/v1"
    with pytest.raises(StartError) as ei:
        mgr.start(KIND, "model-x", api_key="k", base_url=own)
    assert ei.value.exit_code == 2
    assert any("own listen address" in line for line in ei.value.output), ei.value.output
    assert not mgr.is_running()


def test_missing_binary_is_a_start_error() -> None:
    mgr = LlmLinkManager(binary="/nonexistent/llm-link")
    with pytest.raises(StartError, match="cannot run"):
        mgr.start("ollama")


# ------------------------------------------------------------------- validate


def test_validate_key_good_and_bad(manager: LlmLinkManager, upstream_b: KeyedUpstream) -> None:
    good = manager.validate_key(KIND, KEY_B, upstream_b.base_url)
    assert good["status"] == "valid", good
    assert "model-b" in good["models"]
    assert upstream_b.calls("GET", "/v1/models")[-1]["auth"] == f"Bearer {KEY_B}"
    bad = manager.validate_key(KIND, "sk-wrong", upstream_b.base_url)
    assert bad["status"] == "invalid", bad
    assert bad["message"]


# -------------------------------------------------------------- restart flow


def test_update_config_restarts_onto_b_and_traffic_reaches_b(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    before = _assert_on_a(manager, upstream_a)
    port = manager.port
    h = manager.update_config(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
    assert h["instance_id"] != before["instance_id"]
    assert h["pid"] != before["pid"] and h["pid"] == manager.pid
    assert (h["provider"], h["model"]) == (KIND, "model-b")
    assert manager.port == port
    assert manager.health()["model"] == "model-b"
    cfg = manager.current_config()
    assert cfg["model"] == "model-b" and cfg["has_api_key"] is True
    a_chats = len(upstream_a.calls("POST", "/v1/chat/completions"))
    answer = gateway_chat(manager.base_url, "model-b")
    assert answer["choices"][0]["message"]["content"] == "hello from b"
    b_calls = upstream_b.calls("POST", "/v1/chat/completions")
    assert len(b_calls) == 1 and b_calls[0]["auth"] == f"Bearer {KEY_B}"
    assert b_calls[0]["body"]["model"] == "model-b"
    assert len(upstream_a.calls("POST", "/v1/chat/completions")) == a_chats
    # validation ran against B with B's key before the restart
    assert upstream_b.calls("GET", "/v1/models")[0]["auth"] == f"Bearer {KEY_B}"
    assert manager.launch_config is not None and manager.launch_config.model == "model-b"


def test_bad_key_raises_validation_error_and_leaves_a_untouched(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    before = manager.health()
    with pytest.raises(ValidationError) as ei:
        manager.update_config(KIND, api_key="sk-wrong", model="model-b", base_url=upstream_b.base_url)
    assert ei.value.provider == KIND
    after = _assert_on_a(manager, upstream_a)
    assert after["instance_id"] == before["instance_id"] and after["pid"] == before["pid"]
    assert upstream_b.calls("POST", "/v1/chat/completions") == []


class PortSquatter:
    """Occupies the manager's port while the new configuration starts, so the
    real llm-link fails to bind (exit 2), and frees it for the rollback."""

    def __init__(self, mgr: LlmLinkManager, model: str) -> None:
        self.mgr = mgr
        self.model = model
        self.sock: Optional[socket.socket] = None
        self.statuses: List[str] = []
        mgr.on_status = self

    def __call__(self, status: str, detail: Mapping[str, Any]) -> None:
        self.statuses.append(status)
        if status == "starting" and detail.get("model") == self.model and not detail.get("rollback"):
            self.sock = socket.socket()
            # llm-link's old connections may sit in TIME_WAIT on this port
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((self.mgr.host, self.mgr.port))
            self.sock.listen(1)
        elif status == "rolling_back" and self.sock is not None:
            self.sock.close()
            self.sock = None


def test_failed_start_of_b_rolls_back_to_a(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    before = manager.health()
    squatter = PortSquatter(manager, "model-b")
    with pytest.raises(RestartError) as ei:
        manager.update_config(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
    err = ei.value
    assert err.rolled_back is True and err.rollback_error is None
    assert err.stage == "start"
    assert isinstance(err.cause, StartError) and err.cause.exit_code == 2
    assert any("Address already in use" in line for line in err.cause.output), err.cause.output
    assert "rolled back" in str(err)
    assert squatter.statuses == ["validating", "preparing", "stopping", "starting", "rolling_back",
                                 "starting", "verifying", "failed"]
    after = _assert_on_a(manager, upstream_a)
    assert after["instance_id"] != before["instance_id"]  # A was restarted
    cfg = manager.current_config()
    assert cfg["provider"] == KIND and cfg["model"] == "model-a" and cfg["has_api_key"] is True
    assert manager.launch_config is not None and manager.launch_config.model == "model-a"
    assert upstream_b.calls("POST", "/v1/chat/completions") == []


def test_update_to_own_address_is_refused_before_anything_stops(manager: LlmLinkManager,
                                                                upstream_a: KeyedUpstream) -> None:
    before = manager.health()
    own = f"http://127.0.0.1:{manager.port}/v1"
    with pytest.raises(ApiError) as ei:
        manager.update_config(KIND, api_key=KEY_B, model="model-b", base_url=own, validate=False)
    assert ei.value.status == 400 and "own listen address" in ei.value.message
    assert manager.health()["instance_id"] == before["instance_id"]
    _assert_on_a(manager, upstream_a)


def test_unknown_provider_is_a_400_and_a_keeps_running(manager: LlmLinkManager, upstream_a: KeyedUpstream) -> None:
    before = manager.health()
    with pytest.raises(ApiError) as ei:
        manager.update_config("no-such-provider", api_key="k", model="m", validate=False)
    assert ei.value.status == 400
    assert "openai" in ei.value.message  # lists the known kinds
    assert manager.health()["instance_id"] == before["instance_id"]
    _assert_on_a(manager, upstream_a)


def test_hung_start_times_out_kills_and_rolls_back(wrapper: Dict[str, Any], upstream_a: KeyedUpstream) -> None:
    with LlmLinkManager(binary=wrapper["binary"], env=wrapper["env"], start_timeout=3.0, stop_timeout=3.0) as mgr:
        mgr.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)
        with pytest.raises(RestartError) as ei:
            mgr.update_config(KIND, api_key=KEY_A, model="model-hang", base_url=upstream_a.base_url, validate=False)
        assert ei.value.rolled_back and ei.value.stage == "start"
        assert isinstance(ei.value.cause, StartError) and ei.value.cause.exit_code is None
        assert "within" in str(ei.value.cause)
        _assert_on_a(mgr, upstream_a)


def test_wrong_model_after_restart_is_a_verification_failure_and_rolls_back(
    wrapper: Dict[str, Any], upstream_a: KeyedUpstream
) -> None:
    with LlmLinkManager(binary=wrapper["binary"], env=wrapper["env"]) as mgr:
        mgr.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)
        with pytest.raises(RestartError) as ei:
            mgr.update_config(KIND, api_key=KEY_A, model="model-lie", base_url=upstream_a.base_url, validate=False)
        err = ei.value
        assert err.rolled_back and err.stage == "verify"
        assert isinstance(err.cause, VerificationError)
        assert err.cause.expected["model"] == "model-lie" and err.cause.actual["model"] == "model-other"
        _assert_on_a(mgr, upstream_a)


def test_failed_rollback_is_reported_and_nothing_runs(wrapper: Dict[str, Any], upstream_a: KeyedUpstream,
                                                      upstream_b: KeyedUpstream) -> None:
    with LlmLinkManager(binary=wrapper["binary"], env=wrapper["env"]) as mgr:
        mgr.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)
        wrapper["flag"].write_text("fail")  # every start from now on exits 3
        with pytest.raises(RestartError) as ei:
            mgr.update_config(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
        err = ei.value
        assert err.rolled_back is False
        assert isinstance(err.cause, StartError) and err.cause.exit_code == 3
        assert isinstance(err.rollback_error, StartError) and err.rollback_error.exit_code == 3
        assert not mgr.is_running() and _port_closed(mgr.port)


# ------------------------------------------------------------ in-process switch


def test_switch_keeps_instance_and_changes_model(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    before = _assert_on_a(manager, upstream_a)
    h = manager.switch(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
    assert h["instance_id"] == before["instance_id"] and h["pid"] == before["pid"]
    assert (h["provider"], h["model"]) == (KIND, "model-b")
    answer = gateway_chat(manager.base_url, "model-b")
    assert answer["choices"][0]["message"]["content"] == "hello from b"
    assert upstream_b.calls("POST", "/v1/chat/completions")[-1]["auth"] == f"Bearer {KEY_B}"
    # the manager now restarts into B, not A
    assert manager.launch_config is not None and manager.launch_config.model == "model-b"
    h2 = manager.switch(KIND, api_key=KEY_A, model="model-a-large", base_url=upstream_a.base_url)
    assert h2["instance_id"] == before["instance_id"] and h2["model"] == "model-a-large"


def test_switch_with_validation_refuses_a_bad_key(manager: LlmLinkManager, upstream_a: KeyedUpstream,
                                                  upstream_b: KeyedUpstream) -> None:
    with pytest.raises(ValidationError):
        manager.switch(KIND, api_key="sk-wrong", model="model-b", base_url=upstream_b.base_url, validate=True)
    _assert_on_a(manager, upstream_a)


def test_switch_to_unknown_provider_is_a_400(manager: LlmLinkManager, upstream_a: KeyedUpstream) -> None:
    with pytest.raises(ApiError) as ei:
        manager.switch("no-such-provider", api_key="k", model="m")
    assert ei.value.status == 400
    _assert_on_a(manager, upstream_a)


def test_restart_after_switch_then_rollback_returns_to_switched_state(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    manager.switch(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
    PortSquatter(manager, "model-a-large")
    with pytest.raises(RestartError) as ei:
        manager.update_config(KIND, api_key=KEY_A, model="model-a-large", base_url=upstream_a.base_url)
    assert ei.value.rolled_back
    h = manager.health()
    assert h["model"] == "model-b"
    assert gateway_chat(manager.base_url, "model-b")["choices"][0]["message"]["content"] == "hello from b"


# ----------------------------------------------------------------------- stop


def test_stop_exits_zero_and_frees_the_port(manager: LlmLinkManager) -> None:
    port = manager.port
    assert manager.stop() == 0
    assert not manager.is_running()
    assert _port_closed(port)
    with pytest.raises(ApiError) as ei:
        manager.health()
    assert ei.value.status is None
    assert manager.stop() is None  # idempotent


def test_context_manager_stops_the_process(binary: str, upstream_a: KeyedUpstream) -> None:
    with LlmLinkManager(binary=binary) as mgr:
        mgr.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)
        proc = mgr.process
        assert proc is not None
    assert proc.returncode == 0
    assert not mgr.is_running()


def test_sigterm_fallback_when_shutdown_endpoint_unreachable(manager: LlmLinkManager) -> None:
    proc = manager.process
    assert proc is not None
    # point the manager at a closed port so the shutdown request fails; the
    # SIGTERM fallback must still stop the process gracefully (exit 0)
    real_port = manager.port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        manager.port = s.getsockname()[1]
    try:
        assert manager.stop(timeout=10) == 0
    finally:
        manager.port = real_port
    assert proc.returncode == 0


def test_gateway_error_bodies_are_json(manager: LlmLinkManager) -> None:
    # a sanity check of the HTTP helper: a 4xx body is parsed
    with pytest.raises(ApiError) as ei:
        manager._request("POST", "/api/config/validate", {"no": "provider"})
    assert ei.value.status is not None and 400 <= ei.value.status < 500
    json.dumps(ei.value.body)  # serialisable


def test_traffic_during_switch_all_succeeds_each_answer_from_one_provider(
    manager: LlmLinkManager, upstream_a: KeyedUpstream, upstream_b: KeyedUpstream
) -> None:
    answers: List[str] = []
    errors: List[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                # the gateway forwards any model name to the live provider
                answers.append(gateway_chat(manager.base_url, "model-a")["choices"][0]["message"]["content"])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(answers) < 20 and not errors:
            time.sleep(0.01)
        manager.switch(KIND, api_key=KEY_B, model="model-b", base_url=upstream_b.base_url)
        n = len(answers)
        while len(answers) < n + 20 and not errors:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert set(answers) <= {"hello from a", "hello from b"}
    assert answers[0] == "hello from a" and answers[-1] == "hello from b"
    assert all(c["auth"] == f"Bearer {KEY_B}" for c in upstream_b.calls("POST", "/v1/chat/completions"))
    assert all(c["auth"] == f"Bearer {KEY_A}" for c in upstream_a.calls("POST", "/v1/chat/completions"))
