"""``gateway check``, ``schema`` and ``models check``: commands about the two config files."""

from __future__ import annotations

import asyncio
import os
import sys

from gateway.cli.base import environment_problems, load_config
from gateway.cli.stored_keys import stored_key_notes
from gateway.config.cache_section import fallback_warnings
from gateway.config.env_checks import key_source_notes, upstream_warnings
from gateway.config.targets import route_targets


def check(config_dir: str) -> int:
    """Environment problems and config problems: one line each, exit 1; then warnings."""
    problems = environment_problems()
    for problem in problems:
        print(f"gateway: error: {problem}", file=sys.stderr)
    if problems:
        return 1
    config = load_config(config_dir)
    stored, notes = stored_key_notes(config, os.environ)  # stored keys stand in for env keys
    warnings = upstream_warnings(config, os.environ, stored)
    warnings += [
        f"{r.describe()}: no target can be tried"
        for r in route_targets(config, stored)
        if not r.usable
    ]
    warnings += fallback_warnings(config)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in key_source_notes(config) + notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"ok: {len(config.upstreams)} upstreams, {len(config.models)} models, "
        f"{len(config.tiers)} tiers, {len(config.keys)} keys"
        + (f", {len(warnings)} warnings" if warnings else "")
    )
    return 0


def models_check(config_dir: str) -> int:
    """Compare the configured models with each upstream's /v1/models; print the findings."""
    import httpx

    from gateway.providers.catalog import TIMEOUT_S, Finding, check_catalog, report

    config = load_config(config_dir)

    async def run() -> list[Finding]:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            return await check_catalog(config, client)

    lines, status = report(asyncio.run(run()))
    for line in lines:
        print(line)
    if status == 0:
        print("ok: every configured model is listed by its upstream at the configured price")
    return status


def schema() -> int:
    """Print the JSON Schema of routes.yaml and tiers.yaml."""
    import orjson

    from gateway.config.schema import config_schema

    sys.stdout.write(orjson.dumps(config_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
