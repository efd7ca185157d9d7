"""Schemathesis against the served gateway's client and admin endpoints (issue 10, fuzzing).

Requests are generated from ``openapi.yaml`` (valid and schema-violating, with the client key or
the admin token), sent to a gateway served by uvicorn with a real redis-server behind it and the
mock upstream in front of it. Every answer must be below 500 or an upstream failure (502/503/504
with an upstream code), and every error must be OpenAI-shaped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.fuzz.answers import check_anthropic_answer, check_openai_answer
from tests.redis_fixture import RedisServer

SCHEMA = schemathesis.openapi.from_path(Path(__file__).with_name("openapi.yaml"))
OPERATIONS: list[APIOperation] = [result.ok() for result in SCHEMA.get_all_operations()]
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = 30
# Defects the fuzzer found in code this test does not own, as (operation label, mode):
# each is marked xfail(strict=True) with the defect named, until it is fixed.
KNOWN_DEFECTS: dict[tuple[str, GenerationMode], str] = {}


@pytest.fixture
def gw(start_gateway: StartGateway, redis: RedisServer) -> RunningGateway:
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN_TOKEN))
    return start_gateway(runtime=runtime)


def check_answer(case: Case, status: int, body: Any, content_type: str) -> None:
    where = f"{case.method} {case.formatted_path} -> {status}: {body!r:.300}"
    if case.path.startswith("/v1/messages"):
        check_anthropic_answer(where, status, body, content_type)
    else:
        check_openai_answer(where, status, body, content_type)


def caller(gw: RunningGateway) -> Callable[[Case], None]:
    def call(case: Case) -> None:
        admin = "/admin/" in case.path or (
            case.path == "/v1/usage" and bool(case.query and case.query.get("user"))
        )
        token = ADMIN_TOKEN if admin else gw.key()
        response = case.call(
            base_url=gw.url, headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        content_type = (response.headers.get("content-type") or [""])[0]
        check_answer(case, response.status_code, body, content_type)

    return call


def marks(operation: APIOperation, mode: GenerationMode) -> list[pytest.MarkDecorator]:
    defect = KNOWN_DEFECTS.get((operation.label, mode))
    return [pytest.mark.xfail(strict=True, reason=defect)] if defect else []


CASES = [
    pytest.param(
        operation, mode, id=f"{operation.label}-{mode.value}", marks=marks(operation, mode)
    )
    for operation in OPERATIONS
    for mode in GenerationMode
]


@pytest.mark.parametrize("operation, mode", CASES)
def test_no_internal_errors_and_every_error_is_openai_shaped(
    gw: RunningGateway, operation: APIOperation, mode: GenerationMode
) -> None:
    call = caller(gw)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports in seconds
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(operation.as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        call(case)

    fuzz()
