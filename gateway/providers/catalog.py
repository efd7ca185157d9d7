"""The catalog check: configured model ids and prices against each upstream's ``/v1/models``.

``gateway models check`` asks every OpenAI-compatible upstream that serves a configured model
(a deployment's upstream included) for its model list, and reports the configured upstream
ids it does not list and the token prices that differ from routes.yaml. OpenAI's list is
``{"object": "list", "data": [{"id": ...}]}``; Together's is a bare array whose entries carry
``pricing: {input, output, hourly, base, finetune}``, ``input``/``output`` in USD per 1M
tokens (the unit routes.yaml uses). Only token prices are compared, and only when the list
gives one above 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.config.model import Config, Model, Upstream

MISSING, PRICE, UNCHECKED = "missing", "price", "unchecked"
TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Finding:
    kind: str  # "missing" | "price" | "unchecked"
    upstream: str
    model: str | None  # the configured model name (None: the whole upstream)
    detail: str


@dataclass(frozen=True)
class Listed:
    """One entry of an upstream's list: its token prices (USD per 1M), when given."""

    input: float | None = None
    output: float | None = None


def configured(config: Config) -> dict[str, list[Model]]:
    """Upstream name → the models (deployments included) configured on it."""
    found: dict[str, list[Model]] = {}
    for model in config.models.values():
        for target in model.deployments or (model,):
            found.setdefault(target.upstream.name, []).append(target)
    return found


def parse_list(document: Any) -> dict[str, Listed]:
    """Model id → its listed prices, from an OpenAI- or Together-shaped list."""
    entries = document.get("data") if isinstance(document, dict) else document
    listed: dict[str, Listed] = {}
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            pricing = entry.get("pricing")
            pricing = pricing if isinstance(pricing, dict) else {}
            listed[entry["id"]] = Listed(
                _price(pricing.get("input")), _price(pricing.get("output"))
            )
    return listed


def compare(upstream: str, models: Iterable[Model], listed: Mapping[str, Listed]) -> list[Finding]:
    findings = []
    for model in models:
        entry = listed.get(model.upstream_model)
        if entry is None:
            detail = f"{model.upstream_model!r} is not in the upstream's model list"
            findings.append(Finding(MISSING, upstream, model.name, detail))
            continue
        for part, listed_price, ours in (
            ("input", entry.input, model.price.input),
            ("output", entry.output, model.price.output),
        ):
            if listed_price and not math.isclose(listed_price, ours, rel_tol=1e-6, abs_tol=1e-9):
                detail = (
                    f"{part} price {ours:g} in routes.yaml, {listed_price:g} listed "
                    f"(USD per 1M tokens) for {model.upstream_model!r}"
                )
                findings.append(Finding(PRICE, upstream, model.name, detail))
    return findings


async def check_catalog(config: Config, client: httpx.AsyncClient) -> list[Finding]:
    """Every finding, upstream by upstream (in routes.yaml's order)."""
    findings: list[Finding] = []
    by_upstream = configured(config)
    for name, upstream in config.upstreams.items():
        models = by_upstream.get(name)
        if not models:
            continue
        if upstream.api != "openai":
            reason = f"its API ({upstream.api}) has no OpenAI-style model list"
            findings.append(Finding(UNCHECKED, name, None, reason))
            continue
        if upstream.requires_key and upstream.api_key is None:
            reason = f"{upstream.api_key_env} is unset"
            findings.append(Finding(UNCHECKED, name, None, reason))
            continue
        listed = await _fetch(upstream, client)
        if isinstance(listed, str):
            findings.append(Finding(UNCHECKED, name, None, listed))
        else:
            findings.extend(compare(name, models, listed))
    return findings


def report(findings: list[Finding]) -> tuple[list[str], int]:
    """Lines to print, and the exit status: 1 when an id is missing, 2 when an upstream
    could not be checked, else 0."""
    lines = []
    for finding in findings:
        subject = finding.upstream + (f" {finding.model}" if finding.model else "")
        lines.append(f"{finding.kind}: {subject}: {finding.detail}")
    kinds = {finding.kind for finding in findings}
    status = 1 if MISSING in kinds else 2 if UNCHECKED in kinds else 0
    return lines, status


async def _fetch(upstream: Upstream, client: httpx.AsyncClient) -> dict[str, Listed] | str:
    """The upstream's list, or why it could not be read (never quoting a key)."""
    headers = {"accept": "application/json"}
    if upstream.api_key is not None:
        headers["authorization"] = f"Bearer {upstream.api_key.reveal()}"
    try:
        response = await client.get(upstream.base_url + "/models", headers=headers)
    except httpx.HTTPError as error:
        return f"GET /models failed ({type(error).__name__})"
    if response.status_code != 200:
        return f"GET /models answered HTTP {response.status_code}"
    try:
        return parse_list(response.json())
    except ValueError:
        return "GET /models did not answer JSON"


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
