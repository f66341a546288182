#!/usr/bin/env python
"""Registers the demo model of `make run` in the registry, the way a user would: model
`linear-reg`, version 1 (the `linear` example's model.py as the artifact, its sha256, tensor specs
and batching), deployed at weight 100, alias `production`. The model server follows the registry
and serves it. Idempotent: an existing model is left as it is. A failed call prints one line
(the RPC, its status and message) and exits 1.

    .venv/bin/python scripts/register_demo.py [registry address, default 127.0.0.1:50051]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import grpc

from modelserve.common.v1 import tensor_pb2 as common_pb
from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "models/linear/1/model.py"
NAME = "linear-reg"


def main(target: str = "127.0.0.1:50051") -> int:
    try:
        return register(target)
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        print(f"register_demo: the registry at {target} answered {code}: {details}", file=sys.stderr)
        return 1


def register(target: str) -> int:
    stub = pb_grpc.RegistryServiceStub(grpc.insecure_channel(target))
    try:
        stub.CreateModel(
            pb.CreateModelRequest(model=pb.Model(name=NAME, description="demo: y = x @ W")), timeout=10
        )
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            print(f"register_demo: {NAME} already registered")
            return 0
        raise
    version = stub.CreateModelVersion(
        pb.CreateModelVersionRequest(
            model=NAME,
            model_version=pb.ModelVersion(
                artifact_uri=ARTIFACT.as_uri(),
                artifact_sha256=hashlib.sha256(ARTIFACT.read_bytes()).hexdigest(),
                backend="python",
                inputs=[common_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 16])],
                outputs=[common_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 4])],
                batching=pb.BatchingConfig(max_batch_size=64),
            ),
        ),
        timeout=10,
    ).model_version
    stub.UpdateDeployment(
        pb.UpdateDeploymentRequest(
            deployment=pb.Deployment(
                model=NAME, targets=[pb.DeploymentTarget(version=str(version.version), weight=100)]
            )
        ),
        timeout=10,
    )
    stub.SetAlias(
        pb.SetAliasRequest(model=NAME, alias="production", version=str(version.version)), timeout=10
    )
    print(f"register_demo: {NAME} version {version.version} registered, deployed, alias production")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:2]))
