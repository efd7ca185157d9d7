"""What the endpoints may use of the gateway, as a protocol the app's container satisfies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request

from gateway.config.model import Config
from gateway.config.runtime import Runtime
from gateway.control.plane import ControlPlane
from gateway.control.stored_keys import StoredKeys
from gateway.metering import Meter
from gateway.observe.metrics import Metrics
from gateway.observe.provider_stats import ProviderStats
from gateway.proxy.auth import KeyRing
from gateway.proxy.breaker import Breakers
from gateway.store.port import Store
from gateway.usage.analytics import Analytics
from gateway.usage.records import UsageRecords

if TYPE_CHECKING:  # the ledger's modules need asyncpg, imported only when it is configured
    from gateway.ledger.service import Ledger


class Services(Protocol):
    """The parts built once by ``gateway.app.create_app`` (``app.state.gateway``)."""

    @property
    def config(self) -> Config: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def meter(self) -> Meter: ...
    @property
    def control(self) -> ControlPlane: ...
    @property
    def analytics(self) -> Analytics: ...
    @property
    def usage_records(self) -> UsageRecords: ...
    @property
    def store(self) -> Store: ...
    @property
    def stored_keys(self) -> StoredKeys | None: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def ledger(self) -> Ledger | None: ...
    @property
    def breakers(self) -> Breakers: ...
    @property
    def stats(self) -> ProviderStats: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def created(self) -> int:
        """Reported as the models' ``created``."""
        ...


def services(request: Request) -> Services:
    found: Services = request.app.state.gateway
    return found
