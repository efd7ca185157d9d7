"""Users' own stored upstream keys (BYOK), and the admin setting that permits them.

Documents of kind ``user_upstream_keys``, id ``{upstream}/{user}``, hold
``{"user", "upstream", "fingerprint", "updated_at", "sealed"}``. The settings document
``global`` (kind ``settings``) holds ``allow_user_keys`` (every upstream; off unless set) and
``allow_user_keys_for`` (``{upstream: bool}``, a choice per upstream that overrides it): where
it is off, users cannot store keys for that upstream and their stored keys for it are not used.
``UserKeys`` follows the control plane's snapshots and opens a key once, when it first
appears, so the hot path only looks it up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.control.plane import Snapshot
from gateway.control.secrets_at_rest import SealedUnreadable, SecretBox
from gateway.secret import Secret

KIND = "user_upstream_keys"
SETTINGS_KIND = "settings"
SETTINGS_ID = "global"
ALLOW_USER_KEYS = "allow_user_keys"
ALLOW_USER_KEYS_FOR = "allow_user_keys_for"
log = logging.getLogger("gateway.control")


def doc_id(user: str, upstream: str) -> str:
    return f"{upstream}/{user}"


def place(user: str, upstream: str) -> str:
    """Where a user's sealed key belongs (its additional authenticated data)."""
    return f"{KIND}/{doc_id(user, upstream)}"


class UserKeySetting:
    """Whether users may keep their own keys, for every upstream and per upstream."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.default = document.get(ALLOW_USER_KEYS) is True
        per = document.get(ALLOW_USER_KEYS_FOR)
        self.per_upstream: dict[str, bool] = (
            {str(k): v for k, v in per.items() if isinstance(v, bool)}
            if isinstance(per, Mapping)
            else {}
        )

    def allows(self, upstream: str) -> bool:
        return self.per_upstream.get(upstream, self.default)

    def any(self) -> bool:
        return self.default or any(self.per_upstream.values())


def user_key_setting(snapshot: Snapshot) -> UserKeySetting:
    return UserKeySetting(snapshot.kind(SETTINGS_KIND).get(SETTINGS_ID, {}))


def listed(snapshot: Snapshot, user: str) -> list[dict[str, Any]]:
    """A user's stored keys as they may be shown: upstream, fingerprint, time (no key)."""
    rows = []
    for document in snapshot.kind(KIND).values():
        if document.get("user") == user:
            rows.append({k: v for k, v in document.items() if k not in ("sealed", "user")})
    return sorted(rows, key=lambda row: str(row.get("upstream")))


class UserKeys:
    """Every user's opened upstream keys, looked up by (user, upstream)."""

    def __init__(self, box: SecretBox | None) -> None:
        self._box = box
        self.setting = UserKeySetting({})
        self.allowed = False  # for at least one upstream
        self._keys: dict[tuple[str, str], Secret] = {}
        self._opened: dict[tuple[str, str, str], Secret] = {}  # (user, upstream, ciphertext)

    def update(self, snapshot: Snapshot) -> None:
        """Follow a new snapshot (a control plane subscriber): open only new entries."""
        keys: dict[tuple[str, str], Secret] = {}
        opened: dict[tuple[str, str, str], Secret] = {}
        for document in snapshot.kind(KIND).values():
            user, upstream = str(document.get("user")), str(document.get("upstream"))
            secret = self._open(user, upstream, document.get("sealed"), opened)
            if secret is not None:
                keys[(user, upstream)] = secret
        self._keys, self._opened = keys, opened
        self.setting = user_key_setting(snapshot)
        self.allowed = self.setting.any()

    def _open(
        self,
        user: str,
        upstream: str,
        sealed: object,
        opened: dict[tuple[str, str, str], Secret],
    ) -> Secret | None:
        if not isinstance(sealed, Mapping):
            return None
        cache = (user, upstream, str(sealed.get("ciphertext")))
        secret = self._opened.get(cache)
        if secret is None:
            if self._box is None:
                return None
            try:
                secret = Secret(self._box.open(sealed, place(user, upstream)))
            except SealedUnreadable:
                log.warning("a stored key of user %s for %s does not open: skipped", user, upstream)
                return None
        opened[cache] = secret
        return secret

    def key_for(self, user: str, upstream: str) -> Secret | None:
        """The user's stored key for ``upstream`` while the setting allows it, else None."""
        if not self.setting.allows(upstream):
            return None
        return self._keys.get((user, upstream))
