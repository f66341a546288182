"""Which scope each fronted method needs: declared here, in one place, for REST and gRPC alike.

Scopes: ``infer`` (inference, running pipelines, creating and cancelling executions), ``read``
(registry and orchestrator reads), ``write`` (registry writes; creating, updating and deleting
pipelines), ``admin`` (tenants, API keys, the model repository; implies every other scope).
"""

from __future__ import annotations

INFER, READ, WRITE, ADMIN = "infer", "read", "write", "admin"
ALL_SCOPES = (INFER, READ, WRITE, ADMIN)

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
    f"/{_REGISTRY}/GetTenant": READ,
    f"/{_REGISTRY}/CreateApiKey": ADMIN,
    f"/{_REGISTRY}/RotateApiKey": ADMIN,
    f"/{_REGISTRY}/DeleteApiKey": ADMIN,
    f"/{_REGISTRY}/GetApiKey": ADMIN,
    f"/{_REGISTRY}/ListApiKeys": ADMIN,
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
    return required_scope(method) in (WRITE, ADMIN) and not method.endswith("/VerifyApiKey")


def has_scope(granted: frozenset[str], needed: str) -> bool:
    return ADMIN in granted or needed in granted
