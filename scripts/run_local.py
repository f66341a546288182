#!/usr/bin/env python
"""make run: the whole suite locally on the embedded defaults (SQLite, in-process queues and
limits), readable console logs, the example models served, the gateway on :8080. Ctrl-C stops all.

Ports are the defaults of DESIGN.md; each can be changed through the service's usual variable
(REGISTRY_GRPC_PORT, GATEWAY_HTTP_PORT, ...; see PORTS below) and the services are wired to each
other accordingly. MODELSERVE_DATA_DIR (default ./data) holds the SQLite files and the admin key;
MODELSERVE_RUN_START_TIMEOUT_S (default 120) bounds how long each service may take to be SERVING.

Before starting anything it checks that every port it needs is free (exit 1 naming the port, the
service and the variable when one is not). It watches its own children: one that exits during
start-up stops the others, its last stderr lines are printed and the exit status is 1; readiness
counts only when the SERVING answer comes from its own child's socket. Ctrl-C (SIGINT) or SIGTERM
stops everything at any moment (a second Ctrl-C kills at once).
"""

from __future__ import annotations

import collections
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "libs/common/src"))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from modelserve_common.server import bind_problem  # noqa: E402

STDERR_TAIL = 20  # lines of a failed child's stderr that are shown
STOP_GRACE_S = 15.0  # SIGTERM, then SIGKILL after this long


@dataclass(frozen=True)
class Port:
    service: str
    what: str  # "gRPC", "metrics", "HTTP"
    var: str  # the variable that sets it
    host: str  # the address the service binds
    port: int


@dataclass
class Child:
    name: str
    module: str
    grpc_port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL))
    pumps: list[threading.Thread] = field(default_factory=list)


class RunError(Exception):
    """A failure explained in one message; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _int_env(env: dict[str, str], var: str, default: int) -> int:
    raw = env.get(var, str(default))
    try:
        return int(raw)
    except ValueError:
        raise RunError(f"run: {var}={raw!r} is not a port number", 2) from None


def plan(env: dict[str, str]) -> tuple[list[Port], list[Child]]:
    """Every port the suite needs (from the environment, else the defaults) and the four children,
    wired to each other on those ports."""

    def port(service: str, what: str, var: str, default: int, host: str) -> Port:
        return Port(service, what, var, host, _int_env(env, var, default))

    names = ("registry", "model_server", "orchestrator", "gateway")
    grpc_host = {s: env.get(f"{s.upper()}_GRPC_HOST", "[::]") for s in names}
    ports = [
        port("registry", "gRPC", "REGISTRY_GRPC_PORT", 50051, grpc_host["registry"]),
        port("registry", "metrics", "REGISTRY_METRICS_PORT", 9091, "0.0.0.0"),
        port("model_server", "gRPC", "MODEL_SERVER_GRPC_PORT", 50053, grpc_host["model_server"]),
        port("model_server", "metrics", "MODEL_SERVER_METRICS_PORT", 9093, "0.0.0.0"),
        port("orchestrator", "gRPC", "ORCHESTRATOR_GRPC_PORT", 50052, grpc_host["orchestrator"]),
        port("orchestrator", "metrics", "ORCHESTRATOR_METRICS_PORT", 9092, "0.0.0.0"),
        port("gateway", "gRPC", "GATEWAY_GRPC_PORT", 50050, grpc_host["gateway"]),
        port("gateway", "metrics", "GATEWAY_METRICS_PORT", 9090, "0.0.0.0"),
        port("gateway", "HTTP", "GATEWAY_HTTP_PORT", 8080, env.get("GATEWAY_HTTP_HOST", "0.0.0.0")),
    ]
    by_var = {p.var: p.port for p in ports}
    data = Path(env.get("MODELSERVE_DATA_DIR", str(ROOT / "data")))
    registry = f"127.0.0.1:{by_var['REGISTRY_GRPC_PORT']}"
    model_server = f"127.0.0.1:{by_var['MODEL_SERVER_GRPC_PORT']}"
    orchestrator = f"127.0.0.1:{by_var['ORCHESTRATOR_GRPC_PORT']}"
    own_ports = {p.var: str(p.port) for p in ports}
    children = [
        Child(
            "registry",
            "modelserve_registry",
            by_var["REGISTRY_GRPC_PORT"],
            {
                "REGISTRY_DATA_DIR": env.get("REGISTRY_DATA_DIR", str(data / "registry")),
                # the demo version's artifact is the example's model.py under models/
                "REGISTRY_ARTIFACT_ROOTS": env.get(
                    "REGISTRY_ARTIFACT_ROOTS", f"{ROOT / 'models'},{data / 'registry' / 'artifacts'}"
                ),
            },
        ),
        Child(
            "model_server",
            "modelserve_model_server",
            by_var["MODEL_SERVER_GRPC_PORT"],
            {
                "MODEL_SERVER_MODEL_REPOSITORY": env.get(
                    "MODEL_SERVER_MODEL_REPOSITORY", str(ROOT / "models")
                ),
                "MODEL_SERVER_REGISTRY_URL": registry,
            },
        ),
        Child(
            "orchestrator",
            "modelserve_orchestrator",
            by_var["ORCHESTRATOR_GRPC_PORT"],
            {
                "ORCHESTRATOR_DATA_DIR": env.get("ORCHESTRATOR_DATA_DIR", str(data / "orchestrator")),
                "ORCHESTRATOR_REGISTRY_URL": registry,
                "ORCHESTRATOR_MODEL_SERVER_URL": model_server,
            },
        ),
        Child(
            "gateway",
            "modelserve_gateway",
            by_var["GATEWAY_GRPC_PORT"],
            {
                "GATEWAY_REGISTRY_URL": registry,
                "GATEWAY_MODEL_SERVER_URL": model_server,
                "GATEWAY_ORCHESTRATOR_URL": orchestrator,
            },
        ),
    ]
    for child in children:  # every child gets the ports run checked, explicitly
        prefix = child.name.upper() + "_"
        child.env.update({k: v for k, v in own_ports.items() if k.startswith(prefix)})
    return ports, children


def check_ports(ports: list[Port]) -> None:
    """Raises RunError naming every port that is taken (or that cannot be bound, or is used twice)."""
    problems: list[str] = []
    seen: dict[int, Port] = {}
    busy = False
    planned = {p.port for p in ports}
    for p in ports:
        if p.port < 0 and p.what == "metrics":
            continue  # -1 disables the metrics endpoint
        if p.port <= 0 or p.port > 65535:
            problems.append(
                f"{p.var}={p.port}: make run needs a fixed port from 1 to 65535 ({p.service} {p.what})"
            )
            continue
        if p.port in seen:
            other = seen[p.port]
            problems.append(f"port {p.port} is set for both {other.var} and {p.var}; change one of them")
            continue
        seen[p.port] = p
        why = bind_problem(p.host, p.port)
        if why is not None:
            in_use = "already in use" in why[0]
            busy = busy or in_use
            candidates = (q for q in range(p.port + 1, min(p.port + 200, 65536)) if q not in planned)
            hint = next((q for q in candidates if bind_problem(p.host, q) is None), 0) if in_use else 0
            example = f", e.g. {p.var}={hint} make run" if hint else ""
            problems.append(
                f"port {p.port} ({p.service} {p.what}) cannot be used: {why[0]}; "
                f"set {p.var} to a free port{example}"
            )
    if busy:
        problems.append("is another `make run` still running? Stop it first, or move the ports above")
    if problems:
        raise RunError("\n".join(f"run: {line}" for line in problems), 1)


def _die_with_parent() -> None:  # runs in the child before exec: a killed run takes its children along
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pump(name: str, stream: IO[bytes], out: IO[str], tail: collections.deque[str] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        if tail is not None:
            tail.append(line)
        out.write(f"{name:>13} | {line}\n")
        out.flush()


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on ``port`` (None where /proc/net is not available)."""
    found: set[str] = set()
    seen_any = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_any = True
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(cols[9])
    return found if seen_any else None


def owns_port(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on ``port`` (True where it cannot be told)."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _health(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
        except grpc.RpcError as exc:
            return str(exc.code().name)


class Runner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.signals = 0

    def on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        self.stopping.set()
        if self.signals > 1:  # second Ctrl-C: no more waiting
            self.kill_all(signal.SIGKILL)

    def kill_all(self, sig: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                try:
                    os.killpg(child.proc.pid, sig)
                except ProcessLookupError:
                    pass

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            [sys.executable, "-m", child.module],
            env={**self.env, **child.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches run only; run stops the children in order
            preexec_fn=_die_with_parent,
        )
        self.children.append(child)
        assert child.proc.stdout is not None and child.proc.stderr is not None
        for stream, out, tail in (
            (child.proc.stdout, sys.stdout, None),
            (child.proc.stderr, sys.stderr, child.tail),
        ):
            t = threading.Thread(target=_pump, args=(child.name, stream, out, tail), daemon=True)
            t.start()
            child.pumps.append(t)

    def exited(self, child: Child, when: str) -> RunError:
        assert child.proc is not None
        for t in child.pumps:
            t.join(2.0)
        lines = "\n".join(f"    {line}" for line in child.tail) or "    (nothing on stderr)"
        return RunError(
            f"run: {child.name} exited with status {child.proc.returncode} {when}; "
            f"its last lines on stderr:\n{lines}\nrun: stopping the others",
            1,
        )

    def wait_serving(self, child: Child, timeout: float) -> bool:
        """True when ``child`` (its own socket) answers SERVING; False when asked to stop."""
        assert child.proc is not None
        target = f"127.0.0.1:{child.grpc_port}"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while not self.stopping.is_set():
            if child.proc.poll() is not None:
                raise self.exited(child, "during start-up")
            if time.monotonic() > deadline:
                lines = "\n".join(f"    {line}" for line in child.tail)
                raise RunError(
                    f"run: {child.name} not SERVING on :{child.grpc_port} after {timeout:.0f}s "
                    f"(last answer: {last}; MODELSERVE_RUN_START_TIMEOUT_S sets the limit); "
                    f"its last lines on stderr:\n{lines}"
                )
            if owns_port(child.proc.pid, child.grpc_port):
                last = _health(target)
                if last == "SERVING":
                    return True
            self.stopping.wait(0.2)
        return False

    def register_demo(self, registry: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/register_demo.py"), registry],
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and not self.stopping.is_set() and time.monotonic() < deadline:
            self.stopping.wait(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        elif proc.returncode != 0:
            print(f"run: register_demo failed with status {proc.returncode}; the services keep running")

    def stop(self) -> None:
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill_all(signal.SIGKILL)
        for child in self.children:
            assert child.proc is not None
            child.proc.wait()
            for t in child.pumps:
                t.join(2.0)


def admin_key(env: dict[str, str], data: Path) -> str:
    """Bootstraps the admin key of this local run (authentication is on by default); returns the
    line that tells where it is."""
    if env.get("GATEWAY_AUTH_ENABLED", "true").lower() in ("false", "0", "no", "off"):
        return "authentication is off (GATEWAY_AUTH_ENABLED=false): no key needed"
    if "GATEWAY_ADMIN_API_KEY" in env:
        return "admin API key: the one you set in GATEWAY_ADMIN_API_KEY"
    key_file = data / "admin-api-key"
    if not key_file.exists():
        key_file.write_text("ms_admin_" + secrets.token_urlsafe(24))
        key_file.chmod(0o600)
    env["GATEWAY_ADMIN_API_KEY"] = key_file.read_text().strip()
    return (
        f"admin API key: {env['GATEWAY_ADMIN_API_KEY']} (stored in {key_file}; "
        f'export KEY=$(cat {key_file}) and send "Authorization: Bearer $KEY")'
    )


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("MODELSERVE_LOG_FORMAT", "console")
    data = Path(env.get("MODELSERVE_DATA_DIR", str(ROOT / "data")))
    runner = Runner(env)
    signal.signal(signal.SIGINT, runner.on_signal)
    signal.signal(signal.SIGTERM, runner.on_signal)
    try:
        ports, children = plan(env)
        check_ports(ports)
        try:
            timeout = float(env.get("MODELSERVE_RUN_START_TIMEOUT_S", "120"))
        except ValueError:
            raise RunError("run: MODELSERVE_RUN_START_TIMEOUT_S must be a number of seconds", 2) from None
        try:
            data.mkdir(parents=True, exist_ok=True)
            key_line = admin_key(env, data)
        except OSError as exc:
            raise RunError(
                f"run: cannot use the data folder {data} (MODELSERVE_DATA_DIR): {exc}", 2
            ) from None
        for child in children:
            if runner.stopping.is_set():
                break
            child.env[child.name.upper() + "_LOG_FORMAT"] = env["MODELSERVE_LOG_FORMAT"]
            runner.start(child)
            if not runner.wait_serving(child, timeout):
                break
            print(f"run: {child.name} SERVING on :{child.grpc_port}", flush=True)
        if not runner.stopping.is_set():
            runner.register_demo(f"127.0.0.1:{children[0].grpc_port}")
        if not runner.stopping.is_set():
            http = next(p.port for p in ports if p.var == "GATEWAY_HTTP_PORT")
            print(
                f"run: all four services are SERVING; gateway REST on http://127.0.0.1:{http} "
                f"(docs at /docs), gRPC on :{children[3].grpc_port}.\n"
                f"run: {key_line}\nrun: Ctrl-C stops them.",
                flush=True,
            )
        while not runner.stopping.is_set():
            for child in runner.children:
                assert child.proc is not None
                if child.proc.poll() is not None:
                    raise runner.exited(child, "while running")
            runner.stopping.wait(0.3)
        print("run: stopping", flush=True)
        return 0
    except RunError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return exc.status
    finally:
        runner.stop()


if __name__ == "__main__":
    raise SystemExit(main())
