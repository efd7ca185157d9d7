"""Brute-force protection (issue 23, item 9): wrong credentials are counted per client address
and per credential prefix, then refused with 429 and retry-after in the OpenAI error shape;
each failure is logged without the secret; valid keys are never counted nor throttled; and a
GATEWAY_ADMIN_TOKEN under 32 characters stops `gateway serve` at start."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.config.runtime import Runtime
from gateway.proxy.auth_throttle import AuthThrottle, ThrottleSettings
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.support import routes_doc, tiers_doc
from tests.ui.signin import sign_in

ADMIN = "throttle-admin-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"message", "type", "param", "code"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gw(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))


def wrong(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(24)


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    error = answer.json()["error"]
    assert set(error) == FIELDS and error["code"] == "too_many_failed_attempts"
    assert error["type"] == "rate_limit_error"


def test_wrong_admin_bearers_are_throttled_per_address_and_logged_without_the_secret(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.auth")
    limit = ThrottleSettings().address_limit
    tried = [wrong() for _ in range(limit)]
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for token in tried:
            answer = http.get("/v1/admin/keys", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 401
        assert_throttled(http.get("/v1/admin/keys", headers={"authorization": f"Bearer {wrong()}"}))
        # while the address is blocked even the right token waits: else a wrong guess's 429
        # and a right one's 200 would still tell them apart
        assert_throttled(http.get("/v1/admin/keys", headers={"authorization": f"Bearer {ADMIN}"}))
    failures = [r for r in caplog.records if r.getMessage() == "failed authentication"]
    assert len(failures) == limit
    assert failures[0].fields["surface"] == "admin"  # type: ignore[attr-defined]
    assert failures[0].fields["address"] == "127.0.0.1"  # type: ignore[attr-defined]
    assert any(r.getMessage() == "authentication blocked" for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    for token in tried:
        assert token not in logged and token[:12] not in logged


def test_wrong_sign_ins_are_throttled(gw: RunningGateway) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for _ in range(ThrottleSettings().address_limit):
            assert sign_in(http, wrong()).status_code == 401
        refused = sign_in(http, ADMIN)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "gw_session" not in refused.cookies
        assert "Too many failed" in refused.text


def test_wrong_client_keys_are_throttled_for_the_openai_sdk(gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key=wrong("sk-"), max_retries=0)
    for _ in range(ThrottleSettings().prefix_limit):  # one key: its prefix is blocked first
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="text", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "too_many_failed_attempts"


def test_a_valid_client_key_is_served_from_a_blocked_address(gw: RunningGateway) -> None:
    """A client stuck on a stale key blocks its address (an ingress, a NAT) for wrong keys
    only: a valid key from the same address is still served."""
    with httpx.Client(base_url=gw.base_url, timeout=10) as http:
        for index in range(ThrottleSettings().address_limit):  # distinct prefixes: the address
            http.get("/models", headers={"authorization": f"Bearer {wrong(f'sk-{index:04d}-')}"})
        stale = http.get("/models", headers={"authorization": f"Bearer {wrong('sk-stale-')}"})
        assert stale.status_code == 429, stale.text
        valid = http.get("/models", headers={"authorization": f"Bearer {gw.key()}"})
        assert valid.status_code == 200, valid.text


def test_valid_keys_are_never_counted_nor_throttled(gw: RunningGateway) -> None:
    """Far more valid requests than any limit, from the one address: none refused, and the
    throttle holds nothing (valid keys add no bookkeeping)."""
    throttle = gw.gateway.keyring.throttle
    with httpx.Client(base_url=gw.base_url, timeout=10) as http:
        user = {"authorization": f"Bearer {gw.key()}"}
        admin = {"authorization": f"Bearer {ADMIN}"}
        for _ in range(5 * ThrottleSettings().address_limit):
            assert http.get("/models", headers=user).status_code == 200
            assert http.get("/admin/keys", headers=admin).status_code == 200
        chat = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(ThrottleSettings().address_limit):
            assert http.post("/chat/completions", json=chat, headers=user).status_code == 200
    assert not throttle.active and not throttle._addresses and not throttle._prefixes


def test_a_prefix_is_blocked_across_addresses_and_blocks_end() -> None:
    clock = Clock()
    throttle = AuthThrottle(ThrottleSettings(window_s=60, address_limit=5, prefix_limit=3), clock)
    guess = "gwadm-abcdefgh"
    for number in range(3):  # three addresses, one credential prefix
        throttle.failed("admin", f"10.0.0.{number}", guess + str(number))
    with pytest.raises(Exception, match="Too many failed") as raised:
        throttle.check("10.0.0.9", guess + "x")
    assert raised.value.headers["retry-after"] == "60"  # type: ignore[attr-defined]
    throttle.check("10.0.0.9", "sk-other-key-entirely")  # another prefix: not blocked
    clock.now += 61
    throttle.check("10.0.0.9", guess + "x")  # the window is over
    assert not throttle.active


def test_the_counters_are_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(ThrottleSettings(max_tracked=100), clock)
    for number in range(1000):
        throttle.failed("api_key", f"10.1.{number // 256}.{number % 256}", wrong())
    assert len(throttle._addresses) <= 101 and len(throttle._prefixes) <= 101


def test_a_short_admin_token_stops_serve_at_start(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": "short-admin-token", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path), "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "gateway: error: GATEWAY_ADMIN_TOKEN: must be at least 32 characters" in done.stderr
    assert "short-admin-token" not in done.stderr + done.stdout
