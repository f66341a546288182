"""Property-based fuzzing (hypothesis, bounded) of the tensor decoder (the wire scanner the Triton
router uses is fuzzed with modelserve_common.wire in libs/common/tests/test_wire.py):

* the tensor decoder (codec.Codec.decode): for any request (names, datatypes, shapes up to 2^62,
  raw or typed contents, valid and broken BYTES framing) it either returns tensors that match the
  declared shapes or raises InvalidTensor, and never allocates more than a small multiple of the
  request's own size (tracemalloc peak; numpy reports its buffers to tracemalloc).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.tensors import BY_NAME, InvalidTensor, encode_bytes
from modelserve_model_server.codec import Codec, Limits
from modelserve_model_server.config import spec_from_config

Input = pb.ModelInferRequest.InferInputTensor
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOC_FACTOR = 32
"""A decoded request may cost at most this many times its serialized size (plus ALLOC_SLACK):
BYTES elements become Python bytes objects (about 40 bytes each for a 4-byte wire minimum)."""
ALLOC_SLACK = 64 * 1024


def _codec() -> Codec:
    cfg = config_pb.ModelConfig(backend="python", max_batch_size=4)
    cfg.input.add(name="b", data_type=config_pb.TYPE_STRING, dims=[-1])
    cfg.input.add(name="f", data_type=config_pb.TYPE_FP32, dims=[2])
    cfg.input.add(name="i", data_type=config_pb.TYPE_INT64, dims=[-1, -1], optional=True)
    cfg.input.add(name="h", data_type=config_pb.TYPE_FP16, dims=[-1], optional=True)
    cfg.output.add(name="o", data_type=config_pb.TYPE_FP32, dims=[2])
    spec = spec_from_config(cfg, name="fuzz")
    # the default element limits (64 Mi): what keeps memory down must be the check of each
    # declared count against the bytes present, not a small limit
    return Codec(spec, "1", Limits(max_inputs=6, max_outputs=2))


CODEC = _codec()
TYPES = sorted(BY_NAME)

dims = st.one_of(
    st.integers(-3, 6), st.integers(-(2**62), 2**62), st.sampled_from([2**20, 2**24, 2**26, 2**31, 2**40])
)


@st.composite
def tensors(draw: st.DrawFn, raw: bool) -> tuple[Input, bytes | None]:
    name = draw(st.sampled_from(["b", "f", "i", "h", "x", ""]))
    spec_type = {"b": "BYTES", "f": "FP32", "i": "INT64", "h": "FP16"}.get(name, "FP32")
    datatype = draw(st.one_of(st.just(spec_type), st.sampled_from([*TYPES, "", "FP32 "])))
    shape = draw(st.lists(dims, min_size=0, max_size=4))
    t = Input(name=name, datatype=datatype, shape=shape)
    if raw:
        kind = draw(st.sampled_from(["bytes_frames", "random", "sized"]))
        if kind == "bytes_frames":
            elements = draw(st.lists(st.binary(max_size=6), max_size=12))
            payload = encode_bytes(np.array(elements, dtype=object))
            if draw(st.booleans()):
                payload = payload[: draw(st.integers(0, len(payload)))]
        elif kind == "random":
            payload = draw(st.binary(max_size=64))
        else:
            n = draw(st.integers(0, 40))
            payload = b"\1" * (n * max(BY_NAME.get(datatype, BY_NAME["FP32"]).size, 1))
        return t, payload
    field = draw(
        st.sampled_from(
            ["bytes_contents", "fp32_contents", "int64_contents", "int_contents", "bool_contents", "none"]
        )
    )
    count = draw(st.integers(0, 24))
    if field == "bytes_contents":
        t.contents.bytes_contents.extend(
            draw(st.lists(st.binary(max_size=5), min_size=count, max_size=count))
        )
    elif field == "fp32_contents":
        t.contents.fp32_contents.extend([1.5] * count)
    elif field == "int64_contents":
        t.contents.int64_contents.extend([-(2**40)] * count)
    elif field == "int_contents":
        t.contents.int_contents.extend([7] * count)
    elif field == "bool_contents":
        t.contents.bool_contents.extend([True] * count)
    return t, None


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    raw = draw(st.booleans())
    items = draw(st.lists(tensors(raw), max_size=5))
    request = pb.ModelInferRequest(model_name="fuzz", inputs=[t for t, _ in items])
    if raw:
        payloads = [p or b"" for _, p in items]
        if draw(st.booleans()) and payloads:
            payloads = payloads[:-1]  # one entry short
        request.raw_input_contents.extend(payloads)
    for name in draw(st.lists(st.sampled_from(["o", "o", "nope"]), max_size=3)):
        request.outputs.add(name=name)
    return request


@st.composite
def near_valid_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A valid request (raw or typed), then maybe one field broken: a dim made huge, the raw
    contents cut or padded, a BYTES length prefix inflated."""
    rows = draw(st.integers(1, 4))
    width = draw(st.integers(1, 5))
    texts = draw(st.lists(st.binary(max_size=6), min_size=rows * width, max_size=rows * width))
    floats = np.arange(rows * 2, dtype=np.float32)
    b = Input(name="b", datatype="BYTES", shape=[rows, width])
    f = Input(name="f", datatype="FP32", shape=[rows, 2])
    raw = draw(st.booleans())
    request = pb.ModelInferRequest(model_name="fuzz", inputs=[b, f])
    if raw:
        request.raw_input_contents.extend([encode_bytes(np.array(texts, dtype=object)), floats.tobytes()])
    else:
        request.inputs[0].contents.bytes_contents.extend(texts)
        request.inputs[1].contents.fp32_contents.extend(floats.tolist())
    mutation = draw(st.sampled_from(["none", "huge_dim", "huge_dim", "cut", "pad", "inflate"]))
    if mutation == "huge_dim":
        which = draw(st.sampled_from([0, 0, 1]))
        request.inputs[which].shape[-1] = draw(st.sampled_from([2**20, 2**24, 2**26, 2**40]))
    elif raw and mutation == "cut":
        request.raw_input_contents[0] = request.raw_input_contents[0][: draw(st.integers(0, 8))]
    elif raw and mutation == "pad":
        request.raw_input_contents[0] += b"\0" * draw(st.integers(1, 9))
    elif raw and mutation == "inflate" and texts:
        request.raw_input_contents[0] = b"\xff\xff\xff\x7f" + request.raw_input_contents[0][4:]
    return request


@FUZZ
@given(request=st.one_of(requests(), near_valid_requests()))
def test_decoder_raises_only_invalid_tensor_and_allocates_in_proportion(
    request: pb.ModelInferRequest,
) -> None:
    size = request.ByteSize()
    tracemalloc.start()
    try:
        try:
            decoded = CODEC.decode(request)
        except InvalidTensor as exc:
            decoded = None
            assert exc.message and len(exc.message) < 1000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOC_FACTOR * size + ALLOC_SLACK, f"decoding a {size}-byte request allocated {peak} bytes"
    event("rejected" if decoded is None else "decoded")
    if decoded is None:
        return
    by_name = {t.name: t for t in request.inputs}
    assert set(decoded.inputs) <= set(by_name) and "b" in decoded.inputs and "f" in decoded.inputs
    for name, array in decoded.inputs.items():
        assert list(array.shape) == list(by_name[name].shape)
        assert array.dtype == BY_NAME[by_name[name].datatype].dtype
    assert 1 <= decoded.rows <= 4
