"""Which models a caller may see: the model server is the authority on tenant isolation for every
inference-service RPC.

The gateway forwards the caller's identity as metadata (``x-modelserve-tenant``,
``x-modelserve-scopes``; :func:`modelserve_common.context.caller_identity`). No tenant header means
a trusted caller (the platform administrator or an in-cluster service): it sees every model, as
before. A caller *with* a tenant header sees a model only when

- the registry's deployment of the model belongs to that tenant (``Deployment.tenant``), or is
  shared with every tenant (``Deployment.shared``, a copy of ``Model.shared``), or
- the model is a local repository model (no registry record) listed in
  ``MODEL_SERVER_SHARED_MODELS``. Other local models are platform models: trusted callers only.

A model the caller may not see is answered exactly as a model that does not exist
(:meth:`~modelserve_model_server.manager.ModelManager.missing`): NOT_FOUND with the same message,
so nothing about other tenants' models is revealed. For a tenant caller ModelReady of a model it
cannot see (hidden or unknown alike) is that NOT_FOUND too; a visible model that is not ready
answers ``ready: false``. Trusted callers get ``ready: false`` for unknown models, as before.
The owners come from the registry follower (:meth:`Ownership.set_owner`), which keeps the last
known owner of a model for as long as versions of it serve.

The servicer checks local models. With Triton configured, requests for Triton-served models are
routed before the servicer; :class:`OwnershipGuard`, a handler wrapper outside the Triton router,
applies the same rules to them (Triton repository models without a registry record are platform
models, like local ones: only those in ``MODEL_SERVER_SHARED_MODELS`` are visible to tenants).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.context import caller_identity
from modelserve_common.errors import PermissionDenied, ServiceError
from modelserve_common.wire import scan_strings
from modelserve_model_server.methods import (
    MODEL_CONFIG,
    MODEL_INFER,
    MODEL_METADATA,
    MODEL_READY,
    MODEL_STATISTICS,
    MODEL_STREAM_INFER,
    REPOSITORY_INDEX,
    REPOSITORY_MODEL_LOAD,
    REPOSITORY_MODEL_UNLOAD,
)


@dataclass(frozen=True)
class Owner:
    """The owner of a registry model, as its deployment says."""

    tenant: str
    shared: bool


class Ownership:
    """Model -> owner (from the registry), plus the local models shared with every tenant."""

    def __init__(self, shared_local_models: Iterable[str] = ()) -> None:
        self._shared_local = frozenset(shared_local_models)
        self._owners: dict[str, Owner] = {}

    def set_owner(self, model: str, tenant: str, shared: bool) -> None:
        """Records the owner of a registry model (the follower, on every deployment it sees)."""
        self._owners[model] = Owner(tenant, shared)

    def forget(self, model: str) -> None:
        """The model is no longer the registry's (deleted, nothing of it serves)."""
        self._owners.pop(model, None)

    def owner(self, model: str) -> Owner | None:
        return self._owners.get(model)

    def visible(self, model: str, tenant: str | None) -> bool:
        """May a caller of ``tenant`` (None: trusted) see ``model``?"""
        if tenant is None:
            return True
        owner = self._owners.get(model)
        if owner is not None:
            return owner.shared or owner.tenant == tenant
        return model in self._shared_local


def tenant_of(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The caller's tenant from the gateway's metadata; None = trusted caller."""
    tenant, _scopes = caller_identity(context.invocation_metadata())
    return tenant


def refuse_tenant_callers(tenant: str | None, action: str) -> None:
    """Repository control (load/unload) is for trusted callers only: PERMISSION_DENIED otherwise,
    whatever the tenant's scopes are."""
    if tenant is not None:
        raise PermissionDenied(f"{action} is reserved to the platform: tenant callers may not do it")


Missing = Callable[[str, str], ServiceError]
"""(model, version) -> the error a missing model gets (ModelManager.missing)."""


class OwnershipGuard:
    """A handler wrapper (``grpc_server(..., wrappers=[guard.wrap, router.wrap])``: outside the
    Triton router) that applies :class:`Ownership` to undecoded requests, so models served through
    Triton are confined like local ones. Trusted callers pass straight through; tenant calls cost a
    scan of the name fields (and, for listings, a parse of the answer)."""

    def __init__(self, ownership: Ownership, missing: Missing) -> None:
        self._ownership = ownership
        self._missing = missing
        self._builders: dict[
            str, Callable[[grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]
        ] = {
            MODEL_INFER: self._by_name,
            MODEL_READY: self._by_name,
            MODEL_METADATA: self._by_name,
            MODEL_CONFIG: self._by_name,
            MODEL_STATISTICS: self._statistics,
            REPOSITORY_INDEX: self._index,
            REPOSITORY_MODEL_LOAD: self._lifecycle("RepositoryModelLoad"),
            REPOSITORY_MODEL_UNLOAD: self._lifecycle("RepositoryModelUnload"),
            MODEL_STREAM_INFER: self._stream,
        }

    def wrap(self, method: str, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        build = self._builders.get(method)
        if inner is None or build is None or inner.unary_unary is None and inner.stream_stream is None:
            return inner
        return build(inner)

    def _check(self, request: bytes, tenant: str) -> None:
        f = scan_strings(request, (1, 2))
        name, version = f.get(1, ""), f.get(2, "")
        if not self._ownership.visible(name, tenant):
            raise self._missing(name, version)

    def _by_name(self, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        handle: Any = inner.unary_unary

        async def by_name(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            tenant = tenant_of(context)
            if tenant is not None:
                self._check(request, tenant)
            reply: bytes = await handle(request, context)
            return reply

        return grpc.unary_unary_rpc_method_handler(by_name)

    def _statistics(self, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        handle: Any = inner.unary_unary

        async def statistics(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            tenant = tenant_of(context)
            if tenant is None:
                reply: bytes = await handle(request, context)
                return reply
            if scan_strings(request, (1,)).get(1, ""):
                self._check(request, tenant)
                named: bytes = await handle(request, context)
                return named
            answer = pb.ModelStatisticsResponse.FromString(await handle(request, context))
            visible = [m for m in answer.model_stats if self._ownership.visible(m.name, tenant)]
            return pb.ModelStatisticsResponse(model_stats=visible).SerializeToString()

        return grpc.unary_unary_rpc_method_handler(statistics)

    def _index(self, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        handle: Any = inner.unary_unary

        async def index(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            tenant = tenant_of(context)
            reply: bytes = await handle(request, context)
            if tenant is None:
                return reply
            answer = pb.RepositoryIndexResponse.FromString(reply)
            visible = [m for m in answer.models if self._ownership.visible(m.name, tenant)]
            return pb.RepositoryIndexResponse(models=visible).SerializeToString()

        return grpc.unary_unary_rpc_method_handler(index)

    def _lifecycle(
        self, action: str
    ) -> Callable[[grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]:
        def build(inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
            handle: Any = inner.unary_unary

            async def lifecycle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                refuse_tenant_callers(tenant_of(context), action)
                reply: bytes = await handle(request, context)
                return reply

            return grpc.unary_unary_rpc_method_handler(lifecycle)

        return build

    def _stream(self, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        handle: Any = inner.stream_stream

        async def stream(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            tenant = tenant_of(context)
            if tenant is None:
                async for reply in handle(requests, context):
                    yield reply
                return
            async for reply in self._guarded_stream(handle, requests, context, tenant):
                yield reply

        return grpc.stream_stream_rpc_method_handler(stream)

    async def _guarded_stream(
        self,
        handle: Any,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
        tenant: str,
    ) -> AsyncIterator[bytes]:
        """Visible messages go on to ``handle``; a hidden one is answered here with its own error
        response, in its place among the answers (one answer per request, in order)."""
        forward: asyncio.Queue[bytes | None] = asyncio.Queue()
        events: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
        slots: collections.deque[bytes | None] = collections.deque()  # None = the next inner answer
        failed: list[BaseException] = []

        async def forwarded() -> AsyncIterator[bytes]:
            while (item := await forward.get()) is not None:
                yield item

        reader = asyncio.ensure_future(self._read(requests, tenant, events, forward, failed))
        pumper = asyncio.ensure_future(_pump(handle, forwarded(), context, events, failed))
        replies: collections.deque[bytes] = collections.deque()
        read_done = inner_done = False
        try:
            while True:
                kind, data = await events.get()
                if kind == "slot":
                    slots.append(data)
                elif kind == "reply":
                    assert data is not None
                    replies.append(data)
                elif kind == "read_done":
                    read_done = True
                else:
                    inner_done = True
                while slots and (slots[0] is not None or replies):
                    slot = slots.popleft()
                    yield slot if slot is not None else replies.popleft()
                if inner_done:
                    if failed:
                        raise failed[0]
                    while slots:  # nothing more will answer a forwarded request
                        slot = slots.popleft()
                        if slot is not None:
                            yield slot
                    if read_done:
                        while replies:  # answers beyond one per request (decoupled models)
                            yield replies.popleft()
                        return
        finally:
            reader.cancel()
            pumper.cancel()

    async def _read(
        self,
        requests: AsyncIterator[bytes],
        tenant: str,
        events: asyncio.Queue[tuple[str, bytes | None]],
        forward: asyncio.Queue[bytes | None],
        failed: list[BaseException],
    ) -> None:
        """Reads the caller's stream: a visible request takes a slot for the inner answer and goes
        on; a hidden one takes a slot holding its refusal."""
        try:
            async for raw in requests:
                f = scan_strings(raw, (1, 2, 3))
                name, version, rid = f.get(1, ""), f.get(2, ""), f.get(3, "")
                if self._ownership.visible(name, tenant):
                    await events.put(("slot", None))
                    await forward.put(raw)
                else:
                    err = self._missing(name, version)
                    refused = pb.ModelStreamInferResponse(
                        error_message=f"[{err.code.name}] {err.message}",
                        infer_response=pb.ModelInferResponse(model_name=name, model_version=version, id=rid),
                    )
                    await events.put(("slot", refused.SerializeToString()))
        except Exception as exc:  # the request stream broke: answer what arrived, then fail
            failed.append(exc)
        finally:
            await forward.put(None)
            await events.put(("read_done", None))


async def _pump(
    handle: Any,
    requests: AsyncIterator[bytes],
    context: grpc.aio.ServicerContext[Any, Any],
    events: asyncio.Queue[tuple[str, bytes | None]],
    failed: list[BaseException],
) -> None:
    """The inner handler's answers to ``requests`` onto ``events``, then ``inner_done``."""
    try:
        async for reply in handle(requests, context):
            await events.put(("reply", reply))
    except Exception as exc:
        failed.append(exc)
    finally:
        await events.put(("inner_done", None))
