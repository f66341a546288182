"""What the gRPC front door (proxy.py) does around an upstream call without holding state: the
credentials in the caller's metadata, a routed version appended to a raw request, the upstream
deadline, relaying an upstream's failure, streamed replies and trailing metadata, and the answer
order and error messages of ModelStreamInfer."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.context import REQUEST_ID_HEADER, current_request_id
from modelserve_common.errors import InvalidArgument
from modelserve_common.wire import scan_strings
from modelserve_gateway import metadata
from modelserve_gateway.audit import audited
from modelserve_gateway.auth import Credentials
from modelserve_gateway.clients import UpstreamStream
from modelserve_gateway.guard import Admission


def stream_error(message: str, request: bytes) -> bytes:
    """A ModelStreamInferResponse answering ``request`` with ``message``: the request's model
    name, version and id (when readable) come back in ``infer_response`` for correlation."""
    try:
        fields = scan_strings(request, (1, 2, 3))
    except InvalidArgument:
        fields = {}
    return inference_pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=inference_pb.ModelInferResponse(
            model_name=fields.get(1, ""), model_version=fields.get(2, ""), id=fields.get(3, "")
        ),
    ).SerializeToString()


def with_version(buf: bytes, version: str) -> bytes:
    """``buf`` with ``version`` appended as one more field 2 (last one wins: the model_version)."""
    data = version.encode()
    out = bytearray(buf)
    out.append(0x12)
    length = len(data)
    while length > 0x7F:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    out += data
    return bytes(out)


def credentials_of(md: Sequence[tuple[str, Any]]) -> Credentials:
    """The first ``authorization`` and ``x-api-key`` of the caller's metadata."""
    auth = key = None
    for k, v in md:
        if k == "authorization" and auth is None:
            auth = str(v)
        elif k == "x-api-key" and key is None:
            key = str(v)
    return Credentials(auth, key)


def upstream_deadline(
    context: grpc.aio.ServicerContext[Any, Any], default_s: float, streaming: bool
) -> float:
    """The upstream deadline: the caller's; for a unary answer capped by the upstream default."""
    left = context.time_remaining()
    if left is None:
        return default_s
    return left if streaming else min(left, default_s)


async def relay_failure(exc: grpc.aio.AioRpcError, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Relays an upstream failure: its status, details and trailing metadata."""
    set_trailing(context, metadata.to_grpc(exc.trailing_metadata()))
    await context.abort(exc.code(), exc.details() or "")


async def relay_stream(
    call: UpstreamStream,
    adm: Admission,
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    write: bool,
) -> AsyncIterator[bytes]:
    """A streaming upstream call's initial metadata and messages, audited when it is a write."""
    try:
        with audited(adm.principal, method, enabled=write):
            initial = metadata.to_grpc(await call.initial_metadata())
            await context.send_initial_metadata(initial + adm.headers)
            async for item in call:
                yield item
    except grpc.aio.AioRpcError as exc:
        await relay_failure(exc, context)
        raise
    finally:
        call.cancel()


class InOrder:
    """The answer order of ModelStreamInfer: an upstream answer goes out at once; a refusal is
    held until the upstream has answered the messages sent before it, or more than ``limit`` are
    held; the upstream's end (``None``) releases every held one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: collections.deque[tuple[int, bytes]] = collections.deque()
        self.answered = 0

    def take(self, entry: tuple[int | None, bytes] | None) -> list[bytes]:
        """What may go out now that ``entry`` has come: (None, answer) from the upstream, or
        (messages sent upstream before it, refusal)."""
        if entry is None:
            ready = [answer for _, answer in self.held]
            self.held.clear()
            return ready
        after, answer = entry
        ready = []
        if after is None:
            self.answered += 1
            ready.append(answer)
        else:
            self.held.append((after, answer))
        while self.held and (self.held[0][0] <= self.answered or len(self.held) > self.limit):
            ready.append(self.held.popleft()[1])
        return ready


def set_trailing(context: grpc.aio.ServicerContext[Any, Any], extra: Any) -> None:
    """The trailing metadata: the request id, then ``extra`` (binary values kept as bytes)."""
    rid = current_request_id()
    md = [(REQUEST_ID_HEADER, rid)] if rid else []
    context.set_trailing_metadata(
        tuple(md + [(k, str(v)) if not k.endswith("-bin") else (k, v) for k, v in extra])
    )
