"""The dropping translation: refused parts taken out one by one, never an unknown field."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.protocols import messages, responses
from gateway.protocols.dropping import remove, translate_dropping
from gateway.protocols.fields import Refused


def _responses(body: dict[str, Any]) -> responses.ResponsesCall:
    responses.check_request(body)
    return responses.translate_request(body, [])


@pytest.mark.parametrize(
    ("path", "before", "after"),
    [
        ("reasoning", {"reasoning": {}, "a": 1}, {"a": 1}),
        ("text.verbosity", {"text": {"verbosity": "low", "f": 1}}, {"text": {"f": 1}}),
        ("tools[1].type", {"tools": [{"t": 0}, {"t": 1}]}, {"tools": [{"t": 0}]}),
        (
            "input[0].content[1].file_id",
            {"input": [{"content": [{"p": 0}, {"p": 1}]}]},
            {"input": [{"content": [{"p": 0}]}]},
        ),
        (
            "messages[0].content[0].source.type",
            {"messages": [{"content": [{"source": {"type": "x"}}]}]},
            {"messages": [{"content": []}]},
        ),
    ],
)
def test_remove_takes_out_the_named_part(
    path: str, before: dict[str, Any], after: dict[str, Any]
) -> None:
    assert remove(before, path) is True
    assert before == after


def test_remove_says_when_the_path_leads_nowhere() -> None:
    assert remove({"tools": []}, "tools[3].type") is False
    assert remove({"a": 1}, "b.c") is False


def test_refused_parts_are_dropped_in_order_and_the_body_is_left_alone() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
        "background": True,
        "text": {"verbosity": "low"},
    }
    call, kept, refusals = translate_dropping(_responses, body)
    assert [r.field for r in refusals] == ["background", "tools[0].type", "text.verbosity"]
    assert [t["function"]["name"] for t in call.chat["tools"]] == ["f"]
    assert "background" not in kept and len(kept["tools"]) == 1
    assert body["background"] is True and len(body["tools"]) == 2  # the client's, untouched


def test_an_unknown_field_is_never_dropped_unless_asked() -> None:
    body = {"model": "m", "input": "hi", "temprature": 1}
    with pytest.raises(Refused) as refused:
        translate_dropping(_responses, body)
    assert refused.value.field == "temprature" and refused.value.unknown
    _, kept, refusals = translate_dropping(_responses, body, unknown_too=True)
    assert [r.field for r in refusals] == ["temprature"] and "temprature" not in kept


def test_nothing_left_is_the_first_refusal() -> None:
    body = {"model": "m", "input": [{"type": "reasoning", "summary": []}]}
    with pytest.raises(Refused) as refused:
        translate_dropping(_responses, body)
    assert refused.value.field == "input[0].type"


def test_an_invalid_request_is_not_a_refusal() -> None:
    with pytest.raises(InvalidRequest) as invalid:
        translate_dropping(messages.translate_request, {"model": "m", "messages": []})
    assert not isinstance(invalid.value, Refused) and invalid.value.param == "max_tokens"


def test_reasoning_effort_is_translated_and_a_summary_refused() -> None:
    call = _responses({"model": "m", "input": "hi", "reasoning": {"effort": "low"}})
    assert call.chat["reasoning_effort"] == "low"
    with pytest.raises(Refused) as refused:
        _responses({"model": "m", "input": "hi", "reasoning": {"summary": "auto"}})
    assert refused.value.field == "reasoning.summary"
    with pytest.raises(InvalidRequest) as invalid:
        _responses({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}})
    assert invalid.value.param == "reasoning.effort"
