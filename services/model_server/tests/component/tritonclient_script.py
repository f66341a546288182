"""Runs tritonclient.grpc (sync, asyncio and streaming) against a model server; exits non-zero with
the failing check on any mismatch. Run by test_tritonclient_compat.py in its own process: it imports
tritonclient.grpc, whose protos clash with ours, so it must never be imported by pytest itself."""

from __future__ import annotations

import asyncio
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

URL = sys.argv[1]
W = np.random.RandomState(0).randn(16, 4).astype(np.float32)

DTYPES = {
    "BOOL": np.array([[True, False]]),
    "UINT8": np.array([[1, 255]], np.uint8),
    "UINT16": np.array([[1, 65535]], np.uint16),
    "UINT32": np.array([[1, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[1, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 127]], np.int8),
    "INT16": np.array([[-32768, 32767]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64),
    "FP16": np.array([[1.5, np.inf]], np.float16),
    "FP32": np.array([[np.nan, -np.inf]], np.float32),
    "FP64": np.array([[1e300, np.nan]], np.float64),
    "BYTES": np.array([[b"abc", "grüße".encode()]], dtype=np.object_),
}


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.tobytes() == b.tobytes() if a.dtype.kind == "f" else bool(np.array_equal(a, b))


def linear_inputs(rows: int, mod=grpcclient):
    x = np.random.RandomState(rows).randn(rows, 16).astype(np.float32)
    inp = mod.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return x, [inp]


def sync_checks() -> None:
    c = grpcclient.InferenceServerClient(URL)
    expect(c.is_server_live() and c.is_server_ready(), "server live and ready")
    expect(c.is_model_ready("linear") and not c.is_model_ready("nope"), "model ready")
    md = c.get_server_metadata()
    expect(md.name == "modelserve", f"server metadata {md}")
    mm = c.get_model_metadata("linear")
    expect(
        [list(i.shape) for i in mm.inputs] == [[-1, 16]] and mm.inputs[0].datatype == "FP32", f"metadata {mm}"
    )
    cfg = c.get_model_config("linear").config
    expect(cfg.max_batch_size == 64 and cfg.input[0].name == "x", f"config {cfg}")
    for rows in (1, 3, 64):
        x, inputs = linear_inputs(rows)
        r = c.infer(
            "linear", inputs, request_id=f"rows{rows}", outputs=[grpcclient.InferRequestedOutput("y")]
        )
        expect(r.get_response().id == f"rows{rows}", "request id echoed")
        expect(np.allclose(r.as_numpy("y"), x @ W, atol=1e-5), f"linear rows={rows}")
    for dt, a in DTYPES.items():
        inp = grpcclient.InferInput("INPUT0", list(a.shape), dt)
        inp.set_data_from_numpy(a)
        r = c.infer(f"identity_{dt.lower()}", [inp])
        out = r.as_numpy("OUTPUT0")
        expect(out is not None and same(out, a), f"identity {dt}: {out!r} != {a!r}")
        expect(np_to_triton_dtype(out.dtype) == dt, f"dtype {dt}")
    text = np.array([[b"hello"], ["wörld".encode()]], dtype=np.object_)
    inp = grpcclient.InferInput("text", [2, 1], "BYTES")
    inp.set_data_from_numpy(text)
    r = c.infer("text_upper", [inp])
    expect(r.as_numpy("upper").reshape(-1).tolist() == [b"HELLO", "WÖRLD".encode()], "text_upper")
    expect(r.as_numpy("length").reshape(-1).tolist() == [5, 5], "text_upper length")
    feats = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    inp = grpcclient.InferInput("features", [2, 4], "FP32")
    inp.set_data_from_numpy(feats)
    r = c.infer("classifier", [inp])
    probs = r.as_numpy("probabilities")
    expect(probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5), "classifier probs")
    expect(r.as_numpy("label").shape == (2, 1), "classifier label")
    try:
        c.infer("nope", linear_inputs(1)[1])
        expect(False, "unknown model must fail")
    except InferenceServerException as exc:
        expect("NOT_FOUND" in str(exc.status()) and "nope" in exc.message(), f"unknown model error {exc}")
    bad = grpcclient.InferInput("x", [1, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 15), np.float32))
    try:
        c.infer("linear", [bad])
        expect(False, "wrong shape must fail")
    except InferenceServerException as exc:
        expect("INVALID_ARGUMENT" in str(exc.status()) and "[-1, 16]" in exc.message(), f"shape error {exc}")
    stats = c.get_inference_statistics("linear", as_json=True)
    expect(int(stats["model_stats"][0]["inference_stats"]["success"]["count"]) >= 3, f"stats {stats}")
    idx = c.get_model_repository_index(as_json=True)
    expect(any(m["name"] == "classifier" for m in idx["models"]), "repository index")
    c.unload_model("classifier")
    expect(not c.is_model_ready("classifier"), "unloaded")
    c.load_model("classifier")
    expect(c.is_model_ready("classifier"), "loaded again")
    c.close()


def stream_checks() -> None:
    c = grpcclient.InferenceServerClient(URL)
    results: queue.Queue = queue.Queue()
    c.start_stream(callback=lambda result, error: results.put((result, error)))
    sent = []
    for i in range(12):
        if i == 5:
            x, inputs = np.zeros((1, 15), np.float32), [grpcclient.InferInput("x", [1, 15], "FP32")]
            inputs[0].set_data_from_numpy(x)
        else:
            x, inputs = linear_inputs(1 + i % 3)
        c.async_stream_infer("linear", inputs, request_id=str(i))
        sent.append(x)
    got = [results.get(timeout=10) for _ in range(12)]
    c.stop_stream()
    for i, (result, error) in enumerate(got):
        if i == 5:
            expect(
                result is None and error is not None and "expected shape" in error.message(),
                f"stream err {error}",
            )
            continue
        expect(error is None, f"stream {i}: {error}")
        expect(result.get_response().id == str(i), f"stream order {i}: {result.get_response().id}")
        expect(np.allclose(result.as_numpy("y"), sent[i] @ W, atol=1e-5), f"stream value {i}")
    c.close()


async def aio_checks() -> None:
    c = aioclient.InferenceServerClient(URL)
    expect(await c.is_server_ready(), "aio ready")
    xs = [linear_inputs(1 + i % 4, aioclient) for i in range(32)]
    responses = await asyncio.gather(
        *(c.infer("linear", inp, request_id=f"a{i}") for i, (_, inp) in enumerate(xs))
    )
    for i, r in enumerate(responses):
        expect(r.get_response().id == f"a{i}", "aio id")
        expect(np.allclose(r.as_numpy("y"), xs[i][0] @ W, atol=1e-5), f"aio value {i}")

    async def requests():
        for i in range(8):
            x, inputs = linear_inputs(2, aioclient)
            yield {"model_name": "linear", "inputs": inputs, "request_id": f"s{i}"}

    ids = []
    async for result, error in c.stream_infer(requests()):
        expect(error is None, f"aio stream error {error}")
        ids.append(result.get_response().id)
    expect(ids == [f"s{i}" for i in range(8)], f"aio stream order {ids}")
    md = await c.get_model_metadata("text_upper")
    expect(md.inputs[0].datatype == "BYTES", "aio metadata")
    await c.close()


if __name__ == "__main__":
    mode = sys.argv[2]
    if mode == "sync":
        sync_checks()
    elif mode == "stream":
        stream_checks()
    else:
        asyncio.run(aio_checks())
    print(f"OK {mode}")
