"""modelserve_client: the Python SDK of the ModelServe platform.

from modelserve_client import Client
with Client("127.0.0.1:50050", api_key="...") as c:
    out = c.infer("classifier", {"features": np.ones((1, 4), np.float32)})
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    ExecutionFailed,
    FailedPrecondition,
    InvalidArgument,
    ModelServeError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "ExecutionFailed",
    "FailedPrecondition",
    "InvalidArgument",
    "ModelServeError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
]
