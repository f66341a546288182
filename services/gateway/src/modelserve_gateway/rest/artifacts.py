"""Streaming REST routes for model artifacts (the registry's UploadModelVersion and
DownloadModelVersion); the request and response bodies are the raw bytes, never held whole.

``POST /v1/models/{model}/versions:upload`` — body: the artifact (``Content-Length`` or chunked).
The version's fields come from query parameters (or the ``x-artifact-*`` headers):
``backend`` (required: onnx, python, triton), ``sha256`` (expected digest; a mismatch stores
nothing), ``format`` ("", tar, zip), ``description``, ``spec`` (a ModelVersion as JSON for the
other fields: inputs, outputs, batching, tags, metadata, lineage). The body is relayed in chunks of at most
``GATEWAY_UPLOAD_CHUNK_BYTES`` as it arrives; a client that sends nothing for
``GATEWAY_BODY_READ_TIMEOUT_S`` or goes away cancels the upload (the registry stores nothing).
Answer: the created version as JSON (``{"modelVersion": {...}}``).

``GET /v1/models/{model}/versions/{version}:download`` — answer: the bytes
(``application/octet-stream``) with ``Content-Length``, ``X-Artifact-Sha256``,
``Digest: sha-256=<base64>`` and ``Content-Disposition``. A failure before the first byte is a
JSON error; after it the connection is closed short of ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, unquote

import grpc
from google.protobuf import json_format

from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_gateway import metadata
from modelserve_gateway.audit import audited
from modelserve_gateway.clients import REGISTRY_SERVICE, Upstreams
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.guard import Guard
from modelserve_gateway.rest.http import JSON, ClientGone, Headers, Request, Send, raw_headers
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.safe_json import dumps

UPLOAD = f"/{REGISTRY_SERVICE.full_name}/UploadModelVersion"
DOWNLOAD = f"/{REGISTRY_SERVICE.full_name}/DownloadModelVersion"
_UPLOAD_PATH = re.compile(r"^/v1/models/([^/:]+)/versions:upload$")
_DOWNLOAD_PATH = re.compile(r"^/v1/models/([^/:]+)/versions/([^/:]+):download$")
_PARAMS = ("backend", "sha256", "format", "description", "spec")
CHUNK_BYTES = 1024 * 1024
INT64_MAX = 2**63 - 1


def _bad(message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message)


class ArtifactRoutes:
    def __init__(self, settings: GatewaySettings, upstreams: Upstreams, guard: Guard) -> None:
        self.settings = settings
        self.upstream = upstreams.by_service[REGISTRY_SERVICE.full_name]
        self.guard = guard

    def matches(self, req: Request) -> bool:
        return bool(_UPLOAD_PATH.match(req.path) or _DOWNLOAD_PATH.match(req.path))

    async def handle(self, req: Request, send: Send, base: Headers) -> None:
        up = _UPLOAD_PATH.match(req.path)
        down = _DOWNLOAD_PATH.match(req.path)
        verb = "POST" if up is not None else "GET"
        if req.method != verb:
            raise GatewayError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{req.method} is not allowed on {req.path}; allowed: {verb}",
                [("allow", verb)],
                http_override=405,
            )
        if up is not None:
            await self._upload(req, send, base, unquote(up.group(1)))
        elif down is not None:
            await self._download(req, send, base, unquote(down.group(1)), unquote(down.group(2)))

    def _metadata(self, req: Request, model: str) -> registry_pb.UploadModelVersionRequest:
        params: dict[str, str] = {}
        for key in _PARAMS:
            header = req.headers.get(f"x-artifact-{key}")
            if header is not None:
                params[key] = header
        for key, value in parse_qsl(req.query.decode("latin-1"), keep_blank_values=True):
            if key not in _PARAMS:
                raise _bad(f"unknown query parameter {key[:60]!r}; expected one of {list(_PARAMS)}")
            params[key] = value
        if not params.get("backend"):
            raise _bad("query parameter 'backend' is required (onnx, python or triton)")
        size = 0
        declared = req.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise _bad(f"Content-Length must be a number, got {declared[:40]!r}")
            if len(declared.lstrip("0")) > 19 or int(declared) > INT64_MAX:  # int() of >4300 digits raises
                raise GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Content-Length {declared[:40]} does not fit a 64-bit size; the most is {INT64_MAX}",
                    http_override=413,
                )
            size = int(declared)
        version = registry_pb.ModelVersion()
        if params.get("spec"):
            try:
                json_format.Parse(params["spec"], version)
            except json_format.ParseError as exc:
                raise _bad(f"'spec' must be a ModelVersion as JSON: {str(exc)[:200]}") from None
        version.backend = params["backend"]
        version.artifact_sha256 = params.get("sha256", version.artifact_sha256)
        version.artifact_format = params.get("format", version.artifact_format)
        version.description = params.get("description", version.description)
        return registry_pb.UploadModelVersionRequest(
            metadata=registry_pb.UploadMetadata(model=model, model_version=version, size_bytes=size)
        )

    async def _body_messages(self, req: Request, first: bytes) -> AsyncIterator[bytes]:
        yield first
        idle = self.settings.body_read_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle):
                    msg = await req.receive()
            except TimeoutError:
                raise ClientGone() from None  # cancels the upload: nothing is stored
            if msg["type"] == "http.disconnect":
                raise ClientGone()
            body = msg.get("body", b"")
            for i in range(0, len(body), CHUNK_BYTES):
                yield registry_pb.UploadModelVersionRequest(
                    chunk=body[i : i + CHUNK_BYTES]
                ).SerializeToString()
            if not msg.get("more_body", False):
                return

    async def _upload(self, req: Request, send: Send, base: Headers, model: str) -> None:
        req.route_label, req.template = UPLOAD, "POST /v1/models/{model}/versions:upload"
        adm = await self.guard.admit(UPLOAD, req.credentials())
        req.tenant = adm.principal.tenant or ""
        first = self._metadata(req, model).SerializeToString()
        md = metadata.from_http(req.headers, adm)
        deadline = req.deadline(self.settings, self.upstream, streaming=True)
        try:
            with audited(adm.principal, UPLOAD, f"model={model}", enabled=True):
                raw = await self.upstream.call_stream_unary(
                    UPLOAD, self._body_messages(req, first), md, deadline
                )
        except grpc.aio.AioRpcError as exc:
            err = GatewayError.from_rpc_error(exc)
            err.headers = adm.headers + err.headers
            raise err from None
        reply = registry_pb.UploadModelVersionResponse.FromString(raw)
        body = dumps(json_format.MessageToDict(reply))
        headers = base + adm.headers + [("content-type", JSON), ("content-length", str(len(body)))]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers(headers)})
        await send({"type": "http.response.body", "body": body})

    async def _download(self, req: Request, send: Send, base: Headers, model: str, version: str) -> None:
        req.route_label, req.template = DOWNLOAD, "GET /v1/models/{model}/versions/{version}:download"
        adm = await self.guard.admit(DOWNLOAD, req.credentials())
        req.tenant = adm.principal.tenant or ""
        request = registry_pb.DownloadModelVersionRequest(model=model, version=version).SerializeToString()
        md = metadata.from_http(req.headers, adm)
        stream = self.upstream.open_stream(
            DOWNLOAD, request, md, req.deadline(self.settings, self.upstream, True)
        )
        started = False
        try:
            async for raw in stream:
                message = registry_pb.DownloadModelVersionResponse.FromString(raw)
                if not started:
                    meta = message.metadata
                    digest = base64.b64encode(bytes.fromhex(meta.sha256)).decode()
                    headers = (
                        base
                        + adm.headers
                        + [
                            ("content-type", "application/octet-stream"),
                            ("content-length", str(meta.size_bytes)),
                            ("x-artifact-sha256", meta.sha256),
                            ("digest", f"sha-256={digest}"),
                            ("content-disposition", f'attachment; filename="{meta.file_name}"'),
                        ]
                    )
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": raw_headers(headers)}
                    )
                    started = True
                    continue
                await send({"type": "http.response.body", "body": message.chunk, "more_body": True})
        except grpc.aio.AioRpcError as exc:
            if started:
                raise  # the status line is sent: the connection closes short of Content-Length
            err = GatewayError.from_rpc_error(exc)
            err.headers = adm.headers + err.headers
            raise err from None
        await send({"type": "http.response.body", "body": b""})
