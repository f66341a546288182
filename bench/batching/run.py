#!/usr/bin/env python
"""Batching under real compute: our model server's dynamic batcher beside KServe, MLServer with
adaptive batching and Triton's dynamic batcher (python backend), all serving model `mlp` in one run.

Model `mlp` (mlp_compute.py, the same numpy code in every server): x FP32 [-1,16] -> y FP32 [-1,4];
each call costs a fixed part (about 1 ms of single-threaded BLAS work, paid once per batch) plus an
MLP 16->512->512->4 per row. Every server runs with OPENBLAS_NUM_THREADS=1 and one model instance.

All servers are started first; each must answer model `mlp` and pass a check of 128 concurrent
calls of 1..16 rows against numpy (so batched answers must be split back right) and of the 1-row
frame h2load replays. Then cells run interleaved (round -> concurrency -> server, so the drifting
load of a shared machine hits every server alike): h2load closed loop (warm-up run first; errors
by gRPC DATA-byte accounting), server CPU, and, where the server has ModelStatistics (ours,
Triton), mean executed batch, time per model call and queue time. Per cell the best of --rounds
is kept. Prints JSON (--out) and Markdown tables; our rows carry ratios to the best peer.

Servers (--servers): ours (python backend, 1 instance), ours-x2 (2 instances), ours-w2
(--workers 2), ours-onnx (ONNX Runtime backend), ours-nobatch, kserve, kserve-thread, mlserver
(adaptive batching), triton (python backend, dynamic batching). The queue delay (--delay-us) is
the same for every batcher (MLServer: max_batch_time).

    .venv/bin/python bench/batching/run.py                               # c=1,8,32,64, 4 s cells, 2 rounds
    .venv/bin/python bench/batching/run.py --servers ours,triton --concurrency 32 --duration 3
    .venv/bin/python bench/batching/run.py --delay-us 500 --preferred 16,32

Peers run from the venvs of ../shared/peer-bench/setup_venvs.sh ($BENCH_VENV_ROOT, default
~/.cache/bench-venvs); a server whose venv is missing is skipped and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: the model cost below is single-threaded

import grpc  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # bench/procstat.py

import mlp_compute  # noqa: E402
from procstat import cpu_s, rss_mib, tree_pids  # noqa: E402

from modelserve.inference.v2 import grpc_service_pb2 as pb  # noqa: E402
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc  # noqa: E402

MODEL = "mlp"
VENVS = Path(os.environ.get("BENCH_VENV_ROOT", Path.home() / ".cache" / "bench-venvs"))
SERVERS = ("ours", "ours-x2", "ours-w2", "ours-onnx", "kserve", "mlserver", "triton")
DESCRIPTION = {
    "ours": "our model server, python backend, dynamic_batching (delay {delay} us{pref}), 1 instance",
    "ours-x2": "our model server, python backend, dynamic_batching (delay {delay} us{pref}), 2 instances",
    "ours-w2": "our model server --workers 2 (two processes, SO_REUSEPORT), each: dynamic_batching "
    "(delay {delay} us{pref}), 1 instance",
    "ours-onnx": "our model server, the same computation as an ONNX graph (make_onnx.py) on its ONNX Runtime "
    "backend (1 thread), dynamic_batching (delay {delay} us{pref}), 1 instance",
    "ours-nobatch": "our model server, python backend, no dynamic_batching, 1 instance",
    "kserve": "KServe 0.21 ModelServer, v2 gRPC, async predict computing on the event loop (no batcher)",
    "kserve-thread": "KServe 0.21 ModelServer, v2 gRPC, async predict -> asyncio.to_thread (no batcher)",
    "mlserver": "MLServer 1.7.1, adaptive batching max_batch_size=64 max_batch_time={delay_s} s, "
    "parallel_workers=1",
    "triton": "Triton 2.51 (PyTriton 0.7.0 wheel) python backend, dynamic_batching "
    "max_queue_delay {delay} us, 1 instance",
}


# ---------------------------------------------------------------------------- processes


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def server_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        PYTHONUNBUFFERED="1",
        TMPDIR=str(tmp),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def with_compute(version_dir: Path) -> None:
    shutil.copy(HERE / "mlp_compute.py", version_dir / "mlp_compute.py")


def set_batching(
    cfg: Path, delay_us: int, preferred: list[int], dynamic: bool = True, instances: int = 1
) -> None:
    text = re.sub(r"count: \d+", f"count: {instances}", cfg.read_text())
    if not dynamic:
        text = "\n".join(line for line in text.splitlines() if "dynamic_batching" not in line) + "\n"
    else:
        pref = f" preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else ""
        text = re.sub(
            r"dynamic_batching \{[^}]*\}",
            f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us}{pref} }}",
            text,
        )
    cfg.write_text(text)


def build(name: str, a: argparse.Namespace, work: Path, ports: list[int]) -> tuple[list[str], dict[str, str]]:
    g, h, m = ports
    if name.startswith("ours"):
        repo = work / "repo"
        if name == "ours-onnx":
            shutil.copytree(HERE / "ours_onnx", repo, ignore=shutil.ignore_patterns("__pycache__", ".keep"))
            subprocess.run(
                [sys.executable, str(HERE / "make_onnx.py"), str(repo / MODEL / "1/model.onnx")], check=True
            )
        else:
            shutil.copytree(HERE / "ours", repo, ignore=shutil.ignore_patterns("__pycache__"))
            with_compute(repo / MODEL / "1")
        instances = 2 if name == "ours-x2" else 1
        set_batching(
            repo / MODEL / "config.pbtxt", a.delay_us, a.preferred, name != "ours-nobatch", instances
        )
        cmd = [
            sys.executable,
            "-m",
            "modelserve_model_server",
            "--grpc-port",
            str(g),
            "--grpc-host",
            "127.0.0.1",
        ]
        cmd += ["--metrics-port", "0", "--model-repository", str(repo), "--load-models", MODEL]
        if name == "ours-w2":
            cmd += ["--workers", "2"]
        if a.ours_src:  # a snapshot (e.g. `git archive HEAD`) ahead of the working tree on the path
            src = Path(a.ours_src).resolve()
            dirs = ["services/model_server/src", "libs/common/src", "libs/contracts/src"]
            return cmd, server_env(work, PYTHONPATH=":".join(str(src / d) for d in dirs))
        return cmd, server_env(work)
    if name.startswith("kserve"):
        cmd = [str(VENVS / "kserve/bin/python"), str(HERE / "kserve_mlp.py"), "--grpc_port", str(g)]
        cmd += ["--http_port", str(h), "--enable_latency_logging", "false", "--quiet", "true"]
        cmd += ["--inline", "false" if name == "kserve-thread" else "true"]
        return cmd, server_env(work)
    if name == "mlserver":
        (work / MODEL).mkdir(parents=True, exist_ok=True)
        settings = {"debug": False, "host": "127.0.0.1", "grpc_port": g, "http_port": h, "metrics_port": m}
        settings |= {"parallel_workers": 1, "load_models_at_startup": True}
        (work / "settings.json").write_text(json.dumps(settings))
        ms = {
            "name": MODEL,
            "implementation": "mlserver_mlp.MLPModel",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
            "max_batch_size": 64,
            "max_batch_time": a.delay_us / 1e6,
        }
        (work / MODEL / "model-settings.json").write_text(json.dumps(ms))
        cmd = [str(VENVS / "mlserver/bin/mlserver"), "start", str(work)]
        return cmd, server_env(work, PYTHONPATH=str(HERE))
    if name == "triton":
        repo = work / "repo"
        shutil.copytree(HERE / "triton", repo, ignore=shutil.ignore_patterns("__pycache__"))
        with_compute(repo / MODEL / "1")
        set_batching(repo / MODEL / "config.pbtxt", a.delay_us, a.preferred)
        cmd = [str(VENVS / "triton/bin/python"), str(HERE / "triton_launch.py"), "--grpc-port", str(g)]
        cmd += ["--http-port", str(h), "--metrics-port", str(m), "--workdir", str(work), "--repo", str(repo)]
        return cmd, server_env(work)
    raise SystemExit(f"unknown server {name!r}; known: {', '.join(DESCRIPTION)}")


VENV_OF = {"kserve": "kserve", "kserve-thread": "kserve", "mlserver": "mlserver", "triton": "triton"}


# ---------------------------------------------------------------------------- checks


def wait_ready(target: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=1).ready:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"model {MODEL!r} not ready after {timeout:.0f} s")
            time.sleep(0.2)


def request(rows: int, seed: int) -> tuple[pb.ModelInferRequest, np.ndarray]:
    x = np.random.RandomState(seed).randn(rows, 16).astype(np.float32)
    req = pb.ModelInferRequest(
        model_name=MODEL,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[rows, 16])],
        raw_input_contents=[x.tobytes()],
    )
    return req, x


def answer(resp: pb.ModelInferResponse) -> np.ndarray:
    out = resp.outputs[0]
    if resp.raw_output_contents:
        y = np.frombuffer(resp.raw_output_contents[0], np.float32)
    else:
        y = np.asarray(out.contents.fp32_contents, np.float32)
    return y.reshape([int(d) for d in out.shape])


def check(resp: pb.ModelInferResponse, x: np.ndarray) -> float:
    """Max abs error against numpy; raises when the answer is wrong."""
    y, ref = answer(resp), mlp_compute.mlp(x)
    if y.shape != ref.shape or not np.allclose(y, ref, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"wrong answer for {x.shape[0]} rows: max abs err {np.max(np.abs(y - ref))}")
    return float(np.max(np.abs(y - ref)))


async def verify(target: str) -> dict[str, Any]:
    """128 concurrent calls of 1..16 rows (so the batchers merge and split them), checked."""
    async with grpc.aio.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)

        async def one(i: int) -> float:
            req, x = request(1 + i % 16, seed=100 + i)
            return check(await stub.ModelInfer(req, timeout=30), x)

        errs = await asyncio.gather(*(one(i) for i in range(128)))
    return {"calls": len(errs), "max_abs_err": max(errs)}


def write_frame(path: Path, target: str) -> int:
    """The 1-row gRPC frame h2load replays, checked with a real call; returns the response size."""
    req, x = request(1, seed=1)
    body = req.SerializeToString()
    path.write_bytes(struct.pack(">BI", 0, len(body)) + body)
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        raw = call(body, timeout=30)  # the very bytes h2load sends
    check(pb.ModelInferResponse.FromString(raw), x)
    return len(raw)


def statistics(target: str) -> dict[str, int] | None:
    with grpc.insecure_channel(target) as ch:
        try:
            r = svc_grpc.GRPCInferenceServiceStub(ch).ModelStatistics(
                pb.ModelStatisticsRequest(name=MODEL), timeout=5
            )
        except grpc.RpcError:
            return None
    if not r.model_stats:
        return None
    s = r.model_stats[0]
    return {
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "exec_infer_ns": sum(b.compute_infer.ns for b in s.batch_stats),
        "exec_count": sum(b.compute_infer.count for b in s.batch_stats),
        "queue_ns": s.inference_stats.queue.ns,
        "requests": s.inference_stats.success.count,
    }


# ---------------------------------------------------------------------------- load


def h2load(
    port: int, frame: Path, conc: int, a: argparse.Namespace, resp_bytes: int, log: Path
) -> dict[str, Any]:
    conns = max(1, min(conc, a.conns))
    streams = -(-conc // conns)
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    base = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-d", str(frame)]
    base += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    subprocess.run([*base, "-D", f"{a.warmup}s", url], capture_output=True, timeout=a.warmup + 60)
    log.unlink(missing_ok=True)
    out = subprocess.run(
        [*base, "-D", f"{a.duration}s", "--log-file", str(log), url],
        capture_output=True,
        text=True,
        timeout=a.duration + 60,
    ).stdout

    def grab(pattern: str) -> int:
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0

    succ = grab(r"(\d+) succeeded")
    bad = grab(r"(\d+) failed") + grab(r"(\d+) errored") + grab(r"(\d+) timeout")
    data = grab(r"\((\d+)\) data")
    lat = sorted(int(p[2]) for p in (line.split() for line in log.read_text().splitlines()) if len(p) >= 3)
    log.unlink(missing_ok=True)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] / 1000 if lat else None

    without_body = max(0, round(succ - data / (resp_bytes + 5))) if succ else 0
    return {
        "concurrency": conc,
        "connections": conns,
        "rps": round(succ / a.duration, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": bad + without_body,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # children that outlived the leader (same process group): give them a moment, then kill them
    for _ in range(50):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Running:
    """One started server: its process, ports, verified frame and results."""

    def __init__(self, name: str, a: argparse.Namespace, tmp: Path) -> None:
        pref = f", preferred {a.preferred}" if a.preferred else ""
        self.name = name
        self.res: dict[str, Any] = {
            "server": name,
            "what": DESCRIPTION[name].format(delay=a.delay_us, delay_s=a.delay_us / 1e6, pref=pref),
            "cells": [],
            "all_cells": [],
        }
        self.proc: subprocess.Popen[bytes] | None = None
        venv = VENV_OF.get(name)
        if venv and not (VENVS / venv / ".bench_ok").exists():
            self.res["skipped"] = f"no venv {VENVS / venv} (run ../shared/peer-bench/setup_venvs.sh {venv})"
            print(f"[{name}] skipped: {self.res['skipped']}", file=sys.stderr, flush=True)
            return
        self.work = tmp / name
        self.work.mkdir(parents=True)
        self.ports = free_ports(3)
        self.target = f"127.0.0.1:{self.ports[0]}"
        try:
            cmd, env = build(name, a, self.work, self.ports)
            self.logf = open(a.logs / f"server-{name}.log", "wb")  # noqa: SIM115
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.work,
                stdout=self.logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            wait_ready(self.target, a.startup_timeout, self.proc)
            self.res["startup_s"] = round(time.monotonic() - t0, 1)
            self.res["verify"] = asyncio.run(verify(self.target))
            self.resp_bytes = write_frame(self.work / "frame.bin", self.target)
            time.sleep(0.5)
            self.res["idle_rss_mib"] = round(rss_mib(tree_pids(self.proc.pid)), 1)
            print(f"[{name}] ready, verified: {self.res['verify']}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - reported in the results, the other servers still run
            self.fail(exc)

    @property
    def ok(self) -> bool:
        return self.proc is not None and not self.res.get("failed")

    def fail(self, exc: BaseException) -> None:
        self.res["failed"] = f"{type(exc).__name__}: {exc}"[:500]
        print(f"[{self.name}] FAILED: {self.res['failed']}", file=sys.stderr, flush=True)

    def cell(self, c: int, a: argparse.Namespace, rnd: int) -> None:
        assert self.proc is not None
        try:
            pids = tree_pids(self.proc.pid)
            # with --workers each process keeps its own statistics: two readings may come from different ones
            s0 = None if self.name == "ours-w2" else statistics(self.target)
            c0, w0 = cpu_s(pids), time.monotonic()
            cell = h2load(self.ports[0], self.work / "frame.bin", c, a, self.resp_bytes, self.work / "h2.tsv")
            cores = (cpu_s(pids) - c0) / (time.monotonic() - w0)
            s1 = None if s0 is None else statistics(self.target)
            cell["round"] = rnd
            cell["loadavg_1m"] = round(os.getloadavg()[0], 2)
            cell["server_cpu_cores"] = round(cores, 2)
            cell["cpu_us_per_req"] = round(1e6 * cores / cell["rps"]) if cell["rps"] else None
            if s0 and s1 and s1["execution_count"] > s0["execution_count"]:
                # from the server's own statistics over the whole cell (warm-up run included): mean
                # rows per model call, mean time of one model call, mean time a request queued
                d = {k: s1[k] - s0[k] for k in s1}
                cell["mean_batch"] = round(d["inference_count"] / d["execution_count"], 1)
                if d["exec_count"]:
                    cell["batch_compute_ms"] = round(d["exec_infer_ns"] / d["exec_count"] / 1e6, 2)
                if d["requests"]:
                    cell["queue_ms"] = round(d["queue_ns"] / d["requests"] / 1e6, 2)
            self.res["all_cells"].append(cell)
            print(f"[{self.name}] {cell}", file=sys.stderr, flush=True)
            if self.proc.poll() is not None:
                raise RuntimeError("server died under load")
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)

    def finish(self) -> dict[str, Any]:
        """Stops the server; per concurrency, keeps the round with the most req/s (load on this
        shared machine only ever slows a cell down, and every server gets the same rule)."""
        if self.proc is not None:
            stop(self.proc)
            self.logf.close()
        best: dict[int, dict[str, Any]] = {}
        for cell in self.res["all_cells"]:
            c = cell["concurrency"]
            if c not in best or cell["rps"] > best[c]["rps"]:
                best[c] = cell
        self.res["cells"] = [best[c] for c in sorted(best)]
        return self.res


def compute_cost(reps: int = 30) -> dict[str, float]:
    """The model's own cost in this process (same numpy code, one BLAS thread): fastest of reps."""

    def best(f: Callable[[], object]) -> float:
        f()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return round(min(ts) * 1e3, 3)

    x1 = np.zeros((1, 16), np.float32)
    x64 = np.random.RandomState(0).randn(64, 16).astype(np.float32)
    return {
        "fixed_ms": best(mlp_compute.fixed_cost),
        "call_1_row_ms": best(lambda: mlp_compute.forward(x1)),
        "call_64_rows_ms": best(lambda: mlp_compute.forward(x64)),
    }


# ---------------------------------------------------------------------------- report


def table(results: list[dict[str, Any]], concurrency: list[int], bound_ms: float) -> str:
    """One row per server; "x best peer" is ours over the best of the others at that concurrency."""
    ok = [r for r in results if r["cells"]]
    best_peer: dict[int, float] = {}
    for r in ok:
        if r["server"].startswith("ours"):
            continue
        for cell in r["cells"]:
            best_peer[cell["concurrency"]] = max(best_peer.get(cell["concurrency"], 0.0), cell["rps"])
    head = "| server | " + " | ".join(f"c={c} req/s | c={c} p50 / p99 ms" for c in concurrency)
    lines = [
        head + " | c=max: mean batch / ms per model call | errors |",
        "|" + "---|" * (3 + 2 * len(concurrency)),
    ]
    for r in results:
        if not r["cells"]:
            reason = r.get("skipped") or r.get("failed")
            lines.append(
                f"| {r['server']} | "
                + " | ".join("–" for _ in range(2 * len(concurrency)))
                + f" | – | {reason} |"
            )
            continue
        cells = {c["concurrency"]: c for c in r["cells"]}
        row = [r["server"]]
        for c in concurrency:
            cell = cells.get(c)
            if cell is None:
                row += ["–", "–"]
                continue
            ratio = ""
            if r["server"].startswith("ours") and best_peer.get(c):
                ratio = f" ({cell['rps'] / best_peer[c]:.2f}x best peer)"
            p99 = cell["p99_ms"]
            mark = "" if p99 is None or p99 <= bound_ms or not r["server"].startswith("ours") else " ⚠"
            row += [f"{cell['rps']:.0f}{ratio}", f"{cell['p50_ms']:.2f} / {p99:.2f}{mark}"]
        last = cells.get(concurrency[-1], {})
        row.append(f"{last.get('mean_batch', '–')} / {last.get('batch_compute_ms', '–')}")
        row.append(str(sum(c["errors"] for c in r["cells"])))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def details(results: list[dict[str, Any]]) -> str:
    """Per cell: server CPU per request and, from the server's statistics (ours, Triton), the mean
    batch, the mean time of one model call and the mean time a request queued before its batch."""
    lines = [
        "| server | c | req/s | server CPU cores | CPU µs/req | mean batch | ms per model call | queue ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in r["cells"]:
            lines.append(
                f"| {r['server']} | {c['concurrency']} | {c['rps']:.0f} | {c['server_cpu_cores']} | "
                f"{c.get('cpu_us_per_req', '–')} | {c.get('mean_batch', '–')} | "
                f"{c.get('batch_compute_ms', '–')} | {c.get('queue_ms', '–')} |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS), type=lambda s: s.split(","))
    p.add_argument("--concurrency", default="1,8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="each cell this many times; the best round is kept")
    p.add_argument("--conns", type=int, default=2, help="most h2load connections (c spread over min(c, N))")
    p.add_argument(
        "--delay-us", type=int, default=1000, help="queue delay of every batcher (MLServer: max_batch_time)"
    )
    p.add_argument("--preferred", default="", type=lambda s: [int(x) for x in s.split(",") if x])
    p.add_argument(
        "--ours-src",
        default="",
        help="run our server from this source tree (e.g. `git archive HEAD | tar -x -C DIR`) instead of "
        "the installed working tree: a shared, half-edited tree then cannot break the run",
    )
    p.add_argument("--startup-timeout", type=float, default=120)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "batching.json"))
    a = p.parse_args()
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    a.logs = out.parent / "batching-logs"
    a.logs.mkdir(exist_ok=True)
    cost = compute_cost()
    bound = a.delay_us / 1000 + cost["call_64_rows_ms"]
    print(f"model cost here: {cost}; p99 bound = delay + one 64-row batch = {bound:.2f} ms", file=sys.stderr)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp:
        running: list[Running] = []
        try:
            # all servers up at once, cells interleaved (round -> concurrency -> server): the load
            # of this shared machine drifts, and every server then sees the same drift
            for name in a.servers:
                running.append(Running(name, a, Path(tmp)))
            for rnd in range(a.rounds):
                for c in a.concurrency:
                    for r in running:
                        if r.ok:
                            r.cell(c, a, rnd)
        finally:
            results = [r.finish() for r in running]
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load0,
        "loadavg_at_end": os.getloadavg(),
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "rounds": a.rounds,
        "delay_us": a.delay_us,
        "preferred": a.preferred,
        "model_cost_ms": cost,
        "p99_bound_ms": round(bound, 3),
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(table(results, a.concurrency, bound))
    print()
    print(details(results))
    print(
        f"\nmodel cost (this process, fastest of 30): fixed {cost['fixed_ms']} ms, 1-row call "
        f"{cost['call_1_row_ms']} ms, 64-row call {cost['call_64_rows_ms']} ms; ⚠ = our p99 above "
        f"delay + one 64-row batch = {bound:.2f} ms. load average {load0[0]:.2f} at start, "
        f"{meta['loadavg_at_end'][0]:.2f} at end (2 = both cores busy)."
    )
    print(f"JSON: {out}")
    return 0 if all(not r.get("failed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
