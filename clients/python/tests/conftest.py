"""Fixtures: the real llm-link binary, two keyed mock upstreams, a manager on A."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from keyed_upstream import KeyedUpstream
from llm_link_client import LlmLinkManager

REPO = Path(__file__).resolve().parents[3]
KEY_A = "sk-test-aaaa"
KEY_B = "sk-test-bbbb"
KIND = "openai-compatible"


@pytest.fixture(scope="session")
def binary() -> str:
    path = os.environ.get("LLM_LINK_BIN") or str(REPO / "target" / "debug" / "llm-link")
    if not os.access(path, os.X_OK):
        pytest.fail(f"llm-link binary not found at {path}; run `cargo build` or set LLM_LINK_BIN", pytrace=False)
    return path


@pytest.fixture
def upstream_a() -> Iterator[KeyedUpstream]:
    up = KeyedUpstream("a", KEY_A, ["model-a", "model-a-large"]).start()
    yield up
    up.stop()


@pytest.fixture
def upstream_b() -> Iterator[KeyedUpstream]:
    up = KeyedUpstream("b", KEY_B, ["model-b"]).start()
    yield up
    up.stop()


@pytest.fixture
def manager(binary: str, upstream_a: KeyedUpstream) -> Iterator[LlmLinkManager]:
    mgr = LlmLinkManager(binary=binary, start_timeout=20.0)
    mgr.start(KIND, "model-a", api_key=KEY_A, base_url=upstream_a.base_url)
    yield mgr
    mgr.close()


WRAPPER = r"""#!/usr/bin/env bash
# Test wrapper around the real llm-link: fails every start while $FLAG_FILE
# exists, hangs for --model=model-hang, and starts model "model-other" when
# asked for --model=model-lie. Always execs so the pid stays the same.
if [ -n "$FLAG_FILE" ] && [ -e "$FLAG_FILE" ]; then echo "wrapper: forced start failure" >&2; exit 3; fi
args=()
for a in "$@"; do
  case "$a" in
    --model=model-hang) exec sleep 600 ;;
    --model=model-lie) args+=("--model=model-other") ;;
    *) args+=("$a") ;;
  esac
done
exec "$REAL_LLM_LINK" "${args[@]}"
"""


@pytest.fixture
def wrapper(tmp_path: Path, binary: str) -> Dict[str, Any]:
    script = tmp_path / "llm-link-wrapper"
    script.write_text(WRAPPER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    flag = tmp_path / "fail-all"
    return {"binary": str(script), "flag": flag, "env": {"REAL_LLM_LINK": binary, "FLAG_FILE": str(flag)}}

