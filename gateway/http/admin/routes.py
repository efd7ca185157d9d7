"""The admin API's route table: the router and the served OpenAPI document both come from it.

Each ``Op`` (operation.py) is one method on one path: its endpoint, the role its caller needs,
a summary, and its request body, success status and query parameters as documented. Add a route
by adding one ``Op(...)`` entry to ``OPERATIONS`` (or, for organizations and teams, to
org_routes.py): ``routes()`` registers it (one Starlette route per path, so a wrong method's 405
names every method of the path) and ``GET /v1/admin/openapi.json`` documents it (the
schemathesis tests in tests/fuzz then fuzz it). The endpoint still checks the
role itself (``require_role``); tests/http/test_admin_routes.py holds the two to agreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.http.admin import (
    access,
    analytics,
    flags,
    keys,
    overrides,
    quotas,
    reload,
    secrets,
    upstreams,
    weights,
)
from gateway.http.admin.auth import require_role
from gateway.http.admin.openapi import openapi_document
from gateway.http.admin.operation import Endpoint, Op
from gateway.http.admin.org_routes import ORG_OPERATIONS
from gateway.http.admin.schemas import (
    BUDGET,
    FLAG,
    KEY_CREATE,
    KEY_UPDATE,
    OBJECT,
    QUOTA,
    QUOTA_REQUEST,
    ROTATE,
    SECRETS_ROTATE,
    SETTINGS,
    TOKEN_CREATE,
    UPSTREAM_KEYS,
    USAGE_QUERY,
    USER_KEY,
    WEIGHTS,
)
from gateway.http.api import me_keys, quota_requests, statements
from gateway.http.responses import json_response


async def openapi(request: Request) -> Response:
    require_role(request, "viewer")
    return json_response(document())


KEYS = "/v1/admin/keys"
TOKENS = "/v1/admin/tokens"
USERS = "/v1/admin/users/{user}"
FLAGS = "/v1/admin/flags"
TIERS = "/v1/admin/tiers/{tier}"
QUOTA_REQUESTS = "/v1/admin/quota-requests"
UPSTREAM = "/v1/admin/upstreams/{name}/keys"
MY_KEYS = "/v1/me/upstream-keys"

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/v1/admin/openapi.json", openapi, "viewer", "This document"),
    Op(
        "POST",
        KEYS,
        keys.create,
        "admin",
        "Create a client key; its secret is shown once",
        body=KEY_CREATE,
        status=201,
    ),
    Op(
        "GET",
        KEYS,
        keys.list_keys,
        "viewer",
        "List client keys (?user=), with spend and last use",
        query=("user",),
    ),
    Op("GET", KEYS + "/{id}", keys.show, "viewer", "One client key, with spend and last use"),
    Op(
        "PATCH",
        KEYS + "/{id}",
        keys.update,
        "admin",
        "Change a client key's tier, models or limits",
        body=KEY_UPDATE,
    ),
    Op("DELETE", KEYS + "/{id}", keys.revoke, "admin", "Revoke a client key"),
    Op(
        "POST",
        KEYS + "/{id}/rotate",
        keys.rotate,
        "admin",
        "New secret; the old one works for grace_s",
        body=ROTATE,
    ),
    Op(
        "POST",
        TOKENS,
        access.create_token,
        "admin",
        "Create an admin token; shown once",
        body=TOKEN_CREATE,
        status=201,
    ),
    Op("GET", TOKENS, access.list_tokens, "viewer", "List admin tokens"),
    Op("DELETE", TOKENS + "/{id}", access.delete_token, "admin", "Delete an admin token"),
    Op(
        "GET",
        "/v1/admin/audit",
        access.audit,
        "viewer",
        "The audit logs, newest first (?limit=&before=&log=operator|user; both by default)",
        query=("limit", "before", "log"),
    ),
    Op("GET", USERS, overrides.show, "viewer", "A user's stored overrides"),
    Op(
        "PUT",
        USERS + "/quotas/{capability}",
        overrides.set_quota,
        "admin",
        "Override a user's quota",
        body=QUOTA,
    ),
    Op(
        "DELETE",
        USERS + "/quotas/{capability}",
        overrides.set_quota,
        "admin",
        "Drop a user's quota override",
    ),
    Op(
        "PUT",
        USERS + "/budget",
        overrides.set_budget,
        "admin",
        "Override a user's budget",
        body=BUDGET,
    ),
    Op("DELETE", USERS + "/budget", overrides.set_budget, "admin", "Drop a user's budget override"),
    Op("GET", FLAGS, flags.list_flags, "viewer", "Feature flags: state, default, source"),
    Op("GET", FLAGS + "/{name}", flags.show, "viewer", "One feature flag"),
    Op(
        "PUT",
        FLAGS + "/{name}",
        flags.set_flag,
        "admin",
        "Set a flag at run time (rollout sticky per user)",
        body=FLAG,
    ),
    Op("DELETE", FLAGS + "/{name}", flags.reset, "admin", "Back to the tiers.yaml default"),
    Op(
        "GET",
        TIERS + "/quotas/{capability}",
        quotas.show,
        "viewer",
        "A tier's quota in force, and its source",
    ),
    Op(
        "PUT",
        TIERS + "/quotas/{capability}",
        quotas.set_quota,
        "admin",
        "Replace a tier's quota at run time (null or -1: unlimited)",
        body=QUOTA,
    ),
    Op(
        "DELETE",
        TIERS + "/quotas/{capability}",
        quotas.set_quota,
        "admin",
        "Back to the tiers.yaml quota",
    ),
    Op(
        "GET",
        TIERS + "/weights",
        weights.weights,
        "viewer",
        "Rollout weights per route in force, and their source",
    ),
    Op(
        "PUT",
        TIERS + "/weights",
        weights.weights,
        "admin",
        "Replace a tier's rollout weights at run time",
        body=WEIGHTS,
    ),
    Op("DELETE", TIERS + "/weights", weights.weights, "admin", "Back to the tiers.yaml weights"),
    Op(
        "GET",
        QUOTA_REQUESTS,
        quota_requests.list_all,
        "viewer",
        "Quota-increase requests (?status=&user=)",
        query=("status", "user"),
    ),
    Op(
        "POST",
        QUOTA_REQUESTS + "/{id}/approve",
        quota_requests.approve,
        "admin",
        "Approve: sets the user's override (granted?, note?)",
        body=OBJECT,
    ),
    Op(
        "POST",
        QUOTA_REQUESTS + "/{id}/deny",
        quota_requests.deny,
        "admin",
        "Deny (note?)",
        body=OBJECT,
    ),
    Op(
        "POST",
        "/v1/quota/requests",
        quota_requests.create,
        "user",
        "A user asks for more quota (client key)",
        body=QUOTA_REQUEST,
        status=201,
    ),
    Op(
        "GET",
        "/v1/quota/requests",
        quota_requests.mine,
        "user",
        "The caller's own quota requests (client key)",
    ),
    Op(
        "POST",
        "/v1/admin/reload",
        reload.reload,
        "admin",
        "Reload routes.yaml and tiers.yaml on every worker and replica",
    ),
    Op(
        "GET",
        UPSTREAM,
        upstreams.list_keys,
        "viewer",
        "An upstream's stored system keys: fingerprint, label, state (never the key)",
    ),
    Op(
        "PUT",
        UPSTREAM,
        upstreams.put_keys,
        "admin",
        "Add a system key {key, label?} or replace the set {keys: [...]}; sealed at rest",
        body=UPSTREAM_KEYS,
    ),
    Op(
        "DELETE",
        UPSTREAM + "/{fingerprint}",
        upstreams.delete_key,
        "admin",
        "Remove one stored system key",
    ),
    Op(
        "GET",
        "/v1/admin/secrets",
        secrets.show,
        "viewer",
        "Stored upstream keys per master key (kid); the current and old kids",
    ),
    Op(
        "POST",
        "/v1/admin/secrets/rotate",
        secrets.rotate,
        "admin",
        "Seal every stored upstream key again with the current master key {dry_run?}",
        body=SECRETS_ROTATE,
    ),
    Op(
        "GET",
        "/v1/admin/settings",
        upstreams.show_settings,
        "viewer",
        "Run-time settings (allow_user_keys)",
    ),
    Op(
        "PUT",
        "/v1/admin/settings",
        upstreams.put_settings,
        "admin",
        "Change run-time settings (fields sent only)",
        body=SETTINGS,
    ),
    Op(
        "GET",
        MY_KEYS,
        me_keys.list_keys,
        "user",
        "The caller's stored upstream keys, by fingerprint (client key)",
    ),
    Op(
        "PUT",
        MY_KEYS + "/{upstream}",
        me_keys.put_key,
        "user",
        "Store the caller's own key for an upstream (needs allow_user_keys)",
        body=USER_KEY,
    ),
    Op(
        "DELETE",
        MY_KEYS + "/{upstream}",
        me_keys.delete_key,
        "user",
        "Delete the caller's stored key for an upstream",
    ),
    Op(
        "GET",
        "/v1/admin/analytics",
        analytics.analytics,
        "viewer",
        "Usage totals grouped and bucketed (analytics)",
        query=(*USAGE_QUERY, "group_by", "bucket"),
    ),
    Op(
        "GET",
        "/v1/admin/usage/records",
        analytics.records,
        "viewer",
        "Usage records, filtered, paged by cursor",
        query=(*USAGE_QUERY, "limit", "cursor"),
    ),
    Op(
        "GET",
        "/v1/admin/usage/export",
        analytics.export,
        "viewer",
        "Usage records as CSV, JSON or XLSX",
        query=(*USAGE_QUERY, "format"),
    ),
    *ORG_OPERATIONS,
    Op(
        "GET",
        "/v1/admin/statements",
        statements.all_statements,
        "viewer",
        "Every user's monthly statement (?month=YYYY-MM&limit=&cursor=&format=json|csv|xlsx)",
        query=("month", "limit", "cursor", "format"),
    ),
    Op(
        "GET",
        "/v1/me/statements/{month}",
        statements.my_statement,
        "user",
        "The caller's monthly statement, month YYYY-MM (?format=json|csv|xlsx)",
        query=("format",),
    ),
)


def document() -> dict[str, Any]:
    """``GET /v1/admin/openapi.json``: every operation of the table."""
    return openapi_document(OPERATIONS)


def routes(operations: Iterable[Op] = OPERATIONS) -> list[Route]:
    """One route per path, in the table's order, calling each method's endpoint."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in operations:
        methods = by_path.setdefault(op.path, {})
        if op.method in methods:
            raise ValueError(f"{op.method} {op.path} is in the admin route table twice")
        methods[op.method] = op.endpoint
    return [
        Route(path, PathEndpoints(methods).answer, methods=list(methods))
        for path, methods in by_path.items()
    ]


class PathEndpoints:
    """A path's endpoint per method; the router has already refused the other methods."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self.endpoints = dict(endpoints)
        if "GET" in self.endpoints:
            self.endpoints["HEAD"] = self.endpoints["GET"]

    async def answer(self, request: Request) -> Response:
        return await self.endpoints[request.method](request)
