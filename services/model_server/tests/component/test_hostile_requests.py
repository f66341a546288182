"""Hostile requests against the model server running as its own process: tiny messages that
declare huge shapes (BYTES, fixed-size, typed contents), sent many at once, are all rejected
INVALID_ARGUMENT before anything is allocated for them, and the process's peak resident memory
(VmHWM in /proc/<pid>/status) grows by less than PEAK_GROWTH_LIMIT. Before the codec checked
element counts against the bytes present, one 34-byte BYTES request declaring 2^26 elements cost
512 MiB. Also: the example text_upper model's UnicodeDecodeError on non-UTF-8 input comes back
INVALID_ARGUMENT naming the model."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import build_repo

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[4]
Input = pb.ModelInferRequest.InferInputTensor
Contents = pb.InferTensorContents

PEAK_GROWTH_LIMIT = 64 * 1024 * 1024
"""Most the server's peak RSS may grow while it rejects the whole hostile burst."""
ROUNDS = 10
"""Each hostile request is sent this many times, all at once."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    repo = build_repo(tmp_path_factory.mktemp("hostile") / "repo")
    shutil.copytree(
        ROOT / "models" / "text_upper", repo / "text_upper", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = free_port()
    env = {
        "MODEL_SERVER_MODEL_REPOSITORY": str(repo),
        "MODEL_SERVER_GRPC_PORT": str(port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_ACCESS_LOG": "false",
        "MODEL_SERVER_SHUTDOWN_GRACE_S": "1",
        "MODEL_SERVER_LOAD_MODELS": "identity_bytes,identity_fp32,identity_int64,text_upper",
    }
    with ServiceProcess("modelserve_model_server", env, port) as proc:
        yield proc


def peak_rss(proc: ServiceProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def hostile() -> dict[str, pb.ModelInferRequest]:
    big = 2**26
    return {
        "bytes_raw_2^26": pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[Input(name="INPUT0", datatype="BYTES", shape=[1, big])],
            raw_input_contents=[b"\1\0\0\0a"],
        ),
        "bytes_raw_8x2^23": pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[Input(name="INPUT0", datatype="BYTES", shape=[8, big // 8])],
            raw_input_contents=[b"\0\0\0\0" * 4],
        ),
        "bytes_typed_2^26": pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[
                Input(
                    name="INPUT0", datatype="BYTES", shape=[1, big], contents=Contents(bytes_contents=[b"a"])
                )
            ],
        ),
        "fp32_raw_2^26": pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[Input(name="INPUT0", datatype="FP32", shape=[1, big])],
            raw_input_contents=[b"\0" * 4],
        ),
        "int64_typed_2^26": pb.ModelInferRequest(
            model_name="identity_int64",
            inputs=[
                Input(name="INPUT0", datatype="INT64", shape=[1, big], contents=Contents(int64_contents=[1]))
            ],
        ),
        "over_the_limit": pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[Input(name="INPUT0", datatype="FP32", shape=[8, 2**60])],
            raw_input_contents=[b"\0" * 4],
        ),
    }


async def _burst(target: str) -> list[tuple[str, grpc.StatusCode, str]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = svc_grpc.GRPCInferenceServiceStub(channel)
        # a well-formed request first, so the baseline includes the request path's own memory
        ok = await stub.ModelInfer(
            pb.ModelInferRequest(
                model_name="identity_fp32",
                inputs=[Input(name="INPUT0", datatype="FP32", shape=[1, 4])],
                raw_input_contents=[np.arange(4, dtype=np.float32).tobytes()],
            ),
            timeout=10,
        )
        assert np.frombuffer(ok.raw_output_contents[0], np.float32).tolist() == [0, 1, 2, 3]
        requests = [(name, r) for name, r in hostile().items() for _ in range(ROUNDS)]

        async def one(name: str, request: pb.ModelInferRequest) -> tuple[str, grpc.StatusCode, str]:
            assert request.ByteSize() < 100
            try:
                await stub.ModelInfer(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return name, exc.code(), exc.details() or ""
            return name, grpc.StatusCode.OK, ""

        return await asyncio.gather(*(one(n, r) for n, r in requests))


def test_hostile_shapes_are_rejected_without_allocating(served: ServiceProcess) -> None:
    baseline = peak_rss(served)
    results = asyncio.run(_burst(served.target))
    assert len(results) == len(hostile()) * ROUNDS
    for name, code, details in results:
        assert code is grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {code} {details}"
    grown = peak_rss(served) - baseline
    assert grown < PEAK_GROWTH_LIMIT, f"peak RSS grew by {grown / 2**20:.1f} MiB"


async def _text_upper(target: str, text: bytes) -> pb.ModelInferResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        return await svc_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(
                model_name="text_upper",
                inputs=[
                    Input(
                        name="text", datatype="BYTES", shape=[1, 1], contents=Contents(bytes_contents=[text])
                    )
                ],
            ),
            timeout=10,
        )


def test_model_rejecting_non_utf8_text_is_invalid_argument_naming_the_model(served: ServiceProcess) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        asyncio.run(_text_upper(served.target, b"\xff\xfe"))
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("model 'text_upper' rejected the input: UnicodeDecodeError: ")
    ok = asyncio.run(_text_upper(served.target, "ß".encode()))
    assert ok.outputs[0].contents.bytes_contents == [b"SS"]
