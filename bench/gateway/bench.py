"""Gateway benchmark, one run, h2load as the client, model `linear` (1 row per request):

- gRPC straight to the model server (``grpc_direct``);
- the calibration hop: ``../shared/peer-bench/servers/lean_proxy.py`` (a bare grpc.aio
  pass-through, bytes in and out, nothing else) in front of the same model server (``lean_proxy``);
- the gateway's gRPC front door, REST JSON and REST binary with auth off;
- with --guard: the same gRPC and REST JSON calls through a second gateway with auth on, with an API
  key that has no rate limit (``*_key``: the cost of authentication) and one with a rate limit high
  enough never to refuse (``*_key_rl``: authentication + the rate-limit check; GCRA in Redis when
  --redis-url / MODELSERVE_REDIS_URL is set, in process otherwise). Keys are verified by the real
  registry, then cached.

Per row: req/s, p50/p99 ms, CPU µs per request of the hop process (the lean proxy or the gateway)
and of the model server (from /proc/<pid>/stat, warm-up excluded), the ratios to the lean proxy at
the same concurrency (req/s and hop CPU) and the p50 added over grpc_direct. JSON + a Markdown table.

With --baseline-src DIR (a gateway source tree, e.g. ``git archive <commit> services/gateway/src``
unpacked), a second auth-off gateway runs that code and its rows (``…@base``) sit beside the
current ones: before/after in one run.

    .venv/bin/python bench/gateway/bench.py --duration 3 --concurrency 1,32 --guard \
        --redis-url redis://127.0.0.1:6379/0
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
import time
from pathlib import Path

import grpc
import httpx
import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PEER_BENCH = Path(os.environ.get("PEER_BENCH", ROOT.parent / "shared" / "peer-bench"))
TICK = os.sysconf("SC_CLK_TCK")
ADMIN = "bench-admin-secret"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def grpc_frame(msg: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def h2load(url: str, body: Path, headers: list[str], conc: int, duration: float, h1: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as f:
        log = f.name
    cmd = ["h2load", "-D", f"{int(duration * 1000)}ms", "-c", str(conc), "-m", "1"]
    cmd += ["-d", str(body), "--log-file", log]
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


def verify(url: str, body: Path, headers: list[str], h1: bool) -> None:
    """One call as h2load will make it must succeed (a gRPC error is an HTTP 200 to h2load)."""
    hdrs = dict(h.split(": ", 1) for h in headers)
    if h1:
        r = httpx.post(url, content=body.read_bytes(), headers=hdrs, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
        return
    target, method = url.removeprefix("http://").split("/", 1)
    md = [(k, v) for k, v in hdrs.items() if k not in ("content-type", "te")]
    with grpc.insecure_channel(target) as ch:
        ch.unary_unary("/" + method)(body.read_bytes()[5:], metadata=md, timeout=10)


def measure(hop: int | None, ms: int, url: str, body: Path, headers, conc: int, duration: float, h1: bool):
    """One cell: a short warm-up run, then the measured one; CPU µs per answered request of the
    hop process (None: no hop) and the model server over the measured run only."""
    h2load(url, body, headers, conc, min(0.5, duration), h1)
    pids = {"hop": hop, "model_server": ms}
    before = {k: cpu_s(p) for k, p in pids.items() if p is not None}
    result = h2load(url, body, headers, conc, duration, h1)
    n = max(result["ok"], 1)
    for k, t0 in before.items():
        result[f"{k}_cpu_us"] = (cpu_s(pids[k]) - t0) / n * 1e6  # type: ignore[arg-type]
    if hop is None:
        result["hop_cpu_us"] = 0.0
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


class LeanProxy:
    """The calibration hop, run with this interpreter (the venv has the KServe stubs it needs)."""

    def __init__(self, upstream: str, tmp: Path) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        script = PEER_BENCH / "servers" / "lean_proxy.py"
        self.log = open(tmp / "lean_proxy.log", "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--port", str(self.port), "--upstream", upstream],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(self.target) as ch:
            live = ch.unary_unary("/inference.GRPCInferenceService/ServerLive")
            while True:
                try:
                    live(inf_pb.ServerLiveRequest().SerializeToString(), timeout=1)
                    return
                except grpc.RpcError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"lean_proxy did not start (see {tmp / 'lean_proxy.log'})"
                        ) from None
                    time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--guard", action="store_true", help="also measure auth and rate limit cost")
    ap.add_argument("--guard-concurrency", default=None, help="default: --concurrency")
    ap.add_argument("--redis-url", default=os.environ.get("MODELSERVE_REDIS_URL"))
    ap.add_argument(
        "--repeat", type=int, default=1, help="rounds per row, rows alternating; the median is kept"
    )
    ap.add_argument("--only", default=None, help="comma-separated modes to run (default: all)")
    ap.add_argument(
        "--baseline-src",
        default=None,
        help="a gateway source tree (e.g. `git archive <commit> services/gateway/src`): its front door "
        "and REST JSON rows (mode@base) are measured beside the current ones, auth off",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "gateway" / "results.json"))
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    guard_concs = [int(c) for c in (args.guard_concurrency or args.concurrency).split(",")]
    only = set(args.only.split(",")) if args.only else None
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
            # tenant keys (the guard rows) see a local model only when it is shared
            "MODEL_SERVER_SHARED_MODELS": "linear",
        },
        ms_port,
        args=["--model-repository", str(ROOT / "models")],
        cwd=tmp,
    ).start(timeout=90)
    procs: list = [ms]
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    results: dict = {
        "machine": "shared, loaded 2-core machine; compare rows of one run only",
        "loadavg_at_start": load,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "redis": bool(args.redis_url),
        "cells": [],
    }
    try:
        lean = LeanProxy(ms.target, tmp)
        procs.append(lean)
        gw, http = start_gateway(
            ms.target,
            f"127.0.0.1:{free_port()}",
            tmp,
            {"GATEWAY_AUTH_ENABLED": "false", "GATEWAY_WATCH_REGISTRY": "false"},
        )
        procs.append(gw)
        ms_pid, gw_pid = ms.proc.pid, gw.proc.pid
        rest_url = f"http://127.0.0.1:{http}/v2/models/linear/infer"
        modes = [
            ("grpc_direct", None, f"http://{ms.target}{INFER}", "grpc.bin", grpc_h, False),
            ("lean_proxy", lean.proc.pid, f"http://{lean.target}{INFER}", "grpc.bin", grpc_h, False),
            ("grpc_front_door", gw_pid, f"http://{gw.target}{INFER}", "grpc.bin", grpc_h, False),
            ("rest_json", gw_pid, rest_url, "rest.json", json_h, True),
            ("rest_binary", gw_pid, rest_url, "rest.bin", bin_h, True),
        ]
        if args.baseline_src:
            src = str(Path(args.baseline_src).resolve())
            pypath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
            base, base_http = start_gateway(
                ms.target,
                f"127.0.0.1:{free_port()}",
                tmp,
                {"GATEWAY_AUTH_ENABLED": "false", "GATEWAY_WATCH_REGISTRY": "false", "PYTHONPATH": pypath},
            )
            procs.append(base)
            base_rest = f"http://127.0.0.1:{base_http}/v2/models/linear/infer"
            modes[3:3] = [
                (
                    "grpc_front_door@base",
                    base.proc.pid,
                    f"http://{base.target}{INFER}",
                    "grpc.bin",
                    grpc_h,
                    False,
                )
            ]
            modes.append(("rest_json@base", base.proc.pid, base_rest, "rest.json", json_h, True))
        guard_modes = guard_setup(args, tmp, ms, procs, grpc_h, json_h) if args.guard else []
        for c in sorted(set(concs) | set(guard_concs if args.guard else [])):
            todo = (modes if c in concs else [m for m in modes if m[0].startswith(("grpc", "lean"))]) + (
                guard_modes if c in guard_concs else []
            )
            todo = [m for m in todo if only is None or m[0] in only or m[0] in ("grpc_direct", "lean_proxy")]
            for _, _, url, body, headers, h1 in todo:
                verify(url, tmp / body, headers, h1)
            rounds: dict[str, list[dict]] = {m[0]: [] for m in todo}
            for _ in range(args.repeat):  # rows alternate, so a load change hits all of them
                for name, hop, url, body, headers, h1 in todo:
                    cell = measure(hop, ms_pid, url, tmp / body, headers, c, args.duration, h1)
                    cell.update(mode=name, concurrency=c)
                    rounds[name].append(cell)
                    print(json.dumps(cell), file=sys.stderr)
            results["cells"].extend(median_cell(cells) for cells in rounds.values())
    finally:
        for p in reversed(procs):
            p.stop()
    with open("/proc/loadavg") as f:
        results["loadavg_at_end"] = f.read().split()[:3]
    add_ratios(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    table(results)


def guard_setup(args, tmp: Path, ms: ServiceProcess, procs: list, grpc_h, json_h) -> list[tuple]:
    """A registry and a gateway with auth on; two API keys of tenant `bench` (which owns model
    `linear`): one without a rate limit, one with a limit high enough never to refuse."""
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
        secrets = []
        for limit in (None, {"requestsPerSecond": 1e6, "burst": 1000000}):
            body: dict = {"displayName": "bench", "scopes": ["infer", "read", "write"]}
            if limit:
                body["rateLimit"] = limit
            r = c.post("/v1/tenants/bench/apiKeys", json=body, headers=admin)
            r.raise_for_status()
            secrets.append(r.json()["secret"])
        c.post("/v1/models", json={"name": "linear"}, headers={"x-api-key": secrets[0]}).raise_for_status()
    pid = gw.proc.pid
    grpc_url = f"http://{gw.target}{INFER}"
    rest_url = f"http://127.0.0.1:{http}/v2/models/linear/infer"
    key, key_rl = [f"x-api-key: {secrets[0]}"], [f"x-api-key: {secrets[1]}"]
    return [
        ("grpc_key", pid, grpc_url, "grpc.bin", grpc_h + key, False),
        ("grpc_key_rl", pid, grpc_url, "grpc.bin", grpc_h + key_rl, False),
        ("rest_json_key", pid, rest_url, "rest.json", json_h + key, True),
        ("rest_json_key_rl", pid, rest_url, "rest.json", json_h + key_rl, True),
    ]


def median_cell(cells: list[dict]) -> dict:
    """One row of several rounds: the median of each figure (and the rounds' req/s)."""
    out = dict(cells[0])
    for k, v in cells[0].items():
        if isinstance(v, float) and k != "concurrency":
            out[k] = float(np.median([c[k] for c in cells]))
    out["rounds"] = len(cells)
    out["rps_rounds"] = [c["rps"] for c in cells]
    return out


def add_ratios(results: dict) -> None:
    """x lean: req/s and hop CPU over the lean proxy's at the same concurrency; added p50 over
    grpc_direct's."""
    by = {(c["mode"], c["concurrency"]): c for c in results["cells"]}
    for cell in results["cells"]:
        c = cell["concurrency"]
        lean, direct = by.get(("lean_proxy", c)), by.get(("grpc_direct", c))
        if lean:
            cell["rps_x_lean"] = cell["rps"] / lean["rps"]
            cell["hop_cpu_x_lean"] = cell["hop_cpu_us"] / lean["hop_cpu_us"] if cell["hop_cpu_us"] else None
        if direct:
            cell["added_p50_ms"] = cell["p50_ms"] - direct["p50_ms"]
    for c in sorted({c["concurrency"] for c in results["cells"]}):
        off = by.get(("grpc_front_door", c))
        for mode in ("grpc_key", "grpc_key_rl"):
            on = by.get((mode, c))
            if off and on:
                on["guard_cpu_us"] = on["hop_cpu_us"] - off["hop_cpu_us"]
        off = by.get(("rest_json", c))
        for mode in ("rest_json_key", "rest_json_key_rl"):
            on = by.get((mode, c))
            if off and on:
                on["guard_cpu_us"] = on["hop_cpu_us"] - off["hop_cpu_us"]


def table(results: dict) -> None:
    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    print(
        f"load average: start {' '.join(results['loadavg_at_start'])}, "
        f"end {' '.join(results['loadavg_at_end'])}"
    )
    print()
    print(
        "| mode | c | req/s | x lean | p50 ms | p99 ms | added p50 ms | hop CPU µs/req | x lean "
        "| auth/limit µs/req | model server CPU µs/req |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in sorted(results["cells"], key=lambda c: c["concurrency"]):
        print(
            f"| {cell['mode']} | {cell['concurrency']} | {cell['rps']:.0f} "
            f"| {f(cell.get('rps_x_lean'), '.2f')} "
            f"| {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {f(cell.get('added_p50_ms'), '+.2f')} "
            f"| {f(cell['hop_cpu_us'] or None, '.0f')} | {f(cell.get('hop_cpu_x_lean'), '.2f')} "
            f"| {f(cell.get('guard_cpu_us'), '+.0f')} | {cell['model_server_cpu_us']:.0f} |"
        )
    print()
    print("shared, loaded 2-core machine: compare rows of one run only")


if __name__ == "__main__":
    main()
