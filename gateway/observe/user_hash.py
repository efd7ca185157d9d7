"""The user id as logs and traces show it: hashed, and keyed when a key is set."""

from __future__ import annotations

import hashlib
import hmac

from gateway.secret import Secret

USER_HASH_DIGITS = 16


class UserHash:
    """HMAC-SHA256 under ``GATEWAY_USER_HASH_KEY`` when it is set (a guessed user name cannot
    be checked against it), else SHA-256; the first 16 hex digits either way."""

    def __init__(self, key: Secret | None = None) -> None:
        self._keyed = hmac.new(key.reveal().encode(), digestmod=hashlib.sha256) if key else None

    def __call__(self, user: str) -> str:
        if self._keyed is None:
            return hashlib.sha256(user.encode()).hexdigest()[:USER_HASH_DIGITS]
        keyed = self._keyed.copy()  # the key's inner and outer pads computed once
        keyed.update(user.encode())
        return keyed.hexdigest()[:USER_HASH_DIGITS]
