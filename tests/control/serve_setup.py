"""`gateway serve` for the control tests: the flag setup's config, Redis, an admin token."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.control.flag_setup import ADMIN, KEYS, documents, env


def write_config(directory: Path, upstream_url: str, pro_text: list[str] | None = None) -> Path:
    routes, tiers = documents(upstream_url)
    routes["models"]["slow"] = {
        "upstream": "mock",
        "model": "mock/slow-20+words-10",
        "modality": "text",
    }
    if pro_text is not None:  # "slow" last: requested by name, it streams for ~0.2 s
        tiers["tiers"]["pro"]["routes"]["text"] = [*pro_text, "slow"]
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


def serve_env(redis_url: str) -> dict[str, str]:
    return {**env(), "REDIS_URL": redis_url, "GATEWAY_ADMIN_TOKEN": ADMIN}


def chat(url: str, tier: str, model: str = "text", **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {KEYS[tier]}"}
    return httpx.post(url + "/v1/chat/completions", headers=headers, json=body, timeout=30, **kw)


def until(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Seconds until ``check()`` held (polled as fast as it answers); fails after ``timeout_s``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "not applied"
    return time.monotonic() - start
