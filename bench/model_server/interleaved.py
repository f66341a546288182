"""Several server commands measured in interleaved rounds (A B C, A B C, ...), so that a load that
drifts over the run (a shared machine) falls on all of them alike; medians and ratios to the first.

Each spec is ``name=command`` with ``{port}`` where the gRPC port goes; every server must serve
model ``linear`` (bench/model_server/frame.py makes and verifies the request frame against it).
For each round and server: start it, verify one call, warm up 1 s, then h2load for --duration
seconds at --concurrency over --conns connections; the server's CPU time (its whole process
tree, from /proc) over the measured window gives CPU microseconds per request. CPU per request is
the steadier figure on a loaded machine: req/s also depends on how much CPU the server got.

    .venv/bin/python bench/model_server/interleaved.py --rounds 5 \\
      "lean=.venv/bin/python ../shared/peer-bench/servers/lean_server.py --port {port}" \\
      "ours=.venv/bin/python -m modelserve_model_server --grpc-host 127.0.0.1 --grpc-port {port} \\
            --metrics-port 0 --model-repository models --load-models linear"

A version of our code from another commit runs beside the current one with
``git worktree add /tmp/before <commit>`` and a spec ``before=env PYTHONPATH=$B .venv/bin/python
-m modelserve_model_server ...`` where B is /tmp/before/libs/common/src,
/tmp/before/libs/contracts/src and /tmp/before/services/model_server/src joined by ":".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # bench/procstat.py

from procstat import cpu_s, tree_pids  # noqa: E402

from modelserve_common.testing import free_port  # noqa: E402


def one(name: str, cmd: str, a: argparse.Namespace, work: Path) -> dict[str, float]:
    port = free_port()
    log = open(work / f"server-{name}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd.format(port=port), shell=True, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    frame = work / f"frame-{name}.bin"
    try:
        for _ in range(240):
            time.sleep(0.25)
            made = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "frame.py"),
                    "--out",
                    str(frame),
                    "--target",
                    f"127.0.0.1:{port}",
                ],
                capture_output=True,
            )
            if made.returncode == 0:
                break
        else:
            raise RuntimeError(f"{name} did not answer: {(work / f'server-{name}.log').read_text()[-800:]}")
        h2 = ["h2load", "-c", str(min(a.conns, a.concurrency)), "-m", str(max(1, a.concurrency // a.conns))]
        h2 += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(frame)]
        h2 += [f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"]
        subprocess.run([*h2, "-D", "1"], capture_output=True)
        c0 = cpu_s(tree_pids(proc.pid))
        out = subprocess.run([*h2, "-D", str(a.duration)], capture_output=True, text=True).stdout
        c1 = cpu_s(tree_pids(proc.pid))
        m = re.search(r"(\d+) succeeded", out)
        if m is None or int(m.group(1)) == 0:
            raise RuntimeError(f"{name}: h2load answered nothing useful:\n{out[-800:]}")
        done = int(m.group(1))
        return {"rps": done / a.duration, "cpu_us_per_req": 1e6 * (c1 - c0) / done}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", help="name=command with {port}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--conns", type=int, default=2)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    specs = [s.split("=", 1) for s in a.specs]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n, _ in specs}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for name, cmd in specs:
                runs[name].append(one(name, cmd, a, Path(tmp)))
                print(f"round {r} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    first = specs[0][0]
    med = {
        n: {k: statistics.median(x[k] for x in v) for k in ("rps", "cpu_us_per_req")} for n, v in runs.items()
    }
    result = {
        "concurrency": a.concurrency,
        "conns": a.conns,
        "load_average": load,
        "median": med,
        "runs": runs,
    }
    print(json.dumps(result, indent=1))
    print(f"\nc={a.concurrency} over {a.conns} connections, {a.rounds} interleaved rounds of {a.duration} s")
    print(f"(load average {load[0]:.1f} -> {load[1]:.1f}); medians, ratios to {first}\n")
    print("| server | req/s | x " + first + " | CPU µs/req | x " + first + " |")
    print("|---|---|---|---|---|")
    for n, m in med.items():
        r_rps = m["rps"] / med[first]["rps"]
        r_cpu = m["cpu_us_per_req"] / med[first]["cpu_us_per_req"]
        print(f"| {n} | {m['rps']:.0f} | {r_rps:.2f} | {m['cpu_us_per_req']:.0f} | {r_cpu:.2f} |")
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
