"""Which scope each fronted method needs: declared here, in one place, for REST and gRPC alike.

Scopes: ``infer`` (inference, running pipelines, creating and cancelling executions), ``read``
(registry and orchestrator reads), ``write`` (registry writes; creating, updating and deleting
pipelines), ``tenant-admin`` (the tenant's own API keys; implies read, write and infer inside the
tenant), ``admin`` (platform-wide: tenants, VerifyApiKey, the model repository; implies every
other scope). ``admin`` belongs only to trusted principals (the bootstrap key, a JWT carrying the
configured platform-admin claim): auth.py never gives it to a tenant principal, and a tenant
principal is confined to its tenant downstream whatever its scopes.
"""

from __future__ import annotations

from modelserve_common.identity import ADMIN, IMPLIED_BY_TENANT_ADMIN, INFER, READ, TENANT_ADMIN, WRITE

_INFERENCE = "inference.GRPCInferenceService"
_REGISTRY = "modelserve.registry.v1.RegistryService"
_ORCHESTRATOR = "modelserve.orchestrator.v1.OrchestratorService"

# Exceptions to the per-service rules below, by full method name.
METHOD_SCOPES: dict[str, str] = {
    f"/{_INFERENCE}/RepositoryModelLoad": ADMIN,
    f"/{_INFERENCE}/RepositoryModelUnload": ADMIN,
    f"/{_INFERENCE}/RepositoryIndex": ADMIN,
    f"/{_REGISTRY}/VerifyApiKey": ADMIN,
    f"/{_REGISTRY}/CreateTenant": ADMIN,
    f"/{_REGISTRY}/ListTenants": ADMIN,
    f"/{_REGISTRY}/UpdateTenant": ADMIN,
    # in-cluster only (the model server's prediction logger): a tenant never writes logs
    f"/{_REGISTRY}/WritePredictionLogs": ADMIN,
    f"/{_REGISTRY}/GetTenant": READ,
    f"/{_REGISTRY}/DownloadModelVersion": READ,
    f"/{_REGISTRY}/CreateApiKey": TENANT_ADMIN,
    f"/{_REGISTRY}/RotateApiKey": TENANT_ADMIN,
    f"/{_REGISTRY}/DeleteApiKey": TENANT_ADMIN,
    f"/{_REGISTRY}/GetApiKey": TENANT_ADMIN,
    f"/{_REGISTRY}/ListApiKeys": TENANT_ADMIN,
    f"/{_ORCHESTRATOR}/CreatePipeline": WRITE,
    f"/{_ORCHESTRATOR}/UpdatePipeline": WRITE,
    f"/{_ORCHESTRATOR}/DeletePipeline": WRITE,
}

# Calls that need only ``infer`` yet change state (audited like every other write).
INFER_MUTATIONS = frozenset({f"/{_ORCHESTRATOR}/CreateExecution", f"/{_ORCHESTRATOR}/CancelExecution"})

_READ_PREFIXES = ("Get", "List", "Watch")

# Methods that need no credentials at all (liveness/readiness probes).
PUBLIC_METHODS = frozenset({f"/{_INFERENCE}/ServerLive", f"/{_INFERENCE}/ServerReady"})


def required_scope(method: str) -> str:
    """The scope ``method`` ("/pkg.Service/Method") needs; unknown services need admin."""
    if method in METHOD_SCOPES:
        return METHOD_SCOPES[method]
    service, _, name = method.lstrip("/").partition("/")
    if service == _INFERENCE:
        return INFER
    if service == _ORCHESTRATOR:
        return READ if name.startswith(_READ_PREFIXES) else INFER
    if service == _REGISTRY:
        return READ if name.startswith(_READ_PREFIXES) else WRITE
    return ADMIN


def is_write(method: str) -> bool:
    """Whether ``method`` changes state (every such call is audited)."""
    if method in INFER_MUTATIONS:
        return True
    return required_scope(method) in (WRITE, TENANT_ADMIN, ADMIN) and not method.endswith("/VerifyApiKey")


def has_scope(granted: frozenset[str], needed: str) -> bool:
    """``admin`` implies every scope; ``tenant-admin`` implies read, write and infer."""
    if ADMIN in granted or needed in granted:
        return True
    return TENANT_ADMIN in granted and needed in IMPLIED_BY_TENANT_ADMIN
