"""Who is calling, as every service sees it: the scope names (defined here once, for the gateway,
the registry and the orchestrator) and the Caller a service builds from the gateway's metadata.

A caller with a tenant (``x-modelserve-tenant``) is confined to that tenant whatever its scopes:
"admin" in a tenant caller's scopes grants nothing platform-wide. A caller without one is trusted
(the platform administrator or an in-cluster service) and sees every tenant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelserve_common.context import SCOPES_HEADER, TENANT_HEADER, caller_identity

INFER, READ, WRITE, TENANT_ADMIN, ADMIN = "infer", "read", "write", "tenant-admin", "admin"
"""``infer``: inference, running pipelines, creating and cancelling executions. ``read``: reads.
``write``: registry writes; creating, updating and deleting pipelines. ``tenant-admin``: the
tenant's own API keys, models, deployments and pipelines (implies read, write and infer inside the
tenant). ``admin``: platform-wide; held only by trusted principals, never by a tenant key."""

TENANT_SCOPES = (INFER, READ, WRITE, TENANT_ADMIN)
"""The scopes a tenant's API key may hold, in their canonical order."""
ALL_SCOPES = (*TENANT_SCOPES, ADMIN)
IMPLIED_BY_TENANT_ADMIN = frozenset({INFER, READ, WRITE})

PLATFORM_OWNER = ""
"""The owner recorded for what a trusted caller creates. No tenant can have this name (the gateway
never sends an empty tenant header, and an empty one reads as absent)."""


@dataclass(frozen=True)
class Caller:
    """A tenant with scopes (set by the gateway), or a trusted caller (tenant None)."""

    tenant: str | None
    scopes: frozenset[str] = frozenset()

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller named by the gateway's ``x-modelserve-tenant`` / ``x-modelserve-scopes``."""
        tenant, scopes = caller_identity(metadata)
        return cls(tenant, scopes)

    @property
    def is_trusted(self) -> bool:
        """The platform administrator or an in-cluster service; never a tenant caller."""
        return self.tenant is None

    def has(self, scope: str) -> bool:
        """Whether the caller holds ``scope``: a trusted caller holds every scope; "tenant-admin"
        implies read, write and infer inside the tenant."""
        if self.tenant is None or scope in self.scopes:
            return True
        return scope in IMPLIED_BY_TENANT_ADMIN and TENANT_ADMIN in self.scopes

    def can_see(self, tenant: str) -> bool:
        """Whether rows of ``tenant`` are visible to this caller."""
        return self.tenant is None or self.tenant == tenant

    @property
    def visible(self) -> str | None:
        """The tenant whose rows this caller may see and change; None: every tenant's."""
        return self.tenant

    @property
    def owner(self) -> str:
        """The tenant that owns what this caller creates (PLATFORM_OWNER for a trusted caller)."""
        return PLATFORM_OWNER if self.tenant is None else self.tenant

    def metadata(self, scopes: frozenset[str] | None = None) -> tuple[tuple[str, str], ...] | None:
        """The gRPC metadata that names this caller to another service (None for a trusted caller,
        which sends no tenant); ``scopes`` replaces the caller's own."""
        if self.tenant is None:
            return None
        return (
            (TENANT_HEADER, self.tenant),
            (SCOPES_HEADER, ",".join(sorted(self.scopes if scopes is None else scopes))),
        )


TRUSTED = Caller(tenant=None, scopes=frozenset(ALL_SCOPES))
"""A trusted caller: for in-cluster work (an execution created by a trusted caller, startup
tasks). Pass it explicitly; no service method defaults to it."""
