"""File and batch records: what the store keeps, and the OpenAI objects shown for them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

FILE_PURPOSES = frozenset(
    {"batch", "batch_output", "user_data", "assistants", "fine-tune", "vision", "evals"}
)
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
COMPLETION_WINDOWS = {"24h": 24 * 3600}
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class FileRecord:
    id: str
    owner: str
    size: int  # bytes
    created_at: int
    filename: str
    purpose: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def dumps(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> FileRecord:
        return cls(**orjson.loads(raw))


@dataclass(frozen=True)
class LineError:
    """One reason a batch failed validation (OpenAI's ``errors.data`` entry)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


@dataclass(frozen=True)
class BatchRecord:
    id: str
    owner: str
    key_digest: str  # sha256 of the owner's key: re-checked before every line
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    total: int  # lines
    status: str = "validating"
    metadata: dict[str, str] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[LineError, ...] = ()
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    final_counts: tuple[int, int, int] | None = None  # total, completed, failed once final

    def dumps(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> BatchRecord:
        data = orjson.loads(raw)
        data["errors"] = tuple(LineError(**error) for error in data.get("errors") or ())
        counts = data.get("final_counts")
        data["final_counts"] = tuple(counts) if counts else None
        return cls(**data)

    def moved(self, status: str, at: int, **changes: Any) -> BatchRecord:
        """This record in ``status`` since ``at`` (its ``<status>_at`` set)."""
        stamp = f"{status}_at"
        if stamp in BatchRecord.__dataclass_fields__:
            changes[stamp] = at
        return dataclasses.replace(self, status=status, **changes)


@dataclass(frozen=True)
class Progress:
    """A batch's live counters and flags, shared by every replica (``state``)."""

    started: int = 0  # lines some replica began
    done: int = 0  # lines with a result
    completed: int = 0  # results with a 2xx answer
    failed: int = 0
    stop: str | None = None  # "cancelled" | "expired": no new lines start
    paused_until: float = 0.0  # a quota refused a line: no new lines start before this
    pause_reason: str = ""


RESERVED_METADATA = "gateway_paused"  # a client may not set it (``service._metadata``)


def public_batch(record: BatchRecord, progress: Progress, now: float) -> dict[str, Any]:
    """The OpenAI batch object; ``metadata.gateway_paused`` says why a batch is waiting."""
    if record.final_counts is not None:
        total, completed, failed = record.final_counts
    else:
        total, completed, failed = record.total, progress.completed, progress.failed
    metadata = dict(record.metadata or {})
    if record.status == "in_progress" and progress.paused_until > now:
        metadata[RESERVED_METADATA] = progress.pause_reason
    errors = None
    if record.errors:
        errors = {
            "object": "list",
            "data": [dataclasses.asdict(error) for error in record.errors],
        }
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "errors": errors,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": record.status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": record.created_at,
        "in_progress_at": record.in_progress_at,
        "expires_at": record.expires_at,
        "finalizing_at": record.finalizing_at,
        "completed_at": record.completed_at,
        "failed_at": record.failed_at,
        "expired_at": record.expired_at,
        "cancelling_at": record.cancelling_at,
        "cancelled_at": record.cancelled_at,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": metadata or None,
    }
