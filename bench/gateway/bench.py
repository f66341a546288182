"""Gateway benchmark: REST infer (JSON, binary) through the gateway vs gRPC straight to the model
server, and the gRPC front door vs straight, same model (`linear`), one run, h2load as the client.
With --guard: the cost of authentication + rate limiting (API key verified through the real
registry, cached; GCRA in Redis when MODELSERVE_REDIS_URL/--redis-url is set) vs auth off.

Prints a table and writes JSON (requests/s, p50, p99 in ms, CPU seconds per 1,000 requests of
the gateway and of the model server).

    .venv/bin/python bench/gateway/bench.py --duration 3 --concurrency 1,8,32,64 --guard
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
ADMIN = "bench-admin-secret"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def grpc_frame(msg: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def h2load(url: str, body: Path, headers: list[str], conc: int, duration: float, h1: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as f:
        log = f.name
    cmd = [
        "h2load",
        "-D",
        f"{int(duration * 1000)}ms",
        "--warm-up-time",
        "300ms",
        "-c",
        str(conc),
        "-m",
        "1",
        "-d",
        str(body),
        "--log-file",
        log,
    ]
    if h1:
        cmd.append("--h1")
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"status codes: (\d+) 2xx", out).group(1))
    times = []
    for line in Path(log).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "200":
            times.append(int(parts[2]) / 1000.0)
    os.unlink(log)
    arr = np.array(times) if times else np.array([np.nan])
    return {
        "rps": rps,
        "ok": ok,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
    }


def measure(pids: dict[str, int], *h2load_args) -> dict:
    before = {k: cpu_s(p) for k, p in pids.items()}
    result = h2load(*h2load_args)
    n = max(result["ok"], 1)
    for k, p in pids.items():
        result[f"cpu_per_1k_{k}_s"] = (cpu_s(p) - before[k]) / n * 1000
    return result


def start_gateway(
    ms_target: str, reg_target: str, tmp: Path, extra: dict[str, str]
) -> tuple[ServiceProcess, int]:
    port, http = free_port(), free_port()
    env = {
        "GATEWAY_GRPC_PORT": str(port),
        "GATEWAY_HTTP_PORT": str(http),
        "GATEWAY_METRICS_PORT": "-1",
        "GATEWAY_MODEL_SERVER_URL": ms_target,
        "GATEWAY_REGISTRY_URL": reg_target,
        "GATEWAY_ACCESS_LOG": "false",
        "GATEWAY_LOG_LEVEL": "WARNING",
        **extra,
    }
    return ServiceProcess("modelserve_gateway", env, port, cwd=tmp).start(timeout=60), http


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--guard", action="store_true", help="also measure auth + rate limit cost")
    ap.add_argument("--guard-concurrency", default="1,32")
    ap.add_argument("--redis-url", default=os.environ.get("MODELSERVE_REDIS_URL"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "gateway" / "results.json"))
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-"))

    x = np.random.RandomState(0).randn(1, 16).astype(np.float32)
    req = inf_pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 16])
    req.raw_input_contents.append(x.tobytes())
    (tmp / "grpc.bin").write_bytes(grpc_frame(req.SerializeToString()))
    (tmp / "rest.json").write_text(
        json.dumps(
            {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}
        )
    )
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    (tmp / "rest.bin").write_bytes(head + x.tobytes())
    grpc_h = ["content-type: application/grpc", "te: trailers"]
    json_h = ["content-type: application/json"]
    bin_h = ["content-type: application/octet-stream", f"inference-header-content-length: {len(head)}"]

    ms_port = free_port()
    ms = ServiceProcess(
        "modelserve_model_server",
        {
            "MODEL_SERVER_GRPC_PORT": str(ms_port),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_ACCESS_LOG": "false",
            "MODEL_SERVER_LOG_LEVEL": "WARNING",
        },
        ms_port,
        args=["--model-repository", str(ROOT / "models")],
        cwd=tmp,
    ).start(timeout=90)
    procs = [ms]
    results: dict = {
        "machine": "shared, loaded 2-core machine; figures are indicative only",
        "duration_s": args.duration,
        "cells": [],
    }
    try:
        gw, http = start_gateway(
            ms.target,
            f"127.0.0.1:{free_port()}",
            tmp,
            {"GATEWAY_AUTH_ENABLED": "false", "GATEWAY_WATCH_REGISTRY": "false"},
        )
        procs.append(gw)
        pids = {"gateway": gw.proc.pid, "model_server": ms.proc.pid}
        modes = [
            (
                "grpc_direct",
                f"http://{ms.target}/inference.GRPCInferenceService/ModelInfer",
                "grpc.bin",
                grpc_h,
                False,
            ),
            (
                "grpc_front_door",
                f"http://{gw.target}/inference.GRPCInferenceService/ModelInfer",
                "grpc.bin",
                grpc_h,
                False,
            ),
            ("rest_json", f"http://127.0.0.1:{http}/v2/models/linear/infer", "rest.json", json_h, True),
            ("rest_binary", f"http://127.0.0.1:{http}/v2/models/linear/infer", "rest.bin", bin_h, True),
        ]
        for c in concs:
            for name, url, body, headers, h1 in modes:
                cell = measure(pids, url, tmp / body, headers, c, args.duration, h1)
                cell.update(mode=name, concurrency=c)
                results["cells"].append(cell)
                print(json.dumps(cell), file=sys.stderr)
        if args.guard:
            results["guard"] = guard_bench(args, tmp, ms, gw, http, procs, grpc_h, json_h)
    finally:
        for p in reversed(procs):
            p.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    table(results)


def guard_bench(
    args, tmp: Path, ms: ServiceProcess, open_gw: ServiceProcess, open_http: int, procs: list, grpc_h, json_h
) -> list[dict]:
    """Same calls with auth off vs an API key (verified by the real registry, then cached) and a
    per-key rate limit high enough never to refuse."""
    reg_port = free_port()
    reg = ServiceProcess(
        "modelserve_registry",
        {
            "REGISTRY_GRPC_PORT": str(reg_port),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp),
            "REGISTRY_ACCESS_LOG": "false",
            "REGISTRY_LOG_LEVEL": "WARNING",
        },
        reg_port,
        cwd=tmp,
    ).start(timeout=60)
    procs.append(reg)
    extra = {"GATEWAY_ADMIN_API_KEY": ADMIN}
    if args.redis_url:
        extra["GATEWAY_REDIS_URL"] = args.redis_url
    gw, http = start_gateway(ms.target, reg.target, tmp, extra)
    procs.append(gw)
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10) as c:
        c.post("/v1/tenants", json={"name": "bench"}, headers=admin).raise_for_status()
        r = c.post(
            "/v1/tenants/bench/apiKeys",
            json={
                "displayName": "bench",
                "scopes": ["infer", "read", "write"],
                "rateLimit": {"requestsPerSecond": 1e6, "burst": 1000000},
            },
            headers=admin,
        )
        r.raise_for_status()
        secret = r.json()["secret"]
        c.post("/v1/models", json={"name": "linear"}, headers={"x-api-key": secret}).raise_for_status()
    key_h = [f"x-api-key: {secret}"]
    # Tenant keys reach only models their tenant owns: `linear` is registered for tenant bench.
    rows = []
    for conc in [int(c) for c in args.guard_concurrency.split(",")]:
        for name, url, body, headers, h1, gw_proc in (
            (
                "grpc_auth_off",
                f"http://{open_gw.target}/inference.GRPCInferenceService/ModelInfer",
                "grpc.bin",
                grpc_h,
                False,
                open_gw,
            ),
            (
                "grpc_auth_on",
                f"http://{gw.target}/inference.GRPCInferenceService/ModelInfer",
                "grpc.bin",
                grpc_h + key_h,
                False,
                gw,
            ),
            (
                "rest_auth_off",
                f"http://127.0.0.1:{open_http}/v2/models/linear/infer",
                "rest.json",
                json_h,
                True,
                open_gw,
            ),
            (
                "rest_auth_on",
                f"http://127.0.0.1:{http}/v2/models/linear/infer",
                "rest.json",
                json_h + key_h,
                True,
                gw,
            ),
        ):
            cell = measure(
                {"gateway": gw_proc.proc.pid},
                url,
                tmp / body,
                headers,
                conc,
                args.duration,
                h1,
            )
            cell.update(mode=name, concurrency=conc)
            rows.append(cell)
            print(json.dumps(cell), file=sys.stderr)
    return rows


def table(results: dict) -> None:
    print(f"{'mode':<18}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'gw cpu/1k':>11}{'ms cpu/1k':>11}")
    for cell in results["cells"] + results.get("guard", []):
        gw_cpu = cell.get("cpu_per_1k_gateway_s", float("nan"))
        ms_cpu = cell.get("cpu_per_1k_model_server_s", float("nan"))
        print(
            f"{cell['mode']:<18}{cell['concurrency']:>4}{cell['rps']:>10.0f}"
            f"{cell['p50_ms']:>9.2f}{cell['p99_ms']:>9.2f}{gw_cpu:>11.3f}{ms_cpu:>11.3f}"
        )
    print("figures taken on a shared, loaded machine (2 cores for everyone): indicative only")


if __name__ == "__main__":
    main()
