"""llm-link-client: the host side of llm-link's hot-update protocol.

Start llm-link, change its provider/key/model by restart (with verification
and rollback) or in-process, and stop it::

    from llm_link_client import LlmLinkManager, RestartError

    with LlmLinkManager() as mgr:
        mgr.start("zhipu", "glm-4-flash", api_key="...")
        try:
            mgr.update_config("deepseek", api_key="...", model="deepseek-chat")
        except RestartError as e:
            print("kept the old provider" if e.rolled_back else "llm-link is down", e)
"""

from .errors import (
    ApiError,
    LlmLinkError,
    RestartError,
    StartError,
    ValidationError,
    VerificationError,
)
from .manager import (
    PROVIDER_KEY_ENV,
    ConfigUpdate,
    CurrentConfig,
    Health,
    LaunchConfig,
    LlmLinkManager,
    ValidationResult,
    canonical_provider,
    default_binary,
    find_free_port,
    key_env_for,
)

__version__ = "0.1.0"

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
    "LlmLinkError",
    "ApiError",
    "ValidationError",
    "StartError",
    "VerificationError",
    "RestartError",
]
