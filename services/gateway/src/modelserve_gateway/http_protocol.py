"""uvicorn's httptools protocol with the gateway's transport rules: a request head (request line
and headers) larger than ``max_header_bytes`` answers 431, a request httptools cannot parse answers
400, both as JSON in the documented error shape (``{"error": ...}`` when the path starts with
``/v2``, the JSON of google.rpc.Status otherwise) instead of uvicorn's text/plain, and the
connection is closed.

A request head not complete within ``head_timeout_s`` answers 408 (a connection that sent
nothing is closed without an answer).

Counting: a head still incomplete is counted as the bytes received since the previous head ended
(so a 10 MB header is refused while it arrives, not buffered); a head that completes is measured
exactly (request target + every header name and value + their separators)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
LINGER_S = 2.0
"""How long a refused connection keeps draining the client's bytes before it is closed."""
_GRPC_CODE = {400: 3, 431: 3, 408: 4}  # INVALID_ARGUMENT; DEADLINE_EXCEEDED


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is in ``_refusal``."""


def error_body(path: bytes | str, status: int, message: str) -> bytes:
    """The JSON error body for a transport-level refusal, in the shape the route family uses."""
    p = path.decode("latin-1") if isinstance(path, bytes) else path
    doc: Any
    if p == "/v2" or p.startswith(("/v2/", "/v2?")):
        doc = {"error": message}
    else:
        doc = {"code": _GRPC_CODE.get(status, 3), "message": message, "details": []}
    return json.dumps(doc, separators=(",", ":")).encode()


class GatewayHttpProtocol(HttpToolsProtocol):
    """Set ``max_header_bytes`` with :func:`protocol_class`."""

    max_header_bytes = 32 * 1024
    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_body = False
        self._refusal: tuple[int, str] | None = None
        self._lingering = False
        self._head_timer: asyncio.TimerHandle | None = None

    # The head timeout: from the connection (or the first byte of a request) to the end of its
    # headers. uvicorn has none: a client that connects and sends nothing, or half a head, would
    # hold the connection forever (slowloris).

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._in_body:
            return
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # nothing asked: nothing to answer
            return
        self._refuse(408, f"request line and headers not received within {self.head_timeout_s:g} s")

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # refused: what the client still sends is read and dropped
            return
        self._unset_keepalive_if_required()
        if not self._in_body:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            status, message = self._refusal or (400, f"invalid HTTP request: {_reason(exc)}")
            self._refuse(status, message)
            return
        if not self._in_body and self._head_bytes > self.max_header_bytes:
            self._refuse(431, self._too_large())

    def _too_large(self) -> str:
        return f"request line and headers exceed the limit of {self.max_header_bytes} bytes"

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_body = False
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        size = len(self.url) + 16 + sum(len(k) + len(v) + 4 for k, v in self.headers)
        self._in_body = True
        self._head_bytes = 0
        if size > self.max_header_bytes:
            self._refusal = (431, self._too_large())
            raise _Refused()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        self.logger.info("http.refused status=%d %s", status, message)
        path = getattr(self, "url", b"") or b""
        body = error_body(path.split(b"?", 1)[0], status, message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        # Lingering close (as nginx does): closing at once with unread request bytes in the
        # socket makes the kernel send RST, and the client may lose the answer before reading
        # it. Half-close instead, drop what still arrives, close after LINGER_S at the latest.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._lingering = True
            self.loop.call_later(LINGER_S, self.transport.close)
        else:  # pragma: no cover - TCP transports can always half-close
            self.transport.close()


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def protocol_class(max_header_bytes: int, head_timeout_s: float = 10.0) -> type[GatewayHttpProtocol]:
    """A protocol class bound to the limits (uvicorn builds one protocol per connection from
    ``Config(http=...)``)."""
    return type(
        "BoundGatewayHttpProtocol",
        (GatewayHttpProtocol,),
        {"max_header_bytes": max_header_bytes, "head_timeout_s": head_timeout_s},
    )
