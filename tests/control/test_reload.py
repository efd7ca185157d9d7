"""Hot reload in one process: a valid config replaces the one in force for new requests only;
an invalid one is refused with `gateway check`'s messages; stateful parts are kept."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.app import create_app, reload_app
from gateway.config.load import load_config
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.parts import Gateway
from gateway.secret import Secret
from gateway.store.memory import MemoryStore
from tests.control.flag_setup import ADMIN, KEYS, admin, documents, env
from tests.mock_upstream import MockUpstream
from tests.support import MOCK_KEY, OTHER_KEY, ThreadedServer

ENV = {**env(), "MOCK_KEY": MOCK_KEY, "OTHER_KEY": OTHER_KEY}


def write(directory: Path, upstream_url: str, text_chain: list[str]) -> None:
    routes, tiers = documents(upstream_url)
    routes["models"]["slow"] = {
        "upstream": "mock",
        "model": "mock/slow-100+words-20",
        "modality": "text",
    }
    tiers["tiers"]["pro"]["routes"]["text"] = text_chain
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))


@contextmanager
def served(directory: Path) -> Iterator[tuple[str, Any]]:
    def source() -> Any:
        return load_config(directory, ENV)

    app = create_app(
        source(),
        Runtime(admin_token=Secret(ADMIN)),
        store=MemoryStore(stream_maxlen=1000),
        metrics=Metrics(),
        config_source=source,
    )
    server = ThreadedServer(app).start()
    try:
        yield server.url, app
    finally:
        server.stop()


def model_of(url: str, model: str = "text") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {KEYS['pro']}"}
    answer = httpx.post(url + "/v1/chat/completions", headers=headers, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-gateway-model"]


def test_reload_switches_new_requests_and_refuses_an_invalid_config(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    write(tmp_path, upstream.base_url, ["ok"])
    with served(tmp_path) as (url, _):
        assert model_of(url) == "ok"
        write(tmp_path, upstream.base_url, ["ok-b"])
        answer = admin(url, "POST", "/v1/admin/reload")
        assert answer.status_code == 200, answer.text
        assert answer.json()["reloaded"] is True and answer.json()["generation"] == 1
        assert model_of(url) == "ok-b"

        tiers = yaml.safe_load((tmp_path / "tiers.yaml").read_text())
        tiers["tiers"]["pro"]["routes"]["text"] = ["no-such-model"]
        tiers["surprise"] = 1
        (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
        refused = admin(url, "POST", "/v1/admin/reload")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_config" and error["type"] == "invalid_request_error"
        check = subprocess.run(
            [sys.executable, "-m", "gateway", "check", "--config-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", **ENV},
        )
        printed = [line for line in check.stderr.splitlines() if line.startswith("tiers.yaml")]
        assert printed and error["problems"] == printed  # the same messages as `gateway check`
        assert model_of(url) == "ok-b"  # the config in force stayed
        actions = [e["action"] for e in admin(url, "GET", "/v1/admin/audit").json()["data"]]
        assert actions[0] == "reload"  # the refused one changed nothing


def test_a_stream_started_before_a_reload_finishes_on_its_config(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    write(tmp_path, upstream.base_url, ["slow"])
    with served(tmp_path) as (url, _):
        result: dict[str, Any] = {}

        def stream() -> None:
            body = {"model": "text", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            headers = {"authorization": f"Bearer {KEYS['pro']}"}
            with httpx.stream(
                "POST", url + "/v1/chat/completions", headers=headers, json=body, timeout=30
            ) as answer:
                result["model"] = answer.headers["x-gateway-model"]
                result["body"] = b"".join(answer.iter_bytes())

        thread = threading.Thread(target=stream)
        thread.start()
        while not upstream.requests_for("mock/slow-100+words-20"):
            thread.join(0.01)
        write(tmp_path, upstream.base_url, ["ok-b"])
        assert admin(url, "POST", "/v1/admin/reload").status_code == 200
        assert model_of(url) == "ok-b"  # new requests: the new config...
        assert "body" not in result  # (the stream runs for 2 s: still going)
        thread.join(30)
        assert result["model"] == "slow"  # ...the running stream: the one it started with
        assert result["body"].rstrip().endswith(b"data: [DONE]")
        assert result["body"].count(b"chat.completion.chunk") >= 20


def test_a_reload_keeps_every_part_that_holds_state(upstream: MockUpstream, tmp_path: Path) -> None:
    write(tmp_path, upstream.base_url, ["ok"])
    with served(tmp_path) as (url, app):
        old: Gateway = app.state.gateway
        write(tmp_path, upstream.base_url, ["ok-b"])
        reload_app(app, load_config(tmp_path, ENV))
        new: Gateway = app.state.gateway
        rebuilt = {"config", "keyring", "pipeline", "created"}
        for field in dataclasses.fields(Gateway):
            if field.name not in rebuilt:
                assert getattr(new, field.name) is getattr(old, field.name), field.name
        assert (
            new.pipeline is not old.pipeline
            and new.config.tiers["pro"].routes["text"][0].name == "ok-b"
        )
        assert model_of(url) == "ok-b"


def test_another_process_bump_is_followed(upstream: MockUpstream, tmp_path: Path) -> None:
    """Two apps on one store: a reload through A makes B read its files again."""
    write(tmp_path, upstream.base_url, ["ok"])
    store = MemoryStore(stream_maxlen=1000)

    def source() -> Any:
        return load_config(tmp_path, ENV)

    apps = [
        create_app(source(), Runtime(admin_token=Secret(ADMIN)), store=store, metrics=Metrics(),
                   config_source=source)
        for _ in range(2)
    ]  # fmt: skip
    servers = [ThreadedServer(app).start() for app in apps]
    try:
        a, b = (server.url for server in servers)
        assert model_of(b) == "ok"
        write(tmp_path, upstream.base_url, ["ok-b"])
        assert admin(a, "POST", "/v1/admin/reload").status_code == 200
        for _ in range(300):
            if apps[1].state.reloader.reloads:
                break
            threading.Event().wait(0.01)
        assert model_of(b) == "ok-b"
    finally:
        for server in servers:
            server.stop()
