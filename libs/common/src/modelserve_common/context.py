"""The request context of the RPC being handled: its request id, readable by outgoing calls so the
id travels with the work (channels add it as ``x-request-id`` metadata)."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
TENANT_HEADER = "x-modelserve-tenant"
SCOPES_HEADER = "x-modelserve-scopes"

request_id_var: ContextVar[str | None] = ContextVar("modelserve_request_id", default=None)
rpc_method_var: ContextVar[str | None] = ContextVar("modelserve_rpc_method", default=None)
"""The method (``ModelInfer``) of the RPC this task serves; log lines carry it with the request id."""


def current_request_id() -> str | None:
    """The request id of the RPC this task serves, if any."""
    return request_id_var.get()


def caller_identity(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str | None, frozenset[str]]:
    """(tenant, scopes) named by the gateway's metadata: ``x-modelserve-tenant`` absent means a
    trusted in-cluster caller (tenant None); ``x-modelserve-scopes`` is a comma list (absent: none)."""
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    for key, value in metadata or ():
        if key != TENANT_HEADER and key != SCOPES_HEADER:
            continue  # other values (a client's binary "-bin" header) are never decoded here
        text = value.decode() if isinstance(value, bytes) else value
        if key == TENANT_HEADER and text:
            tenant = text
        elif key == SCOPES_HEADER:
            scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    return tenant, scopes
