"""The registry's rules, one operation group a module; all SQL is in the store*.py modules.

- core.py: the store, the limits, the change-stream wake-up and the lookups under tenancy
- validation.py: input rules (names, bounds, specs, targets, filter/order_by); paging.py: tokens
- models.py, versions.py (and aliases), artifacts.py (upload, download, blob sweeper),
  deployments.py, tenants.py, api_keys.py, watch.py, prediction_logs.py (logs, drift: drift.py)

Tenancy: ``Caller.tenant is None`` is a trusted caller (no tenant metadata: the platform
administrator or an in-cluster service) with every right. A tenant caller needs the scope an RPC
asks for (read, write; tenant-admin for its API keys; tenant-admin implies read, write and infer)
and is confined to its own tenant whatever its scopes ("admin" in a tenant caller's scopes grants
nothing). Another tenant's resource answers NOT_FOUND with the same message as a missing one, so
existence does not leak. Shared models (Model.shared, set only by the platform administrator) are
readable by every tenant and writable only by their owner."""

from __future__ import annotations

from modelserve_registry.api_keys import ApiKeyOps
from modelserve_registry.artifacts import ArtifactOps
from modelserve_registry.deployments import DeploymentOps
from modelserve_registry.models import ModelOps
from modelserve_registry.prediction_logs import PredictionLogOps
from modelserve_registry.tenants import TenantOps
from modelserve_registry.versions import VersionOps
from modelserve_registry.watch import WatchOps


class RegistryService(
    ModelOps, VersionOps, ArtifactOps, DeploymentOps, TenantOps, ApiKeyOps, WatchOps, PredictionLogOps
):
    """Every registry operation over one store and one set of limits (constructor: ServiceCore)."""
