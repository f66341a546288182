#!/usr/bin/env python
"""Writes the gRPC frame h2load replays: 5-byte gRPC prefix + a serialized ModelInferRequest for
model `linear` (x FP32 [rows, 16] as raw_input_contents), and checks it with a real call when
--target is given (the answer must equal x @ W). Prints the expected response size as JSON."""

from __future__ import annotations

import argparse
import json
import struct
import sys

import grpc
import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc

W = np.random.RandomState(0).randn(16, 4).astype(np.float32)


def request(rows: int, seed: int = 1) -> tuple[pb.ModelInferRequest, np.ndarray]:
    x = np.random.RandomState(seed).randn(rows, 16).astype(np.float32)
    req = pb.ModelInferRequest(
        model_name="linear",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[rows, 16])],
        raw_input_contents=[x.tobytes()],
    )
    return req, x


def check(resp: pb.ModelInferResponse, x: np.ndarray) -> None:
    y = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(x.shape[0], 4)
    if list(resp.outputs[0].shape) != [x.shape[0], 4] or not np.allclose(y, x @ W, rtol=1e-5, atol=1e-5):
        raise SystemExit(f"wrong answer: {y} != {x @ W}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--target", default="")
    a = p.parse_args()
    req, x = request(a.rows)
    body = req.SerializeToString()
    with open(a.out, "wb") as f:
        f.write(struct.pack(">BI", 0, len(body)) + body)
    info = {"frame": a.out, "request_bytes": len(body)}
    if a.target:
        with grpc.insecure_channel(a.target) as ch:
            resp = svc_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=10)
        check(resp, x)
        info["response_bytes"] = len(resp.SerializeToString())
    json.dump(info, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
