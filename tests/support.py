"""Shared test helpers: config documents pointing at the mock upstream, and a threaded server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from gateway.config.load import parse_config
from gateway.config.model import Config
from gateway.config.reader import ConfigError
from gateway.http.serve_guard import GuardedConfig

# name → (upstream, upstream model id, modality); ids carry the mock's behaviour markers.
SCENARIO_MODELS: dict[str, tuple[str, str, str]] = {
    "ok": ("mock", "mock/ok", "text"),
    "ok-b": ("mock", "mock/ok-b", "text"),
    "smart": ("mock", "mock/smart+toolcall+json", "text"),  # calls tools, answers JSON schemas
    "other-ok": ("other", "other/ok", "text"),
    "code-ok": ("mock", "mock/code", "code"),
    "vision-ok": ("mock", "mock/vision", "vision"),
    "flaky": ("mock", "mock/flaky-1", "text"),
    "ratelimited": ("mock", "mock/ratelimited-1", "text"),
    "fail-500": ("mock", "mock/fail-500", "text"),
    "fail-503": ("mock", "mock/fail-503", "text"),
    "fail-429": ("mock", "mock/fail-429", "text"),
    "notfound": ("mock", "mock/notfound", "text"),
    "unavailable": ("mock", "mock/unavailable", "text"),
    "bad-400": ("mock", "mock/bad-400", "text"),
    "auth-401": ("mock", "mock/auth-401", "text"),
    "plain-502": ("mock", "mock/plain-502", "text"),
    "slowfirst": ("mock", "mock/slowfirst-3", "text"),
    "slowfirst-b": ("other", "other/slowfirst-3", "text"),
    "slowfirst-c": ("mock", "mock/slowfirst-3+c", "text"),
    "drop": ("mock", "mock/drop-2", "text"),
    "drop-now": ("mock", "mock/drop-0", "text"),
    "nousage": ("mock", "mock/nousage", "text"),
    "absurd": ("mock", "mock/absurd-usage", "text"),
    "onfinish": ("mock", "mock/usage-on-finish", "text"),
    "crlf": ("mock", "mock/crlf", "text"),
    "slow": ("mock", "mock/slow-20+words-20", "text"),
    "lingering": ("mock", "mock/linger-500+words-5", "text"),  # [DONE], then 500 ms to the end
    "long": ("mock", "mock/words-40", "text"),
    "stall": ("mock", "mock/slow-3000+words-3", "text"),
    "endless": ("mock", "mock/slow-500+words-60", "text"),  # ~30 s of stream
    "embed": ("mock", "mock/embed", "embedding"),
    "image": ("mock", "mock/image", "image"),
    "tts": ("mock", "mock/tts", "tts"),
    "stt": ("mock", "mock/whisper", "stt"),
    "moderation": ("mock", "mock/moderation", "moderation"),
    "rerank": ("mock", "mock/rerank", "rerank"),
    "video": ("mock", "mock/video", "video"),
}
MOCK_KEY = "sk-mock-system-key-0123456789"
OTHER_KEY = "sk-other-system-key-9876543210"

DEFAULT_ROUTES = {
    "text": ["ok", "ok-b"],
    "code": ["code-ok"],
    "vision": ["vision-ok"],
    "image": ["image"],
    "embedding": ["embed"],
    "tts": ["tts"],
    "stt": ["stt"],
    "moderation": ["moderation"],
    "rerank": ["rerank"],
    "video": ["video"],
}


def routes_doc(mock_base_url: str, *, first_byte_timeout_s: float = 1.0) -> dict[str, Any]:
    upstream = {
        "base_url": mock_base_url,
        "connect_timeout_s": 1,
        "first_byte_timeout_s": first_byte_timeout_s,
        "idle_timeout_s": 2,
    }
    models = {
        name: {
            "upstream": upstream_name,
            "model": model_id,
            "modality": modality,
            "price": {"input": 1.0, "output": 2.0, "per_image": 0.01, "per_minute": 0.006},
        }
        for name, (upstream_name, model_id, modality) in SCENARIO_MODELS.items()
    }
    return {
        "upstreams": {
            "mock": {**upstream, "api_key_env": "MOCK_KEY"},
            "other": {**upstream, "api_key_env": "OTHER_KEY"},
        },
        "models": models,
        "retry": {"attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.05, "max_retry_after_s": 2},
        "circuit_breaker": {"failures": 3, "window_s": 30, "cooldown_s": 0.5},
        "passthrough": {"/videos/generations": ["video"], "/videos/*/remix": ["video"]},
    }


def tiers_doc(tiers: Mapping[str, Mapping[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    chosen = tiers or {"free": {"routes": DEFAULT_ROUTES}}
    return {"tiers": {name: dict(tier) for name, tier in chosen.items()}, **extra}


def build_config(routes: Any, tiers: Any, env: Mapping[str, str]) -> Config:
    problems: list[str] = []
    config = parse_config(
        routes, tiers, {"MOCK_KEY": MOCK_KEY, "OTHER_KEY": OTHER_KEY, **env}, problems
    )
    if problems:
        raise ConfigError(problems)
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """An ASGI app served by uvicorn in a daemon thread, lifespan included."""

    def __init__(self, app: ASGIApp, *, gateway: bool = False, **options: Any) -> None:
        """``gateway``: serve with the gateway's own protocol (read deadlines, JSON 400s);
        ``options``: more of uvicorn's config (TLS...)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config_class = GuardedConfig if gateway else uvicorn.Config
        config = config_class(
            app,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            **options,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway test server failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
