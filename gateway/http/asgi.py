"""The ASGI app: POSTs below /v1 go straight to the pipeline, everything else through Starlette.

What runs on each request, outermost first:
1. the middleware given to ``create_app`` (``BodyLimit`` by default): on EVERY request;
2. the fast lane: a POST below /v1 goes to the pipeline, which renders its own errors, so it
   skips the next two (measurable at thousands of requests/s);
3. Starlette's error middleware, the ``routed_middleware`` (the dashboard's session loader),
   the exception middleware, then the router: every other request.
Middleware added later with ``add_middleware`` joins the outer list, so it too sees every request.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.http.cycle import GatewayCycle
from gateway.http.dispatch import Dispatch
from gateway.http.errors import error_response
from gateway.http.indexed_headers import ProxiedRequest
from gateway.http.overhead import overhead_value, stamped
from gateway.http.relay_response import RelayResponse
from gateway.proxy.pipeline import OVERHEAD_HEADER, Pipeline
from gateway.proxy.reply import Reply
from gateway.proxy.routing import Endpoint


class GatewayApp(Starlette):
    def __init__(
        self,
        pipeline: Pipeline,
        dispatch: Dispatch,
        *,
        middleware: Sequence[Middleware] = (),
        routed_middleware: Sequence[Middleware] = (),
        **kwargs: Any,
    ) -> None:
        self._outer = list(middleware)
        self._fast: FastLane | None = None
        self._stack: ASGIApp | None = None  # the middleware stack's call
        super().__init__(middleware=routed_middleware, **kwargs)
        self._lane = (pipeline, dispatch)

    def swap_lane(self, pipeline: Pipeline, dispatch: Dispatch) -> None:
        """A reloaded config's pipeline for the requests that start from now on (those
        running keep theirs)."""
        self._lane = (pipeline, dispatch)
        if self._fast is not None:
            self._fast.swap(pipeline, dispatch)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        """Starlette's, as a plain call handing back the stack's coroutine: no coroutine of
        its own that every wait of every request would cross."""
        scope["app"] = self
        stack = self._stack
        if stack is None:
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            stack = self._stack = bound_call(self.middleware_stack)
        return stack(scope, receive, send)

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        if self.middleware_stack is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
        self._outer.insert(0, Middleware(middleware_class, *args, **kwargs))

    def build_middleware_stack(self) -> ASGIApp:
        pipeline, dispatch = self._lane
        self._fast = FastLane(pipeline, dispatch, super().build_middleware_stack())
        app: ASGIApp = self._fast
        for cls, args, kwargs in reversed(self._outer):
            app = cls(bound_call(app), *args, **kwargs)
        return app


def bound_call(app: ASGIApp) -> ASGIApp:
    """``app`` as its bound ``__call__`` when it is an object whose class defines one in
    Python: called per request, a bound method costs less than calling the object."""
    if isinstance(app, types.FunctionType | types.MethodType):
        return app
    for klass in type(app).__mro__:
        call = vars(klass).get("__call__")
        if call is not None:
            return call.__get__(app) if isinstance(call, types.FunctionType) else app
    return app


def _marked_coroutine_function(function: Callable[..., Any]) -> None:
    """Mark ``function`` (which returns an awaitable) as a coroutine function for those that
    ask (uvicorn tells an ASGI 3 app from an ASGI 2 one by it)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12 on
        mark(function)
    else:
        function._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine")  # type: ignore[attr-defined]  # noqa: B009


_marked_coroutine_function(GatewayApp.__call__)

# POSTs below /v1 that are Starlette routes, not proxied endpoints (the admin API...).
ROUTED_POSTS: tuple[str, ...] = (
    "/v1/admin/",
    "/v1/quota/requests",
    "/v1/messages/count_tokens",
    "/v1/files",
    "/v1/batches",
)


class FastLane:
    """Every POST below /v1 to the pipeline (known endpoints by exact path first); the rest to
    ``routed``."""

    def __init__(self, pipeline: Pipeline, dispatch: Dispatch, routed: ASGIApp) -> None:
        self._pipeline = pipeline
        self._dispatch = dispatch
        self._routed = routed

    def swap(self, pipeline: Pipeline, dispatch: Dispatch) -> None:
        self._pipeline, self._dispatch = pipeline, dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            endpoint = self._dispatch.direct.get(path)
            if endpoint is not None or (
                path.startswith("/v1/") and not path.startswith(ROUTED_POSTS)
            ):
                if endpoint is not None:  # the common case, one coroutine fewer
                    request = ProxiedRequest(scope, receive)
                    reply: Reply | ASGIApp = await self._pipeline.handle(request, endpoint)
                else:
                    reply = await self._proxied(scope, receive, path)
                if isinstance(reply, Reply) and isinstance(reply.body, bytes):
                    if not wrote_whole(reply, send):
                        await send_whole(reply, send)
                else:
                    await to_asgi(reply)(scope, receive, send)
                return
        if scope["type"] == "http":  # the pipeline times its own answers; these are all ours
            send = stamped(send, time.perf_counter())
        # the reads of metrics and usage see every request that ended before they came
        self._pipeline.drain_listeners()
        await self._routed(scope, receive, send)

    async def _proxied(self, scope: Scope, receive: Receive, path: str) -> Reply | ASGIApp:
        """A POST below /v1 not found by its exact path: an endpoint, a bridge or a 404."""
        started = time.perf_counter()
        try:
            found = self._dispatch.endpoint(path)
        except GatewayError as error:  # an unknown path: answered before any pipeline
            return error_response(error, {OVERHEAD_HEADER: overhead_value(started)})
        if not isinstance(found, Endpoint):  # a protocol bridge (/v1/responses...)
            return await found.handle(self._pipeline, ProxiedRequest(scope, receive))
        return await self._pipeline.handle(ProxiedRequest(scope, receive), found)


# Names seen to be lower-case already (a small vocabulary: the gateway's own, those it forwards)
_LOWER_NAMES: set[str] = set()
_LOWER_NAMES_MAX = 4096


def wrote_whole(reply: Reply, send: Send) -> bool:
    """The usual JSON answer written at once by the gateway's cycle (``write_plain``), then
    ``reply.after()``: no coroutine made. False, nothing done, for ``send_whole`` to send."""
    cycle = getattr(send, "__self__", None)
    if not isinstance(cycle, GatewayCycle):
        return False
    status, headers, body, media_type, after = reply
    assert isinstance(body, bytes)
    added = None
    if media_type is not None and "content-type" not in headers:
        # ``_content_type``, called only for the text types it changes
        added = _content_type(media_type) if media_type.startswith("text/") else media_type
    try:
        if not cycle.write_plain(status, headers, body, added):
            return False
    except BaseException:
        if after is not None:
            after()
        raise
    if after is not None:
        after()
    return True


async def send_whole(reply: Reply, send: Send) -> None:
    """A reply read whole, sent as Starlette's ``Response`` would send it (the same header
    fields, in the same order), then ``reply.after()`` whichever way the sending ended.

    Built here rather than through ``Response`` and ``SentThen``: every proxied JSON answer
    goes this way, and those two objects were a measurable share of its cost. Served by the
    gateway's protocol (``send`` its cycle's own), the head and body leave in one write."""
    status, headers, body, media_type, after = reply
    assert isinstance(body, bytes)
    try:
        cycle = getattr(send, "__self__", None)
        if isinstance(cycle, GatewayCycle):  # the usual answer: its names all plain
            added = None
            if media_type is not None and "content-type" not in headers:
                added = _content_type(media_type)
            if await cycle.send_plain(status, headers, body, added):
                return
        names: Collection[str]
        if _LOWER_NAMES.issuperset(headers):  # the usual case: the names need no lowering
            fields, names = list(headers.items()), headers.keys()
        else:
            fields = [(k.lower(), v) for k, v in headers.items()]
            names = {name for name, _ in fields}
            if len(_LOWER_NAMES) < _LOWER_NAMES_MAX:
                _LOWER_NAMES.update(k for k in headers if k == k.lower())
        if "content-length" not in names and not (status < 200 or status in (204, 304)):
            fields.append(("content-length", str(len(body))))
        if media_type is not None and "content-type" not in names:
            fields.append(("content-type", _content_type(media_type)))
        if isinstance(cycle, GatewayCycle) and cycle.takes(status):
            await cycle.send_whole(status, fields, body)
            return
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
    finally:
        if after is not None:
            after()


def _content_type(media_type: str) -> str:
    """Starlette's content-type for a ``media_type``: text with its charset."""
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        return media_type + "; charset=utf-8"
    return media_type


def to_asgi(reply: Reply | ASGIApp) -> ASGIApp:
    if not isinstance(reply, Reply):
        return reply
    status, headers, body, media_type, after = reply
    app: ASGIApp
    if isinstance(body, bytes):
        app = Response(body, status_code=status, headers=dict(headers), media_type=media_type)
    else:
        app = RelayResponse(body, status_code=status, headers=headers, media_type=media_type)
    return app if after is None else SentThen(app, after)


class SentThen:
    """A response, then ``after()`` once it is over: its last byte sent, the client gone, or
    the sending failed."""

    def __init__(self, app: ASGIApp, after: Callable[[], None]) -> None:
        self._app = app
        self._after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._app(scope, receive, send)
        finally:
            self._after()
