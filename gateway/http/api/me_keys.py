"""A user's own stored upstream keys (BYOK), managed with the user's own client key.

``PUT|DELETE /v1/me/upstream-keys/{upstream}`` and ``GET /v1/me/upstream-keys`` (fingerprints
only). Storing needs the admin setting ``allow_user_keys`` (or ``allow_user_keys_for``) to allow
that upstream; deleting is always allowed.
Storing the key already stored changes nothing (no write, no audit entry); other writes count
against the user's write limit (``control/user_writes.py``) and go to the user audit log.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.control.secrets_at_rest import fingerprint
from gateway.control.user_keys import ALLOW_USER_KEYS, KIND, doc_id, listed, place
from gateway.control.user_writes import admit_user_write
from gateway.errors import Forbidden, NotFound
from gateway.http.admin.auth import Actor, require_role
from gateway.http.admin.input import json_object
from gateway.http.admin.upstreams import stored, upstream_key, write
from gateway.http.responses import json_response
from gateway.http.services import Services, services


def _user(request: Request) -> tuple[Actor, str]:
    actor = require_role(request, "user")
    return actor, actor.user or ""  # role "user" always names one


def _allowed(gateway: Services, upstream: str) -> None:
    if not stored(gateway).users.setting.allows(upstream):
        raise Forbidden(
            f"Storing your own upstream keys for '{upstream}' is switched off on this gateway "
            f"(admin setting '{ALLOW_USER_KEYS}').",
            code="user_keys_disabled",
        )


def _upstream(gateway: Services, request: Request) -> str:
    name: str = request.path_params["upstream"]
    if name not in gateway.config.upstreams:
        raise NotFound(f"No upstream '{name}'.", param="upstream")
    return name


def _listing(gateway: Services, user: str) -> dict[str, object]:
    setting = stored(gateway).users.setting
    return {
        "object": "list",
        "allowed": setting.any(),
        "allowed_upstreams": [
            name for name in sorted(gateway.config.upstreams) if setting.allows(name)
        ],
        "data": listed(gateway.control.snapshot, user),
    }


async def list_keys(request: Request) -> Response:
    _, user = _user(request)
    return json_response(_listing(services(request), user))


async def put_key(request: Request) -> Response:
    actor, user = _user(request)
    gateway = services(request)
    upstream = _upstream(gateway, request)
    _allowed(gateway, upstream)
    body = json_object(await request.body(), ("key",), required=("key",))
    secret = upstream_key(body["key"], "key")
    print_ = fingerprint(secret)
    before = gateway.control.snapshot.kind(KIND).get(doc_id(user, upstream))
    if before is not None and before.get("fingerprint") == print_:
        return json_response(_listing(gateway, user))  # the same key: nothing to write
    await admit_user_write(gateway.store, user, gateway.clock())
    document = {
        "user": user,
        "upstream": upstream,
        "fingerprint": print_,
        "updated_at": round(gateway.clock(), 3),
        "sealed": stored(gateway).sealer().seal(secret, place(user, upstream)),
    }
    audit = {
        "before": None if before is None else {"fingerprint": before.get("fingerprint")},
        "after": {"fingerprint": print_},
    }
    await write(gateway, actor, KIND, doc_id(user, upstream), document, "user_key.put", audit)
    return json_response(_listing(gateway, user))


async def delete_key(request: Request) -> Response:
    actor, user = _user(request)
    gateway = services(request)
    upstream = _upstream(gateway, request)
    before = gateway.control.snapshot.kind(KIND).get(doc_id(user, upstream))
    if before is None:
        raise NotFound(f"You have no stored key for '{upstream}'.", param="upstream")
    await admit_user_write(gateway.store, user, gateway.clock())
    audit = {"before": {"fingerprint": before.get("fingerprint")}, "after": None}
    await write(gateway, actor, KIND, doc_id(user, upstream), None, "user_key.delete", audit)
    return json_response(_listing(gateway, user))
