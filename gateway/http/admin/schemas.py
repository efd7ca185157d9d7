"""The JSON Schemas of the admin API's request bodies and query parameters, as documented."""

from __future__ import annotations

from typing import Any

OBJECT: dict[str, Any] = {"type": "object"}
NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"], "minimum": 0}
WHOLE_OR_NULL: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1}


def closed(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """An object with these ``properties`` only (``required`` among them)."""
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema


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
KEY_CREATE = closed({"user": {"type": "string"}, **KEY_FIELDS}, "user", "tier")
KEY_UPDATE = closed(KEY_FIELDS)
ROTATE = closed({"grace_s": {"type": "integer", "minimum": 0}})
TOKEN_CREATE = closed({"role": {"enum": ["admin", "viewer"]}, "name": {"type": "string"}}, "role")
QUOTA: dict[str, Any] = {"type": "object", "description": "Quota fields; null inherits"}
BUDGET: dict[str, Any] = {
    "type": "object",
    "properties": {"usd_per_day": NUMBER_OR_NULL, "usd_per_month": NUMBER_OR_NULL},
}
FLAG = closed(
    {
        "enabled": {"type": "boolean"},
        "rollout_percent": {"type": "number", "minimum": 0, "maximum": 100},
    },
    "enabled",
)
WEIGHT: dict[str, Any] = {"type": "number", "minimum": 0}
WEIGHTS = closed(
    {
        "routes": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": WEIGHT},
        }
    },
    "routes",
)
QUOTA_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["capability", "requested"],
    "properties": {
        "capability": {"type": "string"},
        "requested": QUOTA,
        "reason": {"type": "string"},
    },
}
LABELLED_KEY: dict[str, Any] = {
    "type": "object",
    "properties": {"key": {"type": "string"}, "label": {"type": "string"}},
    "required": ["key"],
}
UPSTREAM_KEYS = closed(
    {
        "key": {"type": "string"},
        "label": {"type": "string"},
        "keys": {"type": "array", "items": {"anyOf": [{"type": "string"}, LABELLED_KEY]}},
    }
)
SECRETS_ROTATE = closed({"dry_run": {"type": "boolean"}})
SETTINGS = closed(
    {
        "allow_user_keys": {"type": "boolean"},
        "allow_user_keys_for": {
            "type": "object",
            "additionalProperties": {"type": ["boolean", "null"]},
        },
    }
)
USER_KEY = closed({"key": {"type": "string"}}, "key")

# The usage endpoints' filters (gateway/http/admin/analytics.py): time bounds and dimensions.
USAGE_QUERY = (
    "start",
    "end",
    "user",
    "key_id",
    "tier",
    "model",
    "provider",
    "capability",
    "status",
    "tag",
    "org",
    "team",
)
TEAM_QUERY = tuple(name for name in USAGE_QUERY if name != "org")
ERROR: dict[str, Any] = {
    "description": "OpenAI-shaped error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            }
        }
    },
}
