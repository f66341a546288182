"""SDK benchmark: what `modelserve_client` adds over a bare generated-stub call, and AsyncClient
throughput. One model server process (the local `linear` model: x FP32 [1,16] -> y FP32 [1,4]),
called as a trusted in-cluster caller so that no gateway work is in the figures.

  bare c=1      generated stub (modelserve.inference.v2), request built once, response unread
  sdk c=1       Client.infer({"x": ndarray}) -> {"y": ndarray} (build, encode, decode each call)
  added_us      sdk p50 - bare p50 (the issue's target: <= 50 us)
  client_us     the SDK's own CPU per call without the network (request build + response decode)
  async c=N     AsyncClient.infer, N in flight on one channel, requests/s

Prints JSON lines on stderr, a table on stdout, and writes --out (JSON).

    .venv/bin/python bench/bench_sdk.py --duration 3 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from modelserve_client import AsyncClient, Client
from modelserve_client._messages import infer_outputs, infer_request
from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL = "linear"


def stats(lat_s: list[float], wall_s: float) -> dict[str, float]:
    a = np.asarray(lat_s) * 1e6
    return {
        "n": len(a),
        "rps": len(a) / wall_s,
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
    }


def bare(target: str, x: np.ndarray, duration: float) -> dict[str, float]:
    req = pb.ModelInferRequest(
        model_name=MODEL,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=list(x.shape))],
        raw_input_contents=[x.tobytes()],
    )
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(200):
            stub.ModelInfer(req, timeout=10)
        lat: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            t = time.perf_counter()
            stub.ModelInfer(req, timeout=10)
            lat.append(time.perf_counter() - t)
        return stats(lat, time.perf_counter() - start)


def sdk(target: str, x: np.ndarray, duration: float) -> dict[str, float]:
    with Client(target, timeout=10) as c:
        for _ in range(200):
            c.infer(MODEL, {"x": x})
        lat: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            t = time.perf_counter()
            c.infer(MODEL, {"x": x})
            lat.append(time.perf_counter() - t)
        return stats(lat, time.perf_counter() - start)


def client_only(x: np.ndarray, n: int = 20000) -> float:
    """Microseconds of SDK CPU per call: build the request from numpy, decode a response."""
    req = infer_request(MODEL, {"x": x}, None, None, None, None, None)
    resp_cls = type(req).DESCRIPTOR.file.pool.FindMessageTypeByName("inference.ModelInferResponse")
    from google.protobuf import message_factory

    r = message_factory.GetMessageClass(resp_cls)(model_name=MODEL)
    o = r.outputs.add()
    o.name, o.datatype = "y", "FP32"
    o.shape.extend([1, 4])
    r.raw_output_contents.append(np.zeros((1, 4), np.float32).tobytes())
    wire = r.SerializeToString()
    cls = type(r)
    t = time.perf_counter()
    for _ in range(n):
        infer_request(MODEL, {"x": x}, None, None, None, None, None).SerializeToString()
        infer_outputs(cls.FromString(wire))
    return (time.perf_counter() - t) / n * 1e6


def async_rps(target: str, x: np.ndarray, conc: int, duration: float) -> dict[str, float]:
    async def main() -> dict[str, float]:
        async with AsyncClient(target, timeout=10) as c:
            await asyncio.gather(*(c.infer(MODEL, {"x": x}) for _ in range(conc * 4)))
            lat: list[float] = []
            start = time.perf_counter()

            async def worker() -> None:
                while time.perf_counter() - start < duration:
                    t = time.perf_counter()
                    await c.infer(MODEL, {"x": x})
                    lat.append(time.perf_counter() - t)

            await asyncio.gather(*(worker() for _ in range(conc)))
            return stats(lat, time.perf_counter() - start)

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    ap.add_argument("--concurrency", type=int, default=32, help="AsyncClient calls in flight")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sdk.json"))
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ms = ServiceProcess(
            "modelserve_model_server",
            {
                "MODEL_SERVER_GRPC_PORT": str(port),
                "MODEL_SERVER_METRICS_PORT": "-1",
                "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
                "MODEL_SERVER_DATA_DIR": tmp,
                "MODEL_SERVER_ACCESS_LOG": "false",
                "MODELSERVE_DATA_DIR": tmp,
            },
            port,
            cwd=Path(tmp),
        )
        try:
            ms.start(timeout=90)
            target = ms.target
            results: dict[str, object] = {"model": MODEL, "duration_s": args.duration}
            results["bare_c1"] = bare(target, x, args.duration)
            print(json.dumps({"bare_c1": results["bare_c1"]}), file=sys.stderr)
            results["sdk_c1"] = sdk(target, x, args.duration)
            print(json.dumps({"sdk_c1": results["sdk_c1"]}), file=sys.stderr)
            results["client_us"] = client_only(x)
            results[f"async_c{args.concurrency}"] = async_rps(target, x, args.concurrency, args.duration)
            print(
                json.dumps({f"async_c{args.concurrency}": results[f"async_c{args.concurrency}"]}),
                file=sys.stderr,
            )
        finally:
            ms.stop()
    b, s = results["bare_c1"], results["sdk_c1"]
    assert isinstance(b, dict) and isinstance(s, dict)
    results["added_us_p50"] = s["p50_us"] - b["p50_us"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    a = results[f"async_c{args.concurrency}"]
    assert isinstance(a, dict)
    print(f"{'cell':<14}{'req/s':>10}{'p50 us':>10}{'p99 us':>10}")
    for name, r in (("bare c=1", b), ("sdk c=1", s), (f"async c={args.concurrency}", a)):
        print(f"{name:<14}{r['rps']:>10.0f}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}")
    print(
        f"SDK added at p50: {results['added_us_p50']:.0f} us; SDK CPU per call: {results['client_us']:.1f} us"
    )


if __name__ == "__main__":
    main()
