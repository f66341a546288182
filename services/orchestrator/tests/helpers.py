"""Helpers shared by the orchestrator tests (loaded by conftest as ``orchestrator_test_helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelserve.common.v1 import tensor_pb2
from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve_orchestrator.settings import OrchestratorSettings


def tensor(name: str, values: Any, dtype: Any = np.float32) -> tensor_pb2.Tensor:
    a = np.asarray(values, dtype=dtype)
    names = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}
    return tensor_pb2.Tensor(
        name=name, datatype=names[a.dtype], shape=list(a.shape), raw_contents=a.tobytes()
    )


def array(t: tensor_pb2.Tensor) -> np.ndarray:
    dt = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64}[t.datatype]
    return np.frombuffer(t.raw_contents, dtype=dt).reshape(list(t.shape))


def outputs(resp: Any) -> dict[str, np.ndarray]:
    return {t.name: array(t) for t in resp.outputs}


def model_node(name: str, model: str, source: str, **kw: Any) -> pb.Node:
    node = pb.Node(
        name=name,
        model=pb.ModelNode(
            model={"name": model, "version": kw.pop("version", "")},
            inputs=[pb.InputBinding(name="x", source=source)],
            outputs=kw.pop("outs", ["y"]),
        ),
        **kw,
    )
    return node


def sequence_pipeline(name: str, models: list[str], **kw: Any) -> pb.Pipeline:
    nodes = []
    src = "inputs.x"
    for i, m in enumerate(models):
        nodes.append(model_node(f"n{i}", m, src))
        src = f"n{i}.y"
    return pb.Pipeline(
        name=name,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1]}],
        nodes=nodes,
        outputs=[pb.PipelineOutput(name="y", sources=[src])],
        **kw,
    )


def make_settings(tmp: Path, model_target: str, **over: Any) -> OrchestratorSettings:
    """Settings for an in-process orchestrator with short timeouts (tests)."""
    base: dict[str, Any] = dict(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        data_dir=tmp,
        model_server_url=model_target,
        shutdown_grace_s=0.5,
        access_log=False,
        visibility_timeout_s=2.0,
        claim_interval_s=0.5,
        webhook_poll_interval_s=0.1,
        webhook_initial_backoff_s=0.05,
        webhook_max_backoff_s=0.2,
        webhook_timeout_s=2.0,
        webhook_allow=["127.0.0.1/32"],
    )
    base.update(over)
    return OrchestratorSettings(**base)
