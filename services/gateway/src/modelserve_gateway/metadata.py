"""The metadata policy of both doors, in one place: what travels from a client to an upstream,
what the gateway adds, and what comes back.

Client -> upstream: the gateway's own identity metadata (``x-modelserve-tenant``,
``x-modelserve-scopes`` from the admission) first, then the client's metadata minus the reserved
keys (credentials, the gateway's ``x-modelserve-*`` identity, ``grpc-*`` and pseudo headers,
``user-agent`` and ``x-request-id``, which the channel sets from the request context, together
with ``traceparent`` of the gateway's span). A REST client sends metadata as
``grpc-metadata-<key>`` headers (printable ASCII, no ``-bin`` keys) plus ``traceparent`` and
``tracestate``. Upstream -> client: everything but ``grpc-*``, pseudo headers, ``content-type`` and
the request id (the gateway answers with its own); REST renders it as ``grpc-metadata-<key>``
headers and leaves binary values out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelserve_common.context import REQUEST_ID_HEADER
from modelserve_common.errors import InvalidArgument
from modelserve_gateway.guard import Admission

RESERVED = ("x-modelserve-", "authorization", "x-api-key", "grpc-", ":", "user-agent", REQUEST_ID_HEADER)
"""Client metadata keys (prefixes) never forwarded upstream."""
TRACE_HEADERS = ("traceparent", "tracestate")
"""REST headers forwarded as they are (W3C trace context)."""
HTTP_PREFIX = "grpc-metadata-"
_NOT_RETURNED = ("grpc-", ":", "content-type", REQUEST_ID_HEADER)
PRINTABLE = re.compile(r"[\x20-\x7e]*")
_MD_KEY = re.compile(r"[0-9a-z_.-]+")

Metadata = list[tuple[str, Any]]


def from_grpc(md: Sequence[tuple[str, Any]], adm: Admission) -> Metadata:
    """What a gRPC front-door call sends upstream."""
    out: Metadata = list(adm.metadata)
    out.extend((k, v) for k, v in md if not k.startswith(RESERVED))
    return out


def from_http(headers: Mapping[str, str], adm: Admission) -> list[tuple[str, str]]:
    """What a REST call sends upstream; InvalidArgument for a key or value gRPC cannot carry."""
    out = list(adm.metadata)
    for name in TRACE_HEADERS:
        v = headers.get(name)
        if v:
            _check_value(name, v)
            out.append((name, v))
    for k, v in headers.items():
        if not k.startswith(HTTP_PREFIX):
            continue
        key = k[len(HTTP_PREFIX) :]
        if not key or key.startswith(RESERVED) or key.endswith("-bin"):
            continue
        if _MD_KEY.fullmatch(key) is None:
            raise InvalidArgument(f"header {k[:60]!r}: a gRPC metadata key has only 0-9 a-z _ . - characters")
        _check_value(k, v)
        out.append((key, v))
    return out


def to_grpc(md: Any) -> Metadata:
    """Upstream metadata a gRPC client gets back."""
    return [(k, v) for k, v in (md or ()) if not k.startswith(_NOT_RETURNED)]


def to_http(md: Any) -> list[tuple[str, str]]:
    """Upstream metadata a REST client gets back, as ``grpc-metadata-<key>`` headers."""
    return [(HTTP_PREFIX + k, v) for k, v in to_grpc(md) if not k.endswith("-bin") and isinstance(v, str)]


def _check_value(header: str, value: str) -> None:
    """Headers forwarded as gRPC metadata must be printable ASCII (gRPC refuses anything else)."""
    if PRINTABLE.fullmatch(value) is None:
        raise InvalidArgument(f"header {header[:60]!r} must be printable ASCII to travel as gRPC metadata")
