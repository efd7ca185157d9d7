"""A master-key rotation: every stored upstream key sealed again with the current master key.

Run it once every process has the new ``GATEWAY_SECRET_KEY`` and the previous key in
``GATEWAY_SECRET_KEY_OLD``: each system key (kind ``upstream_keys``) and user key (kind
``user_upstream_keys``) sealed under another ``kid`` is opened and sealed again, one audited
write per document that changed (the audit names fingerprints and ``kid``s, never a key). A
value no configured master key opens is left as it is and counted as ``unreadable``. Writes
race with admin writes to the same document like any two writes (the last one wins): run it
when nobody is changing upstream keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from gateway.control import upstream_keys, user_keys
from gateway.control.plane import ControlPlane, Snapshot
from gateway.control.secrets_at_rest import SealedUnreadable, SecretBox
from gateway.errors import StoreUnavailable
from gateway.store.port import StoreError

ACTION = "secrets.reseal"


def census(snapshot: Snapshot, box: SecretBox | None) -> dict[str, Any]:
    """How many stored values each master key (``kid``) sealed, and which keys are set."""
    kids: Counter[str] = Counter(str(sealed.get("kid")) for _, _, sealed in _sealed(snapshot))
    return {
        "kid": None if box is None else box.key_id,
        "old_kids": [] if box is None else list(box.old_key_ids),
        "stored": dict(sorted(kids.items())),
    }


async def reseal_all(
    plane: ControlPlane, box: SecretBox, actor: str, *, dry_run: bool = False
) -> dict[str, Any]:
    """Seal every stored key under ``box``'s current master key; what was (or would be) done."""
    try:
        await plane.refresh()
    except StoreError:
        message = "The control plane's store is unavailable; nothing changed."
        raise StoreUnavailable(message) from None
    snapshot = plane.snapshot
    report: dict[str, Any] = {
        "kid": box.key_id,
        "dry_run": dry_run,
        "resealed": 0,
        "current": 0,
        "unreadable": 0,
        "documents": 0,
    }
    for kind, id, document in _documents(snapshot):
        resealed, kids = _resealed(kind, id, document, box, report)
        if resealed is None or dry_run:
            report["documents"] += resealed is not None
            continue
        audit = {"before": {"kids": kids}, "after": {"kids": dict.fromkeys(kids, box.key_id)}}
        await plane.put(kind, id, resealed, actor=actor, action=ACTION, audit=audit)
        report["documents"] += 1
    return report


def _documents(snapshot: Snapshot) -> list[tuple[str, str, dict[str, Any]]]:
    kinds = (upstream_keys.KIND, user_keys.KIND)
    return [(kind, id, doc) for kind in kinds for id, doc in snapshot.kind(kind).items()]


def _sealed(snapshot: Snapshot) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(kind, id, sealed value) of every stored value."""
    found = []
    for kind, id, document in _documents(snapshot):
        values = document.get("keys") if kind == upstream_keys.KIND else [document]
        for value in values if isinstance(values, list) else ():
            if isinstance(value, dict) and isinstance(value.get("sealed"), dict):
                found.append((kind, id, value["sealed"]))
    return found


def _resealed(
    kind: str, id: str, document: Mapping[str, Any], box: SecretBox, report: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the document with its values sealed again, or None when none needed it; fingerprint
    → the ``kid`` it had, for each value sealed again). Counts into ``report``."""
    if kind == upstream_keys.KIND:
        entries = [e for e in document.get("keys") or () if isinstance(e, dict)]
    else:
        entries = [dict(document)]
    kids: dict[str, str] = {}
    out = []
    for entry in entries:
        sealed = entry.get("sealed")
        if not isinstance(sealed, dict) or box.is_current(sealed):
            report["current"] += isinstance(sealed, dict)
            out.append(entry)
            continue
        place = _place(kind, id, document, entry)
        try:
            secret = box.open(sealed, place)
        except SealedUnreadable:
            report["unreadable"] += 1
            out.append(entry)
            continue
        kids[str(entry.get("fingerprint"))] = str(sealed.get("kid"))
        out.append({**entry, "sealed": box.seal(secret, place)})
        report["resealed"] += 1
    if not kids:
        return None, kids
    if kind == upstream_keys.KIND:
        return {**document, "keys": out}, kids
    return out[0], kids


def _place(kind: str, id: str, document: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    """Where a value is sealed (its additional authenticated data): kept as it was."""
    if kind == upstream_keys.KIND:  # id: the upstream's name
        return upstream_keys.place(id, str(entry.get("fingerprint")))
    return user_keys.place(str(document.get("user")), str(document.get("upstream")))
