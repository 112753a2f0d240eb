"""The real coding agents through the built llm-link, against each upstream format.

``claude -p`` (Claude Code, Anthropic Messages at ``/v1/messages?beta=true``)
and ``codex exec`` (Codex, Responses at ``/v1/responses``) run as
subprocesses against ``matrix_gateway``, whose models lead to the OpenAI-chat
(``mock-model``), Anthropic (``claude-mock``) and Ollama (``llama-mock``)
mocks. For each agent x upstream:

* plain: the prompt "say hi" -> the agent prints the mock's "Hello from mock"
  and exits 0; the upstream got the agent's request translated into its own
  format (system prompt, tools);
* tool round: "list the files" -> the mock calls the agent's shell tool
  (``Bash {"command": "ls"}`` / ``exec_command {"cmd": "ls"}``, see
  agent_script.py); the agent runs ``ls`` in its temporary working dir, which
  holds a uniquely named file, sends the output back, and the mock answers
  "The listing shows: <output>"; the agent prints it, so the file name in
  stdout proves the tool ran; the second upstream request carries the tool
  call and its result in the upstream's native shape.

The agents come from ``scripts/agents-install`` (pinned versions, cached);
``scripts/test`` exports its bin dir as ``LLM_LINK_AGENTS_BIN``. Run by hand
without it, these tests skip. Each agent gets a throw-away HOME (and
CODEX_HOME), a timeout, and its own process group, which is killed on timeout.
Both are configured with what ``llm-link apps show claude-code`` / ``codex``
prints (the env vars; the ``config.toml``), so those snippets are tested too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent_script import AGENT_CALLS, LISTING_PREFIX
from conftest import CLIENT_KEY, binary_path
from mock_upstream import HELLO_TEXT
from multi import Upstream

if TYPE_CHECKING:
    from conftest import Gateway

AGENTS_BIN = os.environ.get("LLM_LINK_AGENTS_BIN")
AGENT_TIMEOUT_S = 120.0

pytestmark = pytest.mark.skipif(
    not AGENTS_BIN,
    reason="LLM_LINK_AGENTS_BIN is unset: run `export LLM_LINK_AGENTS_BIN=$(scripts/agents-install)` "
           "(scripts/test does this) to run the real Claude Code and Codex")

# Env vars of the developer's shell that would point an agent elsewhere.
_AGENT_ENV_DROP = re.compile(r"^(ANTHROPIC_|CLAUDE_|CODEX_|OPENAI_|LLM_LINK_)")


def agent_bin(name: str) -> str:
    assert AGENTS_BIN
    p = Path(AGENTS_BIN) / name
    if not (p.exists() and os.access(p, os.X_OK)):
        pytest.fail(f"{p} is missing although LLM_LINK_AGENTS_BIN={AGENTS_BIN}: run scripts/agents-install",
                    pytrace=False)
    return str(p)


@dataclass
class AgentRun:
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool

    def report(self) -> str:
        state = f"timed out after {AGENT_TIMEOUT_S:.0f}s" if self.timed_out else f"exit code {self.returncode}"
        return (f"\n$ {' '.join(self.argv)}\n({state})\n--- agent stdout ---\n{self.stdout}"
                f"\n--- agent stderr ---\n{self.stderr[-6000:]}")


def run_agent(argv: list[str], env: dict[str, str], cwd: Path) -> AgentRun:
    """Runs one agent in its own process group; on timeout that group (and only it) is killed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=AGENT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return AgentRun(argv, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                    timed_out)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _AGENT_ENV_DROP.match(k)}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share"),
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


def apps_show(app: str, gw: "Gateway", model: str) -> str:
    """What `llm-link apps show APP` prints for this gateway, model and key."""
    r = subprocess.run([str(binary_path()), "apps", "show", app, "--url", gw.url, "--model", model,
                        "--key", CLIENT_KEY], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"llm-link apps show {app} failed ({r.returncode}): {r.stderr}"
    return r.stdout


def run_claude(gw: "Gateway", model: str, prompt: str, tmp_path: Path, cwd: Path) -> AgentRun:
    home = tmp_path / "claude-home"
    home.mkdir()
    env = base_env(home)
    # The environment `llm-link apps show claude-code` prints (base URL, key, models) ...
    printed = dict(re.findall(r"^export (\w+)=(.*)$", apps_show("claude-code", gw, model), re.M))
    assert printed.get("ANTHROPIC_BASE_URL") == gw.url and printed.get("ANTHROPIC_MODEL") == model, printed
    env.update(printed)
    # ... plus no side traffic (telemetry, update checks) and no retries: an
    # error is the test's answer, not a reason to wait.
    env.update({"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"})
    # -p mode runs a read-only `ls` without asking; --allowedTools makes that
    # explicit without granting anything more.
    return run_agent([agent_bin("claude"), "-p", prompt, "--allowedTools", "Bash(ls)"], env, cwd)


def run_codex(gw: "Gateway", model: str, prompt: str, tmp_path: Path, cwd: Path) -> AgentRun:
    home = tmp_path / "codex-home"
    home.mkdir()
    config = apps_show("codex", gw, model)
    (home / "config.toml").write_text(config, encoding="utf-8")
    m = re.search(r'^env_key\s*=\s*"([^"]+)"', config, re.M)
    assert m, f"no env_key in the printed Codex config:\n{config}"
    provider = re.search(r"^\[model_providers\.([^\]]+)\]", config, re.M)
    assert provider, f"no [model_providers.X] table in the printed Codex config:\n{config}"
    env = base_env(home)
    env.update({"CODEX_HOME": str(home), m.group(1): CLIENT_KEY})
    # Fail fast instead of Codex's default retries with back-off (command-line
    # overrides; the config file itself is exactly what llm-link printed).
    p = provider.group(1)
    fast = ["-c", f"model_providers.{p}.request_max_retries=0", "-c", f"model_providers.{p}.stream_max_retries=0"]
    return run_agent([agent_bin("codex"), "exec", *fast, "--skip-git-repo-check", "--sandbox", "read-only",
                      prompt], env, cwd)


RUNNERS = {"claude": run_claude, "codex": run_codex}
# The agent's shell tool the mock calls (agent_script.AGENT_CALLS).
SHELL_TOOL = {"claude": "Bash", "codex": "exec_command"}


def explain(upstream: Upstream) -> str:
    lines = [f"--- requests the {upstream.kind} mock received ---"]
    for r in upstream.mock.requests:
        lines.append(f"{r.method} {r.path} -> {r.status}: {r.response[:600]!r}")
        lines.append(f"   body: {r.raw_body[:2000]!r}")
    return "\n".join(lines)


def chat_bodies(upstream: Upstream, n: int, ctx: str) -> list[dict[str, Any]]:
    """The upstream got exactly ``n`` chat requests (no agent retries), each answered 200."""
    calls = upstream.chat_calls()
    assert len(calls) == n and len(upstream.mock.requests) == n, (
        f"expected {n} {upstream.chat_path} request(s) at the {upstream.kind} mock, got "
        f"{[(r.method, r.path, r.status) for r in upstream.mock.requests]}{ctx}")
    bad = [(r.status, r.response[:300]) for r in calls if r.status != 200]
    assert not bad, f"the {upstream.kind} mock refused the gateway's request: {bad}{ctx}"
    return [r.body for r in calls]


def assert_agent_ok(run: AgentRun, ctx: str) -> None:
    assert not run.timed_out and run.returncode == 0, f"the agent failed{ctx}"


@pytest.fixture(params=["claude", "codex"])
def agent(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def check_translated_request(agent: str, upstream: Upstream, body: dict[str, Any], prompt: str,
                             workdir: Path, ctx: str) -> None:
    """The agent's first request, as it reached the upstream in that upstream's own shape."""
    tools = {name: schema for name, _, schema in upstream.tool_defs(body)}
    if agent == "claude":
        # Claude Code: a system prompt, the prompt in the first user message,
        # and mid-conversation `system` messages (its environment block).
        assert "Claude agent" in upstream.system(body), ctx
        assert prompt in upstream.user_text(body), ctx
        msgs = upstream.messages(body)
        first_user = next(i for i, m in enumerate(msgs) if m.get("role") == "user")
        env = [m for m in msgs[first_user + 1:] if m.get("role") == "system"
               and "# Environment" in multi_text(m.get("content"))]
        assert env and str(workdir) in multi_text(env[0].get("content")), (
            f"Claude Code's mid-conversation system message did not arrive as a system message after "
            f"the first user message: roles {[m.get('role') for m in msgs]}{ctx}")
        if upstream.kind == "anthropic":
            # Anthropic upstream: forwarded as Claude Code sent it, betas included.
            req = upstream.last_chat()
            assert "claude-code-20250219" in (req.header("anthropic-beta") or ""), req.headers
            assert body.get("output_config") and body.get("thinking"), ctx
        assert {"Bash", "Read", "Write"} <= set(tools), f"tools: {sorted(tools)}{ctx}"
        assert "command" in tools["Bash"]["properties"], ctx
    else:
        # Codex: its base instructions (a developer input item) became the
        # system prompt; tools are plain functions (the multi-agent namespace
        # flattened, the hosted web_search tool dropped).
        assert "You are a coding agent running in the Codex CLI" in upstream.system(body), ctx
        assert prompt in upstream.user_text(body), ctx
        assert "exec_command" in tools and "cmd" in tools["exec_command"]["properties"], (
            f"tools: {sorted(tools)}{ctx}")
        assert any(name.startswith("multi_agent_v1__") for name in tools), f"tools: {sorted(tools)}{ctx}"
        assert "web_search" not in tools, ctx
    upstream.assert_auth()


def multi_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def test_plain_answer(agent: str, upstream: Upstream, matrix_gateway: "Gateway", tmp_path: Path,
                      workdir: Path) -> None:
    prompt = "say hi"
    run = RUNNERS[agent](matrix_gateway, upstream.model, prompt, tmp_path, workdir)
    ctx = run.report() + "\n" + explain(upstream)
    assert_agent_ok(run, ctx)
    assert HELLO_TEXT in run.stdout, f"the agent did not print the mock's answer{ctx}"
    [body] = chat_bodies(upstream, 1, ctx)
    check_translated_request(agent, upstream, body, prompt, workdir, ctx)


def test_tool_round(agent: str, upstream: Upstream, matrix_gateway: "Gateway", tmp_path: Path,
                    workdir: Path) -> None:
    # A file only the agent's `ls` can see: its name in the final answer
    # proves the tool ran and its output made the round trip.
    secret = f"only-ls-sees-{uuid.uuid4().hex[:12]}.txt"
    (workdir / secret).write_text("x\n", encoding="utf-8")
    prompt = "Please list the files here."
    run = RUNNERS[agent](matrix_gateway, upstream.model, prompt, tmp_path, workdir)
    ctx = run.report() + "\n" + explain(upstream)
    assert_agent_ok(run, ctx)
    assert LISTING_PREFIX.strip() in run.stdout and secret in run.stdout, (
        f"the agent did not print the mock's answer quoting the tool output{ctx}")
    first, second = chat_bodies(upstream, 2, ctx)
    check_translated_request(agent, upstream, first, prompt, workdir, ctx)
    assert not upstream.tool_results(first), ctx

    # The second request: the agent's tool call and its result, in the
    # upstream's native shape (OpenAI tool_calls + tool message, Anthropic
    # tool_use + tool_result blocks, Ollama tool_calls + tool message).
    tool = SHELL_TOOL[agent]
    calls = upstream.tool_calls(second)
    assert [(name, args) for _, name, args in calls] == [(tool, AGENT_CALLS[tool])], f"tool calls: {calls}{ctx}"
    results = upstream.tool_results(second)
    assert len(results) == 1 and secret in results[0][1], f"tool results: {results}{ctx}"
    if upstream.kind == "ollama":
        tool_msgs = [m for m in upstream.messages(second) if m.get("role") == "tool"]
        assert tool_msgs[0].get("tool_name") == tool, ctx
    else:
        assert results[0][0] == calls[0][0], f"the result answers {results[0][0]}, the call was {calls[0][0]}{ctx}"
    # ... right after the assistant turn that made the call.
    msgs = upstream.messages(second)
    i = next(i for i, m in enumerate(msgs) if m.get("role") == "assistant")
    after = msgs[i + 1] if i + 1 < len(msgs) else {}
    if upstream.kind == "anthropic":
        assert after.get("role") == "user" and after["content"][0].get("type") == "tool_result", ctx
    else:
        assert after.get("role") == "tool", ctx
