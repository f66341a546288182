#!/usr/bin/env python3
"""Peer 1b: the same tritonserver binary that PyTriton ships, started directly on a model repository
whose model runs in Triton's python backend (no PyTriton proxy process / zmq hop).

Prepares <workdir>/backends (python backend + the stub for this interpreter's version, as PyTriton does)
and then exec()s tritonserver, so the PID the caller holds is the server's.
"""

import argparse
import os
import shutil
import sys
import sysconfig

import pytriton

p = argparse.ArgumentParser()
p.add_argument("--grpc-port", type=int, default=8001)
p.add_argument("--http-port", type=int, default=8000)
p.add_argument("--metrics-port", type=int, default=8002)
p.add_argument("--address", default="127.0.0.1")
p.add_argument("--workdir", required=True)
p.add_argument("--repo", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_repo"))
a = p.parse_args()

pkg = os.path.dirname(pytriton.__file__)
dist = os.path.join(pkg, "tritonserver")
libs = os.path.join(os.path.dirname(pkg), "nvidia_pytriton.libs")
ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
backends = os.path.join(a.workdir, "backends")
shutil.rmtree(backends, ignore_errors=True)
shutil.copytree(os.path.join(dist, "backends"), backends)
shutil.copy(
    os.path.join(dist, "python_backend_stubs", ver, "triton_python_backend_stub"),
    os.path.join(backends, "python", "triton_python_backend_stub"),
)

env = dict(os.environ)
# the stub must link this interpreter's libpython (pyenv), not Debian's older /usr/lib libpython3.11
env["LD_LIBRARY_PATH"] = ":".join(
    x for x in (sysconfig.get_config_var("LIBDIR"), libs, env.get("LD_LIBRARY_PATH")) if x
)
env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", "")
binary = os.path.join(dist, "bin", "tritonserver")
args = [
    binary,
    f"--model-repository={a.repo}",
    f"--backend-directory={backends}",
    f"--cache-directory={os.path.join(dist, 'caches')}",
    f"--grpc-port={a.grpc_port}",
    f"--http-port={a.http_port}",
    f"--metrics-port={a.metrics_port}",
    f"--grpc-address={a.address}",
    f"--http-address={a.address}",
    f"--metrics-address={a.address}",
    "--log-verbose=0",
    "--exit-timeout-secs=5",
    "--strict-model-config=true",
]
sys.stdout.flush()
os.execve(binary, args, env)
