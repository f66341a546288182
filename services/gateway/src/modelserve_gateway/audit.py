"""Audit events: one structured line per write, admin action and authentication failure.

Fields: who (key id or JWT subject, never a secret), tenant, action (the method), resource,
outcome (a status code name), request_id. Emitted on the ``modelserve.audit`` logger as event
``audit``, so a log pipeline can route them apart. Both doors audit a write's upstream call
through :func:`audited` (success and failure alike); the guard audits refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import grpc
import structlog

from modelserve_common.context import current_request_id

_log = structlog.get_logger("modelserve.audit")


class _Principal(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def tenant(self) -> str: ...


def audit(*, who: str, tenant: str, action: str, resource: str, outcome: str, **extra: object) -> None:
    _log.info(
        "audit",
        who=who,
        tenant=tenant,
        action=action,
        resource=resource,
        outcome=outcome,
        request_id=current_request_id(),
        **extra,
    )


def outcome_of(exc: BaseException) -> str:
    """The status code name an exception ends a call with."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    code = getattr(exc, "code", None)
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


@contextmanager
def audited(
    principal: _Principal, action: str, resource: str = "", *, enabled: bool = True
) -> Iterator[None]:
    """One audit event for the block: ``OK`` when it completes, else the status it fails with.
    Nothing when ``enabled`` is false (reads are not audited)."""
    if not enabled:
        yield
        return
    try:
        yield
    except BaseException as exc:
        audit(
            who=principal.id,
            tenant=principal.tenant,
            action=action,
            resource=resource,
            outcome=outcome_of(exc),
        )
        raise
    audit(who=principal.id, tenant=principal.tenant, action=action, resource=resource, outcome="OK")
