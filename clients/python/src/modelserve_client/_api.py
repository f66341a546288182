"""What Client and AsyncClient share: every public operation (building its request and
converting its response with _messages.py).

Every public operation is written once here; `_call` (defined by each client) runs it (blocking
in Client, as a coroutine in AsyncClient)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ._messages import (
    INF,
    ORC,
    REG,
    deployment_fields,
    infer_outputs,
    infer_request,
    pipeline_request,
    run_result,
    to_dict,
)


class _Api:
    """Operations shared by Client and AsyncClient (see their docstrings)."""

    def _call(
        self,
        method: str,
        fields: Any,
        *,
        idempotent: bool = False,
        post: Callable[[Any], Any] = to_dict,
        timeout: float | None = None,
    ) -> Any:
        raise NotImplementedError

    @staticmethod
    def _new_request_id() -> str:
        return uuid.uuid4().hex

    # --- models ------------------------------------------------------------------------------
    def create_model(self, name: str, description: str = "", tags: Mapping[str, str] | None = None) -> Any:
        """Register a model name (names are global). Returns the model as a dict."""
        m = {"name": name, "description": description, "tags": dict(tags or {})}
        return self._call(f"{REG}/CreateModel", {"model": m}, post=lambda r: to_dict(r.model))

    def get_model(self, name: str) -> Any:
        return self._call(
            f"{REG}/GetModel", {"model": name}, idempotent=True, post=lambda r: to_dict(r.model)
        )

    def update_model(
        self, name: str, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Any:
        m: dict[str, Any] = {"name": name}
        paths: list[str] = []
        if description is not None:
            m["description"], paths = description, [*paths, "description"]
        if tags is not None:
            m["tags"], paths = dict(tags), [*paths, "tags"]
        req = {"model": m, "update_mask": ",".join(paths)}
        return self._call(f"{REG}/UpdateModel", req, post=lambda r: to_dict(r.model))

    def delete_model(self, name: str) -> Any:
        return self._call(f"{REG}/DeleteModel", {"model": name}, post=lambda r: None)

    # --- versions ----------------------------------------------------------------------------
    def create_version(self, model: str, **version: Any) -> Any:
        """Register a version from an artifact already in storage; `version` holds ModelVersion
        fields (artifact_uri, artifact_sha256, backend, inputs, outputs, batching, ...)."""
        req = {"model": model, "model_version": {"model": model, **version}}
        return self._call(f"{REG}/CreateModelVersion", req, post=lambda r: to_dict(r.model_version))

    def get_version(self, model: str, version: str | int) -> Any:
        req = {"model": model, "version": str(version)}
        return self._call(
            f"{REG}/GetModelVersion", req, idempotent=True, post=lambda r: to_dict(r.model_version)
        )

    def delete_version(self, model: str, version: str | int) -> Any:
        req = {"model": model, "version": str(version)}
        return self._call(f"{REG}/DeleteModelVersion", req, post=lambda r: None)

    # --- aliases -----------------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: str | int) -> Any:
        req = {"model": model, "alias": alias, "version": str(version)}
        return self._call(f"{REG}/SetAlias", req, post=lambda r: to_dict(r.alias))

    def get_alias(self, model: str, alias: str) -> Any:
        req = {"model": model, "alias": alias}
        return self._call(f"{REG}/GetAlias", req, idempotent=True, post=lambda r: to_dict(r.alias))

    def list_aliases(self, model: str) -> Any:
        post = lambda r: [to_dict(a) for a in r.aliases]  # noqa: E731
        return self._call(f"{REG}/ListAliases", {"model": model}, idempotent=True, post=post)

    def delete_alias(self, model: str, alias: str) -> Any:
        return self._call(f"{REG}/DeleteAlias", {"model": model, "alias": alias}, post=lambda r: None)

    # --- deployments -------------------------------------------------------------------------
    def deploy(
        self,
        model: str,
        versions: Mapping[str, int] | str | int,
        *,
        mirror: str | int | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> Any:
        """Route traffic: `deploy("churn", {"2": 90, "3": 10}, mirror=4, rate_limit=50)`; a single
        version (`deploy("churn", 2)`) takes all of it."""
        req = deployment_fields(model, versions, mirror, rate_limit, burst)
        return self._call(f"{REG}/UpdateDeployment", req, post=lambda r: to_dict(r.deployment))

    def get_deployment(self, model: str) -> Any:
        post = lambda r: to_dict(r.deployment)  # noqa: E731
        return self._call(f"{REG}/GetDeployment", {"model": model}, idempotent=True, post=post)

    def list_deployments(self) -> Any:
        post = lambda r: [to_dict(d) for d in r.deployments]  # noqa: E731
        return self._call(f"{REG}/ListDeployments", {}, idempotent=True, post=post)

    # --- inference ---------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: str | int | None = None,
        alias: str | None = None,
        outputs: list[str] | None = None,
        datatypes: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run a model: `infer("clf", {"x": np.ones((1, 4), np.float32)})` -> {"y": ndarray}.
        Arrays keep their dtype (str/bytes lists are BYTES); `datatypes={"x": "BF16"}` picks a
        wire type explicitly."""
        req = infer_request(model, inputs, version, alias, outputs, datatypes, parameters)
        return self._call(f"{INF}/ModelInfer", req, post=infer_outputs, timeout=timeout)

    def model_metadata(self, model: str, version: str | int | None = None) -> Any:
        req = {"name": model, "version": str(version or "")}
        return self._call(f"{INF}/ModelMetadata", req, idempotent=True)

    def model_config(self, model: str, version: str | int | None = None) -> Any:
        req = {"name": model, "version": str(version or "")}
        return self._call(f"{INF}/ModelConfig", req, idempotent=True, post=lambda r: to_dict(r.config))

    def model_ready(self, model: str, version: str | int | None = None) -> Any:
        req = {"name": model, "version": str(version or "")}
        return self._call(f"{INF}/ModelReady", req, idempotent=True, post=lambda r: bool(r.ready))

    def server_ready(self) -> Any:
        return self._call(f"{INF}/ServerReady", {}, idempotent=True, post=lambda r: bool(r.ready))

    def server_live(self) -> Any:
        return self._call(f"{INF}/ServerLive", {}, idempotent=True, post=lambda r: bool(r.live))

    # --- pipelines ---------------------------------------------------------------------------
    def get_pipeline(self, name: str, version: int | None = None) -> Any:
        req = {"pipeline": name, "version": int(version or 0)}
        return self._call(f"{ORC}/GetPipeline", req, idempotent=True, post=lambda r: to_dict(r.pipeline))

    def delete_pipeline(self, name: str) -> Any:
        return self._call(f"{ORC}/DeletePipeline", {"pipeline": name}, post=lambda r: None)

    def run(
        self,
        pipeline: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        parameters: Mapping[str, str] | None = None,
        datatypes: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run a pipeline synchronously -> {"outputs": {name: ndarray}, "trace": [per node], ...}."""
        fields = {"pipeline": pipeline, "version": int(version or 0)}
        req = pipeline_request(f"{ORC}/RunPipeline", fields, inputs, parameters, datatypes)
        return self._call(f"{ORC}/RunPipeline", req, post=run_result, timeout=timeout)

    # --- executions --------------------------------------------------------------------------
    def submit(
        self,
        pipeline: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        parameters: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        webhook: str | Mapping[str, Any] | None = None,
        datatypes: Mapping[str, str] | None = None,
    ) -> Any:
        """Start an asynchronous execution; returns its record (a dict with "execution", the id).
        With an idempotency_key, a repeat returns the first execution (safe to retry)."""
        fields: dict[str, Any] = {"pipeline": pipeline, "version": int(version or 0)}
        if idempotency_key:
            fields["idempotency_key"] = idempotency_key
        if webhook is not None:
            fields["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
        req = pipeline_request(f"{ORC}/CreateExecution", fields, inputs, parameters, datatypes)
        return self._call(
            f"{ORC}/CreateExecution",
            req,
            idempotent=bool(idempotency_key),
            post=lambda r: run_result(r.execution),
        )

    def get_execution(self, execution: str) -> Any:
        post = lambda r: run_result(r.execution)  # noqa: E731
        return self._call(f"{ORC}/GetExecution", {"execution": execution}, idempotent=True, post=post)

    def cancel_execution(self, execution: str, reason: str = "") -> Any:
        req = {"execution": execution, "reason": reason}
        return self._call(f"{ORC}/CancelExecution", req, post=lambda r: run_result(r.execution))

    # --- tenants and keys (platform admin; tenant-admin for its own keys) -------------------
    def create_tenant(self, name: str, display_name: str = "", **fields: Any) -> Any:
        t = {"name": name, "display_name": display_name, **fields}
        return self._call(f"{REG}/CreateTenant", {"tenant": t}, post=lambda r: to_dict(r.tenant))

    def get_tenant(self, name: str) -> Any:
        post = lambda r: to_dict(r.tenant)  # noqa: E731
        return self._call(f"{REG}/GetTenant", {"tenant": name}, idempotent=True, post=post)

    def create_key(
        self,
        tenant: str,
        scopes: list[str],
        display_name: str = "",
        *,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> Any:
        """Create an API key -> {"api_key": {...}, "secret": "..."}: the secret is shown once.
        `rate_limit` (requests per second, with `burst`) caps the key."""
        key: dict[str, Any] = {"display_name": display_name, "scopes": list(scopes)}
        if rate_limit is not None:
            key["rate_limit"] = {"requests_per_second": float(rate_limit), "burst": int(burst or 1)}
        req = {"tenant": tenant, "api_key": key}
        return self._call(f"{REG}/CreateApiKey", req)

    def list_keys(self, tenant: str) -> Any:
        post = lambda r: [to_dict(k) for k in r.api_keys]  # noqa: E731
        return self._call(f"{REG}/ListApiKeys", {"tenant": tenant}, idempotent=True, post=post)

    def rotate_key(self, tenant: str, key: str, grace_s: float = 0.0) -> Any:
        """A new secret for a key; the previous one keeps working for `grace_s` seconds."""
        req = {"tenant": tenant, "key": key, "grace_period": f"{float(grace_s):.3f}s"}
        return self._call(f"{REG}/RotateApiKey", req)

    def revoke_key(self, tenant: str, key: str) -> Any:
        return self._call(f"{REG}/DeleteApiKey", {"tenant": tenant, "key": key}, post=lambda r: None)
