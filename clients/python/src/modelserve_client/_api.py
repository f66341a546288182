"""What Client and AsyncClient share: request building and response conversion.

Every public operation is written once here; `_call` (defined by each client) runs it (blocking
in Client, as a coroutine in AsyncClient)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from . import _pool
from ._push import chunks, prepare
from .tensors import decode, encode, to_array

REG = "modelserve.registry.v1.RegistryService"
ORC = "modelserve.orchestrator.v1.OrchestratorService"
INF = "inference.GRPCInferenceService"

TERMINAL_STATES = ("EXECUTION_STATE_SUCCEEDED", "EXECUTION_STATE_FAILED", "EXECUTION_STATE_CANCELLED")


def to_dict(msg: Any) -> dict[str, Any]:
    """A response message as a plain dict (proto field names; enums as names)."""
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def build(full_method: str, fields: Mapping[str, Any] | Any) -> Any:
    """The request message for a method from a dict (proto JSON names or field names)."""
    _, req_cls, _, _, _ = _pool.method(full_method)
    if isinstance(fields, Mapping):
        msg = req_cls()
        json_format.ParseDict(dict(fields), msg)
        return msg
    return fields


def tensor_msgs(inputs: Mapping[str, Any], datatypes: Mapping[str, str] | None = None) -> list[Any]:
    """modelserve.common.v1.Tensor messages for {name: array-like}."""
    cls = _pool.message("modelserve.common.v1.Tensor")
    out = []
    for name, value in inputs.items():
        dt = (datatypes or {}).get(name)
        arr = to_array(value, dt)
        dtype, shape, raw = encode(arr, dt)
        out.append(cls(name=name, datatype=dtype, shape=shape, raw_contents=raw))
    return out


def tensors_out(tensors: Any) -> dict[str, np.ndarray[Any, Any]]:
    return {t.name: decode(t.datatype, list(t.shape), t.raw_contents) for t in tensors}


def run_result(resp: Any) -> dict[str, Any]:
    """A RunPipelineResponse (or Execution) as {"outputs": {name: ndarray}, "trace": [...], ...}."""
    d = to_dict(resp)
    d["outputs"] = tensors_out(resp.outputs)
    d.setdefault("trace", [])
    d.setdefault("missing_outputs", [])
    return d


def infer_request(
    model: str,
    inputs: Mapping[str, Any],
    version: str | int | None,
    alias: str | None,
    outputs: list[str] | None,
    datatypes: Mapping[str, str] | None,
    parameters: Mapping[str, Any] | None,
    request_id: str | None = None,
) -> Any:
    if version is not None and alias is not None:
        raise ValueError("give version or alias, not both")
    req_cls = _pool.message("inference.ModelInferRequest")
    # An alias travels in model_version: the model server resolves version numbers and aliases.
    ref = alias if alias is not None else (str(version) if version is not None else "")
    req = req_cls(model_name=model, model_version=ref)
    if request_id:
        req.id = request_id
    for k, v in (parameters or {}).items():
        p = req.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        else:
            p.string_param = str(v)
    for name, value in inputs.items():
        dt = (datatypes or {}).get(name)
        dtype, shape, raw = encode(to_array(value, dt), dt)
        t = req.inputs.add()
        t.name, t.datatype = name, dtype
        t.shape.extend(shape)
        req.raw_input_contents.append(raw)
    for o in outputs or []:
        req.outputs.add().name = o
    return req


def infer_outputs(resp: Any) -> dict[str, np.ndarray[Any, Any]]:
    """ModelInferResponse -> {name: ndarray} (raw_output_contents, or the typed contents)."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for i, t in enumerate(resp.outputs):
        if i < len(resp.raw_output_contents):
            out[t.name] = decode(t.datatype, list(t.shape), resp.raw_output_contents[i])
            continue
        c = t.contents
        values: Any = {
            "BOOL": c.bool_contents,
            "INT8": c.int_contents,
            "INT16": c.int_contents,
            "INT32": c.int_contents,
            "INT64": c.int64_contents,
            "UINT8": c.uint_contents,
            "UINT16": c.uint_contents,
            "UINT32": c.uint_contents,
            "UINT64": c.uint64_contents,
            "FP32": c.fp32_contents,
            "FP64": c.fp64_contents,
            "BYTES": c.bytes_contents,
        }.get(t.datatype, [])
        out[t.name] = to_array(list(values), t.datatype if t.datatype != "FP16" else None).reshape(
            list(t.shape)
        )
    return out


def deployment_fields(
    model: str,
    versions: Mapping[str, int] | str | int,
    mirror: str | int | None,
    rate_limit: float | None,
    burst: int | None,
) -> dict[str, Any]:
    if not isinstance(versions, Mapping):
        versions = {str(versions): 100}
    targets: list[dict[str, Any]] = [{"version": str(v), "weight": int(w)} for v, w in versions.items()]
    if mirror is not None:
        targets.append({"version": str(mirror), "weight": 0, "mirror": True})
    dep: dict[str, Any] = {"model": model, "targets": targets}
    if rate_limit is not None:
        dep["rate_limit"] = {
            "requests_per_second": float(rate_limit),
            "burst": int(burst or max(1, rate_limit)),
        }
    return {"deployment": dep}


def pipeline_spec(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """A pipeline spec from a dict or a YAML/JSON file path."""
    if isinstance(spec, Mapping):
        return dict(spec)
    import yaml  # JSON is YAML

    with open(spec, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{spec}: a pipeline spec is a mapping")
    return data


def pipeline_request(
    method: str,
    fields: Mapping[str, Any],
    inputs: Mapping[str, Any],
    parameters: Mapping[str, str] | None,
    datatypes: Mapping[str, str] | None,
) -> Any:
    """A run/stream/execution request: `fields`, then the inputs as tensors and the parameters."""
    req = build(method, fields)
    req.inputs.extend(tensor_msgs(inputs, datatypes))
    for k, v in (parameters or {}).items():
        req.parameters[k] = str(v)
    return req


def upload_messages(
    name: str,
    path: str | Path,
    backend: str | None,
    chunk_bytes: int,
    progress: Callable[[int, int], None] | None,
    version: Mapping[str, Any],
) -> Iterator[Any]:
    """The UploadModelVersion request stream for a file or folder: the metadata message, then
    the artifact in chunks (calling `progress(sent, total)` after each)."""
    art = prepare(path)
    be = backend or art.backend
    if not be:
        raise ValueError(f"cannot tell the backend of {path}; pass backend=")
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be > 0")
    mv = {"model": name, "backend": be, "artifact_sha256": art.sha256, "artifact_format": art.artifact_format}
    meta = build(
        f"{REG}/UploadModelVersion",
        {"metadata": {"model": name, "size_bytes": len(art.data), "model_version": {**mv, **version}}},
    )
    req_cls = type(meta)

    def messages() -> Iterator[Any]:
        yield meta
        sent = 0
        for c in chunks(art.data, chunk_bytes):
            yield req_cls(chunk=c)
            sent += len(c)
            if progress is not None:
                progress(sent, len(art.data))

    return messages()


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
