"""Errors of the model server, each a ModelServe ServiceError (the interceptor maps them to statuses)."""

from __future__ import annotations

from modelserve_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)


class InvalidTensor(InvalidArgument):
    """A request's tensors do not match the model (name, datatype, shape, contents)."""


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
