#!/usr/bin/env python3
"""Triton direct vs through the model server, in one run.

Model ``linear`` (y = x @ W, python backend, dynamic batching, max batch 64) on a real tritonserver
(nvidia-pytriton's binary, CPU), and the model server (``python -m modelserve_model_server`` with
MODEL_SERVER_TRITON_URL) in front of it. h2load replays one verified gRPC frame at each concurrency;
errors under load are caught by byte accounting (a gRPC error is a trailers-only response without
DATA, so data bytes must equal successes x the verified response size). Prints JSON and a table:
req/s, p50, p99, the model server's CPU per 1,000 requests, and the ratio lines. Then the
large-tensor case (4 MiB and 32 MiB FP32 inputs to ``identity_fp``) with the model server's RSS.

    .venv/bin/python bench/triton/run.py [--duration 3] [--concurrency 1,8,32,64] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "services/model_server/tests/integration/triton_repo"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
W = np.random.RandomState(0).randn(16, 4).astype(np.float32)
CLK = os.sysconf("SC_CLK_TCK")

from modelserve.inference.v2 import grpc_service_pb2 as pb  # noqa: E402
from modelserve_common.testing import free_port, wait_for_health  # noqa: E402
from modelserve_common.testing.triton import TritonProcess  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def linear_frame(target: str) -> tuple[Path, int]:
    x = np.random.RandomState(1).randn(1, 16).astype(np.float32)
    req = pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 16])
    req.raw_input_contents.append(x.tobytes())
    msg = req.SerializeToString()
    frame = b"\x00" + struct.pack(">I", len(msg)) + msg
    path = Path(tempfile.mkdtemp(prefix="bench-triton-")) / "frame.bin"
    path.write_bytes(frame)
    with grpc.insecure_channel(target) as ch:  # verify exactly the bytes h2load will send
        raw = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)(
            frame[5:], timeout=10
        )
    resp = pb.ModelInferResponse.FromString(raw)
    y = np.frombuffer(resp.raw_output_contents[0], np.float32)
    assert np.allclose(y, (x @ W).ravel(), rtol=1e-5), "frame verification failed"
    return path, len(raw) + 5


def h2load(
    port: int, frame: Path, conc: int, duration: float, expected: int, pid: int | None = None
) -> dict[str, float | int | None]:
    procs = max(1, min(conc, 2))
    streams = -(-conc // procs)
    url = f"http://127.0.0.1:{port}{METHOD}"
    base = ["h2load", "-c", str(procs), "-m", str(streams), "-t", "1", "-d", str(frame)]
    base += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    subprocess.run([*base, "-D", "1000ms", url], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    log = frame.parent / f"h2load-{port}-{conc}.tsv"
    log.unlink(missing_ok=True)
    cpu0 = cpu_seconds(pid) if pid else 0.0  # after the warm-up: the measured window only
    out = subprocess.run(
        [*base, "-D", f"{int(duration * 1000)}ms", "--log-file", str(log), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        stdin=subprocess.DEVNULL,
    ).stdout
    cpu = cpu_seconds(pid) - cpu0 if pid else None
    succ = int(m.group(1)) if (m := re.search(r"(\d+) succeeded", out)) else 0
    data = int(m.group(1)) if (m := re.search(r"\((\d+)\) data", out)) else 0
    lat = sorted(
        int(p[2]) for line in log.read_text().splitlines() if len(p := line.split()) >= 3 and p[1] == "200"
    )
    log.unlink(missing_ok=True)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] / 1000 if lat else None

    missing = max(0, round(succ - data / expected)) if succ else None
    return {
        "requests": succ,
        "rps": succ / duration,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": missing,
        "ms_cpu_s_per_1000": cpu / max(1, succ) * 1000 if cpu is not None else None,
    }


def large_case(target: str, pid: int | None, mib: int, seconds: float, conc: int = 2) -> dict[str, float]:
    n = mib * (1 << 20) // 4
    x = np.random.RandomState(2).rand(n).astype(np.float32)
    req = pb.ModelInferRequest(model_name="identity_fp")
    req.inputs.add(name="IN_FP32", datatype="FP32", shape=[n])
    req.raw_input_contents.append(x.tobytes())
    payload = req.SerializeToString()
    opts = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    lats: list[float] = []
    peak = [rss_mib(pid) if pid else 0.0]
    stop = threading.Event()

    def sample() -> None:
        while pid and not stop.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.02)

    def worker() -> None:
        with grpc.insecure_channel(target, options=opts) as ch:
            call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
            end = time.monotonic() + seconds
            first = True
            while time.monotonic() < end:
                t = time.perf_counter()
                raw = call(payload, timeout=60)
                lats.append(time.perf_counter() - t)
                if first:  # correctness once per worker (decoding costs time we do not measure)
                    out = pb.ModelInferResponse.FromString(raw)
                    assert out.raw_output_contents[0] == payload[-len(out.raw_output_contents[0]) :]
                    first = False

    before = rss_mib(pid) if pid else 0.0
    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    after = rss_mib(pid) if pid else 0.0
    return {
        "mib": mib,
        "requests": len(lats),
        "p50_ms": statistics.median(lats) * 1000,
        "rss_before_mib": before,
        "rss_peak_mib": peak[0],
        "rss_after_mib": after,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measured cell")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--large", default="4,32", help="MiB sizes of the large-tensor case ('' skips it)")
    ap.add_argument("--large-seconds", type=float, default=3.0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if shutil.which("h2load") is None:
        print("h2load not found (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    concs = [int(c) for c in a.concurrency.split(",")]
    triton = TritonProcess(REPO, models=("linear", "identity_fp")).start()
    ms_port = free_port()
    env = {
        **os.environ,
        "MODEL_SERVER_GRPC_PORT": str(ms_port),
        "MODEL_SERVER_GRPC_HOST": "127.0.0.1",
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_ACCESS_LOG": "false",
        "MODEL_SERVER_LOAD_MODELS": "",
        "MODEL_SERVER_MODEL_REPOSITORY": tempfile.mkdtemp(prefix="bench-empty-repo-"),
        "MODEL_SERVER_TRITON_URL": triton.target,
        "MODEL_SERVER_LOG_LEVEL": "WARNING",
    }
    log = open(triton.workdir / "model_server.log", "wb")  # noqa: SIM115
    ms = subprocess.Popen(
        [sys.executable, "-m", "modelserve_model_server"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    result: dict[str, object] = {"machine": f"{os.cpu_count()} cores, shared", "cells": [], "large": []}
    try:
        wait_for_health(f"127.0.0.1:{ms_port}", timeout=60)
        frame_d, exp_d = linear_frame(triton.target)
        frame_v, exp_v = linear_frame(f"127.0.0.1:{ms_port}")
        assert exp_d == exp_v
        rows = []
        for c in concs:
            direct = h2load(triton.grpc_port, frame_d, c, a.duration, exp_d)
            via = h2load(ms_port, frame_v, c, a.duration, exp_v, pid=ms.pid)
            rows.append((c, direct, via))
            result["cells"].append({"concurrency": c, "direct": direct, "via_model_server": via})  # type: ignore[attr-defined]
        for mib in [int(s) for s in a.large.split(",") if s]:
            d = large_case(triton.target, None, mib, a.large_seconds)
            v = large_case(f"127.0.0.1:{ms_port}", ms.pid, mib, a.large_seconds)
            result["large"].append({"direct": d, "via_model_server": v})  # type: ignore[attr-defined]
    finally:
        ms.terminate()
        try:
            ms.wait(15)
        except subprocess.TimeoutExpired:
            ms.kill()
        log.close()
        triton.stop()
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    print(
        "\nlinear, 1 row/request, h2load; model server -> Triton on the same 2-core machine (shared, loaded)"
    )
    print(
        f"{'c':>3} | {'direct rps':>10} {'p50':>7} {'p99':>7} | {'via rps':>8} {'p50':>7} {'p99':>7} "
        f"{'err':>4} {'MS cpu s/1k':>11}"
    )
    for c, d, v in rows:
        print(
            f"{c:>3} | {d['rps']:>10.0f} {d['p50_ms']:>7.3f} {d['p99_ms']:>7.3f} | {v['rps']:>8.0f} "
            f"{v['p50_ms']:>7.3f} {v['p99_ms']:>7.3f} {(d['errors'] or 0) + (v['errors'] or 0):>4} "
            f"{v['ms_cpu_s_per_1000']:>11.3f}"
        )
    for c, d, v in rows:
        added = (v["p50_ms"] or 0) - (d["p50_ms"] or 0)
        print(f"ratio c={c}: throughput via/direct = {v['rps'] / d['rps']:.2f}; added p50 = {added:+.3f} ms")
    for item in result["large"]:  # type: ignore[attr-defined]
        d, v = item["direct"], item["via_model_server"]
        print(
            f"large {v['mib']} MiB: p50 direct {d['p50_ms']:.1f} ms, via {v['p50_ms']:.1f} ms "
            f"({v['requests']} req); model-server RSS before {v['rss_before_mib']:.0f} MiB, "
            f"peak {v['rss_peak_mib']:.0f}, after {v['rss_after_mib']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
