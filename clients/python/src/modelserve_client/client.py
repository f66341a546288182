"""The blocking client."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from . import _pool
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
from .config import resolve
from .errors import AlreadyExists, DeadlineExceeded, ModelServeError, NotFound, from_rpc_error

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BACKOFF_S = 0.1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 1024 * 1024

ProgressCallback = Callable[[int, int], None]


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 0),  # the SDK retries itself, only idempotent calls
    ]


class _Conn:
    """Settings and metadata shared by both clients."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        tls: bool | None = None,
        profile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        root_certificates: bytes | None = None,
    ) -> None:
        if api_key and token:
            raise ValueError("give api_key or token, not both")
        if timeout <= 0 or max_retries < 0 or retry_backoff_s < 0 or max_message_bytes <= 0:
            raise ValueError("timeout and max_message_bytes must be > 0; retries and backoff >= 0")
        self.settings = resolve(url, api_key, token, tls, profile)
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.max_message_bytes = max_message_bytes
        secret = self.settings.api_key or self.settings.token
        self._auth: list[tuple[str, str]] = [("authorization", f"Bearer {secret}")] if secret else []
        self._callables: dict[str, Any] = {}
        opts = channel_options(max_message_bytes)
        creds = (
            grpc.ssl_channel_credentials(root_certificates=root_certificates) if self.settings.tls else None
        )
        self._channel = self._open_channel(self.settings.url, creds, opts)

    def _open_channel(
        self, target: str, creds: grpc.ChannelCredentials | None, opts: list[tuple[str, Any]]
    ) -> Any:
        raise NotImplementedError

    def _callable(self, full_method: str) -> Any:
        """The channel's multi-callable for `package.Service/Method` (cached), serializing with
        the private pool's classes."""
        c = self._callables.get(full_method)
        if c is None:
            path, req_cls, resp_cls, cs, ss = _pool.method(full_method)
            kind = {
                (False, False): self._channel.unary_unary,
                (False, True): self._channel.unary_stream,
                (True, False): self._channel.stream_unary,
                (True, True): self._channel.stream_stream,
            }[(cs, ss)]
            c = kind(
                path, request_serializer=req_cls.SerializeToString, response_deserializer=resp_cls.FromString
            )
            self._callables[full_method] = c
        return c

    def _metadata(self, rid: str) -> list[tuple[str, str]]:
        return [*self._auth, ("x-request-id", rid)]

    def _backoff(self, attempt: int) -> float:
        base: float = self.retry_backoff_s * (2**attempt)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class Client(_Conn, _Api):
    """A blocking client of the ModelServe gateway's gRPC front door.

    `Client(url="gw:50050", api_key="...")`; every argument falls back to MODELSERVE_URL,
    MODELSERVE_API_KEY (or MODELSERVE_TOKEN) and then to the profile `modelserve login` wrote.
    One channel (keepalive on), a deadline on every call (`timeout`, seconds), and retries with
    jittered exponential backoff only for idempotent calls refused UNAVAILABLE (`max_retries`).
    Use as a context manager or call `close()`.
    """

    def _open_channel(
        self, target: str, creds: grpc.ChannelCredentials | None, opts: list[tuple[str, Any]]
    ) -> Any:
        if creds is not None:
            return grpc.secure_channel(target, creds, options=opts)
        return grpc.insecure_channel(target, options=opts)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        fields: Any,
        *,
        idempotent: bool = False,
        post: Callable[[Any], Any] = to_dict,
        timeout: float | None = None,
    ) -> Any:
        req = build(method, fields)
        call = self._callable(method)
        rid = self._new_request_id()
        attempt = 0
        while True:
            try:
                resp = call(req, timeout=timeout or self.timeout, metadata=self._metadata(rid))
                return post(resp)
            except grpc.RpcError as e:
                if idempotent and e.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.max_retries:
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise from_rpc_error(e, rid) from None

    def _stream(self, method: str, request: Any, timeout: float | None) -> Iterator[Any]:
        rid = self._new_request_id()
        try:
            yield from self._callable(method)(
                request, timeout=timeout or self.timeout, metadata=self._metadata(rid)
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e, rid) from None

    def _pages(
        self, method: str, fields: dict[str, Any], items: str, page_size: int
    ) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            resp = self._call(
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

    # --- listings (iterators that follow pages) ---------------------------------------------
    def list_models(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every model the caller may see, page after page."""
        return self._pages(f"{REG}/ListModels", {}, "models", page_size)

    def list_versions(self, model: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._pages(f"{REG}/ListModelVersions", {"model": model}, "model_versions", page_size)

    def list_pipelines(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._pages(f"{ORC}/ListPipelines", {}, "pipelines", page_size)

    def list_executions(self, pipeline: str = "", page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._pages(f"{ORC}/ListExecutions", {"pipeline": pipeline}, "executions", page_size)

    def list_tenants(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._pages(f"{REG}/ListTenants", {}, "tenants", page_size)

    # --- streaming ---------------------------------------------------------------------------
    def infer_stream(
        self,
        model: str,
        requests: Iterable[Mapping[str, Any]],
        *,
        version: str | int | None = None,
        alias: str | None = None,
        datatypes: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream requests (each {input name: array}) over ModelStreamInfer; yields one output
        dict per response. A per-request error is raised as ModelServeError."""
        msgs = (infer_request(model, r, version, alias, None, datatypes, None) for r in requests)
        for resp in self._stream(f"{INF}/ModelStreamInfer", msgs, timeout):
            if resp.error_message:
                raise ModelServeError(resp.error_message, code="INFER_ERROR")
            yield infer_outputs(resp.infer_response)

    def stream(
        self,
        pipeline: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        parameters: Mapping[str, str] | None = None,
        datatypes: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run a pipeline, yielding {"node": trace, "outputs": {...}} per node as it completes
        and finally {"result": <as run() returns>}."""
        fields = {"pipeline": pipeline, "version": int(version or 0)}
        req = pipeline_request(f"{ORC}/StreamPipelineRun", fields, inputs, parameters, datatypes)
        for ev in self._stream(f"{ORC}/StreamPipelineRun", req, timeout):
            yield _stream_event(ev)

    def watch(self, execution: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Follow an execution: yields its events (a snapshot first) until it is terminal."""
        req = build(f"{ORC}/WatchExecution", {"execution": execution})
        for ev in self._stream(f"{ORC}/WatchExecution", req, timeout or 3600.0):
            yield _watch_event(ev)

    def wait(self, execution: str, timeout: float = 300.0) -> dict[str, Any]:
        """Block until the execution is terminal (DeadlineExceeded after `timeout` seconds) and
        return its record; check record["state"] for the outcome."""
        deadline = time.monotonic() + timeout
        while True:
            rec: dict[str, Any] = self.get_execution(execution)
            if rec.get("state") in TERMINAL_STATES:
                return rec
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"execution {execution} not finished after {timeout:g}s")
            try:
                for ev in self.watch(execution, timeout=left):
                    if ev.get("state") in TERMINAL_STATES:
                        break
            except DeadlineExceeded:
                pass

    # --- composites --------------------------------------------------------------------------
    def apply(self, spec: Mapping[str, Any] | str) -> dict[str, Any]:
        """Create or update a pipeline by name from a dict or a YAML/JSON file."""
        body = {"pipeline": pipeline_spec(spec)}
        try:
            out: dict[str, Any] = self._call(
                f"{ORC}/CreatePipeline", body, post=lambda r: to_dict(r.pipeline)
            )
        except AlreadyExists:
            out = self._call(f"{ORC}/UpdatePipeline", body, post=lambda r: to_dict(r.pipeline))
        return out

    def push(
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
        """Upload a file or a folder (packed as tar) as the next version of `name` (created when
        missing); `progress(sent, total)` after each chunk. Returns the version; `deploy=True`
        routes all traffic to it and `alias=` points an alias at it. `version` holds further
        ModelVersion fields (inputs, outputs, batching, description, ...)."""
        msgs = upload_messages(name, path, backend, chunk_bytes, progress, version)
        try:
            self.get_model(name)
        except NotFound:
            self.create_model(name)
        rid = self._new_request_id()
        try:
            resp = self._callable(f"{REG}/UploadModelVersion")(
                msgs, timeout=max(self.timeout, 600.0), metadata=self._metadata(rid)
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e, rid) from None
        mv: dict[str, Any] = to_dict(resp.model_version)
        if deploy:
            self.deploy(name, str(mv["version"]))
        if alias:
            self.set_alias(name, alias, str(mv["version"]))
        return mv


def _stream_event(ev: Any) -> dict[str, Any]:
    if ev.HasField("node_result"):
        return {"node": to_dict(ev.node_result.trace), "outputs": _outs(ev.node_result.outputs)}
    return {"result": run_result(ev.result)}


def _outs(tensors: Any) -> dict[str, Any]:
    from .tensors import decode

    return {t.name: decode(t.datatype, list(t.shape), t.raw_contents) for t in tensors}


def _watch_event(ev: Any) -> dict[str, Any]:
    d = to_dict(ev)
    if ev.HasField("execution"):
        d["execution"] = run_result(ev.execution)
    return d


__all__ = ["Client", "ProgressCallback"]
