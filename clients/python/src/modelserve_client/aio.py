"""The asyncio client: the same operations as Client, as coroutines and async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from ._api import _Api
from ._messages import (
    INF,
    ORC,
    REG,
    TERMINAL_STATES,
    build,
    infer_outputs,
    infer_request,
    pipeline_request,
    pipeline_spec,
    run_result,
    to_dict,
    upload_messages,
)
from .client import (
    UPLOAD_CHUNK_BYTES,
    ProgressCallback,
    _Conn,
    _stream_event,
    _watch_event,
)
from .errors import AlreadyExists, DeadlineExceeded, ModelServeError, NotFound, from_rpc_error


class AsyncClient(_Conn, _Api):
    """The asyncio twin of Client (same arguments, same operations, awaited); listings, streams
    and watch are async iterators. Create it inside the event loop that uses it; `async with
    AsyncClient(...) as c:` or `await c.close()`. One channel serves any number of concurrent
    calls."""

    def _open_channel(
        self, target: str, creds: grpc.ChannelCredentials | None, opts: list[tuple[str, Any]]
    ) -> Any:
        if creds is not None:
            return grpc.aio.secure_channel(target, creds, options=opts)
        return grpc.aio.insecure_channel(target, options=opts)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self,
        method: str,
        fields: Any,
        *,
        idempotent: bool = False,
        post: Callable[[Any], Any] = to_dict,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
    ) -> Any:
        req = build(method, fields)
        call = self._callable(method)
        rid = self._new_request_id()
        attempt = 0
        while True:
            try:
                resp = await call(req, timeout=timeout or self.timeout, metadata=self._metadata(rid))
                return post(resp)
            except grpc.aio.AioRpcError as e:
                if idempotent and e.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.max_retries:
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise from_rpc_error(e, rid) from None

    async def _stream(self, method: str, request: Any, timeout: float | None) -> AsyncIterator[Any]:  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
        rid = self._new_request_id()
        try:
            async for m in self._callable(method)(
                request, timeout=timeout or self.timeout, metadata=self._metadata(rid)
            ):
                yield m
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, rid) from None

    async def _pages(
        self, method: str, fields: dict[str, Any], items: str, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        token = ""
        while True:
            resp = await self._call(
                method,
                {**fields, "page_size": page_size, "page_token": token},
                idempotent=True,
                post=lambda r: r,
            )
            for m in getattr(resp, items):
                yield to_dict(m) if items != "executions" else run_result(m)
            token = resp.next_page_token
            if not token:
                return

    def list_models(self, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages(f"{REG}/ListModels", {}, "models", page_size)

    def list_versions(self, model: str, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages(f"{REG}/ListModelVersions", {"model": model}, "model_versions", page_size)

    def list_pipelines(self, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages(f"{ORC}/ListPipelines", {}, "pipelines", page_size)

    def list_executions(self, pipeline: str = "", page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages(f"{ORC}/ListExecutions", {"pipeline": pipeline}, "executions", page_size)

    def list_tenants(self, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages(f"{REG}/ListTenants", {}, "tenants", page_size)

    async def infer_stream(
        self,
        model: str,
        requests: Iterable[Mapping[str, Any]],
        *,
        version: str | int | None = None,
        alias: str | None = None,
        datatypes: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
    ) -> AsyncIterator[dict[str, Any]]:
        """As Client.infer_stream."""
        msgs = [infer_request(model, r, version, alias, None, datatypes, None) for r in requests]
        async for resp in self._stream(f"{INF}/ModelStreamInfer", iter(msgs), timeout):
            if resp.error_message:
                raise ModelServeError(resp.error_message, code="INFER_ERROR")
            yield infer_outputs(resp.infer_response)

    async def stream(
        self,
        pipeline: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        parameters: Mapping[str, str] | None = None,
        datatypes: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
    ) -> AsyncIterator[dict[str, Any]]:
        """As Client.stream."""
        fields = {"pipeline": pipeline, "version": int(version or 0)}
        req = pipeline_request(f"{ORC}/StreamPipelineRun", fields, inputs, parameters, datatypes)
        async for ev in self._stream(f"{ORC}/StreamPipelineRun", req, timeout):
            yield _stream_event(ev)

    async def watch(self, execution: str, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
        """As Client.watch."""
        req = build(f"{ORC}/WatchExecution", {"execution": execution})
        async for ev in self._stream(f"{ORC}/WatchExecution", req, timeout or 3600.0):
            yield _watch_event(ev)

    async def wait(self, execution: str, timeout: float = 300.0) -> dict[str, Any]:  # noqa: ASYNC109 - a gRPC deadline, same surface as Client
        """As Client.wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rec: dict[str, Any] = await self.get_execution(execution)
            if rec.get("state") in TERMINAL_STATES:
                return rec
            left = deadline - loop.time()
            if left <= 0:
                raise DeadlineExceeded(f"execution {execution} not finished after {timeout:g}s")
            try:
                async for ev in self.watch(execution, timeout=left):
                    if ev.get("state") in TERMINAL_STATES:
                        break
            except DeadlineExceeded:
                pass

    async def apply(self, spec: Mapping[str, Any] | str) -> dict[str, Any]:
        """As Client.apply."""
        body = {"pipeline": pipeline_spec(spec)}
        try:
            out: dict[str, Any] = await self._call(
                f"{ORC}/CreatePipeline", body, post=lambda r: to_dict(r.pipeline)
            )
        except AlreadyExists:
            out = await self._call(f"{ORC}/UpdatePipeline", body, post=lambda r: to_dict(r.pipeline))
        return out

    async def push(
        self,
        name: str,
        path: str | Path,
        *,
        backend: str | None = None,
        deploy: bool = False,
        alias: str | None = None,
        progress: ProgressCallback | None = None,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        **version: Any,
    ) -> dict[str, Any]:
        """As Client.push."""
        msgs = upload_messages(name, path, backend, chunk_bytes, progress, version)
        try:
            await self.get_model(name)
        except NotFound:
            await self.create_model(name)
        rid = self._new_request_id()
        try:
            resp = await self._callable(f"{REG}/UploadModelVersion")(
                msgs, timeout=max(self.timeout, 600.0), metadata=self._metadata(rid)
            )
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, rid) from None
        mv: dict[str, Any] = to_dict(resp.model_version)
        if deploy:
            await self.deploy(name, str(mv["version"]))
        if alias:
            await self.set_alias(name, alias, str(mv["version"]))
        return mv


__all__ = ["AsyncClient"]
