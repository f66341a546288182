"""Domain errors of the registry; the status code lives on each base class."""

from __future__ import annotations

from modelserve_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)


class InvalidField(InvalidArgument):
    """A request field has a value outside what is accepted."""


class ModelNotFound(NotFound):
    """No such model, or not one the caller may see (the two are indistinguishable on purpose)."""


class ModelVersionNotFound(NotFound):
    """No such version (or alias) of a model."""


class AliasNotFound(NotFound):
    """No such alias."""


class TenantNotFound(NotFound):
    """No such tenant, or not the caller's."""


class ApiKeyNotFound(NotFound):
    """No such API key, or not the caller's."""


class ModelAlreadyExists(AlreadyExists):
    """A model of that name exists (in any tenant: names are global)."""


class TenantAlreadyExists(AlreadyExists):
    """A tenant of that name exists."""


class EtagMismatch(Aborted):
    """The etag passed is not the resource's current one (read again, then retry)."""


class StillDeployed(FailedPrecondition):
    """The model or version is part of a deployment."""


class NothingToRollBack(FailedPrecondition):
    """RollbackDeployment on a model whose deployment has no previous state."""


class InvalidTransition(FailedPrecondition):
    """A version status change that the lifecycle does not allow, or deploying a FAILED version."""


class MissingScope(PermissionDenied):
    """The caller's key lacks the scope the RPC needs."""


class SharedModelReadOnly(PermissionDenied):
    """A tenant other than the owner tried to change a shared model (shared models are read-only
    to every other tenant)."""


class PlatformOnly(PermissionDenied):
    """Something only the platform administrator (a trusted caller) may do, e.g. set Model.shared."""


class CodeExecutionNotAllowed(PermissionDenied):
    """The tenant may not register or deploy a version whose backend runs user code."""


class ModelQuotaExceeded(ResourceExhausted):
    """The tenant owns as many models as it may."""


class InvalidApiKey(Unauthenticated):
    """The presented secret is unknown, wrong, expired or revoked."""


class RevisionCompacted(OutOfRange):
    """Watch was asked to resume before the oldest retained change."""
