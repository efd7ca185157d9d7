"""A tier's ``byok_models``: which models a caller's own upstream key unlocks beyond the tier.

``any`` or a list of model ids stands for the tier's primary provider (the upstream of its
first route's first model); a mapping names the provider of each: ``{together: any,
openai: [gpt-4.1]}``. At most one provider may take ``any`` (an unlisted id goes to it)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config.model import ByokModels, Model, Upstream
from gateway.config.reader import Node

ANY = "any"


def byok_models(
    node: Node, routes: Mapping[str, tuple[Model, ...]], upstreams: Mapping[str, Upstream]
) -> ByokModels | None:
    if not node.present():
        return None
    if isinstance(node.value, dict):
        entries = list(node.items())
    else:
        primary = next((chain[0].upstream.name for chain in routes.values() if chain), None)
        if primary is None:
            node.fail("a tier without routes has no primary provider: name one ({upstream: any})")
            return None
        entries = [(primary, node)]
    any_upstream: str | None = None
    listed: dict[str, str] = {}
    for upstream, entry in entries:
        if upstream not in upstreams:
            entry.fail(f"unknown upstream '{upstream}' (known: {', '.join(sorted(upstreams))})")
            continue
        if entry.value == ANY:
            if any_upstream is not None:
                entry.fail(f"only one provider may take any model ('{any_upstream}' does)")
            any_upstream = upstream
            continue
        for element in entry.elements():
            model_id = element.string()
            if model_id is None:
                continue
            if listed.get(model_id, upstream) != upstream:
                element.fail(f"'{model_id}' is already listed for '{listed[model_id]}'")
            listed[model_id] = upstream
    return ByokModels(any_upstream, listed)
