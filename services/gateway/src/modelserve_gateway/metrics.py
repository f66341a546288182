"""The gateway's request, authentication and rate-limit metrics (shed requests, in-flight and
breakers are in protection.py, limiter errors in ratelimit.py, latency by route in rest/asgi.py;
upstream latency is grpc_client_handling_seconds from modelserve_common.metrics).

Labels are bounded: ``route`` is a route template or gRPC method of our contracts ("unmatched"
otherwise), ``tenant`` the authenticated caller's tenant ("-" when none: a trusted caller or a
request refused before authentication), ``reason`` one of AUTH_REASONS."""

from __future__ import annotations

from prometheus_client import Counter

from modelserve_gateway.ratelimit import LIMITER_ERRORS

REQUESTS = Counter(
    "modelserve_gateway_requests_total",
    "REST requests by route template, HTTP status and authenticated tenant.",
    ["route", "code", "tenant"],
)
AUTH_FAILURES = Counter(
    "modelserve_gateway_auth_failures_total",
    "Requests refused by authentication or scope checks, by reason.",
    ["reason"],
)
RATE_LIMIT_DECISIONS = Counter(
    "modelserve_gateway_rate_limit_decisions_total",
    "Rate-limit checks by scope (key, tenant, ...) and decision (allowed, limited, unavailable).",
    ["scope", "decision"],
)

# message prefix of an Unauthenticated error (auth.py) -> reason label
_PREFIXES = (
    ("credentials required", "missing_credentials"),
    ("Authorization must be", "malformed_header"),
    ("invalid API key", "invalid_api_key"),
    ("JWT authentication is not configured", "jwt_not_configured"),
    ("invalid token", "invalid_jwt"),
    ("token from the platform-admin issuer", "jwt_claims"),
    ("token has no", "jwt_claims"),
)
AUTH_REASONS = (*dict.fromkeys(r for _, r in _PREFIXES), "insufficient_scope", "other")
for _reason in AUTH_REASONS:
    AUTH_FAILURES.labels(_reason)


def auth_failure_reason(message: str) -> str:
    """The bounded reason label for an authentication failure's message."""
    for prefix, reason in _PREFIXES:
        if message.startswith(prefix):
            return reason
    return "other"


def tenant_label(tenant: str) -> str:
    return tenant or "-"


for _mode in ("open", "closed"):  # every series from start-up, so alerts and panels find the names
    LIMITER_ERRORS.labels(_mode)
