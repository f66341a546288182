"""The ServiceError hierarchy. The gRPC status code lives on the class; the one interceptor in
`interceptors` turns a raised ServiceError into that status with its message. There is no HTTP here:
the gateway owns the one gRPC -> HTTP table."""

from __future__ import annotations

from typing import ClassVar

import grpc


class ServiceError(Exception):
    """Base of every error a service raises on purpose. Unexpected exceptions become INTERNAL."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(ServiceError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ServiceError):
    code = grpc.StatusCode.INTERNAL


class Unknown(ServiceError):
    code = grpc.StatusCode.UNKNOWN


class DataLoss(ServiceError):
    code = grpc.StatusCode.DATA_LOSS


def all_error_classes() -> list[type[ServiceError]]:
    """Every ServiceError subclass defined here (used by the error -> status table test)."""
    return [
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Unimplemented,
        Internal,
        Unknown,
        DataLoss,
    ]


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {cls.code: cls for cls in all_error_classes()}


def error_class(code: grpc.StatusCode) -> type[ServiceError]:
    """The ServiceError class of a non-OK status; ``OK`` (not an error) maps to Internal."""
    return _BY_CODE.get(code, Internal)


def from_status(code: grpc.StatusCode, message: str) -> ServiceError:
    """The ServiceError that carries ``code`` and ``message`` (a status received from another
    service passed on with its own code). Every non-OK grpc.StatusCode has its class; ``OK`` is
    not an error, so an error reported with it becomes Internal."""
    return error_class(code)(message)


ECHO_LIMIT = 128
"""Most characters of a client-supplied value that an error message repeats (see :func:`clip`)."""


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (with the full length
    noted) so that a huge name or value sent by a client is never echoed whole: a status message
    over gRPC's metadata limit reaches the client as a transport RESOURCE_EXHAUSTED instead of the
    real error."""
    if isinstance(value, str | bytes) and len(value) > limit:
        text = repr(value[:limit])
        return f"{text}... ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text
