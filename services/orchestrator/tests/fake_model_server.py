"""A small real gRPC inference server (our own inference.GRPCInferenceService contract) with a few
numpy models, for the orchestrator's tests and benchmark. Runs in a thread (sync grpc server), so
it keeps answering while a test blocks its event loop or subprocess orchestrators call it.

Ownership as the real model server enforces it, from the caller's metadata: a call without
``x-modelserve-tenant`` is trusted and may use every model; a tenant may use a model that
``owners`` gives it (a registry model deployed here) or one in ``shared`` (the platform's shared
list and shared deployments); anything else answers NOT_FOUND exactly like a missing model. By
default every built-in model is shared (tests about ownership narrow ``shared``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent import futures

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelserve.inference.v2 import grpc_service_pb2 as infer_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as infer_grpc

DT = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
NAMES = {np.dtype(v): k for k, v in DT.items()}

Model = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _models() -> dict[str, Model]:
    return {
        "double": lambda i: {"y": (i["x"] * 2).astype(np.float32)},
        "add_one": lambda i: {"y": (i["x"] + 1).astype(np.float32)},
        "neg": lambda i: {"y": (-i["x"]).astype(np.float32)},
        "square": lambda i: {"y": (i["x"] ** 2).astype(np.float32)},
        "label": lambda i: {"label": (i["x"] > 0).astype(np.int64)},
        "identity": lambda i: {"y": i["x"].astype(np.float32)},
        "two_out": lambda i: {"a": (i["x"] + 10).astype(np.float32), "b": (i["x"] - 10).astype(np.float32)},
    }


Seen = tuple[str, str, str | None, str]  # (rpc, model, tenant or None, scopes)


class FakeInference(infer_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.models = _models()
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, int] = {}  # model -> UNAVAILABLE answers left
        self.delay_s: dict[str, float] = {}  # model -> seconds to sleep
        self.owners: dict[str, str] = {}  # model -> the tenant that owns it
        self.shared: set[str] = set(self.models)  # models every tenant may use
        self.seen: list[Seen] = []  # every ModelInfer / ModelMetadata with its identity
        self._lock = threading.Lock()

    def _allowed(self, rpc: str, name: str, context: grpc.ServicerContext) -> bool:
        md = {k: v for k, v in context.invocation_metadata()}
        tenant = md.get("x-modelserve-tenant") or None
        with self._lock:
            self.seen.append((rpc, name, tenant, str(md.get("x-modelserve-scopes", ""))))
        return tenant is None or self.owners.get(name) == tenant or name in self.shared

    def seen_by(self, tenant: str | None, rpc: str = "ModelInfer") -> list[str]:
        """The models called with ``rpc`` by ``tenant`` (None: trusted calls), in order."""
        with self._lock:
            return [m for r, m, t, _ in self.seen if r == rpc and t == tenant]

    def ModelMetadata(
        self, request: infer_pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> infer_pb.ModelMetadataResponse:
        name = request.name
        if name not in self.models or not self._allowed("ModelMetadata", name, context):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} not found")
        return infer_pb.ModelMetadataResponse(name=name, versions=["1"], platform="numpy")

    def ModelInfer(
        self, request: infer_pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> infer_pb.ModelInferResponse:
        name = request.model_name
        if not self._allowed("ModelInfer", name, context):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} not found")
        with self._lock:
            self.calls[name] += 1
            left = self.failures.get(name, 0)
            if left:
                self.failures[name] = left - 1
        if left:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is warming up")
        if name == "broken":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "broken model refuses every input")
        model = self.models.get(name)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} not found")
        start = time.monotonic()
        while time.monotonic() - start < self.delay_s.get(name, 0.0):  # lowering it cuts sleeps short
            time.sleep(0.005)
        inputs = {}
        for t, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            inputs[t.name] = np.frombuffer(raw, dtype=DT[t.datatype]).reshape(list(t.shape))
        outs = model(inputs)
        wanted = [o.name for o in request.outputs] or list(outs)
        resp = infer_pb.ModelInferResponse(
            model_name=name, model_version=request.model_version or "1", id=request.id
        )
        for k in wanted:
            if k not in outs:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown output {k!r}")
            a = np.ascontiguousarray(outs[k])
            resp.outputs.add(name=k, datatype=NAMES[a.dtype], shape=list(a.shape))
            resp.raw_output_contents.append(a.tobytes())
        return resp


class FakeModelServer:
    """The fake models behind a real gRPC server, with grpc.health.v1 (SERVING; ``set_serving``
    flips it). ``port``: bind that port (to restart a stopped server at the same address)."""

    def __init__(self, workers: int = 32, port: int = 0) -> None:
        self.servicer = FakeInference()
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        infer_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("", status)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeModelServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0).wait()
