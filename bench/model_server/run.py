#!/usr/bin/env python
"""Benchmark of the model server on model `linear` (y = x @ W, x FP32 [-1,16], max batch 64).

For each server variant (batching on, batching off, workers=2 with batching on; all with the
default settings: validation, metrics, access log, interceptors on), it starts the server as a
subprocess, verifies answers with a Python client (concurrent calls of 1..64 rows checked against
numpy), records idle RSS of the whole process tree, then drives it with h2load replaying a
pre-serialized gRPC frame (closed loop, fixed concurrency, warm-up run first) and reports req/s,
p50, p99 (from h2load's per-request log) and errors (by gRPC DATA-byte accounting: an error answer
has no body). Results: JSON (--out) and a Markdown table on stdout.

    .venv/bin/python bench/model_server/run.py --concurrency 1,8,32,64 --duration 5
    .venv/bin/python bench/model_server/run.py --variants batching,workers2 --concurrency 32 --duration 3
    .venv/bin/python bench/model_server/run.py --variants workers2 --conns 2,8 --concurrency 32,64

With workers=N the server hands new *connections* to the workers in turn (an eBPF program on the
SO_REUSEPORT group; `workers2hash` is the kernel's hash instead, what there was before), so one
client connection is served by one worker, 2 connections by 2 workers. For worker variants the
table's "share" column is the busiest worker's share of the requests of that cell. --taskset pins
the server (all its workers) to CPUs, --client-taskset pins h2load:

    .venv/bin/python bench/model_server/run.py --variants lean,batching,workers2 --conns 1,2,8 \
        --concurrency 32,64 --duration 3 --warmup 1 --taskset 0,1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # bench/procstat.py

from frame import W, request  # noqa: E402
from procstat import cpu_s, rss_mib, tree_pids  # noqa: E402

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc  # noqa: E402
from modelserve_common.testing import free_port, wait_for_health  # noqa: E402

VARIANTS = {
    "batching": {"batching": True, "args": []},
    "nobatching": {"batching": False, "args": []},
    "workers2": {"batching": True, "args": ["--workers", "2"]},
    "workers2hash": {"batching": True, "args": ["--workers", "2", "--worker-balance", "hash"]},
    "tracing": {"batching": True, "args": ["--tracing-enabled", "true"]},
    "nolog": {"batching": True, "args": ["--access-log", "false"]},
    # every successful inference access-logged too (the default logs only failed ones)
    "logall": {"batching": True, "args": ["--access-log-inference", "true"]},
    # the calibration server: a bare grpc.aio KServe-v2 servicer (numpy matmul, nothing else)
    "lean": {"batching": False, "args": [], "cmd": "lean_server.py"},
}
PEER_BENCH = Path(os.environ.get("PEER_BENCH", ROOT.parent / "shared" / "peer-bench"))


def wait_live(target: str, timeout: float) -> None:
    """For the calibration server, which has no gRPC health service: until ServerLive answers."""
    from modelserve.inference.v2 import grpc_service_pb2 as pb

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        while True:
            try:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=1)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def wait_all_ready(target: str, timeout: float) -> None:
    """For a server with workers: until ServerReady, which is true only when every worker is."""
    from modelserve.inference.v2 import grpc_service_pb2 as pb

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        while True:
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{target}: the workers did not all become ready")
            time.sleep(0.2)


def make_repo(dst: Path, batching: bool) -> Path:
    repo = dst / "repo"
    shutil.copytree(ROOT / "models" / "linear", repo / "linear", ignore=shutil.ignore_patterns("__pycache__"))
    if not batching:
        cfg = repo / "linear" / "config.pbtxt"
        cfg.write_text(
            "\n".join(line for line in cfg.read_text().splitlines() if "dynamic_batching" not in line)
        )
    return repo


async def verify(target: str) -> int:
    """Concurrent calls of 1..64 rows, every answer checked against numpy."""
    async with grpc.aio.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)

        async def one(i: int) -> None:
            req, x = request(1 + i % 64, seed=i)
            resp = await stub.ModelInfer(req, timeout=10)
            y = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(x.shape[0], 4)
            if not np.allclose(y, x @ W, rtol=1e-5, atol=1e-5):
                raise SystemExit(f"verification failed for request {i}")

        await asyncio.gather(*(one(i) for i in range(256)))
    return 256


def worker_counts(worker_dir: Path | None, workers: int) -> list[int]:
    """Successful requests of model linear per worker, each worker asked alone (its unix socket,
    with the header the workers use between themselves: no summing)."""
    if worker_dir is None:
        return []
    from modelserve.inference.v2 import grpc_service_pb2 as pb

    counts = []
    for i in range(workers):
        with grpc.insecure_channel(f"unix:{worker_dir / f'worker-{i}.sock'}") as ch:
            stats = svc_grpc.GRPCInferenceServiceStub(ch).ModelStatistics(
                pb.ModelStatisticsRequest(name="linear"),
                metadata=[("x-modelserve-worker-hop", "bench")],
                timeout=10,
            )
            counts.append(sum(s.inference_stats.success.count for s in stats.model_stats))
    return counts


def h2load(
    port: int,
    frame: str,
    conc: int,
    duration: int,
    warmup: int,
    resp_bytes: int,
    log: Path,
    max_conns: int = 2,
    client_cpus: str = "",
    after_warmup: Callable[[], None] | None = None,
) -> dict:
    conns = max(1, min(conc, max_conns))
    streams = -(-conc // conns)
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    base = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-d", frame]
    if client_cpus:
        base = ["taskset", "-c", client_cpus, *base]
    base += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    subprocess.run([*base, "-D", f"{warmup}s", url], capture_output=True, timeout=warmup + 30)
    if after_warmup is not None:
        after_warmup()
    log.unlink(missing_ok=True)
    out = subprocess.run(
        [*base, "-D", f"{duration}s", "--log-file", str(log), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    succ = int(m.group(1)) if (m := re.search(r"(\d+) succeeded", out)) else 0
    bad = sum(
        int(m.group(1)) if (m := re.search(rf"(\d+) {k}", out)) else 0
        for k in ("failed", "errored", "timeout")
    )
    data = int(m.group(1)) if (m := re.search(r"\((\d+)\) data", out)) else 0
    lat = sorted(int(p[2]) for p in (line.split() for line in log.read_text().splitlines()) if len(p) >= 3)
    log.unlink(missing_ok=True)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] / 1000 if lat else None

    without_body = max(0, round(succ - data / (resp_bytes + 5))) if succ else 0
    return {
        "concurrency": conc,
        "connections": conns,
        "rps": round(succ / duration, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": bad + without_body,
    }


def run_variant(name: str, a: argparse.Namespace, work: Path) -> list[dict]:
    spec = VARIANTS[name]
    repo = make_repo(work / name, spec["batching"])
    port = free_port()
    if "cmd" in spec:
        cmd = [sys.executable, str(PEER_BENCH / "servers" / str(spec["cmd"])), "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "modelserve_model_server", "--grpc-port", str(port)]
        cmd += ["--grpc-host", "127.0.0.1", "--metrics-port", "0", "--model-repository", str(repo)]
        cmd += ["--load-models", "linear", *spec["args"]]
    workers = int(spec["args"][spec["args"].index("--workers") + 1]) if "--workers" in spec["args"] else 1
    worker_dir = work / f"{name}-workers" if workers > 1 else None
    if worker_dir is not None:
        worker_dir.mkdir()
        cmd += ["--worker-dir", str(worker_dir)]
    if a.taskset:
        cmd = ["taskset", "-c", a.taskset, *cmd]
    logf = open(work / f"server-{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if "cmd" in spec:
            wait_live(f"127.0.0.1:{port}", timeout=60)
        else:
            wait_for_health(f"127.0.0.1:{port}", timeout=60)
        if worker_dir is not None:  # every worker up (ServerReady answers for all of them)
            wait_all_ready(f"127.0.0.1:{port}", timeout=120)
        time.sleep(1.0)
        pids = tree_pids(proc.pid)
        idle = rss_mib(pids)
        checked = asyncio.run(verify(f"127.0.0.1:{port}"))
        frame = work / "frame.bin"
        info = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "frame.py"),
                    "--out",
                    str(frame),
                    "--target",
                    f"127.0.0.1:{port}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        runs = []
        for max_conns in a.conns:
            cells = []
            for c in a.concurrency:
                before: list[int] = []
                c0 = cpu_s(pids)
                t0 = time.monotonic()
                cell = h2load(
                    port,
                    str(frame),
                    c,
                    a.duration,
                    a.warmup,
                    info["response_bytes"],
                    work / "h2.tsv",
                    max_conns,
                    a.client_taskset,
                    lambda before=before: before.extend(worker_counts(worker_dir, workers)),
                )
                cores = (cpu_s(pids) - c0) / (time.monotonic() - t0)
                if worker_dir is not None:  # the measured run's requests (its own connections)
                    done = [b - a_ for a_, b in zip(before, worker_counts(worker_dir, workers), strict=True)]
                    cell["per_worker"] = done
                    cell["busiest_share"] = round(max(done) / max(1, sum(done)), 2)
                cell["server_cpu_cores"] = round(cores, 2)
                cell["cpu_us_per_req"] = round(1e6 * cores / cell["rps"], 1) if cell.get("rps") else None
                cells.append(cell)
                print(f"  {name} conns<={max_conns} c={c}: {cell}", file=sys.stderr, flush=True)
            label = name if len(a.conns) == 1 else f"{name}, <={max_conns} conns"
            runs.append(
                {
                    "variant": label,
                    "name": name,
                    "max_conns": max_conns,
                    "idle_rss_mib": round(idle, 1),
                    "verified": checked,
                    "cells": cells,
                }
            )
        return runs
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        logf.close()


def table(results: list[dict], concurrency: list[int]) -> str:
    """One row per variant; "x lean" is the variant's req/s over the calibration server's (the
    `lean` variant, same connection count) in the same run, "µs/req" the server's CPU time per
    request, "share" the busiest worker's share of the requests (worker variants)."""
    lean = {
        (r["max_conns"], c["concurrency"]): c["rps"]
        for r in results
        if r["name"] == "lean"
        for c in r["cells"]
    }
    head = (
        "| variant | idle RSS MiB | "
        + " | ".join(
            f"c={c} rps (x lean) | c={c} p50/p99 ms | c={c} µs/req | c={c} share" for c in concurrency
        )
        + " | errors |"
    )
    lines = [head, "|" + "---|" * (3 + 4 * len(concurrency))]
    for r in results:
        cells = {c["concurrency"]: c for c in r["cells"]}
        row = [r["variant"], str(r["idle_rss_mib"])]
        for c in concurrency:
            cell = cells[c]
            ref = lean.get((r["max_conns"], c))
            ratio = f" ({cell['rps'] / ref:.2f}x)" if ref else ""
            row += [
                f"{cell['rps']:.0f}{ratio}",
                f"{cell['p50_ms']:.2f} / {cell['p99_ms']:.2f}",
                str(cell.get("cpu_us_per_req")),
                str(cell.get("busiest_share", "")),
            ]
        row.append(str(sum(c["errors"] for c in r["cells"])))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="1,8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--conns",
        default="2",
        type=lambda s: [int(x) for x in s.split(",")],
        help="most h2load connections (c spread over min(c, N)); a list runs each, e.g. 2,8",
    )
    p.add_argument("--variants", default="batching,nobatching,workers2", type=lambda s: s.split(","))
    p.add_argument("--taskset", default="", help="CPUs the server runs on (taskset -c), e.g. 0,1")
    p.add_argument("--client-taskset", default="", help="CPUs h2load runs on (taskset -c)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "model_server.json"))
    a = p.parse_args()
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ms-bench-") as tmp:
        results = [r for v in a.variants for r in run_variant(v, a, Path(tmp))]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "taskset": a.taskset,
        "client_taskset": a.client_taskset,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(table(results, a.concurrency))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
