"""Request context + access log + metrics + error mapping: one wrapper around each method handler.

:func:`wrap_handler` builds the wrapped handler once per method. The server applies it when
services are registered (no grpc-level interceptor, so no extra coroutine and handler lookup per
RPC; see the package docstring).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from opentelemetry import trace

from modelserve_common import logging as mslogging
from modelserve_common import metrics
from modelserve_common.context import REQUEST_ID_HEADER, caller_identity, request_id_var, rpc_method_var
from modelserve_common.errors import ServiceError
from modelserve_common.handlers import behaviour, replace_behaviour, replies_of, reply_of
from modelserve_common.tracing import TRACE_ID_HEADER

errlog = structlog.get_logger("modelserve.errors")

_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
_perf = time.perf_counter


class _MethodMetrics:
    """The standard ``grpc_server_*`` metric children of one method, resolved once."""

    __slots__ = (
        "service",
        "method",
        "started",
        "handling",
        "in_flight",
        "handled",
        "grpc_type",
        "quiet",
        "log_ok",
        "handled_ok",
    )

    def __init__(self, full_method: str, grpc_type: str, log_ok: bool = True) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.service = service
        self.method = method
        self.grpc_type = grpc_type
        self.started = metrics.GRPC_SERVER_STARTED.labels(grpc_type, service, method)
        self.handling = metrics.GRPC_SERVER_HANDLING_SECONDS.labels(grpc_type, service, method)
        self.in_flight = metrics.GRPC_SERVER_IN_FLIGHT.labels(service)
        self.handled: dict[grpc.StatusCode, Any] = {}
        self.handled_ok = self.handled_for(grpc.StatusCode.OK)  # the usual outcome, without a lookup
        self.quiet = full_method.startswith(_QUIET_PREFIXES)
        self.log_ok = log_ok  # False: only failed calls are access-logged

    def handled_for(self, code: grpc.StatusCode) -> Any:
        child = self.handled.get(code)
        if child is None:
            child = metrics.GRPC_SERVER_HANDLED.labels(self.grpc_type, self.service, self.method, code.name)
            self.handled[code] = child
        return child


def _grpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
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


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, bool]:
    """The request id and whether the client sent it (a generated one needs no JSON escaping)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and value:
            return str(value)[:128], True
    return f"{_RID_PREFIX}{next(_rid_counter):016x}", False


class AccessLog:
    """One ``rpc.handled`` line per RPC (final code, duration, request id, method).

    Lines are collected while the loop serves RPCs and written together on its next turn, so
    their cost is not on any response's path. When the process logs JSON through
    :func:`modelserve_common.logging.configure_logging` (and tracing is off, so no span ids are
    due), a line is formatted here directly in the shape structlog's JSON renderer gives it, at a
    fraction of the cost of the processor chain; otherwise (console format, a test capturing
    logs, tracing on) every line goes through structlog as any other."""

    def __init__(self, *, structured_only: bool = False) -> None:
        # A concrete logger bound once (the chain is built after logging is configured), rather
        # than the lazy proxy, which re-resolves its configuration on every call; from a proxy of
        # its own, since a proxy caches the first configuration it binds under.
        self._log: Any = structlog.get_logger("modelserve.access").bind()
        self._structured_only = structured_only
        self._pending: list[tuple[Any, ...]] = []
        self._sec = -1
        self._sec_text = ""

    def record(self, method: _MethodMetrics, code: str, elapsed: float, rid: str, sent: bool) -> None:
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self._flush, context=contextvars.Context())
        ctx = ids = None
        if self._structured_only:
            # tracing on: a sampled RPC's line is written in its own context (span ids, bound
            # values); an unsampled one takes the fast path with its trace and span ids
            span = trace.get_current_span()
            if span.is_recording():
                ctx = contextvars.copy_context()
            elif (sc := span.get_span_context()).is_valid:
                ids = (format(sc.trace_id, "032x"), format(sc.span_id, "016x"))
        pending.append((method.method, code, elapsed, rid, sent, ctx, ids))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        sink = mslogging.json_sink()
        if sink is None:
            self._flush_structlog(pending)
            return
        if self._structured_only and any(p[5] is not None for p in pending):
            self._flush_structlog([p for p in pending if p[5] is not None])
            pending = [p for p in pending if p[5] is None]
        stream, service_json, level = sink
        if level > logging.INFO:
            return
        stamp = self._stamp
        lines = []
        for method, code, elapsed, rid, sent, _, ids in pending:
            rid_json = json.dumps(rid) if sent else f'"{rid}"'
            tail = f', "trace_id": "{ids[0]}", "span_id": "{ids[1]}"}}\n' if ids else "}\n"
            lines.append(
                f'{{"grpc_code": "{code}", "duration_ms": {round(elapsed * 1000, 3)!r}, '
                f'"event": "rpc.handled", "request_id": {rid_json}, "rpc_method": {json.dumps(method)}, '
                f'"level": "info", "timestamp": "{stamp()}", "service": {service_json}{tail}'
            )
        stream.write("".join(lines))

    def _flush_structlog(self, pending: list[tuple[Any, ...]]) -> None:
        info = self._log.info
        for method, code, elapsed, rid, _, ctx, ids in pending:
            ms = round(elapsed * 1000, 3)
            if ctx is not None:
                ctx.run(info, "rpc.handled", grpc_code=code, duration_ms=ms)
            else:
                traced = {"trace_id": ids[0], "span_id": ids[1]} if ids else {}
                with structlog.contextvars.bound_contextvars(request_id=rid, rpc_method=method, **traced):
                    info("rpc.handled", grpc_code=code, duration_ms=ms)

    def _stamp(self) -> str:
        """Now as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it."""
        now = time.time()
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._sec_text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._sec_text}.{int((now - sec) * 1e6):06d}Z"


class _Call:
    """Per-RPC bookkeeping shared by the four arities."""

    __slots__ = ("m", "context", "start", "request_id", "sent", "code")

    def __init__(self, m: _MethodMetrics, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.m = m
        self.context = context
        self.start = _perf()
        rid, self.sent = _request_id(context)
        self.request_id = rid
        self.code: grpc.StatusCode | None = None  # None: the handler returned (OK or a set code)
        request_id_var.set(rid)  # log lines read both (modelserve_common.logging)
        rpc_method_var.set(m.method)
        span = trace.get_current_span()
        if span.get_span_context().is_valid:  # tracing on: the caller can report the trace id
            tid = trace.format_trace_id(span.get_span_context().trace_id)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, rid), (TRACE_ID_HEADER, tid)))
            if span.is_recording():  # sampled: worth the metadata scan
                tenant, _ = caller_identity(context.invocation_metadata())
                span.set_attribute("modelserve.tenant", tenant or "")  # "" = trusted caller
        else:
            context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
        m.started.inc()
        m.in_flight.inc()

    async def handle(self, exc: BaseException) -> None:
        """Records the status ``exc`` ends the RPC with. A ServiceError becomes its status, the
        generated base servicer's NotImplementedError UNIMPLEMENTED, anything else unexpected is
        logged once with its stack and becomes INTERNAL "internal error" (each by aborting the
        RPC); aborts and cancellations pass through as they are."""
        self.code = _code_of(exc, self.context)
        if not isinstance(exc, Exception) or isinstance(exc, grpc.aio.AbortError):
            return
        if isinstance(exc, ServiceError):
            await self.context.abort(exc.code, exc.message)
        if isinstance(exc, NotImplementedError):
            await self.context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
        self.code = grpc.StatusCode.INTERNAL
        errlog.error("rpc.unexpected_error", rpc_method=self.m.method, exc_info=exc)
        await self.context.abort(grpc.StatusCode.INTERNAL, "internal error")

    def finish(self, access_log: AccessLog | None) -> None:
        m = self.m
        elapsed = _perf() - self.start
        code = self.code
        if code is None:
            set_code = self.context.code()
            code = set_code if isinstance(set_code, grpc.StatusCode) else grpc.StatusCode.OK
        m.in_flight.dec()
        (m.handled_ok if code is grpc.StatusCode.OK else m.handled_for(code)).inc()
        m.handling.observe(elapsed)
        if access_log is not None and not m.quiet and (m.log_ok or code is not grpc.StatusCode.OK):
            access_log.record(m, code.name, elapsed, self.request_id, self.sent)


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def wrap_handler(
    full_method: str,
    handler: grpc.RpcMethodHandler[Any, Any],
    access_log: AccessLog | None,
    *,
    log_ok: bool = True,
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with request context, access log, metrics and error mapping around it
    (``log_ok=False``: only failed calls reach the access log)."""
    m = _MethodMetrics(full_method, _grpc_type(handler), log_ok)
    inner: Any = behaviour(handler)

    if handler.response_streaming:

        async def streamed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(m, context)
            try:
                async for item in replies_of(inner(request, context)):
                    yield item
            except BaseException as exc:
                await call.handle(exc)
                raise
            finally:
                call.finish(access_log)

        return replace_behaviour(handler, streamed)

    is_coro = inspect.iscoroutinefunction(inner)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(m, context)
        try:
            if is_coro:
                return await inner(request, context)
            return await reply_of(inner(request, context))
        except BaseException as exc:
            await call.handle(exc)
            raise
        finally:
            call.finish(access_log)

    return replace_behaviour(handler, unary)
