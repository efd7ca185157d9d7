"""A team key's principal: made once per key entry and team view, and refused at once when
either changes (a member removed, the team deleted, the key revoked or expired)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from gateway.config.model import Settings
from gateway.control.plane import ControlPlane
from gateway.errors import Forbidden, Unauthorized
from gateway.proxy.auth import KeyRing
from gateway.store.factory import create_store
from tests.support import build_config, routes_doc, tiers_doc

SECRET = "sk-team-principal"
BEARER = {"authorization": f"Bearer {SECRET}"}
LIMITS = {"requests": {"minute": 100, "day": 1000}, "max_parallel": 10}


def _key(**extra: Any) -> dict[str, Any]:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    document = {"user": "ann", "tier": "free", "team": "ml", "secrets": [{"sha256": digest}]}
    return {**document, **extra}


def _team(members: list[str]) -> dict[str, Any]:
    return {"org": "acme", "name": "ML", "tier": "free", "members": members, "limits": LIMITS}


def test_a_team_keys_principal_is_reused_until_its_key_or_team_changes() -> None:
    config = build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(), {})
    clock = [1_000.0]

    async def scenario() -> None:
        control = ControlPlane(create_store(None, Settings()), poll_interval_s=60)
        put = control.put
        await put("orgs", "acme", {"name": "Acme", "timezone": "UTC", "limits": LIMITS},
                  actor="t", action="create")  # fmt: skip
        await put("teams", "ml", _team(["ann"]), actor="t", action="create")
        await put("keys", "k1", _key(), actor="t", action="create")
        ring = KeyRing(config, control, clock=lambda: clock[0])
        first = ring.authenticate(BEARER)
        assert [level.level for level in first.levels] == ["org", "team"]
        assert ring.authenticate(BEARER) is first  # made once, not per request
        byok = ring.authenticate({**BEARER, "x-upstream-api-key": "sk-upstream"})
        assert byok is not first and byok.byok_key is not None and byok.levels == first.levels
        await put("teams", "ml", _team(["bob"]), actor="t", action="update")
        with pytest.raises(Forbidden) as refused:
            ring.authenticate(BEARER)  # no longer a member: refused at the next request
        assert refused.value.code == "not_a_team_member"
        await put("teams", "ml", _team(["ann", "bob"]), actor="t", action="update")
        again = ring.authenticate(BEARER)
        assert again is not first and again.levels[1].id == "ml"
        await put("keys", "k1", _key(expires_at=2_000), actor="t", action="update")
        assert ring.authenticate(BEARER).key_id == "k1"
        clock[0] = 2_000.0  # expired: the clock is checked on every request
        with pytest.raises(Unauthorized):
            ring.authenticate(BEARER)
        clock[0] = 1_000.0
        await put("teams", "ml", None, actor="t", action="delete")
        with pytest.raises(Forbidden) as gone:
            ring.authenticate(BEARER)
        assert gone.value.code == "team_not_found"
        await put("teams", "ml", _team(["ann"]), actor="t", action="create")
        assert ring.authenticate(BEARER).levels[1].id == "ml"
        await put("keys", "k1", None, actor="t", action="revoke")
        with pytest.raises(Unauthorized):
            ring.authenticate(BEARER)

    asyncio.run(scenario())
