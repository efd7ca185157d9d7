"""docs/configuration.md's tables of the shipped models and tier chains, made from routes.yaml
and tiers.yaml. Print them with ``python -m tests.first_run.model_tables``."""

from __future__ import annotations

from pathlib import Path

from gateway.config.load import load_config
from gateway.config.model import MODALITIES, Config, Price

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- generated from routes.yaml and tiers.yaml: begin -->\n"
END = "<!-- generated from routes.yaml and tiers.yaml: end -->"


def _price(price: Price) -> str:
    parts = []
    if price.output:
        parts.append(f"${price.input:g} in / ${price.output:g} out per 1M tokens")
    elif price.input:
        parts.append(f"${price.input:g} per 1M input tokens")
    if price.per_image:
        parts.append(f"${price.per_image:g} per image")
    if price.per_minute:
        parts.append(f"${price.per_minute:g} per minute")
    if price.per_second:
        parts.append(f"${price.per_second:g} per second")
    return "; ".join(parts) or "—"


def tables_markdown(config: Config) -> str:
    tiers = list(config.tiers.values())
    lines = [
        "Tier chains (first model first; the next on failure):",
        "",
        "| route | " + " | ".join(t.name for t in tiers) + " |",
        "|---|" + "---|" * len(tiers),
    ]
    for route in MODALITIES:
        if any(route in t.routes for t in tiers):
            chains = [" → ".join(m.name for m in t.routes.get(route, ())) or "—" for t in tiers]
            lines.append(f"| {route} | " + " | ".join(chains) + " |")
    lines += [
        "",
        "Models (routes.yaml):",
        "",
        "| name | upstream | upstream model | modality | price |",
        "|---|---|---|---|---|",
    ]
    for model in config.models.values():
        lines.append(
            f"| `{model.name}` | {model.upstream.name} | `{model.upstream_model}` "
            f"| {model.modality} | {_price(model.price)} |"
        )
    return "\n".join(lines) + "\n"


def shipped_tables() -> str:
    return tables_markdown(load_config(ROOT, env={}))


if __name__ == "__main__":
    print(shipped_tables(), end="")
