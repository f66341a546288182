#!/usr/bin/env python
"""Where h2load's connections land with `--workers N`: starts the model server (model `linear`)
with each `worker_balance` (round_robin, hash), opens 1, 2 and 8 h2load connections several times
and counts, from /proc, the established connections each worker process holds. Prints JSON
(--out) and a Markdown table. Needs h2load; Linux only.

    .venv/bin/python bench/model_server/spread.py --workers 2 --trials 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

from modelserve_common.testing import free_port, wait_for_health  # noqa: E402


def connections_per_worker(port: int, pids: list[int]) -> list[int]:
    """Established server-side connections on ``port`` held by each of ``pids`` (sorted)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01":
                inodes.add(f"socket:[{f[9]}]")
    counts = []
    for pid in pids:
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                n += os.readlink(fd) in inodes
            except OSError:
                continue
        counts.append(n)
    return sorted(counts, reverse=True)


def run(balance: str, workers: int, conns: list[int], trials: int, work: Path) -> list[dict]:
    repo = work / balance / "repo"
    shutil.copytree(ROOT / "models" / "linear", repo / "linear", ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "modelserve_model_server",
        "--grpc-port",
        str(port),
        "--grpc-host",
        "127.0.0.1",
    ]
    cmd += ["--metrics-port", "-1", "--model-repository", str(repo), "--workers", str(workers)]
    cmd += ["--worker-balance", balance]
    log = open(work / f"{balance}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_health(f"127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 120
        while True:  # every worker started
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if len(kids) == workers - 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(3)
        pids = [proc.pid, *(int(k) for k in kids)]
        frame = work / "frame.bin"
        subprocess.run(
            [sys.executable, str(HERE / "frame.py"), "--out", str(frame), "--target", f"127.0.0.1:{port}"],
            check=True,
            capture_output=True,
        )
        url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
        rows = []
        for c in conns:
            seen: Counter[str] = Counter()
            for _ in range(trials):
                h2 = subprocess.Popen(
                    ["h2load", "-c", str(c), "-m", "4", "-t", "1", "-D", "2", "-d", str(frame)]
                    + ["-H", "content-type: application/grpc", "-H", "te: trailers", url],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
                counts = connections_per_worker(port, pids)
                seen["/".join(map(str, counts))] += 1
                h2.wait(30)
            even = "/".join([str(c // workers + (1 if i < c % workers else 0)) for i in range(workers)])
            rows.append(
                {
                    "balance": balance,
                    "connections": c,
                    "spreads": dict(seen),
                    "even": seen[even],
                    "trials": trials,
                }
            )
            print(f"  {balance} c={c}: {dict(seen)}", file=sys.stderr, flush=True)
        return rows
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--conns", default="1,2,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "model_server_spread.json"))
    a = p.parse_args()
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ms-spread-") as tmp:
        rows = [r for b in ("round_robin", "hash") for r in run(b, a.workers, a.conns, a.trials, Path(tmp))]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"workers": a.workers, "rows": rows}, indent=2))
    print(
        "| worker_balance | connections | connections per worker (busiest first): times seen | even spread |"
    )
    print("|---|---|---|---|")
    for r in rows:
        seen = ", ".join(f"{k}: {v}" for k, v in sorted(r["spreads"].items()))
        print(f"| {r['balance']} | {r['connections']} | {seen} | {r['even']}/{r['trials']} |")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
