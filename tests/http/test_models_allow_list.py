"""GET /v1/models and /v1/models/{id} with a run-time key's ``models`` allow-list, through the
openai SDK against a served gateway and a real redis-server: the key sees only what its list
names; the rest is answered like an unknown model. Keys without a list see the whole tier."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.control import test_upstream_keys as base
from tests.control.test_upstream_keys import CLIENT, Served

key_upstream = base.key_upstream  # the fixtures, shared
serve = base.serve


def _client(gw: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def _create_key(gw: Served, **fields: Any) -> str:
    created = gw.call("POST", "/v1/admin/keys", json={"user": "alice", "tier": "free", **fields})
    assert created.status_code == 201, created.text
    secret: str = created.json()["key"]
    return secret


def test_a_keys_allow_list_limits_the_models_it_sees(serve: Any) -> None:
    gw: Served = serve()
    limited = _create_key(gw, models=["ok", "text"])
    unlimited = _create_key(gw)

    with _client(gw, CLIENT) as everyone:  # a config key: the whole tier
        whole = {m.id for m in everyone.models.list().data}
    assert {"ok", "ok-b", "text", "embed", "video"} <= whole
    with _client(gw, unlimited) as plain:  # a run-time key without a list: the same
        assert {m.id for m in plain.models.list().data} == whole

    with _client(gw, limited) as client:
        assert sorted(m.id for m in client.models.list().data) == ["ok", "text"]
        assert client.models.retrieve("ok").owned_by == "mock"
        assert client.models.retrieve("text").owned_by == "gateway"
        for hidden in ("ok-b", "embed", "no-such-model"):
            with pytest.raises(openai.NotFoundError) as missing:
                client.models.retrieve(hidden)
            error = missing.value.body
            assert isinstance(error, dict) and error["code"] == "model_not_found"
            assert error["message"] == f"The model '{hidden}' does not exist."

    # the allow-list also still decides what the key may call
    with _client(gw, limited) as client:
        assert client.chat.completions.create(
            model="ok", messages=[{"role": "user", "content": "hi"}]
        ).choices
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(
                model="ok-b", messages=[{"role": "user", "content": "hi"}]
            )
