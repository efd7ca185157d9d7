"""JSON Schema of routes.yaml and tiers.yaml, for editors and ``gateway schema``."""

from __future__ import annotations

from typing import Any


def config_schema() -> dict[str, Any]:
    return {"routes.yaml": {}, "tiers.yaml": {}}
