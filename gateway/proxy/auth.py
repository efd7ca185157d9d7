"""Client keys → ``Principal``. Keys are held as sha256 digests only.

Two sources: the config's keys (tiers.yaml, ``GATEWAY_KEYS``) and the run-time keys of the
control plane (kind ``keys``), re-indexed in memory whenever its snapshot changes, so
authenticating never awaits. A run-time key also carries its models allow-list and limits;
its expiry (and an old secret's grace after a rotation) is checked against the clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.model import Config, Tier
from gateway.control import keys as runtime_keys
from gateway.control.id_keys import IdKeys
from gateway.control.orgs import Hierarchy, TeamView, narrowed
from gateway.control.plane import ControlPlane, Snapshot
from gateway.errors import Forbidden, Unauthorized
from gateway.metering.types import KeyLimits, LevelLimits
from gateway.proxy.auth_throttle import AuthThrottle, client_address
from gateway.secret import Secret, sha256_hex
from gateway.store.port import StoreError

BYOK_HEADER = "x-upstream-api-key"
PREFIX = 16
LAST_USED_KEY = "gw:cp:last_used"  # run-time key id → epoch seconds, flushed every few seconds
LAST_USED_FLUSH_S = 5.0


@dataclass(frozen=True)
class Principal:
    user: str
    tier: Tier
    key_id: str  # a config key's keyed id (control/id_keys.py) or a run-time key's id
    byok_key: Secret | None = None
    models: frozenset[str] | None = None  # a run-time key's allow-list (None: any)
    limits: KeyLimits | None = None  # a run-time key's own limits (None: none, or none set)
    batch: str | None = None  # the batch a request runs for (priced at the batch price)
    levels: tuple[LevelLimits, ...] = ()  # a team key's organization and team

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
    key_id: str
    key: runtime_keys.VirtualKey | None = None  # None: a config key
    until: float | None = None  # an old secret's end of grace
    # A config key's or a run-time key's (not a team's) principal without an upstream key of
    # the caller's, built once (it is immutable): a frozen dataclass's construction was a
    # measurable share of a request. A run-time key's is served after its checks of the clock.
    plain: Principal | None = None


class Authenticator(Protocol):
    """What the pipeline authenticates with: the ``KeyRing``, or a batch's owner."""

    def authenticate(
        self, headers: Mapping[str, str], scope: Mapping[str, Any] | None = None
    ) -> Principal: ...


class KeyRing:
    """Finds a key by a prefix of its digest, then compares the full digest in constant time.

    The lookup only ever sees a hash of the presented key, so its timing reveals nothing usable.
    """

    def __init__(
        self,
        config: Config,
        control: ControlPlane | None = None,
        clock: Callable[[], float] = time.time,
        throttle: AuthThrottle | None = None,
        ids: IdKeys | None = None,
    ) -> None:
        self._config = config
        self.throttle = throttle or AuthThrottle()  # every surface's failed credentials
        self._clock = clock
        self._static: dict[str, list[_Stored]] = {}
        config_key_id = (ids or IdKeys()).config_key_id
        for key in config.keys:
            key_id = config_key_id(key.key_sha256)
            tier = config.tiers[key.tier]
            plain = Principal(key.user, tier, key_id)
            entry = _Stored(key.key_sha256, key.user, tier, key_id, plain=plain)
            self._static.setdefault(key.key_sha256[:PREFIX], []).append(entry)
        self._by_prefix = self._static
        self._static_by_id = _by_id(self._static)  # config key id → its entries
        self._prefixes: dict[str, set[str]] = {}  # run-time key id → the prefixes it is under
        self._indexed: Snapshot | None = None
        self.last_used: dict[str, float] = {}  # run-time key id → when it last authenticated
        self._flushed: dict[str, float] = {}
        self._control = control
        self.hierarchy = Hierarchy()  # teams and their organizations (control/orgs.py)
        # run-time key id → (its entry, its team's view, the principal they make): ``_in_team``
        self._team_principals: dict[str, tuple[_Stored, TeamView, Principal]] = {}
        if control is not None:
            self.hierarchy(control.snapshot)
            control.subscribe(self.hierarchy)
            self._index(control.snapshot)
            control.subscribe(self._index)
            control.every(LAST_USED_FLUSH_S, self.flush_last_used)

    def authenticate(
        self, headers: Mapping[str, str], scope: Mapping[str, Any] | None = None
    ) -> Principal:
        """The key's principal; 401 for a wrong key (counted against the client address of
        ``scope`` and the key's prefix by the throttle), 429 for a wrong key while they are
        blocked."""
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header."
            )
        digest = hashlib.sha256(presented.encode()).hexdigest()  # ``sha256_hex``, no call
        for stored in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored.sha256, digest):
                byok = headers.get(BYOK_HEADER)
                return self._principal(stored, Secret(byok) if byok else None)
        # A valid client key is served even from a blocked address: machine traffic often
        # shares one address (an ingress, a NAT) with a client stuck on a stale key, and a
        # made key's 256 random bits make the oracle worthless to a guesser.
        address = client_address(scope)
        if self.throttle.active:
            self.throttle.check(address, presented)
        self.throttle.failed("api_key", address, presented)
        raise Unauthorized("Invalid API key.")

    def by_digest(self, digest: str) -> Principal:
        """The principal of the key whose sha256 is ``digest``, checked as ``authenticate``
        checks a presented key (a batch re-checks its owner's key before every line)."""
        for stored in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored.sha256, digest):
                return self._principal(stored, None)
        raise Unauthorized("The API key that created this batch is no longer valid.")

    def identify(self, presented: str) -> Principal | None:
        """The principal of the key ``presented``, None if no key has it (not throttled)."""
        digest = sha256_hex(presented)
        for stored in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored.sha256, digest):
                return self._principal(stored, None)
        return None

    def by_reference(self, key_id: str, matches: Callable[[str], bool]) -> Principal:
        """The key ``key_id`` whose secret's digest ``matches`` (a dashboard session's keyed
        reference), checked as ``authenticate`` checks it: gone, expired or rotated out → 401."""
        candidates = self._static_by_id.get(key_id) or [
            stored
            for prefix in self._prefixes.get(key_id, ())
            for stored in self._by_prefix.get(prefix, ())
            if stored.key_id == key_id
        ]
        for stored in candidates:
            if matches(stored.sha256):
                return self._principal(stored, None)
        raise Unauthorized("Invalid API key.")

    def _principal(self, stored: _Stored, byok_key: Secret | None) -> Principal:
        if stored.key is None:
            if byok_key is None and stored.plain is not None:
                return stored.plain
            return Principal(stored.user, stored.tier, stored.key_id, byok_key)
        return self._runtime(stored, stored.key, byok_key)

    def _runtime(
        self, stored: _Stored, key: runtime_keys.VirtualKey, byok_key: Secret | None
    ) -> Principal:
        now = self._clock()
        if stored.until is not None and now >= stored.until:
            raise Unauthorized("Invalid API key.")  # a rotated-out secret after its grace
        if key.expires_at is not None and now >= key.expires_at:
            raise Unauthorized("This API key has expired.", code="expired_api_key")
        self.last_used[key.id] = now
        if key.team is not None:
            return self._in_team(stored, key, byok_key)
        if byok_key is None and stored.plain is not None:
            return stored.plain
        return Principal(key.user, stored.tier, key.id, byok_key, key.models, own_limits(key))

    def _in_team(
        self, stored: _Stored, key: runtime_keys.VirtualKey, byok_key: Secret | None
    ) -> Principal:
        """A team key: re-checked against its team on every request (the team and its
        organization exist, the user is still a member), with the team's tier, levels and
        models."""
        team = self.hierarchy.teams.get(key.team or "")
        if team is None:
            raise Forbidden(f"This API key's team '{key.team}' no longer exists.",
                            code="team_not_found")  # fmt: skip
        if byok_key is None:
            # the same entry and team view (both immutable, each replaced when its document
            # changes) make the same principal: checked once per pair, not per request
            cached = self._team_principals.get(key.id)
            if cached is not None and cached[0] is stored and cached[1] is team:
                return cached[2]
        principal = self._team_principal(stored, key, team, byok_key)
        if byok_key is None:
            if len(self._team_principals) > 10_000:
                self._team_principals.clear()
            self._team_principals[key.id] = (stored, team, principal)
        return principal

    def _team_principal(
        self,
        stored: _Stored,
        key: runtime_keys.VirtualKey,
        team: TeamView,
        byok_key: Secret | None,
    ) -> Principal:
        if key.user not in team.members:
            raise Forbidden(
                f"The user of this API key is no longer a member of team '{team.team}'.",
                code="not_a_team_member",
            )
        # served at the team's tier now (an operator moving the team moves its keys at once)
        tier = self._config.tiers.get(team.tier) if team.tier is not None else stored.tier
        if tier is None:
            raise Forbidden(f"Team '{team.team}''s tier '{team.tier}' is no longer configured.",
                            code="team_tier_unknown")  # fmt: skip
        models = narrowed(key.models, team.models)
        limits = own_limits(key)
        return Principal(key.user, tier, key.id, byok_key, models, limits, levels=team.levels)

    def _index(self, snapshot: Snapshot) -> None:
        """Follow the snapshot: a change of one run-time key re-indexes that key alone; any
        other snapshot (a whole reload) rebuilds the lookup and swaps it whole."""
        previous, self._indexed = self._indexed, snapshot
        change = snapshot.change
        if previous is not None and change is not None and previous.version + 1 == snapshot.version:
            kind, key_id = change
            if kind == runtime_keys.KIND:
                self._reindex(key_id, snapshot.kind(kind).get(key_id))
            return
        found = {prefix: list(entries) for prefix, entries in self._static.items()}
        prefixes: dict[str, set[str]] = {}
        for entry in runtime_keys.entries(snapshot.kind(runtime_keys.KIND)):
            stored = self._stored(entry)
            if stored is not None:
                found.setdefault(entry.sha256[:PREFIX], []).append(stored)
                prefixes.setdefault(entry.key.id, set()).add(entry.sha256[:PREFIX])
        self._by_prefix, self._prefixes = found, prefixes

    def _reindex(self, key_id: str, document: Mapping[str, object] | None) -> None:
        """Replace one run-time key's entries (none: deleted). Each touched prefix gets a new
        list, so a lookup in progress never sees one half changed."""
        added = runtime_keys.entries({key_id: document}) if document is not None else []
        for prefix in self._prefixes.pop(key_id, ()):
            kept = [
                s for s in self._by_prefix.get(prefix, ()) if s.key is None or s.key.id != key_id
            ]
            if kept:
                self._by_prefix[prefix] = kept
            else:
                self._by_prefix.pop(prefix, None)
        for entry in added:
            stored = self._stored(entry)
            if stored is not None:
                prefix = entry.sha256[:PREFIX]
                self._by_prefix[prefix] = [*self._by_prefix.get(prefix, ()), stored]
                self._prefixes.setdefault(key_id, set()).add(prefix)

    def _stored(self, entry: runtime_keys.Entry) -> _Stored | None:
        tier = self._config.tiers.get(entry.key.tier)
        if tier is None:
            return None  # a tier no longer in the config: the key cannot be used
        key = entry.key
        plain = None
        if key.team is None:  # a team key's principal follows its team (``_in_team``)
            plain = Principal(key.user, tier, key.id, None, key.models, own_limits(key))
        return _Stored(entry.sha256, key.user, tier, key.id, key, entry.until, plain)

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


def _by_id(by_prefix: Mapping[str, list[_Stored]]) -> dict[str, list[_Stored]]:
    found: dict[str, list[_Stored]] = {}
    for entries in by_prefix.values():
        for stored in entries:
            found.setdefault(stored.key_id, []).append(stored)
    return found


def own_limits(key: runtime_keys.VirtualKey) -> KeyLimits | None:
    """A run-time key's limits as its principal holds them: None when it sets none (no check
    of its own is added to its requests' reservations)."""
    limits = key.limits
    return None if limits is None or limits.unlimited else limits


def presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = headers.get("api-key") or headers.get("x-api-key")  # x-api-key: Anthropic's
    return api_key.strip() if api_key and api_key.strip() else None
