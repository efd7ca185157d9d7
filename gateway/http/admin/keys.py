"""Run-time client keys (``/v1/admin/keys``): create, list, read, change, rotate, revoke.

The secret is shown once, at creation or rotation; only digests are stored (see
``control/keys.py``). A rotation keeps the old secret working for ``grace_s``."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.control import keys as runtime_keys
from gateway.control.orgs import check_binding
from gateway.errors import InvalidRequest, NotFound, StoreUnavailable
from gateway.http.admin.auth import Actor, require_role
from gateway.http.admin.input import json_object, number, small_object, strings, text, whole
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.metering.key_limits import day_key, month_key
from gateway.metering.pricing import micros_to_usd
from gateway.metering.windows import Windows, iso_utc, windows_at
from gateway.proxy.auth import LAST_USED_KEY
from gateway.secret import sha256_hex
from gateway.store.port import StoreError
from gateway.usage.analytics import UsageFilter
from gateway.usage.export import MAX_EPOCH_S, parse_time

KIND = runtime_keys.KIND
CHANGEABLE = (
    "tier",
    "name",
    "models",
    "expires_at",
    "budget_usd",
    "rpm",
    "tpm",
    "max_parallel",
    "metadata",
    "team",
)
FIELDS = ("user", *CHANGEABLE)
MAX_GRACE_S = 30 * 86_400


async def create(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    body = json_object(await request.body(), FIELDS, required=("user", "tier"))
    document = {
        "user": text(body, "user"),
        **checked_settings(gateway, body),
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    check_binding(gateway.control.snapshot, document["team"], document["user"], document["models"])
    secret = runtime_keys.new_secret()
    document["secrets"] = [{"sha256": sha256_hex(secret), "until": None}]
    key_id = runtime_keys.new_id()
    await put_key(gateway, actor, key_id, document, "key.create")
    return json_response({**public_view(key_id, document), "key": secret}, status=201)


async def list_keys(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    user = request.query_params.get("user")
    stored = gateway.control.snapshot.kind(KIND).items()
    chosen = [item for item in stored if user is None or item[1].get("user") == user]
    found = sorted(chosen, key=lambda item: (item[1].get("created_at", 0), item[0]))
    data = await with_usage(gateway, found)
    return json_response({"object": "list", "data": data})


async def show(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    key_id, document = _find(gateway, request)
    (shown,) = await with_usage(gateway, [(key_id, document)])
    return json_response(shown)


async def update(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    key_id, document = _find(gateway, request)
    body = json_object(await request.body(), CHANGEABLE)
    changed = {**document, **checked_settings(gateway, {**_current(document), **body})}
    check_binding(gateway.control.snapshot, changed["team"], changed["user"], changed["models"])
    await put_key(gateway, actor, key_id, changed, "key.update")
    return json_response(public_view(key_id, changed))


async def revoke(request: Request) -> Response:
    return await revoke_as(request, require_role(request, "admin"), "key.revoke")


async def revoke_as(request: Request, actor: Actor, action: str) -> Response:
    """Revoke the key, the caller's right to already checked."""
    gateway = services(request)
    key_id, document = _find(gateway, request)
    await gateway.control.put(
        KIND,
        key_id,
        None,
        actor=actor.name,
        action=action,
        audit={"before": runtime_keys.redacted(document), "after": None},
    )
    return json_response({"id": key_id, "object": "api_key", "deleted": True})


async def rotate(request: Request) -> Response:
    return await rotate_as(request, require_role(request, "admin"), "key.rotate")


async def rotate_as(request: Request, actor: Actor, action: str) -> Response:
    """Rotate the key's secret, the caller's right to already checked."""
    gateway = services(request)
    key_id, document = _find(gateway, request)
    body = json_object(await request.body(), ("grace_s",))
    grace = whole(body, "grace_s", most=MAX_GRACE_S) or 0
    now = gateway.clock()
    until = now + grace
    kept = []
    for old in document.get("secrets") or ():
        ends = old.get("until")
        if ends is None or ends > now:
            kept.append({**old, "until": min(ends, until) if ends is not None else until})
    secret = runtime_keys.new_secret()
    rotated = {
        **document,
        "secrets": [{"sha256": sha256_hex(secret), "until": None}, *(kept if grace else [])],
        "rotated_at": int(now),
    }
    await put_key(gateway, actor, key_id, rotated, action)
    return json_response({**public_view(key_id, rotated), "key": secret})


def _find(gateway: Services, request: Request) -> tuple[str, dict[str, Any]]:
    key_id = request.path_params["id"]
    document = gateway.control.snapshot.kind(KIND).get(key_id)
    if document is None:
        raise NotFound(f"No API key '{key_id}'.", param="id")
    return key_id, document


async def put_key(
    gateway: Services, actor: Actor, key_id: str, document: dict[str, Any], action: str
) -> None:
    before = gateway.control.snapshot.kind(KIND).get(key_id)
    await gateway.control.put(
        KIND,
        key_id,
        document,
        actor=actor.name,
        action=action,
        audit={"before": runtime_keys.redacted(before), "after": runtime_keys.redacted(document)},
    )


def _current(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: document.get(name) for name in CHANGEABLE}


def checked_settings(gateway: Services, body: dict[str, Any]) -> dict[str, Any]:
    """The changeable fields, checked (null clears a limit)."""
    tier = text(body, "tier")
    if tier not in gateway.config.tiers:
        raise InvalidRequest(
            f"Unknown tier '{tier}'; expected one of: {', '.join(sorted(gateway.config.tiers))}.",
            param="tier",
        )
    models = strings(body, "models")
    known = gateway.config.known_models | gateway.config.known_routes
    for model in models or ():
        if model not in known:
            raise InvalidRequest(f"Unknown model or route '{model}'.", param="models")
    return {
        "tier": tier,
        "name": text(body, "name"),
        "models": models,
        "expires_at": _time(body.get("expires_at")),
        "budget_usd": _budget(body.get("budget_usd")),
        "rpm": whole(body, "rpm", least=1),
        "tpm": whole(body, "tpm", least=1),
        "max_parallel": whole(body, "max_parallel", least=1, most=100_000),
        "metadata": small_object(body, "metadata"),
        "team": text(body, "team"),  # checked by control.orgs.check_binding
    }


def _budget(value: object) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"day", "month"}:
        raise InvalidRequest(
            "'budget_usd' must be an object with 'day' and/or 'month' in USD.", param="budget_usd"
        )
    budget = {name: number(value, name) for name in ("day", "month")}
    kept = {name: amount for name, amount in budget.items() if amount is not None}
    return kept or None


def _time(value: object) -> float | None:
    """Epoch seconds from 0 to the year 9999 (a larger one, or infinity, was stored and then
    broke every listing of keys with a 500)."""
    if value is None:
        return None
    moment = -1.0
    with contextlib.suppress(ValueError, OverflowError):  # a huge int, the day after 9999
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = float(value)
        elif isinstance(value, str):
            moment = parse_time(value)
    if 0 <= moment <= MAX_EPOCH_S:  # false for NaN too
        return moment
    raise InvalidRequest(
        "'expires_at' must be epoch seconds or an ISO 8601 time, or null.", param="expires_at"
    )


def public_view(key_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """What may be shown of a key: never a secret or its digest."""
    shown = {k: v for k, v in document.items() if k != "secrets"}
    expires = document.get("expires_at")
    if isinstance(expires, int | float):
        shown["expires_at_iso"] = iso_utc(expires)
    return {"id": key_id, "object": "api_key", **shown}


async def with_usage(
    gateway: Services, found: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Public views plus spend and last use. A budget's spend comes from the key's own
    counter (exact); without that budget, from the usage rollups (a few seconds behind)."""
    windows = windows_at(gateway.clock())
    names = [LAST_USED_KEY]
    for key_id, document in found:
        user = str(document.get("user"))
        names += [day_key(user, key_id, windows.day), month_key(user, key_id, windows.month)]
    try:
        hashes = await gateway.control.read_counters(names)
    except StoreError:
        raise StoreUnavailable("The store is unavailable; try again") from None
    unbudgeted = [key_id for key_id, doc in found if _budgeted(doc) != ("day", "month")]
    rolled = await _rolled_up_spend(gateway, windows, unbudgeted) if unbudgeted else {}
    last_used = hashes[0]
    shown = []
    for index, (key_id, document) in enumerate(found):
        counted = {"day": hashes[1 + 2 * index], "month": hashes[2 + 2 * index]}
        budgeted = _budgeted(document)
        spend = {
            period: micros_to_usd(counted[period].get("usd", 0))
            if period in budgeted
            else round(rolled.get((key_id, period), 0.0), 6)
            for period in ("day", "month")
        }
        used = max(last_used.get(key_id, 0), int(gateway.keyring.last_used.get(key_id, 0)))
        shown.append(
            {**public_view(key_id, document), "last_used_at": used or None, "spend_usd": spend}
        )
    return shown


def _budgeted(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The periods the key has a budget for (those have their own exact counter)."""
    budget = document.get("budget_usd")
    if not isinstance(budget, dict):
        return ()
    return tuple(period for period in ("day", "month") if budget.get(period) is not None)


async def _rolled_up_spend(
    gateway: Services, windows: Windows, key_ids: list[str]
) -> dict[tuple[str, str], float]:
    """(key id, "day" | "month") → USD spent, from the usage rollups of this month."""
    month_start = dt.datetime.strptime(windows.month, "%Y%m").replace(tzinfo=dt.UTC)
    today = f"{windows.day[:4]}-{windows.day[4:6]}-{windows.day[6:]}"
    flt = UsageFilter(month_start.timestamp(), windows.now + 1)
    wanted, spent = set(key_ids), dict[tuple[str, str], float]()
    for row in await gateway.analytics.totals(flt, ["key_id"], "day"):
        key_id = row.get("key_id")
        if key_id not in wanted:
            continue
        cost = float(row.get("cost_usd") or 0.0)
        spent[key_id, "month"] = spent.get((key_id, "month"), 0.0) + cost
        if row.get("bucket") == today:
            spent[key_id, "day"] = spent.get((key_id, "day"), 0.0) + cost
    return spent
