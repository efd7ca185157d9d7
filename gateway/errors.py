"""One error hierarchy; each error knows its OpenAI-shaped body (http/ renders it)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson


class GatewayError(Exception):
    """An error the client sees: ``{"error": {"message", "type", "param", "code"}}``."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None
    label: str = "internal"  # low-cardinality name for metrics and logs

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.status
        self.type = type or self.type
        self.code = code if code is not None else self.code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status, type, code, label = 400, "invalid_request_error", "invalid_request", "invalid_request"


class Unauthorized(GatewayError):
    status, type, code, label = 401, "authentication_error", "invalid_api_key", "unauthorized"


class Forbidden(GatewayError):
    status, type, code, label = 403, "permission_error", "model_not_allowed", "forbidden"


class NotFound(GatewayError):
    status, type, code, label = 404, "invalid_request_error", "not_found", "not_found"


class Conflict(GatewayError):
    """The change contradicts what is stored (an id taken, a parent with children)."""

    status, type, code, label = 409, "invalid_request_error", "conflict", "conflict"


class ModelNotFound(NotFound):
    code, label = "model_not_found", "model_not_found"


class MethodNotAllowed(GatewayError):
    status, type, code, label = 405, "invalid_request_error", "method_not_allowed", "bad_method"


class RequestTimeout(GatewayError):
    """The client did not send its request (headers or body) within the read deadline."""

    status, type, code, label = 408, "invalid_request_error", "request_timeout", "client_timeout"


class ClientClosedRequest(GatewayError):
    """The client went away before its request was read (nginx's 499): recorded, never sent."""

    status, type, code, label = 499, "invalid_request_error", "client_closed_request", "client_gone"


class PayloadTooLarge(GatewayError):
    status, type, code, label = 413, "invalid_request_error", "payload_too_large", "too_large"


class UnsupportedMediaType(GatewayError):
    status, type, code, label = 415, "invalid_request_error", "unsupported_media_type", "media_type"


class QuotaExceeded(GatewayError):
    status, type, code, label = 429, "rate_limit_error", "quota_exceeded", "quota"


class BudgetExceeded(QuotaExceeded):
    code, label = "budget_exceeded", "budget"


class StoreUnavailable(GatewayError):
    status, type, code, label = 503, "api_error", "store_unavailable", "store"


class UpstreamError(GatewayError):
    """An upstream's answer or failure, normalised; ``status`` is what the client gets."""

    status, type, code, label = 502, "api_error", "upstream_error", "upstream"


class UpstreamTimeout(UpstreamError):
    status, code, label = 504, "upstream_timeout", "timeout"


class DeadlineExceeded(UpstreamTimeout):
    """No answer started within the request's deadline (``retry.deadline_s``)."""

    code, label = "deadline_exceeded", "deadline"


class NoTargetAvailable(UpstreamError):
    status, code, label = 503, "no_upstream_available", "unavailable"


class ServerShuttingDown(GatewayError):
    """The gateway ended a stream itself: its shutdown grace period was over."""

    status, type, code, label = 503, "api_error", "server_shutting_down", "shutdown"


def sse_error_event(error: GatewayError) -> bytes:
    """The in-band error for a stream that already started, then the end marker."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\ndata: [DONE]\n\n"


class TooManyFailedAttempts(GatewayError):
    """Too many wrong credentials from one address or for one credential prefix."""

    status, type, code, label = 429, "rate_limit_error", "too_many_failed_attempts", "auth_throttle"
