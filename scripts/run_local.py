#!/usr/bin/env python
"""make run: the whole suite locally on the embedded defaults (SQLite, in-process queues and
limits), readable console logs, the example models served, the gateway on :8080. Ctrl-C stops all.

Ports are the defaults of DESIGN.md; override any setting through the usual environment variables.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "libs/common/src"))

from modelserve_common.testing.launcher import wait_for_health  # noqa: E402

DATA = Path(os.environ.get("MODELSERVE_DATA_DIR", ROOT / "data"))

SERVICES = [
    # (module, grpc port, extra env)
    ("modelserve_registry", 50051, {"REGISTRY_DATA_DIR": str(DATA / "registry")}),
    (
        "modelserve_model_server",
        50053,
        {
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": "127.0.0.1:50051",
        },
    ),
    (
        "modelserve_orchestrator",
        50052,
        {
            "ORCHESTRATOR_DATA_DIR": str(DATA / "orchestrator"),
            "ORCHESTRATOR_REGISTRY_URL": "127.0.0.1:50051",
            "ORCHESTRATOR_MODEL_SERVER_URL": "127.0.0.1:50053",
        },
    ),
    (
        "modelserve_gateway",
        50050,
        {
            "GATEWAY_REGISTRY_URL": "127.0.0.1:50051",
            "GATEWAY_MODEL_SERVER_URL": "127.0.0.1:50053",
            "GATEWAY_ORCHESTRATOR_URL": "127.0.0.1:50052",
        },
    ),
]


def _pump(name: str, stream) -> None:  # type: ignore[no-untyped-def]
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>13} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def main() -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base_env.setdefault("MODELSERVE_LOG_FORMAT", "console")
    # Authentication is on by default: bootstrap an admin key for this local run unless one is given.
    if "GATEWAY_ADMIN_API_KEY" not in base_env and base_env.get("GATEWAY_AUTH_ENABLED", "true") != "false":
        key_file = DATA / "admin-api-key"
        if not key_file.exists():
            key_file.write_text("ms_admin_" + secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        base_env["GATEWAY_ADMIN_API_KEY"] = key_file.read_text().strip()
    stopping = threading.Event()

    def stop_all(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        for module, port, extra in SERVICES:
            prefix = module.removeprefix("modelserve_").upper() + "_"
            env = {**base_env, f"{prefix}LOG_FORMAT": base_env["MODELSERVE_LOG_FORMAT"], **extra}
            p = subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(p)
            threading.Thread(
                target=_pump, args=(module.removeprefix("modelserve_"), p.stdout), daemon=True
            ).start()
            wait_for_health(f"127.0.0.1:{port}", timeout=60)
            print(f"run: {module} SERVING on :{port}", flush=True)
        subprocess.call(
            [sys.executable, str(ROOT / "scripts/register_demo.py"), "127.0.0.1:50051"], env=base_env
        )
        print(
            "run: all four services are SERVING; gateway REST on http://127.0.0.1:8080 "
            "(docs at /docs), gRPC on :50050. Ctrl-C stops them.",
            flush=True,
        )
        while not stopping.is_set():
            if any(p.poll() is not None for p in procs):
                print("run: a service exited; stopping the others", flush=True)
                break
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
