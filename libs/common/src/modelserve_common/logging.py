"""structlog logging: JSON lines for machines (console renderer for humans), with request_id,
trace_id and span_id on every line, and stdlib loggers (grpc, psycopg, uvicorn) routed through the
same processors so every line has one shape."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from modelserve_common.config import BaseServiceSettings
from modelserve_common.context import request_id_var, rpc_method_var


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def _add_request_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """The request id and method of the RPC being served (set per RPC by the server chain in
    two context variables rather than bound through structlog, which costs the request path
    more; read only when a line is logged)."""
    rid = request_id_var.get()
    if rid is not None:
        event.setdefault("request_id", rid)
        method = rpc_method_var.get()
        if method is not None:
            event.setdefault("rpc_method", method)
    return event


def _processors(service: str) -> list[Any]:
    def add_service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return [
        structlog.contextvars.merge_contextvars,
        _add_request_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
        _add_trace_ids,
    ]


class BufferedStream:
    """Log lines collected in memory and written in one call every ``interval_s`` (or once
    ``limit`` characters wait), by a daemon thread and at exit. A write (and flush) per line
    costs a system call, and on a busy gRPC server each one hands the GIL to grpc's poller
    thread and waits to get it back: tens of microseconds per access-log line. ``flush()``
    (called by print and logging handlers per line) therefore does nothing; ``drain()`` writes."""

    def __init__(self, raw: TextIO, interval_s: float = 0.1, limit: int = 64 * 1024) -> None:
        self._raw = raw
        self._interval_s = interval_s
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="log-writer", daemon=True).start()
        atexit.register(self.drain)

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            full = self._size >= self._limit
        if full:
            self._wake.set()
        return len(text)

    def flush(self) -> None:
        return None

    def drain(self) -> None:
        with self._lock:
            parts, self._parts, self._size = self._parts, [], 0
        if parts:
            try:
                self._raw.write("".join(parts))
                self._raw.flush()
            except (OSError, ValueError):
                pass

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self.drain()


# What configure_logging installed last: (structlog processors, stream, service as JSON, level),
# for json_sink().
_installed: tuple[list[Any], Any, str, int] | None = None


def json_sink() -> tuple[Any, str, int] | None:
    """(stream, service name as a JSON string, level) while the JSON configuration that
    :func:`configure_logging` installed is the active structlog configuration, else None. Lets the
    access log write its one line per RPC in the same shape without the processor chain."""
    inst = _installed
    if inst is None or structlog.get_config()["processors"] is not inst[0]:
        return None
    return inst[1], inst[2], inst[3]


def configure_logging(settings: BaseServiceSettings, stream: Any = None) -> None:
    """Configures structlog and the stdlib root logger once per process. Without ``stream``,
    lines go to stderr through a :class:`BufferedStream` (written every 0.1 s and at exit)."""
    out: Any = stream or BufferedStream(sys.stderr)
    level = getattr(logging, settings.log_level)
    shared = _processors(settings.service_name)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if settings.log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    global _installed
    processors = [*shared, structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    _installed = (
        (processors, out, json.dumps(settings.service_name), level) if settings.log_format == "json" else None
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("grpc", "asyncio", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
