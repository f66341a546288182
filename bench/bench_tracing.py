#!/usr/bin/env python
"""What tracing costs the model server: throughput and latency on model `linear` (batching on,
default settings) with tracing off, on at a 1 % sampling ratio and on at 100 %.

The model server runs as a subprocess exporting over OTLP/gRPC to a real TraceService receiver in
this process (opentelemetry-proto; so export costs what it costs in production, network hop
included); h2load drives it exactly as bench/model_server/run.py does (pre-serialized ModelInfer
frame, closed loop, fixed concurrency, warm-up first) and sends no traceparent, so every request
starts a trace and the sampler decides (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
``OTEL_TRACES_SAMPLER_ARG``; the same variables configure production). The JSON (--out) and the
table report req/s, p50/p99, server CPU, the throughput loss against tracing off and the spans the
receiver got (a check that the ratio held). Target (issue 18): < 5 % throughput loss at 1 %.

    .venv/bin/python bench/bench_tracing.py --concurrency 1,32 --duration 5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelserve_common.testing.tracing import OtlpReceiver

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("ms_bench", ROOT / "bench/model_server/run.py")
assert _spec is not None and _spec.loader is not None
ms_bench: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ms_bench)

SAMPLING = {"off": None, "1%": "0.01", "100%": "1.0"}


def run(label: str, ratio: str | None, a: argparse.Namespace, work: Path, receiver: OtlpReceiver) -> dict:
    name = f"tracing {label}"
    ms_bench.VARIANTS[name] = {
        "batching": True,
        "args": ["--tracing-enabled", "true"] if ratio is not None else [],
    }
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio or "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # run_variant's server inherits this process's environment
    before = len(receiver.spans())
    try:
        (result,) = ms_bench.run_variant(name, a, work)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    deadline = time.monotonic() + 10  # the last batches export after the server stops
    while time.monotonic() < deadline and ratio is not None and len(receiver.spans()) == before:
        time.sleep(0.2)
    requests = sum(c["rps"] * a.duration for c in result["cells"])
    result["spans_received"] = len(receiver.spans()) - before
    result["requests_measured"] = round(requests)
    return dict(result)


def table(results: list[dict], concurrency: list[int]) -> str:
    base = {c["concurrency"]: c["rps"] for c in results[0]["cells"]}
    head = "| tracing | " + " | ".join(
        f"c={c} rps (loss) | c={c} p50/p99 ms | c={c} CPU" for c in concurrency
    )
    lines = [head + " | spans received |", "|" + "---|" * (2 + 3 * len(concurrency))]
    for r in results:
        cells = {c["concurrency"]: c for c in r["cells"]}
        row = [r["variant"]]
        for c in concurrency:
            cell = cells[c]
            loss = 100 * (1 - cell["rps"] / base[c]) if base[c] else 0.0
            row += [
                f"{cell['rps']:.0f} ({loss:+.1f} %)",
                f"{cell['p50_ms']:.2f} / {cell['p99_ms']:.2f}",
                f"{cell['server_cpu_cores']:.2f}",
            ]
        row.append(str(r["spans_received"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="1,32", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sampling", default="off,1%,100%", type=lambda s: s.split(","))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "tracing.json"))
    p.add_argument("--taskset", default="", help="CPUs the server runs on (taskset -c)")
    p.add_argument("--client-taskset", default="", help="CPUs h2load runs on (taskset -c)")
    a = p.parse_args()
    a.conns = [2]
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    with OtlpReceiver() as receiver, tempfile.TemporaryDirectory(prefix="tracing-bench-") as tmp:
        results = [run(label, SAMPLING[label], a, Path(tmp), receiver) for label in a.sampling]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "duration_s": a.duration,
        "warmup_s": a.warmup,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(table(results, a.concurrency))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
