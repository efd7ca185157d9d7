"""The demo upstream's JSON Schema example generator: every instance validates (checked by the
jsonschema package), for hand-written schemas, for what pydantic and the openai SDK produce,
and for schemas hypothesis makes up."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from gateway.providers.demo_schema import example_instance


def assert_valid(schema: Any) -> Any:
    instance = example_instance(schema)
    validator = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(instance)
    return instance


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(min_length=20)
    postcode: str = Field(pattern=r"^\d{5}$")


class Tree(BaseModel):
    label: str
    children: list[Tree] = []
    parent: Tree | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Everything(BaseModel):
    name: str = Field(max_length=3)
    age: int = Field(gt=17, lt=130)
    score: float = Field(ge=0, le=1)
    ratio: float = Field(gt=0, multiple_of=0.25)
    even: int = Field(multiple_of=2, ge=3)
    tags: list[str] = Field(min_length=3, max_length=5)
    unique: set[int] = Field(min_length=2)
    pair: tuple[int, str]
    colour: Colour
    mode: Literal["fast", "slow"]
    when: datetime.datetime
    day: datetime.date
    ident: uuid.UUID
    home: Address
    other: Address | None = None
    pet: Cat | Dog = Field(discriminator="kind")
    extra: dict[str, int] = {}
    tree: Tree
    anything: Any = None


@pytest.mark.parametrize("model", [Address, Tree, Cat, Everything])
def test_pydantic_schemas_and_their_strict_openai_forms(model: type[BaseModel]) -> None:
    instance = assert_valid(model.model_json_schema())
    model.model_validate(instance)
    strict = assert_valid(to_strict_json_schema(model))
    model.model_validate(strict)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "enum": ["a", "b"]},
        {"type": "string", "format": "email"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "minLength": 30},
        {"type": "string", "maxLength": 0},
        {"type": "integer", "minimum": 5, "maximum": 5},
        {"type": "integer", "exclusiveMaximum": -10},
        {"type": "integer", "minimum": 7, "multipleOf": 5},
        {"type": "number", "exclusiveMinimum": 2.5},
        {"type": "number", "minimum": 1, "exclusiveMinimum": 3},
        {"type": "number", "maximum": -3},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5, "multipleOf": 0.1},
        {"type": "boolean"},
        {"type": "null"},
        {"type": ["null", "integer"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 4, "uniqueItems": True},
        {"type": "array", "maxItems": 0},
        {"const": {"fixed": [1, 2]}},
        {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]},
                   {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
        {"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}},
        {"$defs": {"N": {"type": "integer", "minimum": 3}}, "$ref": "#/$defs/N"},
        {"definitions": {"N": {"type": "boolean"}},
         "properties": {"n": {"$ref": "#/definitions/N"}}},
        {"properties": {"node": {"$ref": "#"}}, "required": []},
        {},
        True,
    ],
)  # fmt: skip
def test_hand_written_schemas(schema: Any) -> None:
    assert_valid(schema)


def test_required_recursion_through_an_optional_branch_ends() -> None:
    schema = {
        "type": "object",
        "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["next"],
        "additionalProperties": False,
    }
    instance = assert_valid(schema)
    depth = 0
    while instance is not None:
        instance, depth = instance["next"], depth + 1
    assert 1 < depth < 20


def test_strings_name_their_property_and_the_same_schema_gives_the_same_instance() -> None:
    schema = {"type": "object", "properties": {"city_name": {"type": "string"}}}
    assert example_instance(schema) == {"city_name": "demo city name"}
    assert example_instance(schema) == example_instance(schema)


def test_draft_4_boolean_exclusive_minimum() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "integer",
        "minimum": 3,
        "exclusiveMinimum": True,
    }
    assert assert_valid(schema) == 4


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
keywords = st.sampled_from(
    ["type", "properties", "required", "items", "anyOf", "oneOf", "allOf", "$ref", "enum",
     "minimum", "maximum", "minItems", "maxLength", "format", "pattern", "const", "$defs"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keywords | st.text(max_size=4), json_values, max_size=6))
def test_any_json_as_a_schema_never_raises(schema: dict[str, Any]) -> None:
    example_instance(schema)


simple_types = st.sampled_from(["string", "integer", "number", "boolean", "null"])


def _schemas(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    objects = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), children, max_size=4)
    return (
        objects.flatmap(
            lambda props: st.fixed_dictionaries(
                {"type": st.just("object"), "properties": st.just(props)},
                optional={
                    "required": st.just(sorted(props)),
                    "additionalProperties": st.just(False),
                },
            )
        )
        | st.fixed_dictionaries(
            {"type": st.just("array"), "items": children},
            optional={"minItems": st.integers(0, 4), "maxItems": st.integers(4, 6)},
        )
        | st.lists(children, min_size=1, max_size=3).map(lambda bs: {"anyOf": bs})
    )


leaf_schemas = st.one_of(
    simple_types.map(lambda t: {"type": t}),
    st.fixed_dictionaries(
        {"type": st.just("integer")},
        optional={"minimum": st.integers(-50, 50), "multipleOf": st.integers(1, 7)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("number")},
        optional={
            "exclusiveMinimum": st.floats(-1e6, 1e6),
            "maximum": st.floats(1e6 + 1, 1e7),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={"minLength": st.integers(0, 40), "maxLength": st.integers(40, 60)},
    ),
    st.lists(st.text(max_size=4), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.recursive(leaf_schemas, _schemas, max_leaves=12))
def test_generated_schemas_get_valid_instances(schema: dict[str, Any]) -> None:
    assert_valid(schema)


def test_a_recursive_model_is_expanded_once_then_kept_minimal() -> None:
    instance = assert_valid(Tree.model_json_schema())
    assert instance["children"] == [{"label": "demo label"}]  # optional parts left out
    assert instance["parent"] == {"label": "demo label"}
    strict = assert_valid(to_strict_json_schema(Tree))  # everything required, nothing left out
    assert len(str(strict)) < 600


def test_hostile_schemas_stay_cheap() -> None:
    wide = {
        "type": "object",
        "properties": {f"f{n}": {"anyOf": [{"$ref": "#"}, {"type": "null"}]} for n in range(40)},
        "required": [f"f{n}" for n in range(40)],
    }
    nested = {"type": "array", "minItems": 10**9, "items": {"type": "string", "minLength": 10**9}}
    for schema in (wide, nested):
        assert len(str(example_instance(schema))) < 2_000_000
