"""Re-records tests/e2e/fixtures/agents/*.json from the real agents.

Not a test (pytest does not collect it). Needs the agents installed:

    BIN=$(scripts/agents-install) && python3 tests/e2e/record_agent_fixtures.py "$BIN"

OpenCode and Qwen Code (both speak Chat Completions) are not installed by
scripts/agents-install (no test drives them live; tests replay the fixtures):
`--install-extra` npm-installs them at the pinned versions below into the
same cache and links them into BIN. `--only opencode,qwen` records a subset;
an agent whose binary is missing is skipped with a note.

Each agent runs against agent_recorder.Recorder on an ephemeral port, with a
throw-away HOME / CODEX_HOME and working directory, and no network beyond
127.0.0.1. The recorded requests are stored verbatim (bodies included, huge
system prompts too: they are the real shape), with secret headers redacted
and transport headers (host, content-length, accept-encoding, ...) dropped.
"""

from __future__ import annotations

import argparse
import base64
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
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llm-link" / "agents"
# Pinned like scripts/agents-install pins Claude Code and Codex.
EXTRA_AGENTS = {"opencode": ("opencode-ai", os.environ.get("OPENCODE_VERSION", "1.18.33")),
                "qwen": ("@qwen-code/qwen-code", os.environ.get("QWEN_CODE_VERSION", "0.24.4"))}
# A 1x1 PNG for the image turns.
PIXEL_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def install_extra(bin_dir: str) -> None:
    """npm-installs OpenCode and Qwen Code (pinned) into the agents cache."""
    Path(bin_dir).mkdir(parents=True, exist_ok=True)
    for bin_name, (pkg, version) in EXTRA_AGENTS.items():
        d = CACHE / f"{pkg.replace('/', '+')}@{version}"
        exe = d / "node_modules" / ".bin" / bin_name
        if not (d / ".installed").exists() or not exe.exists():
            d.mkdir(parents=True, exist_ok=True)
            (d / "package.json").write_text('{"name":"llm-link-agent-%s","private":true}\n' % bin_name)
            env = dict(os.environ, npm_config_omit="")
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                            "--include=optional", "--foreground-scripts", "--save-exact",
                            f"{pkg}@{version}"], cwd=d, env=env, check=True, stdout=sys.stderr)
            home = tempfile.mkdtemp()
            got = subprocess.run([str(exe), "--version"], env=dict(os.environ, HOME=home),
                                 capture_output=True, text=True, check=True).stdout.strip()
            shutil.rmtree(home, ignore_errors=True)
            if version not in got:
                sys.exit(f"{bin_name} --version says {got!r}, wanted {version}")
            (d / ".installed").write_text(got + "\n")
        link = Path(bin_dir, bin_name)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(exe)


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


def run_opencode(bin_dir: str, scenario: str) -> list[dict]:
    """`opencode run` with an @ai-sdk/openai-compatible provider at the recorder."""
    home, cwd = tempfile.mkdtemp(prefix="opencode-home-"), tempfile.mkdtemp(prefix="opencode-cwd-")
    try:
        hello = Path(cwd, "hello.txt")
        hello.write_text("hello from a file\n")
        Path(cwd, "pixel.png").write_bytes(PIXEL_PNG)
        rec = Recorder("tool" if scenario == "tool" else "plain", tool_file=str(hello)).start()
        model = {"name": "Test Model", "tool_call": True, "attachment": True,
                 "modalities": {"input": ["text", "image"], "output": ["text"]}}
        cfg = {"$schema": "https://opencode.ai/config.json",
               "provider": {"llmlink": {"npm": "@ai-sdk/openai-compatible", "name": "llm-link",
                                        "options": {"baseURL": rec.base_url + "/v1",
                                                    "apiKey": "{env:LLM_LINK_TEST_KEY}"},
                                        "models": {"test-model": model}}},
               "model": "llmlink/test-model", "small_model": "llmlink/test-model",
               "autoupdate": False, "share": "disabled"}
        Path(cwd, "opencode.json").write_text(json.dumps(cfg))
        env = {"PATH": os.environ["PATH"], "HOME": home, "TERM": "dumb", "LLM_LINK_TEST_KEY": "test",
               "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
               "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1"}
        args = {"plain": ["say hi"], "tool": ["read hello.txt and tell me what it says"],
                "image": ["-f", "pixel.png", "--", "what is in this image?"]}[scenario]
        p = subprocess.run([f"{bin_dir}/opencode", "run", *args], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rec.stop()
        print(f"opencode {scenario}: rc={p.returncode} out={p.stdout.strip()!r}", file=sys.stderr)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
        return rec.requests
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


def run_qwen(bin_dir: str, scenario: str) -> list[dict]:
    """`qwen -p` with the OpenAI-compatible env at the recorder."""
    home, cwd = tempfile.mkdtemp(prefix="qwen-home-"), tempfile.mkdtemp(prefix="qwen-cwd-")
    try:
        hello = Path(cwd, "hello.txt")
        hello.write_text("hello from a file\n")
        Path(cwd, "pixel.png").write_bytes(PIXEL_PNG)
        rec = Recorder("tool" if scenario == "tool" else "plain", tool_file=str(hello)).start()
        # Qwen Code decides image support from the model name: a -vl model
        # gets the picture inline (as JPEG), "test-model" a refusal text.
        env = {"PATH": os.environ["PATH"], "HOME": home, "TERM": "dumb",
               "OPENAI_BASE_URL": rec.base_url + "/v1", "OPENAI_API_KEY": "test",
               "OPENAI_MODEL": "qwen3-vl-plus" if scenario == "image" else "test-model"}
        prompt = {"plain": "say hi", "tool": "read hello.txt and tell me what it says",
                  "image": "what is in this image? @pixel.png"}[scenario]
        p = subprocess.run([f"{bin_dir}/qwen", "--auth-type", "openai", "-p", prompt], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rec.stop()
        print(f"qwen {scenario}: rc={p.returncode} out={p.stdout.strip()!r}", file=sys.stderr)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
        return rec.requests
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


# ------------------------------------------------------------------- Zed
# Zed is a desktop app (no headless mode to record here), so its fixture is
# built from its public source, zed-industries/zed:
#   crates/ollama/src/ollama.rs -- ChatRequest {model, messages, stream,
#     keep_alive, options {num_ctx, num_predict, stop, temperature, top_p},
#     tools, think}; ChatMessage tagged by "role": assistant {content,
#     tool_calls (always present), images (omitted when none), thinking},
#     user {content, images?}, system {content}, tool {tool_name, content};
#     OllamaToolCall = {"function": {name, arguments: <object>}} (no ids);
#     tools = {"type": "function", "function": {name, description, parameters}};
#     GET /api/tags, then POST /api/show {"model"} per model.
#   crates/language_models/src/provider/ollama.rs (to_ollama_request) --
#     stream: true, keep_alive -1 by default, num_ctx = the model's
#     max_tokens, temperature defaults to 1.0, think = supports_thinking &&
#     thinking_allowed, images = the image's base64 source (no data: URL)
#     only when the model supports vision, a user message's tool results
#     become "tool" messages before the rest of it.
#   crates/agent/src/tools/read_file_tool.rs -- read_file {path, start_line,
#     end_line}, its result numbered like `cat -n`.
# The names and shapes come from there; the texts are short stand-ins.
ZED_MODEL = "qwen3:latest"
ZED_SYSTEM = ("You are a highly skilled software engineer with extensive knowledge in many "
              "programming languages, frameworks, design patterns, and best practices.")
ZED_READ_FILE = {"type": "function", "function": {
    "name": "read_file",
    "description": "Reads the content of the given file in the project.",
    "parameters": {"type": "object", "properties": {
        "path": {"type": "string", "description": "The relative path of the file to read."},
        "start_line": {"type": ["integer", "null"], "format": "uint32", "minimum": 0,
                       "description": "Optional line number to start reading on (1-based index)"},
        "end_line": {"type": ["integer", "null"], "format": "uint32", "minimum": 0,
                     "description": "Optional line number to end reading on (1-based index, inclusive)"}},
        "required": ["path"], "additionalProperties": False}}}
ZED_TERMINAL = {"type": "function", "function": {
    "name": "terminal",
    "description": "Executes a shell one-liner and returns the combined output.",
    "parameters": {"type": "object", "properties": {
        "command": {"type": "string", "description": "The one-liner command to execute."},
        "cd": {"type": "string", "description": "Working directory for the command."}},
        "required": ["command", "cd"], "additionalProperties": False}}}


def zed_fixtures() -> dict[str, list[dict]]:
    headers = {"Content-Type": "application/json"}

    def chat(messages: list[dict], think: bool | None) -> dict:
        return {"method": "POST", "path": "/api/chat", "headers": headers, "body": {
            "model": ZED_MODEL, "messages": messages, "stream": True, "keep_alive": -1,
            "options": {"num_ctx": 16384, "num_predict": None, "stop": [], "temperature": 1.0, "top_p": None},
            "tools": [ZED_READ_FILE, ZED_TERMINAL], "think": think}}

    discovery = [{"method": "GET", "path": "/api/tags", "headers": {"Accept": "application/json"}, "body": None},
                 {"method": "POST", "path": "/api/show", "headers": headers, "body": {"model": ZED_MODEL}}]
    system = {"role": "system", "content": ZED_SYSTEM}
    ask = {"role": "user", "content": "What does project/hello.txt say?"}
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "read_file", "arguments": {"path": "project/hello.txt"}}}],
            "thinking": "The user wants the file's content; read it."}
    result = {"role": "tool", "tool_name": "read_file", "content": "     1\thello from a file\n"}
    image = {"role": "user", "content": "What is in this image?",
             "images": [base64.b64encode(PIXEL_PNG).decode()]}
    answered = {"role": "assistant", "content": "The file says: hello from a file", "tool_calls": [],
                "thinking": None}
    return {
        "zed_tool.json": [*discovery, chat([system, ask], True), chat([system, ask, call, result], True)],
        # A later turn of the same thread: history with the finished tool
        # round, then a user message carrying an image.
        "zed_image.json": [chat([system, ask, call, result, answered, image], False)],
    }


def save(name: str, requests: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps([fixture_view(r) for r in requests], indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(HERE.parent.parent)}: "
          + ", ".join(f"{r['method']} {r['path']}" for r in requests), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin_dir", nargs="?", default=str(CACHE / "bin"))
    ap.add_argument("--only", default="claude,codex,opencode,qwen,zed",
                    help="comma-separated agents to record")
    ap.add_argument("--install-extra", action="store_true",
                    help="npm-install OpenCode and Qwen Code (pinned) first")
    a = ap.parse_args()
    bin_dir, only = a.bin_dir, set(a.only.split(","))
    if a.install_extra:
        install_extra(bin_dir)

    def have(name: str) -> bool:
        if Path(bin_dir, name).exists():
            return True
        print(f"skipping {name}: {bin_dir}/{name} not found"
              + (" (use --install-extra)" if name in EXTRA_AGENTS else ""), file=sys.stderr)
        return False

    if "claude" in only and have("claude"):
        save("claude_code_plain.json", run_claude(bin_dir, "plain"))
        save("claude_code_tool.json", run_claude(bin_dir, "tool"))
    if "codex" in only and have("codex"):
        save("codex_plain.json", run_codex(bin_dir, "plain"))
        save("codex_tool.json", run_codex(bin_dir, "tool"))
        # supports_websockets = true: the prewarm upgrade (GET) is refused with
        # 426, Codex falls back to HTTP for the rest of the session at once.
        save("codex_ws_fallback.json", run_codex(bin_dir, "plain", "supports_websockets = true\n", 426))
    if "opencode" in only and have("opencode"):
        for scenario in ("plain", "tool", "image"):
            save(f"opencode_{scenario}.json", run_opencode(bin_dir, scenario))
    if "qwen" in only and have("qwen"):
        for scenario in ("plain", "tool", "image"):
            save(f"qwen_code_{scenario}.json", run_qwen(bin_dir, scenario))
    if "zed" in only:
        for name, reqs in zed_fixtures().items():
            save(name, reqs)


if __name__ == "__main__":
    main()
