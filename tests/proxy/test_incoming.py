"""Reading client bodies: nesting bound, number ranges (pure functions)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.proxy.incoming import MAX_DEPTH, check_numbers, parse_json_body, too_deep
from gateway.proxy.routing import CHAT, EMBEDDINGS, IMAGES

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Reference: nesting depth of arrays/objects, recursively."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(json_values, st.integers(min_value=1, max_value=6))
def test_too_deep_agrees_with_a_recursive_depth(value: Any, limit: int) -> None:
    body = {"v": value}
    assert too_deep(body, limit) == (depth(body) > limit)


def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_is_bounded_without_recursion() -> None:
    within = orjson.dumps({"x": nested(MAX_DEPTH - 1)})
    assert parse_json_body(within)["x"]
    with pytest.raises(InvalidRequest, match="deeper than 64"):
        parse_json_body(orjson.dumps({"x": nested(MAX_DEPTH)}))
    with pytest.raises(InvalidRequest):  # past orjson's own limit: still a 400
        parse_json_body(b"[" * 5000 + b"]" * 5000)


@pytest.mark.parametrize(
    "endpoint, body, param",
    [
        (IMAGES, {"n": 2**63 - 1}, "n"),
        (IMAGES, {"n": 0}, "n"),
        (IMAGES, {"n": 1.0}, "n"),
        (CHAT, {"n": False}, "n"),
        (CHAT, {"max_tokens": 2**31}, "max_tokens"),
        (CHAT, {"max_completion_tokens": "5"}, "max_completion_tokens"),
    ],
)
def test_numbers_out_of_range_name_their_field(
    endpoint: Any, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_numbers(body, endpoint)
    assert raised.value.param == param


def test_numbers_in_range_absent_or_null_pass() -> None:
    check_numbers({"n": 4, "max_tokens": 2**31 - 1, "max_completion_tokens": None}, CHAT)
    check_numbers({}, IMAGES)
    check_numbers({"n": "anything"}, EMBEDDINGS)  # not read by the gateway there
