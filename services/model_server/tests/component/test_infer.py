"""ModelInfer over the wire: every datatype raw and typed, and every validation rule with its status
and message."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.tensors import encode_bytes

Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], np.uint8),
    "UINT16": np.array([[0, 7, 65535]], np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 0, 127]], np.int8),
    "INT16": np.array([[-32768, 0, 32767]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], np.int64),
    "FP16": np.array([[1.5, -np.inf, np.nan]], np.float16),
    "BF16": np.array([[0x3FC0, 0x7F80, 0xFFC1]], np.uint16),  # 1.5, +inf, a NaN payload (bits)
    "FP32": np.array([[1.5, np.inf, np.nan]], np.float32),
    "FP64": np.array([[-1e300, -np.inf, np.nan]], np.float64),
    "BYTES": np.array([[b"", b"abc", "grüße".encode()]], dtype=object),
}
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def raw_of(dt: str, a: np.ndarray) -> bytes:
    return encode_bytes(a) if dt == "BYTES" else a.tobytes()


def decode_raw(dt: str, data: bytes, shape: list[int]) -> np.ndarray:
    if dt == "BYTES":
        out, pos = [], 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 4], "little")
            out.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return np.array(out, dtype=object).reshape(shape)
    dtype = SAMPLES[dt].dtype
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return a.tobytes() == b.tobytes()  # NaN and Inf bit-for-bit
    return bool(np.array_equal(a, b))


@pytest.mark.parametrize("dt", list(SAMPLES))
async def test_infer_raw_every_datatype_round_trips_unchanged(server, dt):
    a = SAMPLES[dt]
    req = pb.ModelInferRequest(
        model_name=f"identity_{dt.lower()}",
        id=f"req-{dt}",
        inputs=[Input(name="INPUT0", datatype=dt, shape=a.shape)],
        raw_input_contents=[raw_of(dt, a)],
    )
    resp = await server.stub.ModelInfer(req)
    assert resp.id == f"req-{dt}"
    assert resp.model_version == "1"
    out = resp.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("OUTPUT0", dt, [1, 3])
    assert len(resp.raw_output_contents) == 1
    assert same(decode_raw(dt, resp.raw_output_contents[0], [1, 3]), a)


@pytest.mark.parametrize("dt", list(TYPED_FIELD))
async def test_infer_typed_every_datatype_answers_typed(server, dt):
    a = SAMPLES[dt]
    field = TYPED_FIELD[dt]
    contents = pb.InferTensorContents()
    getattr(contents, field).extend(a.reshape(-1).tolist())
    req = pb.ModelInferRequest(
        model_name=f"identity_{dt.lower()}",
        inputs=[Input(name="INPUT0", datatype=dt, shape=a.shape, contents=contents)],
    )
    resp = await server.stub.ModelInfer(req)
    assert not resp.raw_output_contents
    got = list(getattr(resp.outputs[0].contents, field))
    if dt == "BYTES":
        assert got == list(a.reshape(-1))
    else:
        assert same(np.array(got, dtype=a.dtype).reshape(a.shape), a)


async def test_infer_fp16_typed_is_invalid_with_hint(server):
    req = pb.ModelInferRequest(
        model_name="identity_fp16",
        inputs=[
            Input(
                name="INPUT0",
                datatype="FP16",
                shape=[1, 1],
                contents=pb.InferTensorContents(fp32_contents=[1]),
            )
        ],
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(req)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in exc.value.details()


def addsub(**over) -> pb.ModelInferRequest:
    a = np.arange(4, dtype=np.float32)
    req = pb.ModelInferRequest(
        model_name="addsub",
        inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
        raw_input_contents=[a.tobytes(), a.tobytes()],
    )
    for k, v in over.items():
        setattr(req, k, v) if not isinstance(v, list) else (req.ClearField(k), getattr(req, k).extend(v))
    return req


async def test_infer_requested_outputs_only_those_in_order(server):
    req = addsub(outputs=[Output(name="DIFF")])
    resp = await server.stub.ModelInfer(req)
    assert [o.name for o in resp.outputs] == ["DIFF"]
    assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == [0, 0, 0, 0]


async def test_infer_version_selects_and_default_is_highest(server):
    assert (await server.stub.ModelInfer(addsub())).model_version == "2"
    assert (await server.stub.ModelInfer(addsub(model_version="1"))).model_version == "1"


async def test_infer_model_value_error_is_invalid_argument_naming_the_model(server):
    req = pb.ModelInferRequest(
        model_name="failing",
        inputs=[Input(name="x", datatype="FP32", shape=[1])],
        raw_input_contents=[b"\0" * 4],
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(req)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # ValueError: the model rejected the input
    assert exc.value.details() == "model 'failing' rejected the input: ValueError: boom from the model"


def fp32_in(name: str, shape: list[int], nbytes: int | None = None, **kw) -> tuple[Input, bytes]:
    n = int(np.prod(shape)) if nbytes is None else nbytes
    return Input(name=name, datatype="FP32", shape=shape, **kw), b"\0" * (4 * n if nbytes is None else nbytes)


INVALID_CASES = {
    # name: (request builder, expected status, words in the message)
    "unknown_model": (lambda: addsub(model_name="nope"), grpc.StatusCode.NOT_FOUND, ["nope", "not found"]),
    "unknown_version": (
        lambda: addsub(model_version="7"),
        grpc.StatusCode.NOT_FOUND,
        ["version 7", "[1, 2]"],
    ),
    "bad_version": (lambda: addsub(model_version="x"), grpc.StatusCode.INVALID_ARGUMENT, ["'x'"]),
    "path_traversal": (lambda: addsub(model_name="../etc"), grpc.StatusCode.INVALID_ARGUMENT, ["'../etc'"]),
    "path_slash": (lambda: addsub(model_name="a/b"), grpc.StatusCode.INVALID_ARGUMENT, ["'a/b'"]),
    "missing_input": (
        lambda: addsub(inputs=[fp32_in("A", [4])[0]], raw_input_contents=[b"\0" * 16]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["missing required inputs ['B']"],
    ),
    "unexpected_input": (
        lambda: addsub(
            inputs=[fp32_in("A", [4])[0], fp32_in("B", [4])[0], fp32_in("C", [4])[0]],
            raw_input_contents=[b"\0" * 16] * 3,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["unexpected input 'C'", "['A', 'B']"],
    ),
    "duplicate_input": (
        lambda: addsub(
            inputs=[fp32_in("A", [4])[0], fp32_in("A", [4])[0]], raw_input_contents=[b"\0" * 16] * 2
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["more than once"],
    ),
    "wrong_datatype": (
        lambda: addsub(
            inputs=[Input(name="A", datatype="INT32", shape=[4]), fp32_in("B", [4])[0]],
            raw_input_contents=[b"\0" * 16] * 2,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["expected datatype FP32, got INT32"],
    ),
    "wrong_shape": (
        lambda: addsub(
            inputs=[fp32_in("A", [5])[0], fp32_in("B", [4])[0]], raw_input_contents=[b"\0" * 20, b"\0" * 16]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["expected shape [4], got [5]"],
    ),
    "too_many_dims": (
        lambda: addsub(
            inputs=[fp32_in("A", [1, 4])[0], fp32_in("B", [4])[0]], raw_input_contents=[b"\0" * 16] * 2
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["expected 1 dims", "[1, 4]"],
    ),
    "negative_dim": (
        lambda: addsub(
            inputs=[fp32_in("A", [-4], 16)[0], fp32_in("B", [4])[0]], raw_input_contents=[b"\0" * 16] * 2
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["positive", "[-4]"],
    ),
    "zero_dim": (
        lambda: pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[Input(name="INPUT0", datatype="FP32", shape=[1, 0])],
            raw_input_contents=[b""],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["positive", "[1, 0]"],
    ),
    "raw_length": (
        lambda: addsub(raw_input_contents=[b"\0" * 15, b"\0" * 16]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["15 bytes", "expected 16"],
    ),
    "raw_length_overflow": (
        # 2**62 * 2**62 elements: C would wrap to a small number; we must not
        lambda: pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[Input(name="INPUT0", datatype="FP32", shape=[1, 2**62])],
            raw_input_contents=[b"\0" * 16],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["exceed the limit"],
    ),
    "raw_count": (
        lambda: addsub(raw_input_contents=[b"\0" * 16]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["raw_input_contents has 1 entries but the request has 2 inputs"],
    ),
    "bytes_count": (
        lambda: pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[Input(name="INPUT0", datatype="BYTES", shape=[1, 3])],
            raw_input_contents=[encode_bytes(np.array([b"a", b"b"], dtype=object))],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["expected 3 BYTES elements", "got 2"],
    ),
    "bytes_truncated": (
        lambda: pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[Input(name="INPUT0", datatype="BYTES", shape=[1, 1])],
            raw_input_contents=[b"\x09\0\0\0abc"],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["declares 9 bytes"],
    ),
    "typed_count": (
        lambda: addsub(
            inputs=[
                Input(
                    name="A",
                    datatype="FP32",
                    shape=[4],
                    contents=pb.InferTensorContents(fp32_contents=[1, 2]),
                ),
                Input(
                    name="B",
                    datatype="FP32",
                    shape=[4],
                    contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]),
                ),
            ],
            raw_input_contents=[],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["expected 4 elements in contents.fp32_contents", "got 2"],
    ),
    "raw_and_typed": (
        lambda: addsub(
            inputs=[
                Input(
                    name="A",
                    datatype="FP32",
                    shape=[4],
                    contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]),
                ),
                fp32_in("B", [4])[0],
            ]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["both typed contents and raw_input_contents"],
    ),
    "unknown_output": (
        lambda: addsub(outputs=[Output(name="PROD")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["unknown requested output 'PROD'", "['DIFF', 'SUM']"],
    ),
    "too_many_outputs": (
        lambda: addsub(outputs=[Output(name="SUM"), Output(name="DIFF"), Output(name="SUM")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["asks for 3 outputs", "has 2"],
    ),
    "rows_over_max_batch": (
        lambda: pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[Input(name="INPUT0", datatype="FP32", shape=[9, 1])],
            raw_input_contents=[b"\0" * 36],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["batch of 9 rows exceeds max_batch_size 8"],
    ),
    "bad_priority": (
        lambda: pb.ModelInferRequest(
            model_name="slow",
            inputs=[Input(name="x", datatype="INT64", shape=[1, 1])],
            raw_input_contents=[b"\0" * 8],
            parameters={"priority": pb.InferParameter(uint64_param=3)},
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["priority 3", "1..2"],
    ),
}


@pytest.mark.parametrize("case", list(INVALID_CASES))
async def test_infer_invalid_request_has_status_and_says_why(server, case):
    build, code, words = INVALID_CASES[case]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(build())
    assert exc.value.code() is code, exc.value.details()
    for w in words:
        assert w in exc.value.details()


async def test_infer_message_over_limit_is_resource_exhausted(server):
    big = b"\0" * (1024 * 1024 + 16)  # server max_message_bytes is 1 MiB in these tests
    req = pb.ModelInferRequest(
        model_name="identity_fp32",
        inputs=[Input(name="INPUT0", datatype="FP32", shape=[1, len(big) // 4])],
        raw_input_contents=[big],
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(req)
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_infer_model_not_loaded_is_unavailable(server):
    await server.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="addsub"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(addsub())
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "not loaded" in exc.value.details()
