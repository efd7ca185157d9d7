"""Schemathesis against every operation of the admin API document the gateway serves (issue 12).

The operations are listed at collection from ``gateway.http.admin.routes.document()`` (the
function that builds ``GET /v1/admin/openapi.json``), so every route added there is fuzzed
without touching this file. Each test then fetches the served document, checks it is that same
document, and generates its requests from the served copy: valid and schema-violating ones, with
the admin token (or a client key for the ``x-role: user`` operations), against a gateway served
by uvicorn with a real redis-server and a master key set. Every answer must be below 500 (or an
upstream failure with an upstream code), every error OpenAI-shaped, and no answer may carry the
master key or the admin token.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.schemas import BaseSchema

from gateway.app import create_app
from gateway.config.flags_section import PLAN_FLAGS
from gateway.config.model import CAPABILITIES
from gateway.config.runtime import Runtime
from gateway.control.secrets_at_rest import KEY_ENV, KEY_FILE_ENV, OLD_KEYS_ENV
from gateway.http.admin.routes import document
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.conftest import RunningGateway
from tests.fuzz.answers import check_openai_answer
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import ThreadedServer, build_config, routes_doc, tiers_doc

ADMIN_TOKEN = "fuzz-admin-token-for-the-admin-api-0123456789"
MASTER_KEY = base64.b64encode(bytes(range(100, 132))).decode()
CLIENT_KEY = "sk-fuzz-admin-client-0123456789"
UPSTREAM_KEY = "sk-stored-upstream-key-for-fuzzing-0123456789"
SECRETS = (ADMIN_TOKEN, MASTER_KEY, UPSTREAM_KEY)
UPSTREAMS = ["mock", "other"]
EDGE_TIMES = [
    "0",
    "-1",
    "1e300",
    "inf",
    "nan",
    "2026-11-26",
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59-14:00",
]
EXAMPLES = 30  # per operation and generation mode
OPERATIONS = [
    (method.upper(), path, operation.get("x-role", "admin"))
    for path, methods in document()["paths"].items()
    for method, operation in methods.items()
]


@pytest.fixture(scope="module")
def gw(mock_upstream_server: MockUpstream, redis_server: RedisServer) -> Iterator[RunningGateway]:
    """One gateway for the module (a gateway per operation would cost more than the fuzzing),
    with user keys allowed so the ``/v1/me/upstream-keys`` writes get past the setting."""
    redis_server.start()
    redis_server.flushall()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, MASTER_KEY)
        env.delenv(KEY_FILE_ENV, raising=False)
        env.delenv(OLD_KEYS_ENV, raising=False)
        config = build_config(
            routes_doc(mock_upstream_server.base_url),
            tiers_doc(),
            {"GATEWAY_KEYS": f"{CLIENT_KEY}=free:fuzz-user"},
        )
        runtime = Runtime(redis_url=redis_server.url, admin_token=Secret(ADMIN_TOKEN))
        store = create_store(runtime.redis_url, config.settings)
        app = create_app(config, runtime, metrics=Metrics(), store=store)
        server = ThreadedServer(app, gateway=True).start()
    yield RunningGateway(server.url, app, {"free": CLIENT_KEY})
    server.stop()


@pytest.fixture(scope="module")
def known(gw: RunningGateway) -> dict[str, list[str]]:
    """Names and ids that exist on the gateway (and edge values), by parameter or body field
    name: a fuzzed request uses one of them most of the time, so it gets past the lookup to the
    handler's own checks instead of stopping at a 404."""
    stored = call(gw, "PUT", "/v1/admin/upstreams/mock/keys", json={"key": UPSTREAM_KEY})
    assert stored.status_code == 200, stored.text
    listed = call(gw, "GET", "/v1/admin/upstreams/mock/keys").json()
    keys = [call(gw, "POST", "/v1/admin/keys", json={"user": f"fuzz-{n}", "tier": "free"})
            for n in range(3)]  # fmt: skip
    tokens = [call(gw, "POST", "/v1/admin/tokens", json={"role": "viewer"}) for _ in range(2)]
    ask = {"capability": "text_generation", "requested": {"requests_per_day": 99}}
    asks = [call(gw, "POST", "/v1/quota/requests", CLIENT_KEY, json=ask) for _ in range(2)]
    org = call(gw, "POST", "/v1/admin/orgs", json={"id": "fuzz-org"})
    team = {"id": "fuzz-team", "org": "fuzz-org", "tier": "free", "members": ["fuzz-0"]}
    teams = [call(gw, "POST", "/v1/admin/teams", json=team)]
    teams.append(call(gw, "POST", "/v1/admin/teams/fuzz-team/keys", json={"user": "fuzz-0"}))
    assert all(answer.status_code == 201 for answer in (*keys, *tokens, *asks, org, *teams))
    return {
        "/keys/{id}": [answer.json()["id"] for answer in (*keys, teams[1])],
        "org": ["fuzz-org"],
        "team": ["fuzz-team"],
        "/tokens/{id}": [answer.json()["id"] for answer in tokens],
        "/quota-requests/{id}": [answer.json()["id"] for answer in asks],
        "/flags/{name}": list(PLAN_FLAGS),
        "/upstreams/{name}": UPSTREAMS,
        "tier": ["free"],
        "capability": list(CAPABILITIES),
        "upstream": UPSTREAMS,
        "user": ["fuzz-user", "fuzz-0"],
        "fingerprint": [entry["fingerprint"] for entry in json_list(listed)],
        "format": ["csv", "json", "xlsx"],
        "bucket": ["hour", "day", "all"],
        "group_by": ["user", "model,tier", "capability"],
        "limit": ["1", "50", "1000"],
        **dict.fromkeys(("start", "end", "expires_at"), EDGE_TIMES),
    }


def json_list(document: Any) -> list[dict[str, Any]]:
    """The entries of a ``{"data": [...]}`` (or ``{"keys": [...]}``) answer."""
    for field in ("data", "keys"):
        if isinstance(document, dict) and isinstance(document.get(field), list):
            return list(document[field])
    raise AssertionError(f"no list in {document!r:.300}")


def steer(case: Case, data: st.DataObject, known: dict[str, list[str]]) -> None:
    """Three times in four, swap each path or query parameter or top-level body field named
    in ``known`` (as ``name``, or ``/segment/{name}`` where the path has it) for an existing
    value (or, for times, an edge one)."""
    places = [case.path_parameters or {}, case.query or {}]
    if isinstance(case.body, dict):
        places.append(case.body)
    for place in places:
        for name in list(place):
            segment = next((k for k in known if k.endswith(f"{{{name}}}") and k in case.path), "")
            values = known.get(segment) or known.get(name)
            if values and data.draw(st.integers(0, 3)):
                place[name] = data.draw(st.sampled_from(values))


@pytest.fixture(scope="module")
def served_schema(gw: RunningGateway) -> BaseSchema:
    served = call(gw, "GET", "/v1/admin/openapi.json")
    assert served.status_code == 200, served.text
    assert served.json() == document()
    return schemathesis.openapi.from_dict(served.json())


def call(
    gw: RunningGateway, method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kw)


def check_answer(case: Case, status: int, text: str, body: Any, content_type: str) -> None:
    where = f"{case.method} {case.formatted_path} -> {status}: {text:.300}"
    for secret in SECRETS:
        assert secret not in text, f"a secret in the answer: {where}"
    check_openai_answer(where, status, body, content_type)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize(
    "method, path, role", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_admin_operation_never_fails_inside_and_errors_are_openai_shaped(
    gw: RunningGateway,
    served_schema: BaseSchema,
    known: dict[str, list[str]],
    method: str,
    path: str,
    role: str,
    mode: GenerationMode,
) -> None:
    operation = served_schema[path][method]
    token = CLIENT_KEY if role == "user" else ADMIN_TOKEN
    session = requests.Session()
    if role == "user":  # the fuzzed PUT /v1/admin/settings may have switched user keys off
        allow = call(gw, "PUT", "/v1/admin/settings", json={"allow_user_keys": True})
        assert allow.status_code == 200, allow.text

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports in seconds
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode), st.data())
    def fuzz(case: Case, data: st.DataObject) -> None:
        steer(case, data, known)
        # The token is set after serializing: schemathesis drops the Authorization header from
        # negative cases that negate a header, and these cases are about the handlers' own
        # checks (a bad or missing token is tested in tests/control).
        request = case.as_transport_kwargs(gw.url)
        request["headers"]["Authorization"] = f"Bearer {token}"
        response = session.request(**request, timeout=10)
        try:
            body = response.json()
        except ValueError:
            body = None
        content_type = response.headers.get("content-type", "")
        check_answer(case, response.status_code, response.text, body, content_type)

    with session:
        fuzz()


@pytest.mark.parametrize(
    "method, path, kw, status",
    [
        (
            "POST",
            "/v1/admin/keys",
            {"json": {"user": "u", "tier": "free", "expires_at": 1e300}},
            400,
        ),
        (
            "POST",
            "/v1/admin/keys",
            {"json": {"user": "u", "tier": "free", "expires_at": "inf"}},
            400,
        ),
        ("GET", "/v1/admin/keys", {}, 200),  # no key with an unshowable expiry was stored
        ("GET", "/v1/admin/analytics", {"params": {"start": "nan"}}, 400),
        ("GET", "/v1/admin/analytics", {"params": {"end": "9999-12-31"}}, 400),
        ("GET", "/v1/admin/analytics", {"params": {"start": "0", "bucket": "hour"}}, 200),
        ("GET", "/v1/admin/usage/records", {"params": {"start": "1e300"}}, 400),
        ("GET", "/v1/admin/usage/records", {"params": {"cursor": "not-an-id"}}, 400),
        ("GET", "/v1/admin/usage/export", {"params": {"end": "inf"}}, 400),
    ],
)
def test_the_defects_the_fuzzer_found_stay_fixed(
    gw: RunningGateway, method: str, path: str, kw: dict[str, Any], status: int
) -> None:
    """Each was a 500 (a key expiring after the year 9999 broke every later key listing), or,
    for ``start=0``, a rollup walk that held the worker past the client's timeout."""
    answer = call(gw, method, path, **kw)
    assert answer.status_code == status, answer.text
    if status == 400:
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
