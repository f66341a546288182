"""Domain errors of the orchestrator (each carries its gRPC status through its base class)."""

from __future__ import annotations

from modelserve_common.errors import AlreadyExists, InvalidArgument, NotFound


class PipelineNotFound(NotFound):
    """No pipeline (or version) of that name."""


class PipelineAlreadyExists(AlreadyExists):
    """CreatePipeline for a name already taken."""


class InvalidPipeline(InvalidArgument):
    """The pipeline spec is invalid; the message names the node and the problem."""


class InvalidInputs(InvalidArgument):
    """The inputs do not match the pipeline's declared inputs."""


class ExecutionNotFound(NotFound):
    """No execution of that id."""


class IdempotencyKeyReused(AlreadyExists):
    """The idempotency key was used for a different request."""


class WebhookRefused(InvalidArgument):
    """The webhook destination is not allowed (SSRF protection) or malformed."""
