"""tritonclient.grpc (sync, asyncio, streaming) against the model server started as a subprocess,
with the client in a process of its own (tritonclient.grpc's protos clash with ours in one process).
Every check in tritonclient_script.py exits non-zero with its reason, which fails the test loudly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ms_test_repo import build_repo

from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = Path(__file__).with_name("tritonclient_script.py")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo = build_repo(tmp_path_factory.mktemp("tc") / "repo")
    for name in ("linear", "text_upper", "classifier"):
        shutil.copytree(ROOT / "models" / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    env = {
        "MODEL_SERVER_MODEL_REPOSITORY": str(repo),
        "MODEL_SERVER_GRPC_PORT": str(port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_ACCESS_LOG": "false",
        "MODEL_SERVER_SHUTDOWN_GRACE_S": "1",
    }
    with ServiceProcess("modelserve_model_server", env, port) as proc:
        yield proc.target


@pytest.mark.parametrize("mode", ["sync", "stream", "aio"])
def test_tritonclient_grpc_works_unchanged(served: str, mode: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), served, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"tritonclient {mode} failed:\n{done.stdout}\n{done.stderr}"
    assert f"OK {mode}" in done.stdout
