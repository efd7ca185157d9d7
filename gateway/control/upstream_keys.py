"""System keys per upstream: stored sealed, opened into an in-memory pool used in turn.

The documents (kind ``upstream_keys``, id = the upstream's name) hold
``{"keys": [{"fingerprint", "label", "added_at", "sealed"}]}``. ``UpstreamKeyPool`` follows the
control plane's snapshots and opens a sealed key once, when it first appears (never per
request). ``pick`` hands out the usable keys of an upstream in turn; a key the upstream
answered with 401/403 (refused) or 429 (rate limited) is set aside for a while, per process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.control.plane import Snapshot
from gateway.control.secrets_at_rest import SealedUnreadable, SecretBox, fingerprint
from gateway.secret import Secret

KIND = "upstream_keys"
RATE_LIMITED_S = 30.0  # a 429 without retry-after
REFUSED_S = 600.0  # 401/403: the key is wrong or revoked; look again after this long
MAX_SET_ASIDE_S = 3600.0
log = logging.getLogger("gateway.control")


def place(upstream: str, key_fingerprint: str) -> str:
    """Where a sealed system key belongs (its additional authenticated data)."""
    return f"{KIND}/{upstream}/{key_fingerprint}"


@dataclass(frozen=True)
class PooledKey:
    upstream: str
    fingerprint: str
    label: str
    secret: Secret = field(repr=False)


@dataclass(frozen=True)
class SetAside:
    until: float  # on the pool's clock
    reason: str  # "refused" (401/403) | "rate_limited" (429)
    status: int


def stored_keys(snapshot: Snapshot, upstream: str) -> list[dict[str, Any]]:
    """The entries of an upstream's document, as stored (sealed)."""
    keys = snapshot.kind(KIND).get(upstream, {}).get("keys", [])
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def stored_counts(documents: Mapping[str, bytes]) -> dict[str, int]:
    """Upstream → how many system keys are stored for it, from the raw documents of the kind
    (as the store loads them; for a check that has no master key to open them)."""
    counts = {}
    for upstream, raw in documents.items():
        try:
            keys = json.loads(raw).get("keys")
        except (ValueError, AttributeError):
            continue
        if isinstance(keys, list) and (count := sum(isinstance(k, dict) for k in keys)):
            counts[upstream] = count
    return counts


def sealed_entry(
    box: SecretBox, upstream: str, secret: str, label: str, now: float
) -> dict[str, Any]:
    """A new stored entry for ``secret``: its fingerprint, label and sealed value."""
    print_ = fingerprint(secret)
    return {
        "fingerprint": print_,
        "label": label,
        "added_at": round(now, 3),
        "sealed": box.seal(secret, place(upstream, print_)),
    }


def redacted(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What an audit entry or answer may show of stored entries (no sealed value)."""
    return [{k: v for k, v in e.items() if k != "sealed"} for e in entries]


def set_aside_for(status: int, retry_after: float | None) -> float:
    if status == 429:
        wait = RATE_LIMITED_S if retry_after is None else retry_after
        return min(max(wait, 1.0), MAX_SET_ASIDE_S)
    return REFUSED_S


class UpstreamKeyPool:
    """The opened system keys of every upstream, handed out in turn (``pick``)."""

    def __init__(
        self, box: SecretBox | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._box = box
        self._clock = clock
        self._keys: dict[str, tuple[PooledKey, ...]] = {}
        self._opened: dict[tuple[str, str, str], PooledKey] = {}  # (upstream, fp, ciphertext)
        self._unreadable: set[tuple[str, str]] = set()
        self._next: dict[str, int] = {}
        self._aside: dict[tuple[str, str], SetAside] = {}

    def update(self, snapshot: Snapshot) -> None:
        """Follow a new snapshot (a control plane subscriber): open only new entries."""
        keys: dict[str, tuple[PooledKey, ...]] = {}
        opened: dict[tuple[str, str, str], PooledKey] = {}
        unreadable: set[tuple[str, str]] = set()
        for upstream in snapshot.kind(KIND):
            pooled = []
            for entry in stored_keys(snapshot, upstream):
                key = self._open(upstream, entry, opened)
                if key is None:
                    unreadable.add((upstream, str(entry.get("fingerprint"))))
                else:
                    pooled.append(key)
            if pooled:
                keys[upstream] = tuple(pooled)
        self._keys, self._opened, self._unreadable = keys, opened, unreadable
        live = {(k.upstream, k.fingerprint) for ks in keys.values() for k in ks}
        self._aside = {at: aside for at, aside in self._aside.items() if at in live}

    def _open(
        self,
        upstream: str,
        entry: Mapping[str, Any],
        opened: dict[tuple[str, str, str], PooledKey],
    ) -> PooledKey | None:
        print_, sealed = str(entry.get("fingerprint", "")), entry.get("sealed")
        if not isinstance(sealed, dict):
            return None
        cache = (upstream, print_, str(sealed.get("ciphertext")))
        key = self._opened.get(cache)
        if key is None:
            if self._box is None:
                return None
            try:
                secret = self._box.open(sealed, place(upstream, print_))
            except SealedUnreadable:
                log.warning("upstream key %s of %s does not open: skipped", print_, upstream)
                return None
            key = PooledKey(upstream, print_, str(entry.get("label", "")), Secret(secret))
        opened[cache] = key
        return key

    def has_keys(self, upstream: str) -> bool:
        return upstream in self._keys

    def upstreams(self) -> frozenset[str]:
        """The upstreams with at least one stored key that opened."""
        return frozenset(self._keys)

    def key(self, upstream: str, key_fingerprint: str) -> PooledKey | None:
        """The stored key of ``upstream`` with this fingerprint, set aside or not (a job made
        with it is asked about with it); None when it is no longer stored."""
        for key in self._keys.get(upstream, ()):
            if key.fingerprint == key_fingerprint:
                return key
        return None

    def pick(self, upstream: str) -> PooledKey | None:
        """The next usable key of ``upstream`` in turn; None when it has none (or all are
        set aside)."""
        keys = self._keys.get(upstream)
        if not keys:
            return None
        start = self._next.get(upstream, 0)
        now = self._clock()
        for offset in range(len(keys)):
            key = keys[(start + offset) % len(keys)]
            if self._usable(key, now):
                self._next[upstream] = (start + offset + 1) % len(keys)
                return key
        return None

    def soonest(self, upstream: str) -> PooledKey | None:
        """When every key of ``upstream`` is set aside: the one back the soonest (the upstream
        is tried with it rather than skipped)."""
        keys = self._keys.get(upstream, ())
        if not keys:
            return None
        never = SetAside(0.0, "", 0)
        return min(keys, key=lambda k: self._aside.get((k.upstream, k.fingerprint), never).until)

    def _usable(self, key: PooledKey, now: float) -> bool:
        aside = self._aside.get((key.upstream, key.fingerprint))
        if aside is None:
            return True
        if aside.until <= now:
            del self._aside[(key.upstream, key.fingerprint)]
            return True
        return False

    def set_aside(self, key: PooledKey, status: int, retry_after: float | None) -> bool:
        """Set ``key`` aside after the upstream answered ``status``; True when another key of
        the same upstream is usable now."""
        reason = "rate_limited" if status == 429 else "refused"
        until = self._clock() + set_aside_for(status, retry_after)
        self._aside[(key.upstream, key.fingerprint)] = SetAside(until, reason, status)
        log.warning(
            "upstream key %s of %s set aside (%s, status %d)",
            key.fingerprint,
            key.upstream,
            reason,
            status,
        )
        now = self._clock()
        return any(self._usable(k, now) for k in self._keys.get(key.upstream, ()))

    def state(self, snapshot: Snapshot, upstream: str) -> list[dict[str, Any]]:
        """Each stored key of ``upstream`` with its state in this process (never the key)."""
        now = self._clock()
        rows = []
        for entry in redacted(stored_keys(snapshot, upstream)):
            at = (upstream, str(entry.get("fingerprint")))
            aside = self._aside.get(at)
            if at in self._unreadable or self._box is None:
                entry["state"] = "unreadable"
            elif aside is not None and aside.until > now:
                entry["state"] = "set_aside"
                entry["set_aside"] = {
                    "reason": aside.reason,
                    "status": aside.status,
                    "remaining_s": round(aside.until - now, 1),
                }
            else:
                entry["state"] = "active"
            rows.append(entry)
        return rows
