"""The admin API's route table, and the OpenAPI document generated from it.

One line per operation registers it and documents it in ``GET /v1/admin/openapi.json``.

Add a route: one ``Op(...)`` line in ``OPERATIONS`` (``endpoint=None`` when the route is
registered elsewhere and only needs documenting).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.http.admin import access as admin_access
from gateway.http.admin import flags as admin_flags
from gateway.http.admin import keys as admin_keys
from gateway.http.admin import orgs as admin_orgs
from gateway.http.admin import quotas as admin_quotas
from gateway.http.admin import reload as admin_reload
from gateway.http.admin import team_keys, team_usage
from gateway.http.admin.auth import require_role
from gateway.http.admin.org_schemas import (
    ORG_CREATE,
    ORG_UPDATE,
    TEAM_CREATE,
    TEAM_KEY,
    TEAM_TOKEN,
    TEAM_UPDATE,
)
from gateway.http.api import quota_requests
from gateway.http.responses import json_response

Endpoint = Callable[[Request], Awaitable[Response]]
OBJECT: dict[str, Any] = {"type": "object"}
NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"], "minimum": 0}
WHOLE_OR_NULL: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1}
KEY_FIELDS: dict[str, Any] = {
    "tier": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "models": {"type": ["array", "null"], "items": {"type": "string"}},
    "expires_at": {"type": ["number", "string", "null"], "description": "epoch s or ISO 8601"},
    "budget_usd": {
        "type": ["object", "null"],
        "properties": {"day": NUMBER_OR_NULL, "month": NUMBER_OR_NULL},
        "additionalProperties": False,
    },
    "rpm": WHOLE_OR_NULL,
    "tpm": WHOLE_OR_NULL,
    "max_parallel": WHOLE_OR_NULL,
    "metadata": {"type": ["object", "null"]},
    "team": {"type": ["string", "null"], "description": "bind the key to a team it is a member of"},
}
KEY_CREATE = {
    "type": "object",
    "required": ["user", "tier"],
    "properties": {"user": {"type": "string"}, **KEY_FIELDS},
    "additionalProperties": False,
}
KEY_UPDATE = {"type": "object", "properties": KEY_FIELDS, "additionalProperties": False}
ROTATE = {
    "type": "object",
    "properties": {"grace_s": {"type": "integer", "minimum": 0}},
    "additionalProperties": False,
}
TOKEN_CREATE = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"enum": ["admin", "viewer"]}, "name": {"type": "string"}},
    "additionalProperties": False,
}
QUOTA = {"type": "object", "description": "Quota fields; null inherits"}
BUDGET = {"type": "object", "properties": {"usd_per_day": NUMBER_OR_NULL,
                                           "usd_per_month": NUMBER_OR_NULL}}  # fmt: skip
# The usage endpoints' filters (gateway/http/admin/analytics.py): time bounds and dimensions.
USAGE_QUERY = ("start", "end", "user", "key_id", "tier", "model", "provider", "capability",
               "status", "tag", "org", "team")  # fmt: skip
TEAM_QUERY = tuple(name for name in USAGE_QUERY if name != "org")


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    role: str = "admin"  # "viewer": read-only tokens may call it too
    endpoint: Endpoint | None = None  # None: registered elsewhere, documented here
    body: dict[str, Any] | None = None  # JSON Schema of the request body
    status: int = 200  # the success status
    query: tuple[str, ...] = ()  # optional query parameters (strings)


async def openapi(request: Request) -> Response:
    require_role(request, "viewer")
    return json_response(document())


# fmt: off
OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/v1/admin/openapi.json", "This document", "viewer", openapi),
    Op("POST", "/v1/admin/keys", "Create a client key; its secret is shown once", "admin", admin_keys.create, KEY_CREATE, 201),  # noqa: E501
    Op("GET", "/v1/admin/keys", "List client keys (?user=), with spend and last use", "viewer", admin_keys.list_keys, query=("user",)),  # noqa: E501
    Op("GET", "/v1/admin/keys/{id}", "One client key, with spend and last use", "viewer", admin_keys.show),  # noqa: E501
    Op("PATCH", "/v1/admin/keys/{id}", "Change a client key's tier, models or limits", "admin", admin_keys.update, KEY_UPDATE),  # noqa: E501
    Op("DELETE", "/v1/admin/keys/{id}", "Revoke a client key", "admin", admin_keys.revoke),
    Op("POST", "/v1/admin/keys/{id}/rotate", "New secret; the old one works for grace_s", "admin", admin_keys.rotate, ROTATE),  # noqa: E501
    Op("POST", "/v1/admin/tokens", "Create an admin token; shown once", "admin", admin_access.create_token, TOKEN_CREATE, 201),  # noqa: E501
    Op("GET", "/v1/admin/tokens", "List admin tokens", "viewer", admin_access.list_tokens),
    Op("DELETE", "/v1/admin/tokens/{id}", "Delete an admin token", "admin", admin_access.delete_token),  # noqa: E501
    Op("GET", "/v1/admin/audit", "The audit logs, newest first (?limit=&before=&log=operator|user; both by default)", "viewer", admin_access.audit, query=("limit", "before", "log")),  # noqa: E501
    Op("GET", "/v1/admin/users/{user}", "A user's stored overrides", "viewer"),
    Op("PUT", "/v1/admin/users/{user}/quotas/{capability}", "Override a user's quota", body=QUOTA),
    Op("DELETE", "/v1/admin/users/{user}/quotas/{capability}", "Drop a user's quota override"),
    Op("PUT", "/v1/admin/users/{user}/budget", "Override a user's budget", body=BUDGET),
    Op("DELETE", "/v1/admin/users/{user}/budget", "Drop a user's budget override"),
    Op("GET", "/v1/admin/flags", "Feature flags: state, default, source", "viewer", admin_flags.list_flags),  # noqa: E501
    Op("GET", "/v1/admin/flags/{name}", "One feature flag", "viewer", admin_flags.show),
    Op("PUT", "/v1/admin/flags/{name}", "Set a flag at run time (rollout sticky per user)", "admin", admin_flags.set_flag, {"type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}, "rollout_percent": {"type": "number", "minimum": 0, "maximum": 100}}, "additionalProperties": False}),  # noqa: E501
    Op("DELETE", "/v1/admin/flags/{name}", "Back to the tiers.yaml default", "admin", admin_flags.reset),  # noqa: E501
    Op("GET", "/v1/admin/tiers/{tier}/quotas/{capability}", "A tier's quota in force, and its source", "viewer", admin_quotas.show),  # noqa: E501
    Op("PUT", "/v1/admin/tiers/{tier}/quotas/{capability}", "Replace a tier's quota at run time (null or -1: unlimited)", "admin", admin_quotas.set_quota, QUOTA),  # noqa: E501
    Op("DELETE", "/v1/admin/tiers/{tier}/quotas/{capability}", "Back to the tiers.yaml quota", "admin", admin_quotas.set_quota),  # noqa: E501
    Op("GET", "/v1/admin/tiers/{tier}/weights", "Rollout weights per route in force, and their source", "viewer"),  # noqa: E501
    Op("PUT", "/v1/admin/tiers/{tier}/weights", "Replace a tier's rollout weights at run time", body={"type": "object", "required": ["routes"], "properties": {"routes": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}}}, "additionalProperties": False}),  # noqa: E501
    Op("DELETE", "/v1/admin/tiers/{tier}/weights", "Back to the tiers.yaml weights"),
    Op("GET", "/v1/admin/quota-requests", "Quota-increase requests (?status=&user=)", "viewer", quota_requests.list_all, query=("status", "user")),  # noqa: E501
    Op("POST", "/v1/admin/quota-requests/{id}/approve", "Approve: sets the user's override (granted?, note?)", "admin", quota_requests.approve, OBJECT),  # noqa: E501
    Op("POST", "/v1/admin/quota-requests/{id}/deny", "Deny (note?)", "admin", quota_requests.deny, OBJECT),  # noqa: E501
    Op("POST", "/v1/quota/requests", "A user asks for more quota (client key)", "user", quota_requests.create, {"type": "object", "required": ["capability", "requested"], "properties": {"capability": {"type": "string"}, "requested": QUOTA, "reason": {"type": "string"}}}, 201),  # noqa: E501
    Op("GET", "/v1/quota/requests", "The caller's own quota requests (client key)", "user", quota_requests.mine),  # noqa: E501
    Op("POST", "/v1/admin/reload", "Reload routes.yaml and tiers.yaml on every worker and replica", "admin", admin_reload.reload),  # noqa: E501
    Op("GET", "/v1/admin/upstreams/{name}/keys", "An upstream's stored system keys: fingerprint, label, state (never the key)", "viewer"),  # noqa: E501
    Op("PUT", "/v1/admin/upstreams/{name}/keys", "Add a system key {key, label?} or replace the set {keys: [...]}; sealed at rest", body={"type": "object", "properties": {"key": {"type": "string"}, "label": {"type": "string"}, "keys": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"key": {"type": "string"}, "label": {"type": "string"}}, "required": ["key"]}]}}}, "additionalProperties": False}),  # noqa: E501
    Op("DELETE", "/v1/admin/upstreams/{name}/keys/{fingerprint}", "Remove one stored system key"),
    Op("GET", "/v1/admin/secrets", "Stored upstream keys per master key (kid); the current and old kids", "viewer"),  # noqa: E501
    Op("POST", "/v1/admin/secrets/rotate", "Seal every stored upstream key again with the current master key {dry_run?}", body={"type": "object", "properties": {"dry_run": {"type": "boolean"}}, "additionalProperties": False}),  # noqa: E501
    Op("GET", "/v1/admin/settings", "Run-time settings (allow_user_keys)", "viewer"),
    Op("PUT", "/v1/admin/settings", "Change run-time settings (fields sent only)", body={"type": "object", "properties": {"allow_user_keys": {"type": "boolean"}, "allow_user_keys_for": {"type": "object", "additionalProperties": {"type": ["boolean", "null"]}}}, "additionalProperties": False}),  # noqa: E501
    Op("GET", "/v1/me/upstream-keys", "The caller's stored upstream keys, by fingerprint (client key)", "user"),  # noqa: E501
    Op("PUT", "/v1/me/upstream-keys/{upstream}", "Store the caller's own key for an upstream (needs allow_user_keys)", "user", body={"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}, "additionalProperties": False}),  # noqa: E501
    Op("DELETE", "/v1/me/upstream-keys/{upstream}", "Delete the caller's stored key for an upstream", "user"),  # noqa: E501
    Op("GET", "/v1/admin/analytics", "Usage totals grouped and bucketed (analytics)", "viewer", query=(*USAGE_QUERY, "group_by", "bucket")),  # noqa: E501
    Op("GET", "/v1/admin/usage/records", "Usage records, filtered, paged by cursor", "viewer", query=(*USAGE_QUERY, "limit", "cursor")),  # noqa: E501
    Op("GET", "/v1/admin/usage/export", "Usage records as CSV, JSON or XLSX", "viewer", query=(*USAGE_QUERY, "format")),  # noqa: E501
    Op("POST", "/v1/admin/orgs", "Create an organization (id, timezone, limits)", "admin", admin_orgs.create_org, ORG_CREATE, 201),  # noqa: E501
    Op("GET", "/v1/admin/orgs", "List organizations", "viewer", admin_orgs.list_orgs),
    Op("GET", "/v1/admin/orgs/{org}", "One organization and its teams", "viewer", admin_orgs.show_org),  # noqa: E501
    Op("PATCH", "/v1/admin/orgs/{org}", "Change an organization's name, time zone or limits", "admin", admin_orgs.update_org, ORG_UPDATE),  # noqa: E501
    Op("DELETE", "/v1/admin/orgs/{org}", "Delete an organization without teams", "admin", admin_orgs.delete_org),  # noqa: E501
    Op("POST", "/v1/admin/teams", "Create a team in an organization (tier, members, limits)", "admin", admin_orgs.create_team, TEAM_CREATE, 201),  # noqa: E501
    Op("GET", "/v1/admin/teams", "List teams (?org=)", "viewer", admin_orgs.list_teams, query=("org",)),  # noqa: E501
    Op("PATCH", "/v1/admin/teams/{team}", "Change a team's name, tier, members or limits (operators only)", "admin", admin_orgs.update_team, TEAM_UPDATE),  # noqa: E501
    Op("DELETE", "/v1/admin/teams/{team}", "Delete a team without keys", "admin", admin_orgs.delete_team),  # noqa: E501
    Op("POST", "/v1/admin/teams/{team}/tokens", "Create a token scoped to a team (team_admin, team_viewer); shown once", "admin", admin_orgs.create_team_token, TEAM_TOKEN, 201),  # noqa: E501
    Op("GET", "/v1/admin/teams/{team}", "One team, with its usage in the current windows", "team_viewer", team_keys.show),  # noqa: E501
    Op("GET", "/v1/admin/teams/{team}/usage", "A team's counters in the current windows", "team_viewer", team_keys.usage),  # noqa: E501
    Op("GET", "/v1/admin/teams/{team}/analytics", "The team's usage totals, grouped and bucketed", "team_viewer", team_usage.analytics, query=(*TEAM_QUERY, "group_by", "bucket")),  # noqa: E501
    Op("GET", "/v1/admin/teams/{team}/records", "The team's usage records, paged by cursor", "team_viewer", team_usage.records, query=(*TEAM_QUERY, "limit", "cursor")),  # noqa: E501
    Op("GET", "/v1/admin/teams/{team}/keys", "A team's keys, with spend and last use", "team_viewer", team_keys.list_keys),  # noqa: E501
    Op("POST", "/v1/admin/teams/{team}/keys", "Create a key for a member, within the team's limits; shown once", "team_admin", team_keys.create_key, TEAM_KEY, 201),  # noqa: E501
    Op("POST", "/v1/admin/teams/{team}/keys/{id}/rotate", "Rotate a team key's secret", "team_admin", team_keys.rotate_key, ROTATE),  # noqa: E501
    Op("DELETE", "/v1/admin/teams/{team}/keys/{id}", "Revoke a team key", "team_admin", team_keys.revoke_key),  # noqa: E501
    Op("GET", "/v1/admin/statements", "Every user's monthly statement (?month=YYYY-MM&limit=&cursor=&format=json|csv|xlsx)", "viewer", query=("month", "limit", "cursor", "format")),  # noqa: E501
    Op("GET", "/v1/me/statements/{month}", "The caller's monthly statement, month YYYY-MM (?format=json|csv|xlsx)", "user", query=("format",)),  # noqa: E501
)
# fmt: on


def routes() -> list[Route]:
    """The operations that have their endpoint here."""
    return [Route(op.path, op.endpoint, methods=[op.method]) for op in OPERATIONS if op.endpoint]


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "x-role": op.role,
            "security": [{"bearer": []}],
            "responses": {
                str(op.status): {
                    "description": "OK",
                    "content": {"application/json": {"schema": OBJECT}},
                },
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
            },
        }
        names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in op.query]
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.body}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM gateway admin API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "OpenAI-shaped error", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "error": {"type": "object", "properties": {
                        "message": {"type": "string"}, "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]}}}}}}}}},
        },
    }  # fmt: skip
