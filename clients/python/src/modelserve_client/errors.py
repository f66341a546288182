"""One exception hierarchy for every refusal, mapped from gRPC status codes."""

from __future__ import annotations

from typing import Any

import grpc


class ModelServeError(Exception):
    """Base of every error the SDK raises. `code` is the gRPC status name (e.g. "NOT_FOUND"),
    `message` the server's message and `request_id` the id to quote when reporting a problem."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{rid}"


class InvalidArgument(ModelServeError):
    code = "INVALID_ARGUMENT"


class NotFound(ModelServeError):
    code = "NOT_FOUND"


class AlreadyExists(ModelServeError):
    code = "ALREADY_EXISTS"


class PermissionDenied(ModelServeError):
    code = "PERMISSION_DENIED"


class Unauthenticated(ModelServeError):
    code = "UNAUTHENTICATED"


class FailedPrecondition(ModelServeError):
    code = "FAILED_PRECONDITION"


class RateLimited(ModelServeError):
    """RESOURCE_EXHAUSTED: a rate limit or quota; `retry_after` is the server's hint in seconds."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(ModelServeError):
    code = "UNAVAILABLE"


class DeadlineExceeded(ModelServeError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(ModelServeError):
    code = "CANCELLED"


class ExecutionFailed(ModelServeError):
    """An execution that `wait` followed ended FAILED or CANCELLED; `execution` is its record."""

    code = "EXECUTION_FAILED"

    def __init__(self, message: str, execution: dict[str, Any]) -> None:
        super().__init__(message)
        self.execution = execution


_BY_CODE: dict[grpc.StatusCode, type[ModelServeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def from_rpc_error(err: grpc.RpcError, request_id: str | None) -> ModelServeError:
    """Translate a grpc.RpcError (sync or aio) into the SDK's hierarchy."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or code.name.lower()
    md: list[tuple[str, Any]] = []
    for getter in ("trailing_metadata", "initial_metadata"):
        try:
            md.extend(getattr(err, getter)() or ())
        except Exception:  # noqa: BLE001 - metadata unavailable on some failure paths
            pass
    rid = request_id
    retry_after: float | None = None
    for k, v in md:
        if k == "x-request-id" and isinstance(v, str):
            rid = v
        elif k == "retry-after":
            try:
                retry_after = float(v)
            except (TypeError, ValueError):
                retry_after = None
    cls = _BY_CODE.get(code, ModelServeError)
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after, request_id=rid)
    if cls is ModelServeError:
        return ModelServeError(message, code=code.name, request_id=rid)
    return cls(message, request_id=rid)
