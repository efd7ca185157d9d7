"""Client keys → ``Principal``. Keys are held as sha256 digests only.

Two sources: the config's keys (tiers.yaml, ``GATEWAY_KEYS``) and the run-time keys of the
control plane (kind ``keys``), re-indexed in memory whenever its snapshot changes, so
authenticating never awaits. A run-time key also carries its models allow-list and limits;
its expiry (and an old secret's grace after a rotation) is checked against the clock.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.config.model import Config, Tier
from gateway.control import keys as runtime_keys
from gateway.control.plane import ControlPlane, Snapshot
from gateway.errors import Forbidden, Unauthorized
from gateway.metering.store import StoreError
from gateway.metering.types import KeyLimits
from gateway.secret import Secret, sha256_hex

BYOK_HEADER = "x-upstream-api-key"
PREFIX = 16
LAST_USED_KEY = "gw:cp:last_used"  # run-time key id → epoch seconds, flushed every few seconds
LAST_USED_FLUSH_S = 5.0


@dataclass(frozen=True)
class Principal:
    user: str
    tier: Tier
    key_id: str  # a short prefix of the key's digest, or a run-time key's id: safe to log
    byok_key: Secret | None = None
    models: frozenset[str] | None = None  # a run-time key's allow-list (None: any)
    limits: KeyLimits | None = None  # a run-time key's own limits
    batch: str | None = None  # the batch a request runs for (priced at the batch price)

    @property
    def byok(self) -> bool:
        return self.byok_key is not None

    def allow_model(self, requested: str | None) -> None:
        """403 unless the key's allow-list names the model or route asked for."""
        if self.models is not None and (requested or "") not in self.models:
            raise Forbidden(
                f"This API key may not use the model '{requested or ''}'; "
                f"allowed: {', '.join(sorted(self.models))}.",
                param="model",
            )


@dataclass(frozen=True)
class _Stored:
    sha256: str
    user: str
    tier: Tier
    key: runtime_keys.VirtualKey | None = None  # None: a config key
    until: float | None = None  # an old secret's end of grace


class Authenticator(Protocol):
    """What the pipeline authenticates with: the ``KeyRing``, or a batch's owner."""

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...


class KeyRing:
    """Finds a key by a prefix of its digest, then compares the full digest in constant time.

    The lookup only ever sees a hash of the presented key, so its timing reveals nothing usable.
    """

    def __init__(
        self,
        config: Config,
        control: ControlPlane | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._static: dict[str, list[_Stored]] = {}
        for key in config.keys:
            entry = _Stored(key.key_sha256, key.user, config.tiers[key.tier])
            self._static.setdefault(key.key_sha256[:PREFIX], []).append(entry)
        self._by_prefix = self._static
        self.last_used: dict[str, float] = {}  # run-time key id → when it last authenticated
        self._flushed: dict[str, float] = {}
        self._control = control
        if control is not None:
            self._index(control.snapshot)
            control.subscribe(self._index)
            control.every(LAST_USED_FLUSH_S, self.flush_last_used)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header."
            )
        digest = sha256_hex(presented)
        for stored in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored.sha256, digest):
                byok = headers.get(BYOK_HEADER)
                byok_key = Secret(byok) if byok else None
                if stored.key is None:
                    return Principal(stored.user, stored.tier, digest[:12], byok_key)
                return self._runtime(stored, stored.key, byok_key)
        raise Unauthorized("Invalid API key.")

    def by_digest(self, digest: str) -> Principal:
        """The principal of the key whose sha256 is ``digest``, checked as ``authenticate``
        checks a presented key (a batch re-checks its owner's key before every line)."""
        for stored in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored.sha256, digest):
                if stored.key is None:
                    return Principal(stored.user, stored.tier, digest[:12])
                return self._runtime(stored, stored.key, None)
        raise Unauthorized("The API key that created this batch is no longer valid.")

    def _runtime(
        self, stored: _Stored, key: runtime_keys.VirtualKey, byok_key: Secret | None
    ) -> Principal:
        now = self._clock()
        if stored.until is not None and now >= stored.until:
            raise Unauthorized("Invalid API key.")  # a rotated-out secret after its grace
        if key.expires_at is not None and now >= key.expires_at:
            raise Unauthorized("This API key has expired.", code="expired_api_key")
        self.last_used[key.id] = now
        return Principal(key.user, stored.tier, key.id, byok_key, key.models, key.limits)

    def _index(self, snapshot: Snapshot) -> None:
        """Rebuild the lookup from the config's keys and the snapshot's (swapped whole)."""
        found = {prefix: list(entries) for prefix, entries in self._static.items()}
        for entry in runtime_keys.entries(snapshot.kind(runtime_keys.KIND)):
            tier = self._config.tiers.get(entry.key.tier)
            if tier is None:
                continue  # a tier no longer in the config: the key cannot be used
            stored = _Stored(entry.sha256, entry.key.user, tier, entry.key, entry.until)
            found.setdefault(entry.sha256[:PREFIX], []).append(stored)
        self._by_prefix = found

    async def flush_last_used(self) -> None:
        """Write the keys used since the last flush (a background job, never per request)."""
        if self._control is None:
            return
        changed = {k: int(v) for k, v in self.last_used.items() if self._flushed.get(k) != v}
        if not changed:
            return
        with contextlib.suppress(StoreError):
            await self._control.write_counters(LAST_USED_KEY, changed)
            self._flushed.update({k: self.last_used[k] for k in changed})


def presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None
