"""A real local upstream that answers by the key it is sent: refused keys get 401, rate-limited
keys 429 (with ``retry-after``), any other key a small chat completion; every key recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import ThreadedServer


@dataclass
class KeyUpstream:
    refused: set[str] = field(default_factory=set)
    limited: set[str] = field(default_factory=set)
    seen: list[str | None] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    async def chat(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        key = authorization.removeprefix("Bearer ") if authorization else None
        with self._lock:
            self.seen.append(key)
        if key in self.refused:
            body = {"error": {"message": f"Invalid API key {key}", "type": "auth", "code": None}}
            return JSONResponse(body, status_code=401)
        if key in self.limited:
            body = {"error": {"message": "slow down", "type": "rate_limit", "code": None}}
            return JSONResponse(body, status_code=429, headers={"retry-after": "60"})
        payload = await request.json()
        return JSONResponse(
            {
                "id": "chatcmpl-key",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": payload.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    def keys_seen(self) -> list[str | None]:
        with self._lock:
            return list(self.seen)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def start(self) -> KeyUpstream:
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self._server = ThreadedServer(app).start()
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return self._server.url + "/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
