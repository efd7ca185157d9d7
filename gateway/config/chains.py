"""Chain entries with rollout weights, and a model's deployments, read from the YAML files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from gateway.config.model import Model, Upstream
from gateway.config.reader import Node

ON_EXHAUSTED = ("reject", "downgrade")


def chain_entry(node: Node, models: Mapping[str, Model]) -> tuple[Model | None, float]:
    """``name`` or ``{model: name, weight: W}`` → (the model, its rollout weight; 0 when none)."""
    weight = 0.0
    name_node = node
    if isinstance(node.value, dict):
        node.mapping({"model", "weight"}, {"model"})
        name_node = node.get("model")
        weight = node.get("weight").number(0.0) or 0.0
    name = name_node.string()
    if name is not None and name not in models:
        name_node.fail(f"unknown model {name!r}")
    return (models.get(name) if name else None), weight


def deployments(node: Node, model: Model, upstreams: Mapping[str, Upstream]) -> tuple[Model, ...]:
    """``deployments: [{upstream, model?, name?}, ...]`` → the model once per deployment, its
    own upstream first (labelled with the upstream's name). Each has its own breaker."""
    if not node.present():
        return ()
    found = [replace(model, deployment=model.upstream.name)]
    for entry in node.elements():
        entry.mapping({"upstream", "model", "name"}, {"upstream"})
        upstream_name = entry.get("upstream").string("") or ""
        upstream = upstreams.get(upstream_name)
        if upstream is None:
            if upstream_name:
                entry.get("upstream").fail(f"unknown upstream {upstream_name!r}")
            continue
        label = entry.get("name").string(upstream_name) or upstream_name
        if any(d.deployment == label for d in found):
            entry.get("name").fail(f"deployment name {label!r} is used twice")
            continue
        upstream_model = entry.get("model").string(model.upstream_model) or model.upstream_model
        found.append(
            replace(model, upstream=upstream, upstream_model=upstream_model, deployment=label)
        )
    return tuple(found)
