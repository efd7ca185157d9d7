"""The admin API's OpenAPI 3.1 document, rendered from the route table's operations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.http.admin.operation import Op
from gateway.http.admin.schemas import ERROR, OBJECT

ERROR_REF = {"$ref": "#/components/responses/Error"}


def openapi_document(operations: Iterable[Op]) -> dict[str, Any]:
    """The document listing ``operations``: path and query parameters, body schema, role
    (``x-role``), success status and the OpenAI-shaped errors."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM gateway admin API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": ERROR},
        },
    }


def _operation(op: Op) -> dict[str, Any]:
    success = {"description": "OK", "content": {"application/json": {"schema": OBJECT}}}
    operation: dict[str, Any] = {
        "summary": op.summary,
        "x-role": op.role,
        "security": [{"bearer": []}],
        "responses": {
            str(op.status): success,
            "400": ERROR_REF,
            "401": ERROR_REF,
            "403": ERROR_REF,
        },
    }
    names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in op.query]
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    return operation
