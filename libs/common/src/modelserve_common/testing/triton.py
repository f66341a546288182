"""Start a local ``tritonserver`` (the binary shipped by ``nvidia-pytriton``) on a model repository.

For tests, benchmarks and local development on machines without a Triton container. Production runs
Triton as its own Deployment (see README-triton.md). The server runs in its own process group in
explicit model-control mode; :meth:`TritonProcess.stop` kills the whole group and removes the
``/dev/shm`` segments and temp folders the python backend leaves behind when it is killed.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from modelserve_common.testing.launcher import free_port

_LEFTOVER_GLOBS = ("/dev/shm/triton_python_backend*", "/dev/shm/psm_*")


def pytriton_dist() -> Path | None:
    """Where nvidia-pytriton keeps ``tritonserver``; found without importing pytriton (which
    imports tritonclient.grpc, whose protos clash with ours in protobuf's default pool)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    dist = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    return dist if (dist / "bin" / "tritonserver").exists() else None


def _pytriton_dist() -> Path:
    dist = pytriton_dist()
    if dist is None:
        raise RuntimeError("tritonserver not found: install nvidia-pytriton (see README-triton.md)")
    return dist


def _leftovers() -> set[str]:
    found: set[str] = set()
    for pattern in _LEFTOVER_GLOBS:
        found.update(glob.glob(pattern))
    tmp = tempfile.gettempdir()
    for pattern in ("folder*", "python_env_*"):
        found.update(glob.glob(os.path.join(tmp, pattern)))
    return found


def _in_use() -> set[str]:
    used: set[str] = set()
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{proc}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "/dev/shm/" in line:
                        used.add(line.split(None, 5)[-1].strip().removesuffix(" (deleted)"))
            for fd in os.listdir(f"{proc}/fd"):
                target = os.readlink(f"{proc}/fd/{fd}")
                if target.startswith(("/dev/shm/", "/tmp/")):
                    used.add(target)
            used.add(os.readlink(f"{proc}/cwd"))
        except OSError:
            continue
    return used


class TritonProcess:
    """One throwaway tritonserver. ``start()`` waits until its gRPC port answers ServerReady."""

    def __init__(
        self,
        repository: str | Path,
        *,
        models: Sequence[str] = (),
        grpc_port: int | None = None,
        workdir: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = Path(repository)
        self.models = list(models)
        self.grpc_port = grpc_port or free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ms-triton-"))
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "triton.log"
        self._log: IO[bytes] | None = None
        self._before: set[str] = set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self) -> Path:
        dist = _pytriton_dist()
        backends = self.workdir / "backends"
        if not backends.exists():
            shutil.copytree(dist / "backends", backends)
            ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
            stub = dist / "python_backend_stubs" / ver / "triton_python_backend_stub"
            shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        return backends

    def command(self) -> tuple[list[str], dict[str, str]]:
        dist = _pytriton_dist()
        libs = dist.parent.parent / "nvidia_pytriton.libs"
        env = dict(os.environ)
        # The stub must link this interpreter's libpython, or model loading fails with
        # "'_thread.RLock' object has no attribute '_recursion_count'".
        env["LD_LIBRARY_PATH"] = ":".join(
            x for x in (sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH")) if x
        )
        env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", "")
        args = [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self._backends()}",
            f"--cache-directory={dist / 'caches'}",
            "--model-control-mode=explicit",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--grpc-address=127.0.0.1",
            "--http-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            "--log-verbose=0",
            "--exit-timeout-secs=2",
            "--strict-model-config=true",
            *(f"--load-model={m}" for m in self.models),
            *self.extra_args,
        ]
        return args, env

    def start(self, timeout: float = 90.0) -> TritonProcess:
        args, env = self.command()
        self._before = _leftovers()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        import grpc

        deadline = time.monotonic() + timeout
        method = "/inference.GRPCInferenceService/ServerReady"
        with grpc.insecure_channel(self.target) as channel:
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    # ServerReadyResponse{ready=true} is b"\x08\x01"
                    if call(b"", timeout=1.0) == b"\x08\x01":
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group (the python backend stubs included)."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _cleanup(self) -> None:
        # Only what appeared since start and no live process still maps or holds open (another
        # Triton started meanwhile, e.g. a second replica, keeps its own segments).
        for path in _leftovers() - self._before - _in_use():
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def __enter__(self) -> TritonProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def opentelemetry_args(url: str, *, service_name: str = "triton", schedule_delay_ms: int = 100) -> list[str]:
    """``tritonserver`` flags that trace every request in OpenTelemetry mode (``rate=1``, level
    TIMESTAMPS) and export the spans over OTLP/HTTP to ``url`` (``host:port/v1/traces``, no
    scheme; e.g. an :class:`~modelserve_common.testing.tracing.OtlpHttpReceiver`'s ``url``). Triton
    reads a W3C ``traceparent`` from the gRPC metadata of a request and makes its spans children
    of it (``InferRequest`` -> ``<model>`` -> ``compute``)."""
    return [
        "--trace-config=mode=opentelemetry",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
        f"--trace-config=opentelemetry,url={url.removeprefix('http://')}",
        f"--trace-config=opentelemetry,resource=service.name={service_name}",
        f"--trace-config=opentelemetry,bsp_schedule_delay={schedule_delay_ms}",
    ]
