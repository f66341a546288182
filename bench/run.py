#!/usr/bin/env python
"""make bench: every benchmark of the suite, one after another, each printing its own JSON and
table (results under bench/results/, git-ignored). Run it on a quiet machine: figures from a loaded
machine are noise. Select parts with --only (comma list) and shorten cells with --quick.

    .venv/bin/python bench/run.py                       # everything (~25 min)
    .venv/bin/python bench/run.py --only peers,triton   # parts
    .venv/bin/python bench/run.py --quick               # short cells, a smoke run (~8 min)

Parts:
  peers        our model server beside KServe and Triton's own server (../shared/peer-bench, one run)
  model_server our model server: batching on/off, workers (h2load + Python verification)
  triton       Triton direct vs through the model server, CPU per 1k requests, 4/32 MiB tensors
  batching     dynamic batching under real compute (fixed ~1 ms per call + MLP per row): our model
               server beside KServe, MLServer adaptive batching and Triton's dynamic batcher
  gateway      REST JSON/binary and the gRPC front door vs straight to the model server; guard cost
  orchestrator per-node overhead of pipelines; async executions/s on PostgreSQL + Redis
  registry     registry RPC latency/throughput on SQLite and PostgreSQL
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
RESULTS = ROOT / "bench/results"


def parts(quick: bool) -> dict[str, list[str]]:
    d = "2" if quick else "5"
    conc = "1,32" if quick else "1,8,32,64"
    return {
        "peers": ["bash", "bench/model_server/peers.sh", "--concurrency", conc, "--duration", d],
        "model_server": [
            PY,
            "bench/model_server/run.py",
            "--concurrency",
            conc,
            "--duration",
            d,
            "--out",
            str(RESULTS / "model_server.json"),
        ],
        "triton": [
            PY,
            "bench/triton/run.py",
            "--concurrency",
            conc,
            "--duration",
            d,
            "--out",
            str(RESULTS / "triton.json"),
        ],
        "batching": [
            PY,
            "bench/batching/run.py",
            "--concurrency",
            conc,
            "--duration",
            "2" if quick else "4",
            "--out",
            str(RESULTS / "batching.json"),
        ],
        "gateway": [
            PY,
            "bench/gateway/bench.py",
            "--concurrency",
            conc,
            "--duration",
            d,
            "--guard",
            "--redis-url",
            os.environ.get("MODELSERVE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "--out",
            str(RESULTS / "gateway.json"),
        ],
        "orchestrator": [PY, "bench/orchestrator/bench.py", "--seconds", d],
        "registry": [PY, "services/registry/bench/bench_registry.py", "--seconds", d],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma list of parts (default: all)")
    ap.add_argument("--quick", action="store_true", help="short cells (smoke run)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = parts(args.quick)
    chosen = [p for p in args.only.split(",") if p] or list(table)
    unknown = [p for p in chosen if p not in table]
    if unknown:
        ap.error(f"unknown parts {unknown}; known: {sorted(table)}")
    status: dict[str, str] = {}
    harness = Path(os.environ.get("PEER_BENCH", ROOT.parent / "shared/peer-bench"))
    for name in chosen:
        print(f"\n===== bench: {name} =====", flush=True)
        if name == "peers" and not (harness / "run_all.sh").exists():
            print(f"peer harness not found at {harness} (set PEER_BENCH): peers part skipped", flush=True)
            status[name] = "skipped (no peer harness)"
            continue
        t0 = time.monotonic()
        rc = subprocess.call(table[name], cwd=ROOT)
        status[name] = f"rc={rc} in {time.monotonic() - t0:.0f}s"
    print("\n===== bench summary =====")
    for name, s in status.items():
        print(f"  {name:<13} {s}")
    return 0 if all(s.startswith(("rc=0", "skipped")) for s in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
