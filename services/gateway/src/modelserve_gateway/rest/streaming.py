"""Server-streaming routes over REST: NDJSON (``application/x-ndjson``, one JSON document a line)
or, when the client accepts ``text/event-stream``, server-sent events. Each message is
``{"result": ...}``; a failure after the first message is one last ``{"error": Status}`` frame
(SSE event ``error``); a failure before it is an ordinary error response."""

from __future__ import annotations

from typing import Any

import grpc

from modelserve_gateway import metadata
from modelserve_gateway.clients import Upstream
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.rest.http import Headers, Send, raw_headers
from modelserve_gateway.transcoding.codec import response_json
from modelserve_gateway.transcoding.routes import Route
from modelserve_gateway.transcoding.safe_json import dumps


class Framer:
    """NDJSON lines or SSE events."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/x-ndjson"

    def __call__(self, doc: Any, event: str | None = None) -> bytes:
        data = dumps(doc)
        if not self.sse:
            return data + b"\n"
        return (b"event: " + event.encode() + b"\n" if event else b"") + b"data: " + data + b"\n\n"


async def stream(
    send: Send,
    route: Route,
    upstream: Upstream,
    request: bytes,
    md: list[tuple[str, str]],
    deadline_s: float,
    base: Headers,
    accept: str,
) -> None:
    """Relays one server-streaming call; the response starts once the first message (or the
    end) has come, so an early failure is still a proper error status."""
    frame = Framer("text/event-stream" in accept)
    call = upstream.open_stream(route.method, request, md, deadline_s)
    it = call.__aiter__()
    try:
        first: bytes | None = await anext(it)
    except StopAsyncIteration:
        first = None
    except grpc.aio.AioRpcError as exc:
        raise GatewayError.from_rpc_error(exc) from None
    headers = (
        base
        + metadata.to_http(await call.initial_metadata())
        + [("content-type", frame.content_type), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]
    )
    await send({"type": "http.response.start", "status": 200, "headers": raw_headers(headers)})
    try:
        if first is not None:
            await _body(send, frame, route, first)
            async for raw in it:
                await _body(send, frame, route, raw)
    except grpc.aio.AioRpcError as exc:
        err = GatewayError.from_rpc_error(exc)
        doc = frame({"error": err.status_json()}, "error")
        await send({"type": "http.response.body", "body": doc, "more_body": True})
    finally:
        call.cancel()
        await it.aclose()
    await send({"type": "http.response.body", "body": b""})


async def _body(send: Send, frame: Framer, route: Route, raw: bytes) -> None:
    doc = {"result": response_json(route, route.response_type.FromString(raw))}
    await send({"type": "http.response.body", "body": frame(doc), "more_body": True})
