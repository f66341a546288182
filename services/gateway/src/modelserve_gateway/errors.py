"""The one gRPC -> HTTP table (grpc-gateway's runtime.HTTPStatusFromCode) and the error bodies:
the JSON of google.rpc.Status on transcoded routes, ``{"error": "..."}`` on KServe v2 routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from modelserve_common.errors import ServiceError

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


@dataclass
class GatewayError(Exception):
    """An error to answer: a gRPC code, its message, extra response headers and the details of
    google.rpc.Status (already JSON)."""

    code: grpc.StatusCode
    message: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    details: list[Any] = field(default_factory=list)
    http_override: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def http(self) -> int:
        return self.http_override or http_status(self.code)

    def status_json(self) -> dict[str, Any]:
        return {"code": self.code.value[0], "message": self.message, "details": self.details}

    @classmethod
    def from_service_error(cls, exc: ServiceError) -> GatewayError:
        headers = list(getattr(exc, "headers", ()))
        return cls(exc.code, exc.message, headers, http_override=getattr(exc, "http_status", None))

    @classmethod
    def from_rpc_error(cls, exc: grpc.aio.AioRpcError) -> GatewayError:
        code = exc.code()
        details: list[Any] = []
        headers: list[tuple[str, str]] = []
        trailing: Any = exc.trailing_metadata() or ()
        for key, value in trailing:
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                details = _status_details(value)
            elif key == "retry-after":
                headers.append(("retry-after", str(value)))
        return cls(code, exc.details() or code.name.lower(), headers, details)


def _status_details(raw: bytes) -> list[Any]:
    st = status_pb2.Status()
    try:
        st.ParseFromString(raw)
    except Exception:
        return []
    out: list[Any] = []
    for any_msg in st.details:
        try:
            out.append(json_format.MessageToDict(any_msg))
        except (TypeError, KeyError, json_format.Error):
            out.append({"@type": any_msg.type_url})
    return out


def error_headers(err: GatewayError) -> list[tuple[str, str]]:
    headers = list(err.headers)
    names = {k for k, _ in headers}
    if err.code == grpc.StatusCode.UNAUTHENTICATED and "www-authenticate" not in names:
        headers.append(("www-authenticate", 'Bearer realm="modelserve"'))
    if (
        err.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
        and err.http_override is None
        and "retry-after" not in names
    ):
        headers.append(("retry-after", "1"))
    return headers
