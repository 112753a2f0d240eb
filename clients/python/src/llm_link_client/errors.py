"""Typed errors raised by :class:`llm_link_client.LlmLinkManager`.

Every error derives from :class:`LlmLinkError`, so a host can catch that one
type and still branch on the subclass to tell the user what went wrong.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

__all__ = [
    "LlmLinkError",
    "ApiError",
    "ValidationError",
    "StartError",
    "VerificationError",
    "RestartError",
]


class LlmLinkError(Exception):
    """Base class of every error this package raises."""


class ApiError(LlmLinkError):
    """An llm-link HTTP endpoint could not be reached or answered an error.

    ``status`` is the HTTP status, or ``None`` when no answer came at all
    (connection refused, timeout). ``body`` is the parsed JSON body when
    there was one, else the raw text.
    """

    def __init__(self, method: str, path: str, status: Optional[int], message: str, body: Any = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        where = f"{method} {path}"
        prefix = f"{where} -> HTTP {status}" if status is not None else f"{where} failed"
        super().__init__(f"{prefix}: {message}")
        self.message = message


class ValidationError(LlmLinkError):
    """The upstream refused the key (``POST /api/config/validate`` said invalid)."""

    def __init__(self, provider: str, message: str, models: Optional[Sequence[str]] = None) -> None:
        self.provider = provider
        self.message = message
        self.models: List[str] = list(models or [])
        super().__init__(f"API key for provider `{provider}` is invalid: {message}")


class StartError(LlmLinkError):
    """llm-link could not be started or did not become healthy in time.

    ``exit_code`` is set when the process exited by itself (for example 2 for
    a configuration error); it is ``None`` for a spawn failure or a timeout.
    ``output`` holds the last lines the process printed (stdout and stderr).
    """

    def __init__(self, message: str, exit_code: Optional[int] = None, output: Sequence[str] = ()) -> None:
        self.exit_code = exit_code
        self.output: List[str] = list(output)
        self.message = message
        detail = message
        tail = [line for line in self.output if line.strip()][-5:]
        if tail:
            detail += "\n  llm-link output (last lines):\n    " + "\n    ".join(tail)
        super().__init__(detail)


class VerificationError(LlmLinkError):
    """llm-link is up, but ``/api/health`` does not show what was asked for.

    ``expected`` and ``actual`` map field names (``provider``, ``model``,
    ``instance_id``) to values.
    """

    def __init__(self, message: str, expected: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
        self.expected = dict(expected)
        self.actual = dict(actual)
        self.message = message
        super().__init__(message)


class RestartError(LlmLinkError):
    """The restart flow of :meth:`LlmLinkManager.update_config` failed.

    ``stage`` names the step that failed (``"start"`` or ``"verify"``),
    ``cause`` is the underlying error (also chained as ``__cause__``),
    ``rolled_back`` tells whether the previous configuration was restarted
    and verified healthy, and ``rollback_error`` is the error of a failed
    rollback (``None`` when it worked). When ``rolled_back`` is false no
    llm-link process is running.
    """

    def __init__(
        self,
        stage: str,
        cause: BaseException,
        rolled_back: bool,
        rollback_error: Optional[BaseException] = None,
    ) -> None:
        self.stage = stage
        self.cause = cause
        self.rolled_back = rolled_back
        self.rollback_error = rollback_error
        if rolled_back:
            outcome = "rolled back to the previous configuration, which is healthy again"
        else:
            outcome = f"rollback to the previous configuration failed too ({rollback_error}); llm-link is not running"
        super().__init__(f"restart with the new configuration failed at {stage}: {cause}; {outcome}")
