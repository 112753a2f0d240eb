"""The soak driver of bench/soak (issue 17 item 6): mixed traffic against a
running llm-link for a bounded time, while sampling its RSS and open file
descriptors; then accounts for every request against the usage rows.

Stdlib only. Traffic, from several threads at once: OpenAI chat (plain and
streamed), Anthropic messages (plain and streamed), Ollama chat (streamed),
requests with tools, requests for a model whose provider is down (upstream
errors), streams the client abandons half way (client disconnects), and
every few seconds an admin edit (a provider created, changed and deleted
through the admin API).

Usage: soak.py BASE_URL ADMIN_TOKEN PID SECONDS THREADS OUT_JSON
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
from urllib.parse import urlparse

BASE, ADMIN, PID, SECONDS, THREADS, OUT = sys.argv[1:7]
PID_I, SECONDS_F, THREADS_I = int(PID), float(SECONDS), int(THREADS)
HOST = urlparse(BASE)
STOP = time.monotonic() + SECONDS_F
LOCK = threading.Lock()
COUNTS: dict[str, int] = {}
STATUS: dict[str, int] = {}

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
MSGS = [{"role": "user", "content": "Say hello in one short sentence."}]


def conn() -> http.client.HTTPConnection:
    return http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=30)


def count(kind: str, status: int) -> None:
    with LOCK:
        COUNTS[kind] = COUNTS.get(kind, 0) + 1
        key = f"{status // 100}xx" if status else "no-answer"
        STATUS[key] = STATUS.get(key, 0) + 1


def call(c: http.client.HTTPConnection, kind: str, path: str, body: dict, headers: dict | None = None,
         abandon: bool = False) -> http.client.HTTPConnection:
    h = {"content-type": "application/json", **(headers or {})}
    try:
        c.request("POST", path, json.dumps(body), h)
        r = c.getresponse()
        if abandon:
            r.read(64)
            c.close()  # the client goes away mid-stream
            count(kind, r.status)
            return conn()
        r.read()
        count(kind, r.status)
        if r.getheader("connection", "").lower() == "close":
            c.close()
            return conn()
        return c
    except (OSError, http.client.HTTPException):
        count(kind, 0)
        c.close()
        return conn()


def worker(seed: int) -> None:
    rnd = random.Random(seed)
    c = conn()
    while time.monotonic() < STOP:
        pick = rnd.random()
        if pick < 0.25:
            c = call(c, "openai", "/v1/chat/completions", {"model": "mock-model", "messages": MSGS})
        elif pick < 0.40:
            c = call(c, "openai-stream", "/v1/chat/completions",
                     {"model": "mock-model", "messages": MSGS, "stream": True})
        elif pick < 0.52:
            c = call(c, "anthropic", "/v1/messages", {"model": "mock-model", "max_tokens": 64, "messages": MSGS},
                     {"anthropic-version": "2023-06-01"})
        elif pick < 0.62:
            c = call(c, "anthropic-stream", "/v1/messages",
                     {"model": "mock-model", "max_tokens": 64, "messages": MSGS, "stream": True},
                     {"anthropic-version": "2023-06-01"})
        elif pick < 0.72:
            c = call(c, "ollama-stream", "/api/chat", {"model": "mock-model", "messages": MSGS})
        elif pick < 0.82:
            c = call(c, "tools", "/v1/chat/completions", {"model": "mock-model", "messages": MSGS, "tools": TOOLS})
        elif pick < 0.90:
            c = call(c, "upstream-error", "/v1/chat/completions", {"model": "dead-model", "messages": MSGS})
        else:
            c = call(c, "client-disconnect", "/v1/chat/completions",
                     {"model": "mock-model", "messages": MSGS, "stream": True}, abandon=True)
    c.close()


def admin() -> None:
    n = 0
    auth = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    while time.monotonic() < STOP:
        n += 1
        name = f"soak{n}"
        try:
            c = conn()
            c.request("POST", "/api/providers", json.dumps(
                {"name": name, "kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
                 "models": [f"soak-model-{n}"]}), auth)
            c.getresponse().read()
            c.request("PUT", f"/api/providers/{name}", json.dumps({"enabled": False}), auth)
            c.getresponse().read()
            c.request("DELETE", f"/api/providers/{name}", None, auth)
            c.getresponse().read()
            c.close()
            with LOCK:
                COUNTS["admin-edit-rounds"] = COUNTS.get("admin-edit-rounds", 0) + 1
        except (OSError, http.client.HTTPException):
            with LOCK:
                COUNTS["admin-failed"] = COUNTS.get("admin-failed", 0) + 1
        time.sleep(3)


def proc_sample() -> tuple[int, int]:
    rss = 0
    with open(f"/proc/{PID_I}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{PID_I}/fd"))
    return rss, fds


def main() -> None:
    samples: list[tuple[float, int, int]] = []
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS_I)]
    threads.append(threading.Thread(target=admin, daemon=True))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    every = max(1.0, SECONDS_F / 120)
    while time.monotonic() < STOP:
        try:
            rss, fds = proc_sample()
            samples.append((time.monotonic() - t0, rss, fds))
        except OSError:
            break
        time.sleep(every)
    for t in threads:
        t.join(timeout=60)
    with open(OUT, "w") as f:
        json.dump({"counts": COUNTS, "status": STATUS, "samples": samples,
                   "requests": sum(v for k, v in COUNTS.items() if not k.startswith("admin"))}, f)


main()
