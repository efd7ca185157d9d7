"""Fixtures: a real mock upstream, a real redis-server, and gateways served by uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.parts import Gateway
from gateway.store.factory import create_store
from tests.mock_upstream import MockUpstream, running_mock_upstream
from tests.redis_fixture import RedisServer
from tests.support import ThreadedServer, build_config, routes_doc, tiers_doc

# The inner loop (`pytest -m "not slow"`, under 90 s on 2 cores) leaves these out: whole modules
# that start processes, browsers, clusters or PostgreSQL, and single tests that take seconds.
SLOW_PATHS = (
    "tests/scale/",
    "tests/faults/",
    "tests/ledger/",
    "tests/ui/",
    "tests/deploy_k8s/",
    "tests/fuzz/test_admin_schemathesis.py",
    "tests/fuzz/test_api_schemathesis.py",
    "tests/first_run/test_demo.py",
    "tests/first_run/test_isolated_install.py",
    "tests/first_run/test_cli.py",
    "tests/first_run/test_booted_a_minute_ago.py",
    "tests/first_run/test_doc_commands.py",
    "tests/first_run/test_optional_extras.py",
    "tests/first_run/test_serve_start.py",
    "tests/first_run/test_demo_weights.py",
    "tests/first_run/test_demo_structured.py",
    "tests/test_bench_smoke.py",
    "tests/e2e/test_serve.py",
    "tests/e2e/test_serve_tls.py",
    "tests/e2e/test_hostile_clients.py",
    "tests/e2e/test_tracing.py",
    "tests/e2e/test_shutdown_cut.py",
    "tests/e2e/test_dead_workers.py",
    "tests/e2e/test_background_worker.py",
    "tests/control/test_reload_serve.py",
    "tests/control/test_stored_keys_readiness.py",
    "tests/control/test_master_key_rotation.py",
    "tests/control/test_cli_keys.py",
    "tests/control/test_upstream_keys_replicas.py",
    "tests/control/test_two_processes.py",
    "tests/control/test_orgs.py",
    "tests/control/test_orgs_two_processes.py",
    "tests/control/test_orgs_allowances_two_processes.py",
    "tests/control/test_flags_replicas.py",
    "tests/protocols/test_agents_sdk.py",
    "tests/batches/test_replicas.py",
    "tests/e2e/test_quotas.py",
    "tests/e2e/test_failures.py",
    "tests/control/test_admin_api.py",
    "tests/protocols/test_refusals.py",
    "tests/control/test_reload.py",
    "tests/control/test_audit_logs.py",
    "tests/unit/test_wire.py",
    "tests/batches/test_batch_limits.py",
    "tests/batches/test_team_owner_refused.py",
    "tests/ui/test_hostile_pages.py",
    "tests/control/test_level_leaks.py",
    "tests/providers/test_native_passthrough.py",
)
SLOW_TESTS = (
    "tests/protocols/test_store_redis.py::test_in_redis_and_outage",
    "tests/e2e/test_quotas.py::test_200_concurrent_requests_through_two_processes_admit_exactly_50",
    "tests/control/test_flags.py::test_flags_command_line",
    "tests/unit/test_metrics.py::test_a_dead_workers_gauges_are_dropped_and_its_counters_kept",
    "tests/fuzz/test_wire_h11.py::test_the_client_reads_what_h11_reads_or_refuses_cleanly",
    "tests/metering/test_concurrency.py::test_two_processes_admit_exactly_the_request_quota",
    "tests/providers/test_demo_schema.py::test_generated_schemas_get_valid_instances",
    "tests/providers/test_demo_schema.py::test_any_json_as_a_schema_never_raises",
    "tests/control/test_reload.py::test_reload_switches_new_requests_and_refuses_an_invalid_config",
    "tests/control/test_audit_logs.py::test_ten_thousand_user_writes_leave_every_operator_entry",
    "tests/routing/test_deadline.py::test_hung_upstreams_answer_504_at_the_deadline",
    "tests/fuzz/test_sse_relay.py::test_any_chunking_gives_the_same_events_and_usage",
    "tests/usage/test_roll_process.py::test_the_roll_command_folds_until_stopped",
    "tests/usage/test_roll_process.py::test_the_roll_command_needs_redis",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        node = item.nodeid.split("[", 1)[0]
        if node.startswith(SLOW_PATHS) or node in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mock_upstream_server() -> Iterator[MockUpstream]:
    with running_mock_upstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(mock_upstream_server: MockUpstream) -> MockUpstream:
    mock_upstream_server.reset()
    return mock_upstream_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The shared redis-server, running and empty."""
    redis_server.start()
    redis_server.flushall()
    return redis_server


@dataclass
class RunningGateway:
    url: str
    app: Starlette
    keys: dict[str, str]  # tier → a client key of that tier (user "user-<tier>")

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def key(self, tier: str = "free") -> str:
        return self.keys[tier]


StartGateway = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(upstream: MockUpstream) -> Iterator[StartGateway]:
    servers: list[ThreadedServer] = []

    def start(
        tiers: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        tiers_extra: Mapping[str, Any] | None = None,
        routes_extra: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        first_byte_timeout_s: float = 1.0,
        **app_kwargs: Any,
    ) -> RunningGateway:
        tiers_document = tiers_doc(tiers, **(tiers_extra or {}))
        keys = {tier: f"sk-test-{tier}-0123456789" for tier in tiers_document["tiers"]}
        env = {"GATEWAY_KEYS": ",".join(f"{k}={t}:user-{t}" for t, k in keys.items())}
        routes = routes_doc(upstream.base_url, first_byte_timeout_s=first_byte_timeout_s)
        routes.update(routes_extra or {})  # top-level sections replaced whole
        config = build_config(routes, tiers_document, env)
        runtime = runtime or Runtime()
        if "store" not in app_kwargs:
            app_kwargs["store"] = create_store(runtime.redis_url, config.settings)
        app = create_app(config, runtime, metrics=Metrics(), **app_kwargs)
        server = ThreadedServer(app, gateway=True).start()
        servers.append(server)
        return RunningGateway(server.url, app, keys)

    yield start
    for server in servers:
        server.stop()
