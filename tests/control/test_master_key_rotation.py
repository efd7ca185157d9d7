"""Master-key rotation of the stored upstream keys, with a real redis-server, served gateways
and the `gateway secrets` command as a real process: with GATEWAY_SECRET_KEY_OLD the old
records still open; `gateway secrets rotate` seals every stored key again under the new key
(audited, no key shown), after which the old key is no longer needed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.control.secrets_at_rest import (
    KEY_ENV,
    OLD_KEYS_ENV,
    MasterKeyInvalid,
    SecretBox,
    key_id,
)
from tests.control import test_upstream_keys as base
from tests.control.key_upstream import KeyUpstream
from tests.control.test_upstream_keys import ADMIN, MASTER, Served
from tests.redis_fixture import RedisServer, command
from tests.support import MOCK_KEY

ROOT = Path(__file__).resolve().parents[2]
NEW = base64.b64encode(bytes(range(100, 132))).decode()
SYSTEM_KEY = "sk-system-key-rotation-0001"
USER_KEY = "sk-alice-own-key-rotation-0002"
key_upstream = base.key_upstream  # the fixtures, shared
serve = base.serve


def test_old_keys_open_new_seals_and_the_variables_are_checked() -> None:
    old, new = bytes(range(32)), bytes(range(100, 132))
    sealed = SecretBox(old).seal("sk-secret", "upstream_keys/mock/fp")
    box = SecretBox(new, [old])
    assert box.open(sealed, "upstream_keys/mock/fp") == "sk-secret"
    assert not box.is_current(sealed) and box.old_key_ids == (key_id(old),)
    assert box.is_current(box.seal("sk-secret", "x"))
    assert SecretBox.from_env({KEY_ENV: NEW, OLD_KEYS_ENV: f"{MASTER}, "}).old_key_ids == (
        key_id(old),
    )
    with pytest.raises(MasterKeyInvalid, match=OLD_KEYS_ENV):
        SecretBox.from_env({OLD_KEYS_ENV: MASTER})  # an old key without the new one
    with pytest.raises(MasterKeyInvalid, match=OLD_KEYS_ENV) as bad:
        SecretBox.from_env({KEY_ENV: NEW, OLD_KEYS_ENV: "not-a-key-at-all"})
    assert "not-a-key-at-all" not in str(bad.value)


def _secrets(gw: Served, *argv: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "secrets", *argv, "--url", gw.url, "--token", ADMIN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in (KEY_ENV, OLD_KEYS_ENV)},
    )
    assert result.returncode == 0, result.stderr
    for secret in (SYSTEM_KEY, USER_KEY, MASTER, NEW):
        assert secret not in result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _stored_kids(redis: RedisServer) -> set[str]:
    kids = set()
    for kind in ("upstream_keys", "user_upstream_keys"):
        raw = command(redis.port, "HGETALL", f"{{gw:cp}}:kind:{kind}").decode()
        kids |= {
            kid for kid in (key_id(bytes(range(32))), key_id(bytes(range(100, 132)))) if kid in raw
        }
    return kids


def test_rotation_reseals_every_stored_key_under_the_new_master_key(
    serve: Any, key_upstream: KeyUpstream, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_kid, new_kid = key_id(bytes(range(32))), key_id(bytes(range(100, 132)))
    monkeypatch.delenv(OLD_KEYS_ENV, raising=False)
    first: Served = serve(MASTER)
    assert first.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True}).is_success
    assert first.call("PUT", "/v1/admin/upstreams/mock/keys", json={"key": SYSTEM_KEY}).is_success
    mine = first.call("PUT", "/v1/me/upstream-keys/other", base.CLIENT, json={"key": USER_KEY})
    assert mine.status_code == 200, mine.text
    assert _stored_kids(redis) == {old_kid}

    # the new key alone does not open the old records: they are unreadable, the env key is used
    alone: Served = serve(NEW)
    states = alone.call("GET", "/v1/admin/upstreams/mock/keys").json()["keys"]
    assert [k["state"] for k in states] == ["unreadable"]
    assert alone.chat().status_code == 200 and key_upstream.keys_seen()[-1] == MOCK_KEY

    # new + old: the old records open (and are still used); rotate seals them again
    monkeypatch.setenv(OLD_KEYS_ENV, MASTER)
    both: Served = serve(NEW)
    assert both.chat().status_code == 200 and key_upstream.keys_seen()[-1] == SYSTEM_KEY
    status = _secrets(both, "status")
    assert status == {"kid": new_kid, "old_kids": [old_kid], "stored": {old_kid: 2}}
    dry = _secrets(both, "rotate", "--dry-run")
    assert (dry["resealed"], dry["documents"], dry["dry_run"]) == (2, 2, True)
    assert _stored_kids(redis) == {old_kid}  # a dry run changes nothing
    done = _secrets(both, "rotate")
    assert (done["resealed"], done["documents"], done["unreadable"]) == (2, 2, 0)
    assert _stored_kids(redis) == {new_kid}
    assert _secrets(both, "status")["stored"] == {new_kid: 2}
    assert _secrets(both, "rotate")["resealed"] == 0  # once is enough

    audit = both.call("GET", "/v1/admin/audit").json()["data"]
    resealed = [e for e in audit if e["action"] == "secrets.reseal"]
    assert {(e["kind"], e["id"]) for e in resealed} == {
        ("upstream_keys", "mock"),
        ("user_upstream_keys", "other/alice"),
    }
    assert all(set(e["after"]["kids"].values()) == {new_kid} for e in resealed)
    text = json.dumps(audit)
    assert SYSTEM_KEY not in text and USER_KEY not in text and "ciphertext" not in text

    # the old key is no longer needed
    monkeypatch.delenv(OLD_KEYS_ENV)
    after: Served = serve(NEW)
    states = after.call("GET", "/v1/admin/upstreams/mock/keys").json()["keys"]
    assert [k["state"] for k in states] == ["active"]
    assert after.chat().status_code == 200 and key_upstream.keys_seen()[-1] == SYSTEM_KEY
    stored_keys = after.gateway.stored_keys
    assert stored_keys is not None
    user_key = stored_keys.users.key_for("alice", "other")
    assert user_key is not None and user_key.reveal() == USER_KEY
