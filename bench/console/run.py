"""First load of the web console (/console), cold and warm, beside a plain static server.

Starts the gateway alone (its upstreams are not needed: the first view, the sign-in form, calls no
API) and, as the calibration peer in the same run, Python's ``http.server`` serving the very same
build; then bench/console/load.mjs drives Debian's chromium (headless) through both, alternating
round by round, cold (a fresh browser context, empty cache) and warm (a reload in that context).
Also reports the size of the built JavaScript and CSS (raw and gzipped) and what the gateway
actually sent. Prints JSON and a table; writes bench/results/console-<time>.json. Nothing here is
asserted: figures only.

    .venv/bin/python bench/console/run.py --rounds 15
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from modelserve_common.testing import ServiceProcess, free_port
from modelserve_gateway.console import default_dir

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("wall_ms", "ttfb_ms", "fcp_ms", "dcl_ms", "load_ms")


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


def _sizes(build: Path) -> dict[str, int]:
    out = {"js_bytes": 0, "js_gzip_bytes": 0, "css_bytes": 0, "css_gzip_bytes": 0}
    for f in sorted((build / "assets").iterdir()):
        kind = {".js": "js", ".css": "css"}.get(f.suffix)
        if kind:
            body = f.read_bytes()
            out[f"{kind}_bytes"] += len(body)
            out[f"{kind}_gzip_bytes"] += len(gzip.compress(body, 6, mtime=0))
    return out


def _summary(rows: list[dict[str, float]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"n": len(rows)}
    for m in (*METRICS, "transfer_bytes", "requests"):
        vals = sorted(float(r[m]) for r in rows if r.get(m) is not None)
        out[f"{m}_p50"] = statistics.median(vals) if vals else None
        if m in METRICS:
            out[f"{m}_p90"] = vals[min(len(vals) - 1, int(0.9 * len(vals)))] if vals else None
    return out


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    build = default_dir()
    if not (build / "index.html").is_file():
        sys.exit("the console is not built: cd console && npm ci && npm run build")

    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        # the peer serves the same files at the same paths (/console/...)
        shutil.copytree(build, Path(tmp) / "static" / "console")
        http_port, peer_port, grpc_port = free_port(), free_port(), free_port()
        dead = f"127.0.0.1:{free_port()}"  # upstreams: not used by the first view
        gw_env = {
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_HTTP_HOST": "127.0.0.1",
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": dead,
            "GATEWAY_MODEL_SERVER_URL": dead,
            "GATEWAY_ORCHESTRATOR_URL": dead,
            "GATEWAY_ACCESS_LOG": "false",
            "LOG_LEVEL": "WARNING",
        }
        gateway = ServiceProcess("modelserve_gateway", gw_env, grpc_port, cwd=tmp)
        peer = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(peer_port), "--bind", "127.0.0.1"],
            cwd=Path(tmp) / "static",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gateway.start(wait=False)
        try:
            targets = {
                "gateway": f"http://127.0.0.1:{http_port}",
                "http.server": f"http://127.0.0.1:{peer_port}",
            }
            for url in targets.values():
                _wait_http(f"{url}/console/")
            load_before = _loadavg()
            spec = {"targets": targets, "rounds": args.rounds, "chromium": args.chromium}
            proc = subprocess.run(
                ["node", str(ROOT / "bench" / "console" / "load.mjs"), json.dumps(spec)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                sys.exit(f"load.mjs failed:\n{proc.stdout}\n{proc.stderr}\n{gateway.output()}")
            rows = json.loads(proc.stdout)["rounds"]
            load_after = _loadavg()
        finally:
            peer.terminate()
            peer.wait(10)
            gateway.stop()

    result: dict[str, object] = {
        "bench": "console-first-load",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "rounds": args.rounds,
        "build": _sizes(build),
        "summary": {
            f"{t}/{m}": _summary([r for r in rows if r["target"] == t and r["mode"] == m])
            for t in targets
            for m in ("cold", "warm")
        },
        "raw": rows,
    }
    summary: dict[str, dict[str, float | None]] = result["summary"]  # type: ignore[assignment]
    for m in ("cold", "warm"):
        ours, peer_s = summary[f"gateway/{m}"], summary[f"http.server/{m}"]
        summary[f"ratio gateway/http.server {m}"] = {
            k: (round(ours[k] / peer_s[k], 2) if ours.get(k) and peer_s.get(k) else None)  # type: ignore[operator]
            for k in ("wall_ms_p50", "fcp_ms_p50", "load_ms_p50", "transfer_bytes_p50")
        }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"console-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))
    _table(result)
    print(f"\nwritten to {path}")


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(result: dict[str, object]) -> None:
    summary: dict[str, dict[str, float | None]] = result["summary"]  # type: ignore[assignment]
    b: dict[str, int] = result["build"]  # type: ignore[assignment]
    print(
        f"\nconsole build: JS {b['js_bytes'] / 1024:.1f} kB ({b['js_gzip_bytes'] / 1024:.1f} kB gzipped), "
        f"CSS {b['css_bytes'] / 1024:.1f} kB ({b['css_gzip_bytes'] / 1024:.1f} kB gzipped); "
        f"load average {result['loadavg_before']} -> {result['loadavg_after']}, {result['rounds']} rounds\n"
    )
    print(
        "| server / load | first view p50 (p90) ms | FCP p50 ms | load event p50 ms | TTFB p50 ms "
        "| bytes sent | requests |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        if key.startswith("ratio"):
            continue
        print(
            f"| {key} | {_fmt(s['wall_ms_p50'])} ({_fmt(s['wall_ms_p90'])}) | {_fmt(s['fcp_ms_p50'])} | "
            f"{_fmt(s['load_ms_p50'])} | {_fmt(s['ttfb_ms_p50'], 1)} | {_fmt(s['transfer_bytes_p50'])} | "
            f"{_fmt(s['requests_p50'])} |"
        )
    for m in ("cold", "warm"):
        r = summary[f"ratio gateway/http.server {m}"]
        print(
            f"\ngateway / http.server, {m}: first view {_fmt(r['wall_ms_p50'], 2)}x, "
            f"FCP {_fmt(r['fcp_ms_p50'], 2)}x, load event {_fmt(r['load_ms_p50'], 2)}x, "
            f"bytes {_fmt(r['transfer_bytes_p50'], 2)}x"
        )


if __name__ == "__main__":
    main()
