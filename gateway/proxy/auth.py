"""Client keys → ``Principal``. Keys are held as sha256 digests only."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.model import Config, Tier
from gateway.errors import Unauthorized
from gateway.secret import Secret, sha256_hex

BYOK_HEADER = "x-upstream-api-key"
PREFIX = 16


@dataclass(frozen=True)
class Principal:
    user: str
    tier: Tier
    key_id: str  # a short prefix of the key's digest: safe to log and record
    byok_key: Secret | None = None

    @property
    def byok(self) -> bool:
        return self.byok_key is not None


class KeyRing:
    """Finds a key by a prefix of its digest, then compares the full digest in constant time.

    The lookup only ever sees a hash of the presented key, so its timing reveals nothing usable.
    """

    def __init__(self, config: Config) -> None:
        self._by_prefix: dict[str, list[tuple[str, str, Tier]]] = {}
        for key in config.keys:
            entry = (key.key_sha256, key.user, config.tiers[key.tier])
            self._by_prefix.setdefault(key.key_sha256[:PREFIX], []).append(entry)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header."
            )
        digest = sha256_hex(presented)
        for stored, user, tier in self._by_prefix.get(digest[:PREFIX], ()):
            if hmac.compare_digest(stored, digest):
                byok = headers.get(BYOK_HEADER)
                return Principal(user, tier, digest[:12], Secret(byok) if byok else None)
        raise Unauthorized("Invalid API key.")


def presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None
