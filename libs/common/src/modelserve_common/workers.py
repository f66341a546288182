"""``--workers N``: the first process starts workers 1..N-1 as child processes of the same service
with the same command line plus ``--worker-index i --reuse-port true`` (they bind the same ports
with SO_REUSEPORT; modelserve_common.reuseport hands new connections to them in turn) and its
metrics port + i. A worker dies with the first process (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Sequence


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn_workers(
    module: str, workers: int, metrics_port: int, extra_args: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """Workers 1..workers-1 of ``python -m module``; worker i serves metrics on metrics_port + i
    (when a fixed port is set)."""
    children = []
    for i in range(1, workers):
        metrics = metrics_port + i if metrics_port > 0 else metrics_port
        args = [
            *sys.argv[1:],
            *("--workers", str(workers), "--worker-index", str(i), "--reuse-port", "true"),
            *("--metrics-port", str(metrics), *extra_args),
        ]
        children.append(subprocess.Popen([sys.executable, "-m", module, *args], preexec_fn=_die_with_parent))
    return children


def stop_workers(children: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM to every worker, then waits for each (SIGKILL after ``grace_s`` + 5 s)."""
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(grace_s + 5)
        except subprocess.TimeoutExpired:
            child.kill()
