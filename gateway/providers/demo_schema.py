"""A deterministic example instance of a JSON Schema, for the demo's tools and JSON answers.

Covers what clients send in practice (pydantic's ``model_json_schema()``, the openai SDK's
strict schemas, LangChain's tool schemas): objects with properties, strings (enum, const,
format, length, simple patterns), numbers and integers within their bounds, booleans, null,
arrays (items, prefixItems, minItems/maxItems, uniqueItems), anyOf/oneOf (the first branch),
allOf (merged), and ``$ref`` into ``$defs``/``definitions``. It never raises: a schema it cannot
satisfy gets its best effort, so a malformed tool never turns into a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Inside a schema's own recursion (a tree of nodes), or past this depth, only what is required
# is produced: optional parts are left out, nullable ones null, arrays as short as allowed. So
# the instance stays finite and small; the caps bound the work a hostile schema can cause.
_SHALLOW_DEPTH = 8
_MAX_DEPTH = 40
_MAX_VALUES = 5000
_MAX_ITEMS = 100
_MAX_LENGTH = 4096
_FORMATS = {
    "date-time": "2024-01-01T12:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00Z",
    "duration": "PT1H",
    "email": "demo@example.com",
    "idn-email": "demo@example.com",
    "uri": "https://example.com/demo",
    "iri": "https://example.com/demo",
    "uri-reference": "https://example.com/demo",
    "url": "https://example.com/demo",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "byte": "ZGVtbw==",
    "binary": "demo",
}
# Tried in turn when a string has a pattern the default text does not match.
_PATTERN_CANDIDATES = (
    "demo", "a", "A", "0", "1", "abc", "ABC", "a1", "2024-01-01", "12:00", "demo@example.com",
    "https://example.com", "+10000000000", "000-000-0000", "00000", "#000000", "x_1", "demo-1",
)  # fmt: skip


def example_instance(schema: Any, name: str = "value") -> Any:
    """A value that validates against ``schema``; ``name`` (a property name) flavours strings."""
    root = schema if isinstance(schema, Mapping) else {}
    return _Generator(root).value(schema, name, 0, 0)


class _Generator:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.entered: list[str] = []  # the $refs being expanded, outermost first
        self.recursing = 0  # how many of them are re-entered
        self.budget = _MAX_VALUES

    def shallow(self, depth: int) -> bool:
        return self.recursing > 0 or depth >= _SHALLOW_DEPTH or self.budget <= 0

    def value(self, schema: Any, name: str, depth: int, variant: int) -> Any:
        if schema is True or not isinstance(schema, Mapping):
            return f"demo {name}" if schema is not False else None
        self.budget -= 1
        if depth > _MAX_DEPTH or self.budget < -_MAX_VALUES:
            return None
        reference = schema.get("$ref")
        if not isinstance(reference, str):
            return self.expanded(schema, name, depth, variant)
        again = reference in self.entered
        self.entered.append(reference)
        self.recursing += again
        try:
            return self.expanded(schema, name, depth, variant)
        finally:
            self.entered.pop()
            self.recursing -= again

    def expanded(self, schema: Mapping[str, Any], name: str, depth: int, variant: int) -> Any:
        schema = self.resolved(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[variant % len(enum)]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self.branch(branches, depth), name, depth + 1, variant)
        kind = self.kind(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth, variant)
        if kind == "integer":
            return _integer(schema, variant)
        if kind == "number":
            return _number(schema, variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return _string(schema, name, variant)

    def resolved(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """``schema`` with its ``$ref`` followed and its ``allOf`` merged into it."""
        for _ in range(_MAX_DEPTH):
            reference = schema.get("$ref")
            if not isinstance(reference, str):
                break
            target = self.lookup(reference)
            # Sibling keywords (a description, a default) stay beside the referenced schema.
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts and depth < _MAX_DEPTH:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, Mapping):
                    merged = _merge(merged, self.resolved(part, depth + 1))
            return merged
        return schema

    def lookup(self, reference: str) -> Mapping[str, Any]:
        node: Any = self.root
        if reference not in ("#", "#/"):
            if not reference.startswith("#/"):
                return {}  # remote references are not fetched
            for step in reference[2:].split("/"):
                step = step.replace("~1", "/").replace("~0", "~")
                node = node.get(step) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}

    def branch(self, branches: list[Any], depth: int) -> Any:
        """The first branch; deep in a recursive schema, a null branch when there is one."""
        if self.shallow(depth):
            for branch in branches:
                if isinstance(branch, Mapping) and branch.get("type") == "null":
                    return branch
        return branches[0]

    def kind(self, schema: Mapping[str, Any], depth: int) -> str | None:
        declared = schema.get("type")
        if isinstance(declared, list):
            kinds = [k for k in declared if isinstance(k, str)]
            if "null" in kinds and (self.shallow(depth) or len(kinds) == 1):
                return "null"
            declared = next((k for k in kinds if k != "null"), None)
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return None

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = (
            {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        )
        instance: dict[str, Any] = {}
        for key, subschema in properties.items():
            if key in required or not self.shallow(depth):
                instance[key] = self.value(subschema, key, depth + 1, 0)
        for key in sorted(required - instance.keys()):
            extra = schema.get("additionalProperties")
            instance[key] = self.value(extra if isinstance(extra, Mapping) else True, key, depth, 0)
        return instance

    def array(self, schema: Mapping[str, Any], name: str, depth: int, variant: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = _size(schema.get("minItems")) or 0
        high = _size(schema.get("maxItems"))
        count = min(max(low, len(prefix), 0 if self.shallow(depth) else 1), _MAX_ITEMS)
        if high is not None:
            count = max(min(count, high), low)
        items = schema.get("items", True)
        singular = name[:-1] if name.endswith("s") and len(name) > 3 else name
        values = []
        for index in range(count):
            subschema = prefix[index] if index < len(prefix) else items
            values.append(self.value(subschema, singular, depth + 1, variant + index))
        return values


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**part, **into}
    for key in ("properties", "$defs", "definitions"):
        if isinstance(into.get(key), Mapping) and isinstance(part.get(key), Mapping):
            merged[key] = {**part[key], **into[key]}
    if isinstance(into.get("required"), list) and isinstance(part.get("required"), list):
        merged["required"] = list(dict.fromkeys([*into["required"], *part["required"]]))
    for key in ("minimum", "exclusiveMinimum", "minLength", "minItems"):
        if _is_number(into.get(key)) and _is_number(part.get(key)):
            merged[key] = max(into[key], part[key])
    for key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems"):
        if _is_number(into.get(key)) and _is_number(part.get(key)):
            merged[key] = min(into[key], part[key])
    return merged


def _string(schema: Mapping[str, Any], name: str, variant: int) -> str:
    text = _FORMATS.get(str(schema.get("format")), f"demo {name.replace('_', ' ')}")
    if variant:
        text = f"{text} {variant}" if schema.get("format") not in _FORMATS else text
    low = _size(schema.get("minLength")) or 0
    high = _size(schema.get("maxLength"))
    if len(text) < low:
        text += "x" * (min(low, _MAX_LENGTH) - len(text))
    if high is not None and len(text) > high:
        text = text[: max(high, low)]
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _matches(pattern, text):
        fitting = (c for c in _PATTERN_CANDIDATES if _matches(pattern, c))
        text = next(fitting, text)
    return text


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except (re.error, RecursionError):
        return True  # not a pattern Python understands: nothing better to offer


def _integer(schema: Mapping[str, Any], variant: int) -> int:
    low, low_open, high, high_open = _bounds(schema)
    least = None if low is None else math.floor(low) + 1 if low_open else math.ceil(low)
    most = None if high is None else math.ceil(high) - 1 if high_open else math.floor(high)
    value = (least if least is not None else 1 if most is None else min(1, most)) + variant
    if most is not None and value > most:
        value = most if least is None else max(least, most)
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0 and value % step:
        up = value + step - value % step
        value = up if most is None or up <= most else value - value % step
    return value


def _number(schema: Mapping[str, Any], variant: int) -> float:
    low, low_open, high, high_open = _bounds(schema)
    step = _positive(schema.get("multipleOf"))
    if step is not None:
        multiple = math.ceil(low / step) if low is not None else 1
        if low is not None and low_open and multiple * step <= low:
            multiple += 1
        value = (multiple + variant) * step
        fits = high is None or (value < high if high_open else value <= high)
        return value if fits else multiple * step
    if low is not None and high is not None:
        return low + (high - low) / 2 if low != high else low
    if low is not None:
        return low + 1.5 + variant if low_open or variant else low
    if high is not None:
        return high - 1.5 - variant
    return 1.5 + variant


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """The lower and upper bound, each with whether it is exclusive (draft 4's boolean
    ``exclusiveMinimum`` included)."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    return low, low_open, high, high_open


def _bound(
    schema: Mapping[str, Any], closed: str, open_: str, tighter: Any
) -> tuple[float | None, bool]:
    inclusive, exclusive = _finite(schema.get(closed)), _finite(schema.get(open_))
    if inclusive is None:
        return exclusive, exclusive is not None
    if schema.get(open_) is True:
        return inclusive, True
    if exclusive is not None and tighter(inclusive, exclusive) == exclusive:
        return exclusive, True
    return inclusive, False


def _finite(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> float | None:
    number = _finite(value)
    return number if number is not None and number > 0 else None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
