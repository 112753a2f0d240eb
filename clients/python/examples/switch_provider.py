#!/usr/bin/env python3
"""Start llm-link, switch provider by restart (with rollback) and in-process.

Usage (keys come from the environment; nothing is printed that contains one):

    LLM_LINK_BIN=./target/debug/llm-link \
    ZHIPU_API_KEY=... DEEPSEEK_API_KEY=... \
    python examples/switch_provider.py

Without real keys, point both providers at any OpenAI-compatible server:

    python examples/switch_provider.py --provider openai-compatible \
        --base-url http://127.0.0.1:8000/v1 --model model-a \
        --to-provider openai-compatible --to-base-url http://127.0.0.1:8001/v1 --to-model model-b
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping

from llm_link_client import (
    LlmLinkError,
    LlmLinkManager,
    RestartError,
    ValidationError,
    key_env_for,
)


def show(status: str, detail: Mapping[str, Any]) -> None:
    labels = {
        "validating": "validating the API key...",
        "preparing": "preparing the new configuration...",
        "stopping": "stopping llm-link...",
        "starting": "starting llm-link...",
        "verifying": "verifying the new instance...",
        "rolling_back": "failed; restoring the previous configuration...",
        "success": "configuration updated",
        "failed": "configuration update failed",
    }
    print(f"  [{status}] {labels.get(status, status)}")


def key_for(kind: str, explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    var = key_env_for(kind)
    return os.environ.get(var) if var else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--provider", default="zhipu")
    ap.add_argument("--model")
    ap.add_argument("--base-url")
    ap.add_argument("--api-key", help="default: the provider's key variable")
    ap.add_argument("--to-provider", default="deepseek")
    ap.add_argument("--to-model")
    ap.add_argument("--to-base-url")
    ap.add_argument("--to-api-key", help="default: the provider's key variable")
    args = ap.parse_args()

    with LlmLinkManager(on_status=show) as mgr:
        h = mgr.start(args.provider, args.model, api_key=key_for(args.provider, args.api_key), base_url=args.base_url)
        print(f"llm-link on {mgr.base_url}: {h['provider']}/{h['model']} (instance {h['instance_id']})")

        try:
            h = mgr.update_config(args.to_provider, api_key=key_for(args.to_provider, args.to_api_key),
                                  model=args.to_model, base_url=args.to_base_url)
            print(f"restarted: {h['provider']}/{h['model']} (instance {h['instance_id']})")
        except ValidationError as e:
            print(f"key rejected, nothing changed: {e.message}")
        except RestartError as e:
            print(f"restart failed ({e.stage}); rolled back: {e.rolled_back}\n  {e.cause}")
            if not e.rolled_back:
                return 1

        # back to the first provider without a restart
        try:
            h = mgr.switch(args.provider, api_key=key_for(args.provider, args.api_key), model=args.model,
                           base_url=args.base_url)
            print(f"switched in-process: {h['provider']}/{h['model']} (same instance {h['instance_id']})")
        except LlmLinkError as e:
            print(f"in-process switch refused: {e}")

        print("config:", mgr.current_config())
        print("exit code:", mgr.stop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
