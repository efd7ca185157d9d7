"""Feature flags: defaults from tiers.yaml, run-time values through the admin API, sticky
rollout, and the plan's four flags on the request path (one in-process gateway)."""

from __future__ import annotations

from gateway.config.model import Config, FlagDefault
from gateway.control.flags import bucket, flag_enabled
from gateway.control.plane import Snapshot
from tests.control.flag_setup import admin, chat, documents, env, flag_gateway
from tests.mock_upstream import MockUpstream
from tests.support import build_config


def _config(**tiers_extra: object):  # type: ignore[no-untyped-def]
    return build_config(*documents("http://127.0.0.1:9", **tiers_extra), env())


def test_defaults_runtime_values_and_sticky_rollout() -> None:
    config = _config(flags={"beta": {"enabled": True, "rollout_percent": 30}, "old": False})
    empty = Snapshot(0, {})
    assert config.flags["old"] == FlagDefault(False, 100.0, "")
    assert flag_enabled(empty, config, "together_ai_fallback", "u")  # a plan flag: on, undeclared
    assert not flag_enabled(empty, config, "old", "u")
    assert not flag_enabled(empty, config, "never-declared", "u")
    users = [f"user-{n}" for n in range(2000)]
    on_30 = {u for u in users if flag_enabled(empty, config, "beta", u)}
    assert 400 < len(on_30) < 800  # about 30 %
    assert on_30 == {u for u in users if flag_enabled(empty, config, "beta", u)}  # sticky
    raised = Snapshot(1, {"flags": {"beta": {"enabled": True, "rollout_percent": 60.0}}})
    on_60 = {u for u in users if flag_enabled(raised, config, "beta", u)}
    assert on_30 < on_60  # raising the percentage only adds users
    off = Snapshot(2, {"flags": {"beta": {"enabled": False, "rollout_percent": 100.0}}})
    assert not any(flag_enabled(off, config, "beta", u) for u in users)
    assert all(0 <= bucket("beta", u) < 100 for u in users[:50])
    bare = Config({}, {}, {})  # built without the flags section: the plan's flags stay on
    assert flag_enabled(empty, bare, "together_ai_free_tier", "u")
    assert not flag_enabled(empty, bare, "beta", "u")


def test_flag_yaml_problems_are_reported() -> None:
    import pytest

    from gateway.config.reader import ConfigError

    with pytest.raises(ConfigError) as caught:
        _config(flags={"Bad-Name": True, "x": {"enabled": "yes", "rollout_percent": 150}})
    text = "\n".join(caught.value.problems)
    assert "tiers.yaml: flags.Bad-Name: a flag name" in text
    assert "flags.x.enabled: expected true or false" in text
    assert "flags.x.rollout_percent: must be <= 100" in text


def test_admin_api_lists_sets_and_resets(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url, flags={"beta": {"enabled": False}}) as url:
        listed = admin(url, "GET", "/v1/admin/flags").json()["data"]
        names = [flag["name"] for flag in listed]
        assert "together_ai_integration" in names and "beta" in names
        beta = admin(url, "GET", "/v1/admin/flags/beta").json()
        assert beta["enabled"] is False and beta["source"] == "tiers.yaml"
        put = admin(
            url, "PUT", "/v1/admin/flags/beta", json={"enabled": True, "rollout_percent": 10}
        )
        assert put.status_code == 200, put.text
        assert put.json()["enabled"] is True and put.json()["rollout_percent"] == 10
        assert put.json()["source"] == "runtime"
        reset = admin(url, "DELETE", "/v1/admin/flags/beta").json()
        assert reset["source"] == "tiers.yaml" and reset["enabled"] is False
        audit = admin(url, "GET", "/v1/admin/audit").json()
        actions = [entry["action"] for entry in audit["data"]]
        assert actions[:2] == ["flag.reset", "flag.set"]
        missing = admin(url, "PUT", "/v1/admin/flags/nope", json={"enabled": True})
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "name"
        bad = admin(
            url, "PUT", "/v1/admin/flags/beta", json={"enabled": True, "rollout_percent": 101}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "rollout_percent"
        assert admin(url, "PUT", "/v1/admin/flags/beta", json={"enabled": 1}).status_code == 400
        anonymous = admin(url, "PUT", "/v1/admin/flags/beta", token="wrong", json={"enabled": True})
        assert anonymous.status_code == 401


def _set(url: str, name: str, enabled: bool) -> None:
    answer = admin(url, "PUT", f"/v1/admin/flags/{name}", json={"enabled": enabled})
    assert answer.status_code == 200, answer.text


def test_plan_flags_on_the_request_path(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url) as url:
        first = chat(url, "free")
        assert first.status_code == 200 and first.headers["x-gateway-provider"] == "together"
        _set(url, "together_ai_integration", False)  # Together targets skipped: the chain moves on
        moved = chat(url, "free")
        assert moved.status_code == 200 and moved.headers["x-gateway-provider"] == "mock"
        assert chat(url, "free", "tg-ok").headers["x-gateway-model"] == "ok"
        _set(url, "together_ai_integration", True)

        assert chat(url, "pro").headers["x-gateway-model"] == "ok"  # fell back past fail-500
        _set(url, "together_ai_fallback", False)
        alone = chat(url, "pro")
        assert alone.status_code >= 500  # fail-500 alone: no fallback to ok
        assert "ok" not in alone.json()["error"]["message"].replace("fail-500", "")
        _set(url, "together_ai_fallback", True)

        _set(url, "together_ai_ui_indicators", False)
        quiet = chat(url, "free")
        assert quiet.status_code == 200
        assert not {"x-gateway-provider", "x-gateway-model", "x-gateway-upstream-model"} & set(
            quiet.headers
        )
        assert "x-gateway-request-id" in quiet.headers
        _set(url, "together_ai_ui_indicators", True)
        assert "x-gateway-provider" in chat(url, "free").headers

        _set(url, "together_ai_free_tier", False)
        refused = chat(url, "free")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "free_tier_disabled"
        assert chat(url, "pro").status_code == 200  # other tiers unaffected
        _set(url, "together_ai_free_tier", True)
        assert chat(url, "free").status_code == 200


def test_a_route_served_only_by_together_is_a_503_while_switched_off(
    upstream: MockUpstream,
) -> None:
    with flag_gateway(upstream.base_url) as url:
        _set(url, "together_ai_integration", False)
        answer = chat(url, "free", "tg-ok")
        assert answer.headers["x-gateway-model"] == "ok"  # the rest of its chain
        routes_only_together = admin(url, "GET", "/v1/admin/flags/together_ai_integration")
        assert routes_only_together.json()["enabled"] is False


def test_flags_command_line(upstream: MockUpstream) -> None:
    import json
    import subprocess
    import sys

    from tests.control.flag_setup import ADMIN

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gateway", *args, "--url", url, "--token", ADMIN]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    with flag_gateway(upstream.base_url, flags={"beta": False}) as url:
        set_on = gateway("flags", "set", "beta", "on", "--rollout", "20")
        assert set_on.returncode == 0, set_on.stderr
        assert json.loads(set_on.stdout)["rollout_percent"] == 20
        listed = json.loads(gateway("flags", "list").stdout)["data"]
        assert {f["name"]: f["enabled"] for f in listed}["beta"] is True
        back = json.loads(gateway("flags", "set", "beta", "default").stdout)
        assert back["source"] == "tiers.yaml" and back["enabled"] is False
        unknown = gateway("flags", "set", "nope", "off")
        assert unknown.returncode == 1 and "Unknown flag 'nope'" in unknown.stderr
        no_config_dir = gateway("reload")  # this test app was not started from files
        assert no_config_dir.returncode == 1 and "409" in no_config_dir.stderr
