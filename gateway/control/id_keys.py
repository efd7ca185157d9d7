"""Keyed ids: config keys' ids and the access log's user, as HMACs under a server key.

An id shown in records, exports and logs so cannot be checked against a guessed key or user
name offline.

The key is derived from the operator's master key (``GATEWAY_SECRET_KEY``, the one that seals
stored upstream keys): ``HMAC-SHA256(master key, "gateway-ids-v1")``, the same on every
replica and across restarts. Without a master key:

- a config key's id stays the unkeyed ``sha256(key)[:12]`` (records, rollups and quota
  requests store it, so it must not change between processes or restarts);
- the access log's user hash is keyed by a random key made per process (not comparable
  between processes or restarts);

and the gateway warns once at start. Setting the master key, or rotating it, changes config
keys' ids and the log's user hashes from then on (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

LABEL = b"gateway-ids-v1"
_PER_PROCESS = secrets.token_bytes(32)  # the log's key when there is no master key
log = logging.getLogger(__name__)
_warned: list[bool] = []


def derive(master_key: bytes) -> bytes:
    return hmac.new(master_key, LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class IdKeys:
    stable: bytes | None = None  # derived from the master key; None without one

    def config_key_id(self, key_sha256: str) -> str:
        """A config key's id (12 hex digits), from the sha256 of the key."""
        if self.stable is None:
            return key_sha256[:12]
        return hmac.new(self.stable, key_sha256.encode(), hashlib.sha256).hexdigest()[:12]

    def log_user(self, user: str) -> str:
        """The access log's name for ``user`` (16 hex digits)."""
        key = self.stable or _PER_PROCESS
        return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()[:16]

    def warn_if_unkeyed(self) -> None:
        if self.stable is None and not _warned:
            _warned.append(True)
            log.warning(
                "GATEWAY_SECRET_KEY is not set: config keys' ids are unkeyed sha256 prefixes and "
                "the access log's user hashes are keyed per process"
            )
