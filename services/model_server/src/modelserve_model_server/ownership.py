"""Which models a caller may see: the model server is the authority on tenant isolation for every
inference-service RPC.

The gateway forwards the caller's identity as metadata (``x-modelserve-tenant``,
``x-modelserve-scopes``; :func:`modelserve_common.context.caller_identity`). No tenant header means
a trusted caller (the platform administrator or an in-cluster service): it sees every model, as
before. A caller *with* a tenant header sees a model only when

- the registry's deployment of the model belongs to that tenant (``Deployment.tenant``), or is
  shared with every tenant (``Deployment.shared``, a copy of ``Model.shared``), or
- the model is a local repository model (no registry record) listed in
  ``MODEL_SERVER_SHARED_MODELS``. Other local models are platform models: trusted callers only.

A model the caller may not see is answered exactly as a model that does not exist
(:meth:`~modelserve_model_server.manager.ModelManager.missing`): NOT_FOUND with the same message,
so nothing about other tenants' models is revealed. The owners come from the registry follower
(:meth:`Ownership.set_owner`), which keeps the last known owner of a model for as long as versions
of it serve.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from modelserve_common.context import caller_identity
from modelserve_common.errors import PermissionDenied


@dataclass(frozen=True)
class Owner:
    """The owner of a registry model, as its deployment says."""

    tenant: str
    shared: bool


class Ownership:
    """Model -> owner (from the registry), plus the local models shared with every tenant."""

    def __init__(self, shared_local_models: Iterable[str] = ()) -> None:
        self._shared_local = frozenset(shared_local_models)
        self._owners: dict[str, Owner] = {}

    def set_owner(self, model: str, tenant: str, shared: bool) -> None:
        """Records the owner of a registry model (the follower, on every deployment it sees)."""
        self._owners[model] = Owner(tenant, shared)

    def forget(self, model: str) -> None:
        """The model is no longer the registry's (deleted, nothing of it serves)."""
        self._owners.pop(model, None)

    def owner(self, model: str) -> Owner | None:
        return self._owners.get(model)

    def visible(self, model: str, tenant: str | None) -> bool:
        """May a caller of ``tenant`` (None: trusted) see ``model``?"""
        if tenant is None:
            return True
        owner = self._owners.get(model)
        if owner is not None:
            return owner.shared or owner.tenant == tenant
        return model in self._shared_local


def tenant_of(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's tenant from the gateway's metadata; None = trusted caller."""
    tenant, _scopes = caller_identity(context.invocation_metadata())
    return tenant


def refuse_tenant_callers(tenant: str | None, action: str) -> None:
    """Repository control (load/unload) is for trusted callers only: PERMISSION_DENIED otherwise,
    whatever the tenant's scopes are."""
    if tenant is not None:
        raise PermissionDenied(f"{action} is reserved to the platform: tenant callers may not do it")
