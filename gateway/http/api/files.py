"""/v1/files: upload, list, retrieve, content and delete the caller's own files.

The upload is the one request exempt from the general body limit (``BodyLimit``): its own cap
(``GATEWAY_FILES_MAX_MB``) is counted as the body arrives, and the multipart parser spools the
file to disk past 1 MB, so a large upload is never held in memory.
"""

from __future__ import annotations

from typing import Any, Protocol

from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.batches.service import Batches
from gateway.errors import InvalidRequest, UnsupportedMediaType
from gateway.http.body_limit import limited
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.proxy.incoming import body_cut_short

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text fields beside the file
LIST_LIMIT_MAX = 10_000


class WithBatches(Services, Protocol):
    @property
    def batches(self) -> Batches: ...


def parts(request: Request) -> tuple[str, Batches]:
    """The caller (authenticated) and the batches service."""
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    return gateway.keyring.authenticate(request.headers, request.scope).user, gateway.batches


async def upload(request: Request) -> Response:
    owner, batches = parts(request)
    files = batches.files
    declared = request.headers.get("content-length")
    cap = files.settings.max_file_bytes + FORM_OVERHEAD
    if declared and declared.isdecimal() and int(declared) > cap:
        raise files.too_large()
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMediaType("Expected 'multipart/form-data' with 'file' and 'purpose'.")
    capped = Request(request.scope, limited(request.receive, cap))
    try:
        form = await capped.form(max_files=1, max_fields=8)
    except ClientDisconnect:
        raise body_cut_short(request) from None
    except (MultiPartException, HTTPException, FormParserError) as exc:
        raise InvalidRequest(f"Invalid multipart body: {_detail(exc)}") from None
    try:
        upload_part, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload_part, UploadFile):
            raise InvalidRequest("The multipart body needs a 'file' part.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest("'purpose' is required.", param="purpose")
        name = upload_part.filename or "upload"
        record = await files.create(owner, upload_part.file, name, purpose)
    finally:
        await form.close()
    return json_response(record.public())


def _detail(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or getattr(exc, "detail", None) or "unreadable")


async def list_files(request: Request) -> Response:
    owner, batches = parts(request)
    records = await batches.files.list(owner)
    purpose = request.query_params.get("purpose")
    if purpose:
        records = [record for record in records if record.purpose == purpose]
    if request.query_params.get("order") == "asc":
        records.reverse()
    page, has_more = paged(request, [r.id for r in records], LIST_LIMIT_MAX, LIST_LIMIT_MAX)
    shown = [record.public() for record in records[page]]
    return json_response(listing(shown, has_more))


def paged(request: Request, ids: list[str], most: int, default: int) -> tuple[slice, bool]:
    """The slice of ``ids`` after ``after`` (an id) holding at most ``limit`` items."""
    raw_limit = request.query_params.get("limit") or str(default)
    if not raw_limit.isdecimal() or not 1 <= int(raw_limit) <= most:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {most}.", param="limit")
    limit = int(raw_limit)
    after = request.query_params.get("after")
    start = 0
    if after:
        if after not in ids:
            raise InvalidRequest(f"'after' names no object of yours: {after}", param="after")
        start = ids.index(after) + 1
    return slice(start, start + limit), start + limit < len(ids)


def listing(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


async def retrieve(request: Request) -> Response:
    owner, batches = parts(request)
    return json_response((await batches.files.get(owner, request.path_params["file_id"])).public())


async def content(request: Request) -> Response:
    owner, batches = parts(request)
    data = await batches.files.content(owner, request.path_params["file_id"])
    return Response(data, media_type="application/octet-stream")


async def delete(request: Request) -> Response:
    owner, batches = parts(request)
    record = await batches.files.delete(owner, request.path_params["file_id"])
    return json_response({"id": record.id, "object": "file", "deleted": True})


def routes() -> list[Route]:
    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", content, methods=["GET"]),
    ]
