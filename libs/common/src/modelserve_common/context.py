"""The request context of the RPC being handled: its request id, readable by outgoing calls so the
id travels with the work (channels add it as ``x-request-id`` metadata)."""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
TENANT_HEADER = "x-modelserve-tenant"

request_id_var: ContextVar[str | None] = ContextVar("modelserve_request_id", default=None)


def current_request_id() -> str | None:
    """The request id of the RPC this task serves, if any."""
    return request_id_var.get()
