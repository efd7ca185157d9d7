"""docs/protocols.md lists every field of both conformance tables with its disposition, and
the tables list every request field the installed openai and anthropic SDKs can send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anthropic.types import message_create_params
from openai.types.responses import response_create_params

from gateway.protocols.fields import CHAT_ANTHROPIC, MESSAGES, RESPONSES, Field

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocols.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(title)
    ends = [DOC.find(mark, start + 1) for mark in ("\n## ", "\n### ")]
    end = min((at for at in ends if at > 0), default=len(DOC))
    return DOC[start:end]


def _rows(section: str) -> dict[str, str]:
    """`field` → disposition, from the table rows (a row may name several fields)."""
    found = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            for name in cells[0].split(","):
                found[name.strip().strip("`")] = cells[1]
    return found


def _check(table: dict[str, Field], section: str) -> None:
    rows = _rows(_section(section))
    for name, spec in table.items():
        assert rows.get(name) == spec.disposition.value, name


def test_responses_table() -> None:
    _check(dict(RESPONSES), "## Responses API: request fields")


def test_messages_table() -> None:
    _check(dict(MESSAGES), "## Messages API: request fields")


def test_chat_to_anthropic_table() -> None:
    _check(dict(CHAT_ANTHROPIC), "## Chat completions to the Anthropic adapter: request fields")


# SDK parameters sent as headers, not in the body
HEADERS = {"user_profile_id", "workspace_id"}


def _sdk_fields(params: Any) -> set[str]:
    return {name for cls in params.__mro__ for name in getattr(cls, "__annotations__", {})}


def test_every_sdk_field_is_in_a_table() -> None:
    responses = _sdk_fields(response_create_params.ResponseCreateParamsBase)
    assert responses - set(RESPONSES) == set()
    messages = _sdk_fields(message_create_params.MessageCreateParamsBase) - HEADERS
    assert messages - set(MESSAGES) == set()
