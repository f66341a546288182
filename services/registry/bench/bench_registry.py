"""Short registry benchmark: CreateModelVersion and GetModelVersion over gRPC against an
in-process registry, on SQLite and on PostgreSQL, with C concurrent clients for a few seconds.
Prints one JSON line per cell and a table. Usage:

    .venv/bin/python services/registry/bench/bench_registry.py [--seconds 2] [--pg postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.testing import databases
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings


async def cell(url: str, tmp: Path, rpc: str, clients: int, seconds: float) -> dict[str, object]:
    settings = RegistrySettings(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        database_url=url,
        data_dir=tmp,
        access_log=False,
        log_level="WARNING",
    )
    artifact = tmp / "artifacts" / "m.onnx"  # under the default artifact root, <data_dir>/artifacts
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_bytes(b"bench")
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = registry_grpc.RegistryServiceStub(channel)
            name = f"bench-{rpc.lower()}-{clients}"
            await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name=name)))
            version = pb.ModelVersion(
                artifact_uri=artifact.as_uri(), artifact_sha256="c" * 64, backend="onnx"
            )
            await stub.CreateModelVersion(pb.CreateModelVersionRequest(model=name, model_version=version))
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds

            async def client() -> None:
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    if rpc == "CreateModelVersion":
                        await stub.CreateModelVersion(
                            pb.CreateModelVersionRequest(model=name, model_version=version)
                        )
                    else:
                        await stub.GetModelVersion(pb.GetModelVersionRequest(model=name, version="1"))
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "rpc": rpc,
        "db": url.split(":")[0],
        "clients": clients,
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8])
    args = parser.parse_args()
    pg_url, pg_name = databases.create_database()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for db in (f"sqlite:///{tmp}/bench.db", pg_url):
                for rpc in ("CreateModelVersion", "GetModelVersion"):
                    for clients in args.clients:
                        row = await cell(db, Path(tmp), rpc, clients, args.seconds)
                        print(json.dumps(row))
                        rows.append(row)
    finally:
        databases.drop_database(pg_name)
    print(f"{'rpc':<20}{'db':<12}{'clients':>8}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(
            f"{r['rpc']!s:<20}{r['db']!s:<12}{r['clients']!s:>8}{r['rps']!s:>10}{r['p50_ms']!s:>10}{r['p99_ms']!s:>10}"
        )


if __name__ == "__main__":
    asyncio.run(main())
