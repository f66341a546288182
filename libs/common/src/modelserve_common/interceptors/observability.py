"""Request context + access log + metrics + error mapping, in one grpc.aio server interceptor."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import structlog

from modelserve_common import metrics
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.errors import ServiceError

log = structlog.get_logger("modelserve.access")
errlog = structlog.get_logger("modelserve.errors")

_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


@dataclass
class _MethodMetrics:
    service: str
    method: str
    started: Any
    handling: Any
    in_flight: Any
    handled: dict[grpc.StatusCode, Any]
    grpc_type: str
    quiet: bool

    def handled_for(self, code: grpc.StatusCode) -> Any:
        child = self.handled.get(code)
        if child is None:
            child = metrics.GRPC_SERVER_HANDLED.labels(self.grpc_type, self.service, self.method, code.name)
            self.handled[code] = child
        return child


def _grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


# Generated request ids: a random per-process prefix and a counter (uuid4 per RPC costs a getrandom
# syscall on the hot path); 32 hex characters like a uuid4 hex.
_RID_PREFIX = uuid.uuid4().hex[:16]
_rid_counter = itertools.count(1)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and value:
            return str(value)[:128]
    return f"{_RID_PREFIX}{next(_rid_counter):016x}"


class _Call:
    """Per-RPC bookkeeping shared by the four arities."""

    __slots__ = ("m", "context", "start", "request_id")

    def __init__(self, m: _MethodMetrics, context: grpc.aio.ServicerContext) -> None:
        self.m = m
        self.context = context
        self.start = time.perf_counter()
        rid = _request_id(context)
        self.request_id = rid
        request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid, rpc_method=m.method)
        context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
        m.started.inc()
        m.in_flight.inc()

    async def fail(self, exc: BaseException) -> grpc.StatusCode:
        """Maps an exception raised by the handler to a status (aborting the RPC)."""
        if isinstance(exc, ServiceError):
            await self.context.abort(exc.code, exc.message)
        if isinstance(exc, NotImplementedError):  # the generated base servicer's "not built yet"
            await self.context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
        errlog.error("rpc.unexpected_error", rpc_method=self.m.method, exc_info=exc)
        await self.context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # pragma: no cover

    def finish(self, code: grpc.StatusCode | None, access_log: Any) -> None:
        m = self.m
        elapsed = time.perf_counter() - self.start
        if code is None:
            set_code = self.context.code()
            code = set_code if isinstance(set_code, grpc.StatusCode) else grpc.StatusCode.OK
        m.in_flight.dec()
        m.handled_for(code).inc()
        m.handling.observe(elapsed)
        if access_log is not None and not m.quiet:
            # written right after the handler returns (next loop turn, same context), so the
            # line's cost is not on the response's path
            asyncio.get_running_loop().call_soon(
                partial(
                    access_log.info, "rpc.handled", grpc_code=code.name, duration_ms=round(elapsed * 1000, 3)
                )
            )


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """See the package docstring. Wrapped handlers are cached per method."""

    def __init__(self, access_log: bool = True) -> None:
        # A concrete logger bound once (the chain is built after logging is configured), rather
        # than the lazy proxy, which re-resolves its configuration on every call; None = off.
        self._access_log: Any = log.bind() if access_log else None
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._cache[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").rpartition("/")
        gtype = _grpc_type(handler)
        m = _MethodMetrics(
            service=service,
            method=method,
            started=metrics.GRPC_SERVER_STARTED.labels(gtype, service, method),
            handling=metrics.GRPC_SERVER_HANDLING_SECONDS.labels(gtype, service, method),
            in_flight=metrics.GRPC_SERVER_IN_FLIGHT.labels(service),
            handled={},
            grpc_type=gtype,
            quiet=full_method.startswith(_QUIET_PREFIXES),
        )
        access_log = self._access_log

        if not handler.request_streaming and not handler.response_streaming:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                call = _Call(m, context)
                code: grpc.StatusCode | None = None
                try:
                    result = inner_uu(request, context)
                    return await result if inspect.isawaitable(result) else result
                except BaseException as exc:
                    code = _code_of(exc, context)
                    if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
                        if not isinstance(exc, (ServiceError, NotImplementedError)):
                            code = grpc.StatusCode.INTERNAL
                        await call.fail(exc)
                    raise
                finally:
                    call.finish(code, access_log)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )

        if not handler.request_streaming:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for item in _stream(m, access_log, inner_us, request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )

        if not handler.response_streaming:
            inner_su: Any = handler.stream_unary

            async def stream_unary(request_iter: Any, context: grpc.aio.ServicerContext) -> Any:
                call = _Call(m, context)
                code: grpc.StatusCode | None = None
                try:
                    result = inner_su(request_iter, context)
                    return await result if inspect.isawaitable(result) else result
                except BaseException as exc:
                    code = _code_of(exc, context)
                    if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
                        if not isinstance(exc, (ServiceError, NotImplementedError)):
                            code = grpc.StatusCode.INTERNAL
                        await call.fail(exc)
                    raise
                finally:
                    call.finish(code, access_log)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )

        inner_ss: Any = handler.stream_stream

        async def stream_stream(request_iter: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in _stream(m, access_log, inner_ss, request_iter, context):
                yield item

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )


async def _stream(
    m: _MethodMetrics,
    access_log: Any,
    inner: Callable[..., Any],
    request: Any,
    context: grpc.aio.ServicerContext,
) -> AsyncIterator[Any]:
    call = _Call(m, context)
    code: grpc.StatusCode | None = None
    try:
        result = inner(request, context)
        if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
            async for item in result:
                yield item
        elif inspect.isawaitable(result):
            await result
    except BaseException as exc:
        code = _code_of(exc, context)
        if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
            if not isinstance(exc, (ServiceError, NotImplementedError)):
                code = grpc.StatusCode.INTERNAL
            await call.fail(exc)
        raise
    finally:
        call.finish(code, access_log)
