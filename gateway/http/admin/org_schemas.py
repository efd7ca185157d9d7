"""The JSON Schemas of the organization and team operations' bodies (``routes.py``)."""

from __future__ import annotations

from typing import Any

from gateway.http.admin.schemas import KEY_FIELDS, NUMBER_OR_NULL, WHOLE_OR_NULL

# A team key's own limits: a client key's fields except its tier and team, which the team sets.
KEY_LIMITS: dict[str, Any] = {
    name: schema for name, schema in KEY_FIELDS.items() if name not in ("tier", "team")
}
WINDOWED = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {w: NUMBER_OR_NULL for w in ("minute", "hour", "day", "month")},
}
LIMITS = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "budget_usd": WINDOWED,
        "requests": WINDOWED,
        "tokens": WINDOWED,
        "max_parallel": WHOLE_OR_NULL,
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}
ORG_FIELDS = {
    "name": {"type": ["string", "null"]},
    "limits": LIMITS,
    "timezone": {"type": ["string", "null"], "description": "IANA zone; UTC"},
}
ORG_CREATE = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {"id": {"type": "string"}, **ORG_FIELDS},
}
ORG_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": ORG_FIELDS,
    "additionalProperties": False,
}
TEAM_FIELDS = {
    "name": {"type": ["string", "null"]},
    "tier": {"type": "string"},
    "limits": LIMITS,
    "members": {"type": ["array", "null"], "items": {"type": "string"}},
}
TEAM_CREATE = {
    "type": "object",
    "required": ["id", "org", "tier"],
    "additionalProperties": False,
    "properties": {"id": {"type": "string"}, "org": {"type": "string"}, **TEAM_FIELDS},
}
TEAM_UPDATE = {"type": "object", "properties": TEAM_FIELDS, "additionalProperties": False}
TEAM_KEY = {
    "type": "object",
    "required": ["user"],
    "additionalProperties": False,
    "properties": {"user": {"type": "string"}, **KEY_LIMITS},
}
TEAM_TOKEN = {
    "type": "object",
    "required": ["role"],
    "additionalProperties": False,
    "properties": {"role": {"enum": ["team_admin", "team_viewer"]}, "name": {"type": "string"}},
}
