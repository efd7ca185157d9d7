"""``StoredKeys``: the master key's box, the system key pool and the users' keys, together."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.control.plane import ControlPlane
from gateway.control.secrets_at_rest import SecretBox, SecretsDisabled
from gateway.control.upstream_keys import UpstreamKeyPool
from gateway.control.user_keys import UserKeys


@dataclass(frozen=True)
class StoredKeys:
    """``box`` is None when no master key is configured: storing keys is then refused."""

    box: SecretBox | None
    pool: UpstreamKeyPool
    users: UserKeys

    @classmethod
    def create(cls, box: SecretBox | None) -> StoredKeys:
        return cls(box, UpstreamKeyPool(box), UserKeys(box))

    def follow(self, plane: ControlPlane) -> None:
        """Open new keys whenever the plane's snapshot changes (never per request)."""
        plane.subscribe(self.pool.update)
        plane.subscribe(self.users.update)

    def sealer(self) -> SecretBox:
        """The box to seal a new key with; ``SecretsDisabled`` (503) without a master key."""
        if self.box is None:
            raise SecretsDisabled()
        return self.box
