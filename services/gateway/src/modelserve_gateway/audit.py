"""Audit events: one structured line per write, admin action and authentication failure.

Fields: who (key id or JWT subject, never a secret), tenant, action (the method), resource,
outcome (a status code name), request_id. Emitted on the ``modelserve.audit`` logger as event
``audit``, so a log pipeline can route them apart."""

from __future__ import annotations

import structlog

from modelserve_common.context import current_request_id

_log = structlog.get_logger("modelserve.audit")


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
