"""The near-zero-cost mock upstream: nginx answering fixed JSON and SSE bodies by location.

nginx never reads the request body for these answers, so the mock costs the same whatever the
gateway sends. Everything (config, pid, logs, temp dirs) lives in one temp directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

JSON_PATH = "/json/v1/chat/completions"
SSE_PATH = "/sse/v1/chat/completions"
OTLP_TRACES_PATH = "/v1/traces"  # a sink for the gateway's spans (bench/variants.py otel_*)
CONTENT_PIECES = ("Hello", " from", " the", " benchmark", " mock", " upstream", ",", " hi!")
USAGE = {"prompt_tokens": 12, "completion_tokens": len(CONTENT_PIECES), "total_tokens": 20}
CREATED = 1700000000


def json_answer() -> str:
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": "mock-json",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CONTENT_PIECES)},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def sse_answer() -> str:
    """A role chunk, one chunk per content piece, a finish chunk, a usage-only chunk, [DONE]."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in CONTENT_PIECES]
    chunks = [_chunk([{"index": 0, "delta": delta, "finish_reason": None}]) for delta in deltas]
    chunks.append(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    chunks.append(_chunk([], usage=USAGE))
    events = [f"data: {_dumps(chunk)}\n\n" for chunk in chunks]
    return "".join(events) + "data: [DONE]\n\n"


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "mock-sse",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def nginx_string(text: str) -> str:
    """``text`` as a single-quoted nginx string (nginx itself turns ``\\n`` into a newline)."""
    if "$" in text:
        raise ValueError("nginx would expand '$' as a variable")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def write_config(workdir: Path, port: int) -> Path:
    """nginx.conf for one worker on 127.0.0.1:port, every path inside ``workdir``."""
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / temp).mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""  # run as the current user
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""{user}daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {JSON_PATH} {{
            default_type application/json;
            return 200 {nginx_string(json_answer())};
        }}
        location = {SSE_PATH} {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {nginx_string(sse_answer())};
        }}
        location = {OTLP_TRACES_PATH} {{
            client_max_body_size 0;
            return 200;
        }}
        location / {{ return 404; }}
    }}
}}
"""
    )
    return conf


def nginx_argv(nginx: str, conf: Path) -> list[str]:
    workdir = str(conf.parent)
    return [nginx, "-e", f"{workdir}/error.log", "-p", workdir, "-c", str(conf)]
