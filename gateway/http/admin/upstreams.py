"""Admin endpoints for stored system keys per upstream, and the run-time settings.

``/v1/admin/upstreams/{name}/keys`` (add, replace, list, delete) and ``/v1/admin/settings``
(``allow_user_keys`` for every upstream, ``allow_user_keys_for`` per upstream). Keys are sealed
before they are stored and shown only by fingerprint.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.control.stored_keys import StoredKeys
from gateway.control.upstream_keys import KIND, redacted, sealed_entry, stored_keys
from gateway.control.user_keys import (
    ALLOW_USER_KEYS,
    ALLOW_USER_KEYS_FOR,
    SETTINGS_ID,
    SETTINGS_KIND,
    UserKeySetting,
)
from gateway.errors import InvalidRequest, NotFound, StoreUnavailable
from gateway.http.admin.auth import Actor, require_role
from gateway.http.admin.input import json_object, text
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.store.port import AuditLog, StoreError

MAX_KEYS = 50
MAX_KEY_CHARS = 4096
SETTINGS_FIELDS = (ALLOW_USER_KEYS, ALLOW_USER_KEYS_FOR)


def upstream_key(value: object, param: str) -> str:
    """A key as sent: a non-empty string without spaces or control characters."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_KEY_CHARS
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise InvalidRequest(
            f"'{param}' must be a key: up to {MAX_KEY_CHARS} printable characters, no spaces.",
            param=param,
        )
    return value


def stored(gateway: Services) -> StoredKeys:
    found = gateway.stored_keys
    if found is None:
        raise StoreUnavailable("Stored keys are not available in this process.")
    return found


async def write(
    gateway: Services,
    actor: Actor,
    kind: str,
    id: str,
    document: dict[str, Any] | None,
    action: str,
    audit: dict[str, Any],
) -> None:
    log: AuditLog = "user" if actor.role == "user" else "operator"
    try:
        await gateway.control.put(
            kind, id, document, actor=actor.name, action=action, audit=audit, log=log
        )
    except StoreError:
        message = "The control plane's store is unavailable; nothing changed."
        raise StoreUnavailable(message) from None


def _upstream(gateway: Services, request: Request) -> str:
    name: str = request.path_params["name"]
    if name not in gateway.config.upstreams:
        raise NotFound(f"No upstream '{name}' in routes.yaml.", param="name")
    return name


async def list_keys(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    name = _upstream(gateway, request)
    return json_response(_listing(gateway, name))


def _listing(gateway: Services, name: str) -> dict[str, Any]:
    upstream = gateway.config.upstreams[name]
    return {
        "upstream": name,
        "keys": stored(gateway).pool.state(gateway.control.snapshot, name),
        "env_key": {"variable": upstream.api_key_env, "set": upstream.api_key is not None},
    }


async def put_keys(request: Request) -> Response:
    """``{key, label?}`` adds one key (or relabels it); ``{keys: [key | {key, label?}]}``
    replaces the whole set (a rotation in one step)."""
    actor = require_role(request, "admin")
    gateway = services(request)
    name = _upstream(gateway, request)
    body = json_object(await request.body(), ("key", "label", "keys"))
    box = stored(gateway).sealer()
    now = gateway.clock()
    before = stored_keys(gateway.control.snapshot, name)
    if body.get("keys") is not None:
        if body.get("key") is not None:
            raise InvalidRequest("Send either 'key' or 'keys', not both.", param="keys")
        entries = [sealed_entry(box, name, k, label, now) for k, label in _many(body["keys"])]
        action = "upstream_keys.replace"
    else:
        secret = upstream_key(body.get("key"), "key")
        entry = sealed_entry(box, name, secret, text(body, "label", most=100) or "", now)
        entries = [e for e in before if e.get("fingerprint") != entry["fingerprint"]] + [entry]
        action = "upstream_keys.add"
    if len(entries) > MAX_KEYS:
        raise InvalidRequest(f"An upstream holds at most {MAX_KEYS} keys.", param="keys")
    audit = {"before": redacted(before), "after": redacted(entries)}
    document = {"keys": entries} if entries else None
    await write(gateway, actor, KIND, name, document, action, audit)
    return json_response(_listing(gateway, name))


def _many(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_KEYS:
        raise InvalidRequest(f"'keys' must be a list of at most {MAX_KEYS} keys.", param="keys")
    found: dict[str, tuple[str, str]] = {}
    for i, item in enumerate(value):
        label: object = ""
        if isinstance(item, dict):
            if set(item) - {"key", "label"}:
                raise InvalidRequest(f"Unknown field in keys[{i}].", param=f"keys[{i}]")
            label = item.get("label") or ""
            item = item.get("key")
        if not isinstance(label, str) or len(label) > 100:
            raise InvalidRequest(f"keys[{i}].label must be a short string.", param=f"keys[{i}]")
        secret = upstream_key(item, f"keys[{i}]")
        found[secret] = (secret, label)
    return list(found.values())


async def delete_key(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    name = _upstream(gateway, request)
    print_ = request.path_params["fingerprint"]
    before = stored_keys(gateway.control.snapshot, name)
    entries = [e for e in before if e.get("fingerprint") != print_]
    if len(entries) == len(before):
        raise NotFound(f"No stored key {print_} for upstream '{name}'.", param="fingerprint")
    audit = {"before": redacted(before), "after": redacted(entries)}
    document = {"keys": entries} if entries else None
    await write(gateway, actor, KIND, name, document, "upstream_keys.delete", audit)
    return json_response(_listing(gateway, name))


def _settings(gateway: Services) -> dict[str, Any]:
    """The stored fields, and ``user_keys_allowed``: the outcome for every upstream."""
    document = gateway.control.snapshot.kind(SETTINGS_KIND).get(SETTINGS_ID, {})
    setting = UserKeySetting(document)
    return {
        **document,
        ALLOW_USER_KEYS: setting.default,
        ALLOW_USER_KEYS_FOR: setting.per_upstream,
        "user_keys_allowed": {name: setting.allows(name) for name in gateway.config.upstreams},
    }


async def show_settings(request: Request) -> Response:
    require_role(request, "viewer")
    return json_response(_settings(services(request)))


async def put_settings(request: Request) -> Response:
    """Changes the fields sent; the others keep their values. ``allow_user_keys_for`` changes
    the upstreams it names (``{name: true|false}``; null drops the upstream's own choice)."""
    actor = require_role(request, "admin")
    gateway = services(request)
    body = json_object(await request.body(), SETTINGS_FIELDS)
    if not isinstance(body.get(ALLOW_USER_KEYS, False), bool):
        raise InvalidRequest(f"'{ALLOW_USER_KEYS}' must be true or false.", param=ALLOW_USER_KEYS)
    before = gateway.control.snapshot.kind(SETTINGS_KIND).get(SETTINGS_ID, {})
    document = {**before, **body}
    if ALLOW_USER_KEYS_FOR in body:
        per = _per_upstream(gateway, body[ALLOW_USER_KEYS_FOR])
        merged = {**UserKeySetting(before).per_upstream, **per}
        document[ALLOW_USER_KEYS_FOR] = {k: v for k, v in merged.items() if v is not None}
    await write(gateway, actor, SETTINGS_KIND, SETTINGS_ID, document, "settings.update", {})
    return json_response(_settings(gateway))


def _per_upstream(gateway: Services, value: object) -> dict[str, bool | None]:
    param = ALLOW_USER_KEYS_FOR
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"'{param}' must be an object {{upstream: true|false|null}}.", param=param
        )
    for name, allowed in value.items():
        if name not in gateway.config.upstreams:
            raise InvalidRequest(f"'{param}' names no upstream '{name}'.", param=param)
        if allowed is not None and not isinstance(allowed, bool):
            raise InvalidRequest(f"'{param}.{name}' must be true, false or null.", param=param)
    return value
