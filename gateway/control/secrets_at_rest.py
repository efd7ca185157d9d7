"""Seals stored secrets (upstream keys) with AES-256-GCM under the operator's master key.

The master key comes from ``GATEWAY_SECRET_KEY`` (32 bytes as base64 or hex) or the file named
by ``GATEWAY_SECRET_KEY_FILE``. Without one, storing a secret is refused (``SecretsDisabled``):
no key is ever generated, since a generated key would differ between replicas and be lost at
restart. Every sealed value carries a fresh 96-bit nonce, and its additional authenticated data
binds it to where it is stored (``kind/id/fingerprint``), so a blob copied to another document
does not open. What may be shown of a secret is its ``fingerprint``, never the secret.

Rotating the master key: ``GATEWAY_SECRET_KEY`` names the new key and ``GATEWAY_SECRET_KEY_OLD``
the previous one(s) (comma-separated). New values are sealed with the new key only; values
sealed with an old one still open (each value's ``kid`` names its key) until they are sealed
again (``gateway/control/rotation.py``), after which the old keys can be dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.control import id_keys
from gateway.errors import GatewayError

KEY_ENV = "GATEWAY_SECRET_KEY"
KEY_FILE_ENV = "GATEWAY_SECRET_KEY_FILE"
OLD_KEYS_ENV = "GATEWAY_SECRET_KEY_OLD"
ALGORITHM = "A256GCM"
NONCE_BYTES = 12


class SecretsDisabled(GatewayError):
    """No master key is configured: secrets cannot be stored or read back."""

    status, type, code, label = 503, "api_error", "secret_key_missing", "secrets_disabled"

    def __init__(self) -> None:
        super().__init__(
            f"Storing upstream keys needs a master key: set {KEY_ENV} (32 bytes, base64 or hex) "
            f"or {KEY_FILE_ENV} on every gateway process."
        )


class MasterKeyInvalid(ValueError):
    """The configured master key is not 32 bytes of base64 or hex (the text names no byte)."""


class SealedUnreadable(ValueError):
    """A sealed value did not open: another master key, a damaged or a moved blob."""


def fingerprint(secret: str) -> str:
    """What may be shown of a secret: ``sha256:`` and the first 16 hex digits of its digest."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def parse_master_key(text: str) -> bytes:
    """32 bytes from base64 (standard or URL-safe) or 64 hex digits."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise MasterKeyInvalid(
            f"{KEY_ENV} must be 32 bytes written as base64 or 64 hex digits "
            "(e.g. the output of `openssl rand -base64 32`)."
        )
    return raw


def key_id(master_key: bytes) -> str:
    """A master key's name in sealed values (``kid``): a digest prefix, not the key."""
    return hashlib.sha256(b"gateway-master-key:" + master_key).hexdigest()[:8]


class SecretBox:
    """Seals and opens secrets bound to their place of storage; seals with the current master
    key, opens with it or with an old one (``old_keys``, during a rotation)."""

    def __init__(self, master_key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        self._aead = AESGCM(master_key)
        self.key_id = key_id(master_key)
        self.id_key = id_keys.derive(master_key)  # for ids, never for sealing
        self._old = {key_id(old): AESGCM(old) for old in old_keys if old != master_key}

    @property
    def old_key_ids(self) -> tuple[str, ...]:
        return tuple(self._old)

    def is_current(self, sealed: Mapping[str, object]) -> bool:
        """Was ``sealed`` sealed with the current master key (by its ``kid``)?"""
        return sealed.get("kid") == self.key_id

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox | None:
        """The box for the configured master key, or None when none is set."""
        env = os.environ if environ is None else environ
        text = env.get(KEY_ENV, "").strip()
        if not text and (path := env.get(KEY_FILE_ENV, "").strip()):
            try:
                text = Path(path).read_text().strip()
            except OSError as exc:
                message = f"{KEY_FILE_ENV}: cannot read {path}: {exc.strerror}"
                raise MasterKeyInvalid(message) from None
        try:
            old = [parse_master_key(k) for k in env.get(OLD_KEYS_ENV, "").split(",") if k.strip()]
        except MasterKeyInvalid:
            message = f"{OLD_KEYS_ENV}: each key must be 32 bytes as base64 or 64 hex digits."
            raise MasterKeyInvalid(message) from None
        if old and not text:
            raise MasterKeyInvalid(f"{OLD_KEYS_ENV} is set but {KEY_ENV} (the new key) is not.")
        return cls(parse_master_key(text), old) if text else None

    def seal(self, secret: str, place: str) -> dict[str, str]:
        """``{alg, kid, nonce, ciphertext}`` (base64) for ``secret`` stored at ``place``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), place.encode())
        return {
            "alg": ALGORITHM,
            "kid": self.key_id,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
        }

    def open(self, sealed: Mapping[str, object], place: str) -> str:
        """The secret sealed at ``place``; ``SealedUnreadable`` when it does not open there
        with any configured master key (the one its ``kid`` names first)."""
        named = self._old.get(str(sealed.get("kid")))
        aeads = [self._aead, *self._old.values()]
        if named is not None:
            aeads = [named, *(a for a in aeads if a is not named)]
        try:
            nonce = base64.b64decode(str(sealed["nonce"]), validate=True)
            ciphertext = base64.b64decode(str(sealed["ciphertext"]), validate=True)
        except (KeyError, binascii.Error, ValueError) as exc:
            raise SealedUnreadable(f"a sealed secret at {place} does not open") from exc
        for aead in aeads:
            try:
                return aead.decrypt(nonce, ciphertext, place.encode()).decode()
            except (ValueError, InvalidTag, UnicodeDecodeError):
                continue
        raise SealedUnreadable(f"a sealed secret at {place} does not open")
