"""Keyed ids (issue 23, item 13): a config key's id and the access log's user are HMACs under
a key derived from GATEWAY_SECRET_KEY, the same for every process with that key; without a
master key the config key's id keeps its old unkeyed form (stored records depend on it) and
the log's user hash is keyed per process, never the unkeyed sha256 of the name."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

import httpx
import pytest

from gateway.control.id_keys import derive
from tests.conftest import RunningGateway, StartGateway

MASTER = bytes(range(32))
CHAT = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}


def chat_and_read(gw: RunningGateway, caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    """(the key_id of the request's usage record, the access log's user) for one chat."""
    caplog.clear()
    headers = {"authorization": f"Bearer {gw.key()}"}
    with httpx.Client(base_url=gw.base_url, headers=headers, timeout=10) as http:
        assert http.post("/chat/completions", json=CHAT).status_code == 200
        records = []
        for _ in range(50):  # billing runs after the reply
            records = http.get("/usage").json()["data"]
            if records:
                break
    logged = [r for r in caplog.records if r.name == "gateway.access"]
    assert records and logged
    return str(records[-1]["key_id"]), str(logged[-1].fields["user"])  # type: ignore[attr-defined]


def keyed(key: bytes, text: str, digits: int) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:digits]


def test_ids_are_keyed_by_the_master_key_and_the_same_on_every_process(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "gateway.access")
    monkeypatch.setenv("GATEWAY_SECRET_KEY", base64.b64encode(MASTER).decode())
    first, second = start_gateway(), start_gateway()  # two processes' worth of state
    key_id, user = chat_and_read(first, caplog)
    digest = hashlib.sha256(first.key().encode()).hexdigest()
    assert key_id != digest[:12] and user != hashlib.sha256(b"user-free").hexdigest()[:16]
    assert key_id == keyed(derive(MASTER), digest, 12)
    assert user == keyed(derive(MASTER), "user-free", 16)
    assert chat_and_read(second, caplog) == (key_id, user)


def test_without_a_master_key_config_key_ids_stay_stable_and_the_log_is_keyed_per_process(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "gateway.access")
    monkeypatch.delenv("GATEWAY_SECRET_KEY", raising=False)
    monkeypatch.delenv("GATEWAY_SECRET_KEY_FILE", raising=False)
    gw = start_gateway()
    key_id, user = chat_and_read(gw, caplog)
    assert key_id == hashlib.sha256(gw.key().encode()).hexdigest()[:12]  # as stored before
    assert user != hashlib.sha256(b"user-free").hexdigest()[:16]  # no longer a plain digest
