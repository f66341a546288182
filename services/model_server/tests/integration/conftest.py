"""Fixtures for the Triton path: a real ``tritonserver`` (from nvidia-pytriton, CPU, python backend)
on the test repository ``triton_repo/``, and the model server in-process in front of it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing.triton import TritonProcess, pytriton_dist
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings

TRITON_REPO = Path(__file__).parent / "triton_repo"
ALL_MODELS = ("linear", "identity_int", "identity_fp", "identity_bool", "identity_bytes", "slow")


def _have_triton() -> bool:
    return pytriton_dist() is not None


@pytest.fixture(scope="session")
def triton_repo() -> Path:
    return TRITON_REPO


@pytest.fixture(scope="session")
def triton() -> Iterator[TritonProcess]:
    """One tritonserver for the session with every test model loaded (explicit model control).
    Tests must leave it as they found it; tests that kill Triton start their own."""
    if not _have_triton():
        pytest.skip("nvidia-pytriton (tritonserver) not installed")
    proc = TritonProcess(TRITON_REPO, models=ALL_MODELS)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(proc.workdir, ignore_errors=True)


@pytest.fixture
def triton_factory() -> Iterator[Any]:
    """Starts throwaway tritonservers (``factory(models, grpc_port=None)``) stopped after the test."""
    if not _have_triton():
        pytest.skip("nvidia-pytriton (tritonserver) not installed")
    started: list[TritonProcess] = []

    def factory(models: tuple[str, ...] = ("linear",), grpc_port: int | None = None) -> TritonProcess:
        proc = TritonProcess(TRITON_REPO, models=models, grpc_port=grpc_port)
        started.append(proc)
        return proc.start()

    try:
        yield factory
    finally:
        for proc in started:
            proc.stop()
            shutil.rmtree(proc.workdir, ignore_errors=True)


_EMPTY_REPO = Path(tempfile.mkdtemp(prefix="ms-empty-repo-"))  # no local models: none shadows Triton's


def _settings(triton_url: str, **overrides: Any) -> ModelServerSettings:
    overrides.setdefault("model_repository", _EMPTY_REPO)
    overrides.setdefault("load_models", "")
    return ModelServerSettings(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        access_log=False,
        triton_url=triton_url,
        **overrides,
    )


@pytest.fixture
def model_server_settings() -> Any:
    """``make(triton_url, **overrides)`` -> ModelServerSettings for an in-process model server."""
    return _settings


@pytest.fixture
async def served(triton: TritonProcess) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(stub through the model server, stub straight to Triton, RunningServer) on the session Triton."""
    async with running_server(_settings(triton.target)) as running:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ours,
            grpc.aio.insecure_channel(triton.target) as direct,
        ):
            yield svc_grpc.GRPCInferenceServiceStub(ours), svc_grpc.GRPCInferenceServiceStub(direct), running
