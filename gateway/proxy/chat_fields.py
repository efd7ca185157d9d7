"""Chat fields the Anthropic adapter cannot carry: refused by name, or dropped and named.

A chat request whose chain (every deployment that may answer it, before rollout, flags and
allow-lists narrow it) has a model behind the Anthropic adapter is checked against
``CHAT_ANTHROPIC``: a field it refuses, one it does not list (the adapter would not send it)
and a value it cannot translate (``response_format`` ``json_object``, a non-function tool or
tool choice, an audio or file content part) answer 400 naming the field and the models; a tier with
``unsupported_fields: drop`` drops them instead, and the answer names them in the
``x-gateway-dropped-fields`` header. A chain with no such model is not checked: its fields
reach the OpenAI-compatible upstreams as they are. The check runs before quotas are charged.

A tier precomputes, per requested name, its chain's models behind the adapter
(``Tier.adapted``); the pipeline calls ``settle`` only for a tier that has some (or a model a
caller's own key unlocks), so a tier without (the shipped config) pays two attribute tests per
chat request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from gateway.config.model import Model, Tier, adapter_models
from gateway.protocols.dropping import remove
from gateway.protocols.fields import CHAT_ANTHROPIC, Disposition, Refused, harmless
from gateway.proxy.bridge_plan import DROPPED_HEADER
from gateway.proxy.incoming import Incoming
from gateway.proxy.routing import AUTO, CHAT, Plan, default_route

ADAPTER = "behind the Anthropic adapter"
RESPONSE_FORMATS = ("text", "json_schema")
TOOL_CHOICES = ("auto", "none", "required")
PARTS = ("text", "image_url", "input_image")  # the content parts the adapter carries


def settle(incoming: Incoming, tier: Tier, plan: Plan) -> tuple[Incoming, str]:
    """``incoming`` as the chain of ``plan`` (as resolved) may receive it and the dropped
    fields ("" for none); raises the first refusal unless the tier drops them."""
    if plan.byok_only:  # a model outside the tier's chains
        adapted = adapter_models(plan.chain)
    else:  # the name ``resolve`` looked up
        name = incoming.model
        if name is None or name == AUTO:
            name = default_route(CHAT, incoming.fields)
        adapted = tier.adapted.get(name or "", ())
    if not adapted:
        return incoming, ""
    refusals = refused(incoming.fields, adapted)
    if not refusals:
        return incoming, ""
    if tier.unsupported_fields != "drop":
        raise refusals[0]
    fields = orjson.loads(orjson.dumps(incoming.fields))  # the client's body stays whole
    dropped = [r.field for r in refusals]
    for at in reversed(dropped):  # a list's later elements first: the earlier keep their place
        remove(fields, at)
    # every tool dropped: no tools (an empty list is an error to OpenAI), nor a choice
    if fields.get("tools") == [] and incoming.fields.get("tools"):
        del fields["tools"]
        if fields.pop("tool_choice", None) is not None and "tool_choice" not in dropped:
            dropped.append("tool_choice")
    return replace(incoming, fields=fields), ", ".join(dropped)


def refused(fields: Mapping[str, Any], adapted: tuple[Model, ...]) -> list[Refused]:
    """Every part of the chat body the adapter cannot carry, as the body names it."""
    names = ", ".join(sorted({m.name for m in adapted}))
    out: list[Refused] = []
    for name, value in fields.items():
        found = CHAT_ANTHROPIC.get(name)
        if found is None:
            out.append(Refused(f"Unknown parameter '{name}': {names} ({ADAPTER}) would not "
                               "receive it.", name))  # fmt: skip
        elif found.disposition is Disposition.REFUSED:
            if value is not None and not harmless(value, found):
                out.append(_refusal(name, names, found.note))
        elif value is not None and (why := _untranslatable(name, value)) is not None:
            at, note = why
            out.append(_refusal(at, names, note))
    tools = fields.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "function"):
            out.append(_refusal(f"tools[{index}].type", names, "function tools only"))
    messages = fields.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for place, part in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(part, dict) or part.get("type") not in PARTS:
                path = f"messages[{index}].content[{place}].type"
                out.append(_refusal(path, names, "text and image parts only"))
    return out


def _untranslatable(name: str, value: Any) -> tuple[str, str] | None:
    """(the part, why) for a value of a translated field the adapter has no counterpart for."""
    if name == "response_format":
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "json_object":
            return name, "it has no JSON mode: use a json_schema format"
        if kind not in RESPONSE_FORMATS:
            return name, "text and json_schema formats only"
    elif name == "tool_choice":
        if value in TOOL_CHOICES:
            return None
        function = value.get("function") if isinstance(value, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return name, "auto, none, required or a function only"
    return None


def _refusal(at: str, names: str, why: str) -> Refused:
    return Refused(f"'{at}' is not supported for {names} ({ADAPTER}): {why}.", at)


def with_dropped(headers: dict[str, str], dropped: str) -> dict[str, str]:
    """``headers`` with the dropped fields named."""
    headers[DROPPED_HEADER] = dropped
    return headers
