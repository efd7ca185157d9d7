"""Quota-increase requests: a user asks, an admin approves (the user's override is set) or denies.

Kind ``quota_requests``, id ``qr_<hex>`` → ``{id, user, key_id, capability, requested, reason,
status: pending|approved|denied, created_at, decided_at?, decided_by?, granted?, note?}``.
``requested`` (and ``granted``) hold quota fields as the per-user overrides take them: a number
sets the field, a field left out inherits.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.config.model import CAPABILITIES, Quota
from gateway.control.plane import Snapshot
from gateway.errors import Conflict, InvalidRequest, NotFound

KIND = "quota_requests"
PENDING, APPROVED, DENIED = "pending", "approved", "denied"
MAX_PENDING_PER_USER = 10
REASON_MAX = 500
FIELDS: dict[str, tuple[bool, float]] = {  # field → (whole numbers only, the largest value)
    "requests_per_day": (True, 10**12),
    "tokens_per_day": (True, 10**12),
    "tokens_per_request": (True, 10**12),
    "minutes_per_day": (False, 10**7),
}


def requested_fields(value: Any, name: str = "requested") -> dict[str, int | float]:
    """``{requests_per_day: 500, ...}``: at least one field, each a number from 0 to its cap."""
    if not isinstance(value, dict) or not value or not set(value) <= set(FIELDS):
        raise InvalidRequest(
            f"'{name}' must be an object with at least one of: {', '.join(FIELDS)}.", param=name
        )
    for field, number in value.items():
        whole, most = FIELDS[field]
        allowed = int if whole else int | float
        if isinstance(number, bool) or not isinstance(number, allowed) or not 0 <= number <= most:
            what = "a whole number" if whole else "a number"
            raise InvalidRequest(
                f"'{name}.{field}' must be {what} from 0 to {most:.0e}.", param=name
            )
    return dict(value)


def new_request(body: Any, user: str, key_id: str, now: float) -> dict[str, Any]:
    if not isinstance(body, dict) or not set(body) <= {"capability", "requested", "reason"}:
        raise InvalidRequest("Expected a JSON object {capability, requested, reason?}.")
    capability = body.get("capability")
    if capability not in CAPABILITIES:
        raise InvalidRequest(
            f"'capability' must be one of: {', '.join(CAPABILITIES)}.", param="capability"
        )
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_MAX):
        raise InvalidRequest(f"'reason' must be text of at most {REASON_MAX} characters.")
    return {
        "id": f"qr_{secrets.token_hex(8)}",
        "user": user,
        "key_id": key_id,
        "capability": capability,
        "requested": requested_fields(body.get("requested")),
        "reason": reason,
        "status": PENDING,
        "created_at": now,
    }


def check_room(snapshot: Snapshot, user: str) -> None:
    pending = sum(1 for r in snapshot.kind(KIND).values() if _pending_of(r, user))
    if pending >= MAX_PENDING_PER_USER:
        raise Conflict(f"You already have {pending} pending quota requests.")


def listed(
    snapshot: Snapshot, user: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Requests, newest first; of one user and/or one status when given."""
    found = [
        r
        for r in snapshot.kind(KIND).values()
        if (user is None or r.get("user") == user) and (status is None or r.get("status") == status)
    ]
    return sorted(found, key=lambda r: -float(r.get("created_at") or 0))


def pending(snapshot: Snapshot, request_id: str) -> dict[str, Any]:
    found = snapshot.kind(KIND).get(request_id)
    if found is None:
        raise NotFound(f"No quota request '{request_id}'.", param="id")
    if found.get("status") != PENDING:
        raise Conflict(f"Quota request '{request_id}' is already {found.get('status')}.")
    return found


def decided(
    request: dict[str, Any],
    status: str,
    actor: str,
    now: float,
    granted: dict[str, Any] | None,
    note: Any,
) -> dict[str, Any]:
    if note is not None and (not isinstance(note, str) or len(note) > REASON_MAX):
        raise InvalidRequest(f"'note' must be text of at most {REASON_MAX} characters.")
    document = {**request, "status": status, "decided_at": now, "decided_by": actor, "note": note}
    if granted is not None:
        document["granted"] = granted
    return document


def granted_quota(fields: dict[str, Any]) -> Quota:
    return Quota(**fields)


def _pending_of(request: dict[str, Any], user: str) -> bool:
    return request.get("user") == user and request.get("status") == PENDING
