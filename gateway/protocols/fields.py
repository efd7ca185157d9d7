"""The conformance tables: each top-level request field of the bridged APIs and its fate.

A field not listed is refused by name, so nothing is dropped silently. ``CHAT_ANTHROPIC`` is
the same table for chat completions sent to the Anthropic adapter (``proxy/chat_fields.py``).

docs/protocols.md renders these tables; ``tests/protocols`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gateway.errors import InvalidRequest


class Disposition(Enum):
    CARRIED = "carried"  # the same field, same meaning, in the chat completions body
    TRANSLATED = "translated"  # rewritten into chat completions terms
    GATEWAY = "gateway"  # served by the gateway itself (storage, routing, the answer's shape)
    REFUSED = "refused"  # 400 naming the field


@dataclass(frozen=True)
class Field:
    disposition: Disposition
    note: str
    # values that are accepted although the field is refused otherwise (a default, off)
    harmless: tuple[Any, ...] = ()


C, T, G, R = (
    Disposition.CARRIED,
    Disposition.TRANSLATED,
    Disposition.GATEWAY,
    Disposition.REFUSED,
)

RESPONSES: Mapping[str, Field] = {
    "model": Field(G, "routes the request like chat completions' model"),
    "input": Field(T, "string or items → messages (see the item table)"),
    "instructions": Field(T, "→ a leading system message (not carried to the next turn)"),
    "tools": Field(T, "function tools → chat tools; built-in tools refused"),
    "tool_choice": Field(T, "auto/none/required carried; {type: function, name} translated"),
    "parallel_tool_calls": Field(C, "same field"),
    "text": Field(T, "text.format json_schema/json_object → response_format"),
    "max_output_tokens": Field(T, "→ max_tokens"),
    "temperature": Field(C, "same field"),
    "top_p": Field(C, "same field"),
    "metadata": Field(C, "same field; echoed on the Response; metadata.tags are spend tags"),
    "user": Field(C, "same field"),
    "safety_identifier": Field(C, "same field"),
    "prompt_cache_key": Field(C, "same field"),
    "service_tier": Field(C, "same field"),
    "stream": Field(T, "→ stream with usage; answered as Responses events"),
    "stream_options": Field(T, "include_obfuscation: false only (none is added)"),
    "store": Field(G, "default true: the response is kept under its owner"),
    "previous_response_id": Field(G, "the stored conversation is put before the input"),
    "truncation": Field(R, "only 'disabled' (the default)", harmless=("disabled",)),
    "background": Field(R, "background responses are not served", harmless=(False,)),
    "reasoning": Field(T, "effort → reasoning_effort for reasoning models; else refused"),
    "include": Field(R, "no extra output data is produced", harmless=((),)),
    "top_logprobs": Field(R, "log probabilities are not bridged", harmless=(0,)),
    "max_tool_calls": Field(R, "not enforceable over chat completions"),
    "prompt": Field(R, "stored prompt templates are not served"),
    "conversation": Field(R, "the Conversations API is not served"),
    "prompt_cache_retention": Field(R, "not bridged"),
    "prompt_cache_options": Field(R, "not bridged"),
    "context_management": Field(R, "compaction is not served", harmless=((),)),
    "moderation": Field(R, "moderated responses are not served"),
}

MESSAGES: Mapping[str, Field] = {
    "model": Field(G, "routes the request like chat completions' model"),
    "messages": Field(T, "blocks → chat messages (see the block table)"),
    "system": Field(T, "→ a leading system message"),
    "max_tokens": Field(T, "required; → max_tokens"),
    "stop_sequences": Field(T, "→ stop"),
    "temperature": Field(C, "same field"),
    "top_p": Field(C, "same field"),
    "top_k": Field(C, "sent as top_k (Together, vLLM and the Anthropic adapter take it)"),
    "tools": Field(T, "custom tools → function tools; server tools refused"),
    "tool_choice": Field(T, "auto/any/tool/none → auto/required/function/none"),
    "metadata": Field(T, "metadata.user_id → user"),
    "output_config": Field(T, "format (json_schema) → response_format; effort refused"),
    "cache_control": Field(T, "a prompt-caching hint: accepted, no effect, not forwarded"),
    "stream": Field(T, "→ stream with usage; answered as Messages events"),
    "service_tier": Field(R, "only 'auto'", harmless=("auto",)),
    "thinking": Field(R, "extended thinking is not bridged", harmless=({"type": "disabled"},)),
    "container": Field(R, "code execution containers are not served"),
    "mcp_servers": Field(R, "MCP connectors are not served", harmless=((),)),
    "context_management": Field(R, "not bridged"),
    "diagnostics": Field(R, "prompt-cache diagnostics are not produced"),
    "inference_geo": Field(R, "the gateway's routing decides where a request runs"),
    "speed": Field(R, "only 'standard'", harmless=("standard",)),
}


# chat completions → the Anthropic adapter (``providers/anthropic.py``): carried, translated
# into Messages terms, served by the gateway (accepted, not forwarded), or refused
CHAT_ANTHROPIC: Mapping[str, Field] = {
    "model": Field(G, "routes the request"),
    "purpose": Field(G, "a routing hint (purpose: coding → the code route), never forwarded"),
    "language": Field(G, "a routing hint (→ the code route), never forwarded"),
    "messages": Field(T, "system/developer → system; tool results and calls → blocks"),
    "max_tokens": Field(T, "→ max_tokens (4096 when neither is given; the tier's cap holds)"),
    "max_completion_tokens": Field(T, "→ max_tokens when max_tokens is absent"),
    "stop": Field(T, "→ stop_sequences"),
    "temperature": Field(C, "same field (Anthropic takes 0 to 1)"),
    "top_p": Field(C, "same field"),
    "top_k": Field(C, "same field"),
    "stream": Field(C, "same field; the events are translated back to chat chunks"),
    "stream_options": Field(G, "include_usage: served by the gateway's stream translation"),
    "tools": Field(T, "function tools → {name, description, input_schema, strict}"),
    "tool_choice": Field(T, "auto/none/required/a function → auto/none/any/tool"),
    "parallel_tool_calls": Field(T, "false → tool_choice.disable_parallel_tool_use"),
    "user": Field(T, "→ metadata.user_id"),
    "safety_identifier": Field(T, "→ metadata.user_id (before user)"),
    "response_format": Field(T, "json_schema → output_config.format; text → nothing"),
    "metadata": Field(G, "metadata.tags are spend tags; not forwarded (no stored completion)"),
    "prompt_cache_key": Field(G, "a prompt-caching hint: accepted, no effect, not forwarded"),
    "store": Field(R, "completions are not stored", harmless=(False,)),
    "n": Field(R, "one choice per request", harmless=(1,)),
    "logprobs": Field(R, "log probabilities are not produced", harmless=(False,)),
    "top_logprobs": Field(R, "log probabilities are not produced", harmless=(0,)),
    "presence_penalty": Field(R, "no counterpart", harmless=(0,)),
    "frequency_penalty": Field(R, "no counterpart", harmless=(0,)),
    "logit_bias": Field(R, "no counterpart", harmless=({},)),
    "seed": Field(R, "no counterpart (sampling is not seeded)"),
    "reasoning_effort": Field(R, "no counterpart (extended thinking is not mapped)"),
    "verbosity": Field(R, "no counterpart"),
    "service_tier": Field(R, "only 'auto' or 'default'", harmless=("auto", "default")),
    "prediction": Field(R, "predicted outputs are not served"),
    "audio": Field(R, "audio output is not produced"),
    "modalities": Field(R, "text output only", harmless=(("text",),)),
    "web_search_options": Field(R, "web search is not served"),
    "prompt_cache_retention": Field(R, "not carried"),
    "prompt_cache_options": Field(R, "not carried"),
    "moderation": Field(R, "moderated completions are not served"),
    "functions": Field(R, "deprecated: use tools"),
    "function_call": Field(R, "deprecated: use tool_choice"),
}


class Refused(InvalidRequest):
    """A field the bridge cannot carry to chat completions (a 400 naming it): an upstream that
    speaks the API natively may still take it, and a tier may let it be dropped instead."""

    def __init__(self, message: str, param: str, *, unknown: bool = False) -> None:
        super().__init__(message, param=param)
        self.field = param
        self.unknown = unknown  # not a field of the API at all (never dropped)


def check_fields(body: Mapping[str, Any], table: Mapping[str, Field], api: str) -> None:
    """400 naming the first field that is unknown, or refused with a value that matters."""
    for name, value in body.items():
        found = table.get(name)
        if found is None:
            message = f"Unknown parameter for the {api}: '{name}'."
            raise Refused(message, name, unknown=True)
        if found.disposition is R and value is not None and not harmless(value, found):
            raise Refused(
                f"'{name}' is not supported by this gateway's {api} ({found.note}).", name
            )


def harmless(value: Any, found: Field) -> bool:
    plain = tuple(value) if isinstance(value, list) else value
    return any(plain == allowed for allowed in found.harmless)


def refused(param: str, why: str) -> Refused:
    return Refused(f"'{param}' is not supported by this gateway: {why}.", param)


def check_keys(
    value: Mapping[str, Any], at: str, carried: Collection[str], hints: Collection[str] = ()
) -> None:
    """400 naming the first key of the object at ``at`` (a tool, say) that is neither carried
    nor a hint with no effect on the answer, unless it is null or false (a default, off)."""
    for key, item in value.items():
        if key in carried or key in hints or item is None or item is False:
            continue
        raise refused(f"{at}.{key}", "not bridged to chat completions")
