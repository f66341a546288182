"""Model server test fixtures: the test model repository (ms_test_repo) in a temp folder, and the
real server on it (in-process, bound to a free port) with a stub."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ms_test_repo import build_repo, make_settings  # noqa: E402

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc  # noqa: E402
from modelserve_common.server import RunningServer  # noqa: E402
from modelserve_model_server.server import running_server  # noqa: E402


@dataclass
class Server:
    stub: svc_grpc.GRPCInferenceServiceStub
    running: RunningServer
    repo: Path
    channel: grpc.aio.Channel


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return build_repo(tmp_path / "repo")


@pytest.fixture
async def server(repo: Path) -> AsyncIterator[Server]:
    async with running_server(make_settings(repo)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Server(svc_grpc.GRPCInferenceServiceStub(channel), running, repo, channel)
