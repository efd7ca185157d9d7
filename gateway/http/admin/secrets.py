"""``/v1/admin/secrets``: which master key sealed the stored upstream keys, and its rotation.

``GET`` (viewer) counts the stored values per master key (``kid``) and names the current and old
keys this process has; ``POST /v1/admin/secrets/rotate`` (admin, ``{dry_run?}``) seals every
stored key again with the current master key (``gateway/control/rotation.py``), audited.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.control.rotation import census, reseal_all
from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.admin.input import json_object
from gateway.http.admin.upstreams import stored
from gateway.http.responses import json_response
from gateway.http.services import services


async def show(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    return json_response(census(gateway.control.snapshot, stored(gateway).box))


async def rotate(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    body = json_object(await request.body(), ("dry_run",))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("'dry_run' must be true or false.", param="dry_run")
    box = stored(gateway).sealer()  # 503 without a master key
    return json_response(await reseal_all(gateway.control, box, actor.name, dry_run=dry_run))
