"""The admin route table against the served app: each operation's documented role is the one
its endpoint enforces, and a wrong method's 405 names every method of the path."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.http.admin.operation import Op
from gateway.http.admin.routes import OPERATIONS, routes
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway

ADMIN = "env-admin-token-for-the-route-table-0123456789"
IDS = [f"{op.method} {op.path}" for op in OPERATIONS]


@pytest.fixture
def gw(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        yield client


def concrete(op: Op) -> str:
    """The path with each ``{parameter}`` filled in."""
    return re.sub(r"\{[^}]+\}", "x", op.path)


def call(client: httpx.Client, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, headers=headers, json={})


def test_every_operation_needs_a_credential_and_the_role_it_documents(
    client: httpx.Client,
) -> None:
    headers = {"authorization": f"Bearer {ADMIN}"}
    made = client.post("/v1/admin/tokens", headers=headers, json={"role": "viewer"})
    viewer = made.json()["token"]
    wrong = []
    for op in OPERATIONS:
        anonymous = call(client, op.method, concrete(op), None)
        if anonymous.status_code != 401:
            wrong.append(f"{op.method} {op.path} without a credential: {anonymous.status_code}")
        if op.role == "user":
            continue
        as_viewer = call(client, op.method, concrete(op), viewer)
        refused = as_viewer.status_code == 403 and "insufficient_role" in as_viewer.text
        if refused != (op.role in ("admin", "team_admin")):  # writes: not for viewers
            wrong.append(f"{op.method} {op.path} ({op.role}) as viewer: {as_viewer.status_code}")
    assert not wrong, wrong


def test_a_wrong_method_gets_405_naming_every_method_of_the_path(client: httpx.Client) -> None:
    by_path: dict[str, set[str]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, set()).add(op.method)
    for path, methods in by_path.items():
        wrong = next(m for m in ("PATCH", "DELETE", "PUT", "GET") if m not in methods)
        answer = call(client, wrong, re.sub(r"\{[^}]+\}", "x", path), ADMIN)
        assert answer.status_code == 405, (wrong, path, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request_error"
        allowed = {m.strip() for m in answer.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == methods, (path, allowed)


def test_each_path_is_one_route_calling_each_methods_endpoint() -> None:
    built = {route.path: route for route in routes()}
    assert len(built) == len({op.path for op in OPERATIONS})
    for op in OPERATIONS:
        route = built[op.path]
        assert op.method in (route.methods or ())
        assert route.endpoint.__self__.endpoints[op.method] is op.endpoint  # type: ignore[attr-defined]


def test_a_route_twice_in_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        routes((*OPERATIONS, OPERATIONS[0]))
