"""Errors of the model server, each a ModelServe ServiceError (the interceptor maps them to statuses)."""

from __future__ import annotations

from modelserve_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

MODEL_MESSAGE_LIMIT = 512
"""Most characters of a model's own exception message repeated in the status message."""


class ModelNotFound(NotFound):
    """No such model or version in the repository."""


class ModelNotReady(Unavailable):
    """The model exists but is not ready (loading, unloading or failed)."""


class QueueFull(ResourceExhausted):
    """The model's queue holds max_queue_size requests."""


class QueueTimeout(DeadlineExceeded):
    """A request's timeout expired while it waited in the queue; it never ran."""


class ModelLoadFailed(FailedPrecondition):
    """A model could not be loaded; the version that served before (if any) still serves."""


class InvalidModelConfig(InvalidArgument):
    """A model's configuration is not valid."""


class RequestExpired(DeadlineExceeded):
    """The caller's deadline passed before the request started; it was dropped, never run."""


class ModelRejectedInput(InvalidArgument):
    """The model's own code rejected the request's values (it raised ValueError or TypeError,
    UnicodeDecodeError included): the caller's input, not the server, is at fault."""


class ModelFailed(Internal):
    """The model's own code raised anything else: a fault of the model, reported with its name."""


class ModelOutputError(Internal):
    """The model returned something that is not the outputs its config declares."""


INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError)
"""Exceptions of a model's predict() taken as "the input was rejected" (INVALID_ARGUMENT)."""


def model_error(model: str, version: str, exc: BaseException) -> ServiceError:
    """The status for an exception raised by a model's own code: INVALID_ARGUMENT "model 'm'
    rejected the input: ..." for :data:`INPUT_ERRORS`, INTERNAL "model 'm' version v failed:
    ..." otherwise; the model's message is cut to :data:`MODEL_MESSAGE_LIMIT` characters."""
    if isinstance(exc, ServiceError):
        return exc
    text = str(exc)
    if len(text) > MODEL_MESSAGE_LIMIT:
        text = f"{text[:MODEL_MESSAGE_LIMIT]}... ({len(text)} characters)"
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, INPUT_ERRORS):
        return ModelRejectedInput(f"model {model!r} rejected the input: {detail}")
    return ModelFailed(f"model {model!r} version {version} failed: {detail}")
