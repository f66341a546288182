"""Orchestrator benchmark (short, for a shared machine).

1. Overhead per node: a 3-node sequence pipeline through RunPipeline vs the same three ModelInfer
   calls made directly by a client, against the same in-process fake model server (numpy models).
2. Asynchronous executions per second with PostgreSQL + Redis: N executions of the 3-node pipeline
   created at once, measured until all are SUCCEEDED.

Usage: .venv/bin/python bench/orchestrator/bench.py [--seconds 3] [--executions 300]
Prints JSON and a table."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "services" / "orchestrator" / "tests"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fms = _load("bench_fake_model_server", TESTS / "fake_model_server.py")
helpers = _load("orchestrator_test_helpers", TESTS / "helpers.py")

from modelserve.inference.v2 import grpc_service_pb2 as ipb  # noqa: E402
from modelserve.inference.v2 import grpc_service_pb2_grpc as igrpc  # noqa: E402
from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb  # noqa: E402
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc  # noqa: E402
from modelserve_common.testing import databases  # noqa: E402
from modelserve_orchestrator.server import running_server  # noqa: E402
from modelserve_orchestrator.settings import OrchestratorSettings  # noqa: E402

MODELS = ["double", "add_one", "neg"]


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1000


async def direct(target: str, seconds: float) -> list[float]:
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    out: list[float] = []
    async with grpc.aio.insecure_channel(target) as ch:
        stub = igrpc.GRPCInferenceServiceStub(ch)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            cur = x
            for m in MODELS:
                req = ipb.ModelInferRequest(model_name=m)
                req.inputs.add(name="x", datatype="FP32", shape=list(cur.shape))
                req.raw_input_contents.append(cur.tobytes())
                resp = await stub.ModelInfer(req, timeout=5)
                cur = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32)
            out.append(time.perf_counter() - t0)
    return out


async def via_pipeline(stub: pb_grpc.OrchestratorServiceStub, seconds: float) -> list[float]:
    req = pb.RunPipelineRequest(pipeline="bench", inputs=[helpers.tensor("x", [1.0, 2.0, 3.0])])
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await stub.RunPipeline(req, timeout=5)
        out.append(time.perf_counter() - t0)
    return out


async def executions(stub: pb_grpc.OrchestratorServiceStub, n: int) -> float:
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> str:
        async with sem:
            r = await stub.CreateExecution(
                pb.CreateExecutionRequest(pipeline="bench", inputs=[helpers.tensor("x", [float(i)])]),
                timeout=10,
            )
            return r.execution.execution

    ids = await asyncio.gather(*(create(i) for i in range(n)))
    pending = set(ids)
    while pending:
        done = set()
        page = await stub.ListExecutions(
            pb.ListExecutionsRequest(pipeline="bench", state=pb.EXECUTION_STATE_SUCCEEDED, page_size=1000)
        )
        done = {e.execution for e in page.executions}
        pending -= done
        if pending:
            await asyncio.sleep(0.05)
        if time.perf_counter() - t0 > 120:
            raise TimeoutError(f"{len(pending)} executions not done")
    return n / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--executions", type=int, default=300)
    ap.add_argument("--workers", type=int, default=32, help="ORCHESTRATOR_WORKERS of the replica")
    ap.add_argument("--pool-max-size", type=int, default=10, help="ORCHESTRATOR_POOL_MAX_SIZE")
    ap.add_argument(
        "--node-record-delay-s", type=float, default=0.02, help="ORCHESTRATOR_NODE_RECORD_DELAY_S"
    )
    args = ap.parse_args()
    models = fms.FakeModelServer(workers=8).start()
    url, dbname = databases.create_database()
    try:
        settings = OrchestratorSettings(
            grpc_port=0,
            grpc_host="127.0.0.1",
            metrics_port=-1,
            access_log=False,
            log_level="WARNING",
            data_dir=Path(tempfile.mkdtemp()),
            model_server_url=models.target,
            database_url=url,
            redis_url=databases.redis_url(),
            redis_prefix=f"bench:{time.time_ns()}:",
            workers=args.workers,
            pool_max_size=args.pool_max_size,
            node_record_delay_s=args.node_record_delay_s,
        )
        async with running_server(settings) as running:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
                stub = pb_grpc.OrchestratorServiceStub(ch)
                await stub.CreatePipeline(
                    pb.CreatePipelineRequest(pipeline=helpers.sequence_pipeline("bench", MODELS))
                )
                await direct(models.target, 0.5)  # warm-up
                await via_pipeline(stub, 0.5)
                d = await direct(models.target, args.seconds)
                p = await via_pipeline(stub, args.seconds)
                eps = await executions(stub, args.executions)
            await asyncio.sleep(0.1)
    finally:
        models.stop()
        databases.drop_database(dbname)
    d50, p50 = statistics.median(d) * 1000, statistics.median(p) * 1000
    result = {
        "machine": "shared, loaded (2 cores shared by several engineers)",
        "direct_3_calls_ms": {"p50": d50, "p99": pct(d, 99), "n": len(d)},
        "pipeline_3_nodes_ms": {"p50": p50, "p99": pct(p, 99), "n": len(p)},
        "added_latency_per_node_ms_p50": (p50 - d50) / 3,
        "async_executions_per_s_postgres_redis": eps,
        "executions": args.executions,
        "workers": args.workers,
        "pool_max_size": args.pool_max_size,
        "node_record_delay_s": args.node_record_delay_s,
    }
    print(json.dumps(result, indent=2))
    print(f"{'metric':44} {'value':>10}")
    print(f"{'direct 3 calls p50 (ms)':44} {d50:10.3f}")
    print(f"{'pipeline 3 nodes p50 (ms)':44} {p50:10.3f}")
    print(f"{'added latency per node p50 (ms)':44} {(p50 - d50) / 3:10.3f}")
    print(f"{'async executions/s (PostgreSQL + Redis)':44} {eps:10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
