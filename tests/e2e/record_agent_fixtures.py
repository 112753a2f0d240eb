"""Re-records tests/e2e/fixtures/agents/*.json from the real agents.

Not a test (pytest does not collect it). Needs the agents installed:

    BIN=$(scripts/agents-install) && python3 tests/e2e/record_agent_fixtures.py "$BIN"

Each agent runs against agent_recorder.Recorder on an ephemeral port, with a
throw-away HOME / CODEX_HOME and working directory, and no network beyond
127.0.0.1. The recorded requests are stored verbatim (bodies included, huge
system prompts too: they are the real shape), with secret headers redacted
and transport headers (host, content-length, accept-encoding, ...) dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from agent_recorder import Recorder, fixture_view  # noqa: E402

OUT = HERE / "fixtures" / "agents"
TIMEOUT = 180


def codex_config(base_url: str, extra_provider: str = "") -> str:
    return f'''model = "test-model"
model_provider = "llmlink"

[model_providers.llmlink]
name = "llm-link"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "LLM_LINK_TEST_KEY"
{extra_provider}'''


def run_claude(bin_dir: str, scenario: str) -> list[dict]:
    home, cwd = tempfile.mkdtemp(prefix="claude-home-"), tempfile.mkdtemp(prefix="claude-cwd-")
    try:
        hello = Path(cwd, "hello.txt")
        hello.write_text("hello from a file\n")
        rec = Recorder(scenario, tool_file=str(hello)).start()
        env = {"PATH": os.environ["PATH"], "HOME": home, "TERM": "dumb",
               "ANTHROPIC_BASE_URL": rec.base_url, "ANTHROPIC_AUTH_TOKEN": "test",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        prompt = "say hi" if scenario == "plain" else "read hello.txt and tell me what it says"
        p = subprocess.run([f"{bin_dir}/claude", "-p", prompt], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rec.stop()
        print(f"claude {scenario}: rc={p.returncode} out={p.stdout.strip()!r}", file=sys.stderr)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
        return rec.requests
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


def run_codex(bin_dir: str, scenario: str, extra_provider: str = "", websocket_status: int = 426) -> list[dict]:
    home, cwd = tempfile.mkdtemp(prefix="codex-home-"), tempfile.mkdtemp(prefix="codex-cwd-")
    try:
        Path(cwd, "hello.txt").write_text("hello from a file\n")
        rec = Recorder(scenario, websocket_status=websocket_status).start()
        Path(home, "config.toml").write_text(codex_config(rec.base_url, extra_provider))
        env = {"PATH": os.environ["PATH"], "HOME": home, "CODEX_HOME": home, "TERM": "dumb",
               "LLM_LINK_TEST_KEY": "test"}
        prompt = "say hi" if scenario == "plain" else "run ls and tell me what you see"
        p = subprocess.run([f"{bin_dir}/codex", "exec", "--skip-git-repo-check", prompt], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rec.stop()
        print(f"codex {scenario}: rc={p.returncode} out={p.stdout.strip()!r}", file=sys.stderr)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
        return rec.requests
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


def save(name: str, requests: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps([fixture_view(r) for r in requests], indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(HERE.parent.parent)}: "
          + ", ".join(f"{r['method']} {r['path']}" for r in requests), file=sys.stderr)


def main() -> None:
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llm-link" / "agents" / "bin")
    save("claude_code_plain.json", run_claude(bin_dir, "plain"))
    save("claude_code_tool.json", run_claude(bin_dir, "tool"))
    save("codex_plain.json", run_codex(bin_dir, "plain"))
    save("codex_tool.json", run_codex(bin_dir, "tool"))
    # supports_websockets = true: the prewarm upgrade (GET) is refused with
    # 426, Codex falls back to HTTP for the rest of the session at once.
    save("codex_ws_fallback.json", run_codex(bin_dir, "plain", "supports_websockets = true\n", 426))


if __name__ == "__main__":
    main()
