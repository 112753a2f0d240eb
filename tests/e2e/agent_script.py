"""The "coding agent" script the three mocks share (test_agents.py drives it).

Real agents (Claude Code, Codex) offer their own tools; when the mock sees
one of them offered and the last user text asks it to "list the files", it
answers with a call of that tool running ``ls``; once the conversation holds
the result of such a call it answers "The listing shows: <result>". Each mock
extracts the offered tool names, the last user text and the agent-tool
results from its own wire format and asks this module what to do; anything
else falls through to the mock's usual script (weather, hello).
"""

from __future__ import annotations

from typing import Any, Iterable

TRIGGER = "list the files"
LISTING_PREFIX = "The listing shows: "

# tool name -> the arguments the mock calls it with (Claude Code's Bash,
# Codex's exec_command).
AGENT_CALLS: dict[str, dict[str, Any]] = {
    "Bash": {"command": "ls", "description": "List the files"},
    "exec_command": {"cmd": "ls"},
}


def agent_call(offered: Iterable[str], last_user_text: str) -> tuple[str, dict[str, Any]] | None:
    """The (tool name, arguments) to call, or None when the script does not apply."""
    if TRIGGER not in last_user_text.lower():
        return None
    names = set(offered)
    for name, args in AGENT_CALLS.items():
        if name in names:
            return name, dict(args)
    return None


def listing_answer(results: list[str]) -> str:
    """The text answer once the conversation holds agent-tool results."""
    return LISTING_PREFIX + " ".join(r.strip() for r in results)
