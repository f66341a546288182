#!/usr/bin/env python3
"""Triton direct, through the bare proxy (calibration) and through the model server, in one run.

Model ``linear`` (y = x @ W, python backend, dynamic batching, max batch 64) on a real tritonserver
(nvidia-pytriton's binary, CPU). In front of the same Triton: the calibration hop
``../shared/peer-bench/servers/lean_proxy.py`` (a bare grpc.aio pass-through, bytes in/bytes out,
nothing else: the floor of a Python hop) and the model server (``python -m modelserve_model_server``
with MODEL_SERVER_TRITON_URL, default settings but the access log off and no metrics port). h2load
replays one verified gRPC frame at each concurrency; errors under load are caught by byte accounting
(a gRPC error is a trailers-only response without DATA, so data bytes must equal successes x the
verified response size). Prints JSON and a Markdown table: req/s, p50, p99 and the hop process's CPU
µs per request for each path, the model server's ratios to the proxy (throughput, CPU per request)
and the added p50 over direct. Then the large-tensor case (4 MiB and 32 MiB FP32 inputs to
``identity_fp``, one call at a time): p50 direct / via proxy / via model server, the added p50, and
each hop's RSS idle, peak during the calls and after.

    .venv/bin/python bench/triton/run.py [--duration 3] [--concurrency 1,32] [--rounds 1] [--out results.json]
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
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
LEAN_PROXY = ROOT.parent / "shared/peer-bench/servers/lean_proxy.py"
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
    if cpu is not None and cpu < 0.05 * duration:  # /proc ticks are 10 ms: too few to mean anything
        cpu = None
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
        "cpu_us_per_req": cpu / max(1, succ) * 1e6 if cpu is not None else None,
    }


def large_case(
    targets: dict[str, str], pids: dict[str, int | None], mib: int, seconds: float
) -> dict[str, dict[str, float]]:
    """One call at a time, the paths taken in turn (rotating), so the machine's load falls on all
    alike; every hop's RSS sampled every 10 ms throughout."""
    n = mib * (1 << 20) // 4
    x = np.random.RandomState(2).rand(n).astype(np.float32)
    req = pb.ModelInferRequest(model_name="identity_fp")
    req.inputs.add(name="IN_FP32", datatype="FP32", shape=[n])
    req.raw_input_contents.append(x.tobytes())
    payload = req.SerializeToString()
    opts = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    watched = {p: pid for p, pid in pids.items() if pid}
    before = {p: rss_mib(pid) for p, pid in watched.items()}
    peak = dict(before)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for p, pid in watched.items():
                peak[p] = max(peak[p], rss_mib(pid))
            time.sleep(0.01)

    channels = {p: grpc.insecure_channel(t, options=opts) for p, t in targets.items()}
    calls = {
        p: ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for p, ch in channels.items()
    }
    for p, call in calls.items():  # connect, and check the answer once per path (not timed)
        out = pb.ModelInferResponse.FromString(call(payload, timeout=120))
        assert out.raw_output_contents[0] == payload[-len(out.raw_output_contents[0]) :], p
    time.sleep(0.5)
    before = {p: rss_mib(pid) for p, pid in watched.items()}  # idle, connected, after one call
    peak = dict(before)
    sampler = threading.Thread(target=sample)
    sampler.start()
    lats: dict[str, list[float]] = {p: [] for p in targets}
    order = list(targets)
    end = time.monotonic() + seconds * len(order)
    i = 0
    while time.monotonic() < end or min(len(v) for v in lats.values()) < 3:
        for p in order[i % len(order) :] + order[: i % len(order)]:
            t = time.perf_counter()
            calls[p](payload, timeout=120)
            lats[p].append(time.perf_counter() - t)
        i += 1
    time.sleep(0.5)
    stop.set()
    sampler.join()
    for ch in channels.values():
        ch.close()
    return {
        p: {
            "mib": mib,
            "requests": len(lats[p]),
            "p50_ms": statistics.median(lats[p]) * 1000,
            "rss_before_mib": before.get(p, 0.0),
            "rss_peak_mib": peak.get(p, 0.0),
            "rss_after_mib": rss_mib(watched[p]) if p in watched else 0.0,
        }
        for p in targets
    }


def start_hop(name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _median(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell whose req/s is the median of the rounds (its own p50/p99/CPU, not mixed)."""
    return sorted(cells, key=lambda c: c["rps"])[len(cells) // 2]


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def verified_frames(targets: dict[str, str]) -> dict[str, tuple[Path, int]]:
    frames = {}
    for path, target in targets.items():
        for attempt in range(50):  # the proxy has no health service: its first call says it is up
            try:
                frames[path] = linear_frame(target)
                break
            except grpc.RpcError:
                if attempt == 49:
                    raise
                time.sleep(0.2)
    assert len({exp for _, exp in frames.values()}) == 1
    return frames


def measure(
    result: dict[str, Any],
    targets: dict[str, str],
    pids: dict[str, int | None],
    paths: list[str],
    concs: list[int],
    a: argparse.Namespace,
) -> None:
    frames = verified_frames(targets)
    for c in concs:
        rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
        for r in range(a.rounds):
            for path in paths if r % 2 == 0 else paths[::-1]:
                frame, exp = frames[path]
                port = int(targets[path].rsplit(":", 1)[1])
                rounds[path].append(h2load(port, frame, c, a.duration, exp, pid=pids[path]))
        cell: dict[str, Any] = {"concurrency": c, **{p: _median(rounds[p]) for p in paths}}
        if a.rounds > 1:
            cell["rounds"] = rounds
        result["cells"].append(cell)
    for mib in [int(s) for s in a.large.split(",") if s]:
        result["large"].append(large_case(targets, pids, mib, a.large_seconds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measured cell")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--rounds", type=int, default=1, help="cells repeated (interleaved); the median is kept")
    ap.add_argument("--large", default="4,32", help="MiB sizes of the large-tensor case ('' skips it)")
    ap.add_argument("--large-seconds", type=float, default=3.0, help="per path (calls interleaved)")
    ap.add_argument(
        "--before",
        default="",
        help="a source tree (e.g. `git archive <commit>` unpacked) whose model server runs as a "
        "fourth row, 'before', in the same run",
    )
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME:DIR",
        help="like --before, under another name; repeatable",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VAL[,KEY=VAL]",
        help="another model server row (this tree) with these environment overrides, e.g. "
        "'ch1:MODEL_SERVER_TRITON_CHANNELS_PER_ENDPOINT=1'; repeatable",
    )
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if shutil.which("h2load") is None:
        print("h2load not found (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    if not LEAN_PROXY.exists():
        print(f"calibration proxy not found: {LEAN_PROXY}", file=sys.stderr)
        return 2
    concs = [int(c) for c in a.concurrency.split(",")]
    triton = TritonProcess(REPO, models=("linear", "identity_fp")).start()
    ports = {"proxy": free_port(), "ms": free_port()}
    trees = dict(t.split(":", 1) for t in a.tree)
    if a.before:
        trees = {"before": a.before, **trees}
    for name in trees:
        ports[name] = free_port()
    variants = {}
    for spec in a.variant:
        name, _, pairs = spec.partition(":")
        variants[name] = dict(kv.split("=", 1) for kv in pairs.split(",") if kv)
        ports[name] = free_port()

    def ms_env(port: int) -> dict[str, str]:
        return {
            **os.environ,
            "MODEL_SERVER_GRPC_PORT": str(port),
            "MODEL_SERVER_GRPC_HOST": "127.0.0.1",
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_ACCESS_LOG": "false",
            "MODEL_SERVER_LOAD_MODELS": "",
            "MODEL_SERVER_MODEL_REPOSITORY": tempfile.mkdtemp(prefix="bench-empty-repo-"),
            "MODEL_SERVER_TRITON_URL": triton.target,
            "MODEL_SERVER_LOG_LEVEL": "WARNING",
        }

    procs: dict[str, subprocess.Popen[bytes]] = {}
    procs["proxy"] = start_hop(
        "proxy",
        [sys.executable, str(LEAN_PROXY), "--port", str(ports["proxy"]), "--upstream", triton.target],
        dict(os.environ),
        triton.workdir,
    )
    procs["ms"] = start_hop(
        "ms", [sys.executable, "-m", "modelserve_model_server"], ms_env(ports["ms"]), triton.workdir
    )
    for name, tree_dir in trees.items():
        tree = Path(tree_dir).resolve()
        env = ms_env(ports[name])
        env["PYTHONPATH"] = f"{tree}/libs/common/src:{tree}/services/model_server/src"
        procs[name] = start_hop(name, [sys.executable, "-m", "modelserve_model_server"], env, triton.workdir)
    for name, overrides in variants.items():
        procs[name] = start_hop(
            name,
            [sys.executable, "-m", "modelserve_model_server"],
            {**ms_env(ports[name]), **overrides},
            triton.workdir,
        )
    hops = list(procs)  # proxy, ms[, before][, variants]
    paths = ["direct", *hops]
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, shared",
        "load_average": os.getloadavg(),
        "cells": [],
        "large": [],
    }
    try:
        for name in hops[1:]:
            wait_for_health(f"127.0.0.1:{ports[name]}", timeout=180)
        targets = {"direct": triton.target, **{h: f"127.0.0.1:{ports[h]}" for h in hops}}
        pids: dict[str, int | None] = {"direct": None, **{h: procs[h].pid for h in hops}}
        try:
            measure(result, targets, pids, paths, concs, a)
        except BaseException:
            if a.out:  # what was measured before the failure (hop logs: in Triton's workdir)
                Path(a.out).write_text(json.dumps({**result, "failed_in": str(triton.workdir)}, indent=1))
            raise
    finally:
        for proc in procs.values():
            stop(proc)
        triton.stop()
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    print_tables(result, paths, a.duration, a.rounds)
    return 0


def print_tables(result: dict[str, Any], paths: list[str], duration: float, rounds: int) -> None:
    load = ", ".join(f"{x:.2f}" for x in result["load_average"])
    print(
        f"\nlinear, 1 row/request, h2load, {duration:g} s/cell, median of {rounds} round(s); "
        f"direct = Triton, proxy = lean_proxy.py (bare grpc.aio pass-through), ms = model server; "
        f"load average at start {load}\n"
    )
    print(
        "| c | path | req/s | p50 ms | p99 ms | errors | hop CPU µs/req | req/s ÷ proxy | CPU ÷ proxy "
        "| added p50 ms |"
    )
    print("|---" * 10 + "|")
    for cell in result["cells"]:
        proxy = cell["proxy"]
        for path in paths:
            v = cell[path]
            rel_rps = v["rps"] / proxy["rps"] if path != "direct" and proxy["rps"] else None
            rel_cpu = (
                v["cpu_us_per_req"] / proxy["cpu_us_per_req"]
                if path not in ("direct", "proxy") and v["cpu_us_per_req"] and proxy["cpu_us_per_req"]
                else None
            )
            added = (v["p50_ms"] or 0) - (cell["direct"]["p50_ms"] or 0) if path != "direct" else None
            print(
                f"| {cell['concurrency']} | {path} | {v['rps']:.0f} | {_f(v['p50_ms'], '.3f')} | "
                f"{_f(v['p99_ms'], '.3f')} | {v['errors']} | {_f(v['cpu_us_per_req'], '.0f')} | "
                f"{_f(rel_rps, '.2f')} | {_f(rel_cpu, '.2f')} | {_f(added, '+.3f')} |"
            )
    if result["large"]:
        print(
            "\nidentity_fp, FP32 input, one call at a time, paths in turn; RSS of the hop process (MiB): "
            "idle = connected after one call, peak = during the calls, after = 0.5 s after the last\n"
        )
        print("| MiB | path | calls | p50 ms | added p50 ms | RSS idle | RSS peak | peak − idle | after |")
        print("|---|---|---|---|---|---|---|---|---|")
        for item in result["large"]:
            d = item["direct"]
            for path in paths:
                v = item[path]
                hop = path != "direct"
                print(
                    f"| {v['mib']} | {path} | {v['requests']} | {v['p50_ms']:.1f} | "
                    f"{_f(v['p50_ms'] - d['p50_ms'] if hop else None, '+.1f')} | "
                    f"{_f(v['rss_before_mib'] if hop else None, '.0f')} | "
                    f"{_f(v['rss_peak_mib'] if hop else None, '.0f')} | "
                    f"{_f(v['rss_peak_mib'] - v['rss_before_mib'] if hop else None, '.0f')} | "
                    f"{_f(v['rss_after_mib'] if hop else None, '.0f')} |"
                )


if __name__ == "__main__":
    sys.exit(main())
