"""tritonclient.http (JSON and binary) through the gateway's REST port and tritonclient.grpc
through its front door, against the real model server's `linear` model; results must equal the
model server's own answer. argv: gateway_http gateway_grpc model_server_grpc."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main() -> None:
    http_url, gw_grpc, ms_grpc = sys.argv[1:4]
    x = np.random.RandomState(1).randn(3, 16).astype(np.float32)

    def grpc_infer(url: str) -> np.ndarray:
        c = grpcclient.InferenceServerClient(url=url)
        i = grpcclient.InferInput("x", [3, 16], "FP32")
        i.set_data_from_numpy(x)
        return c.infer("linear", [i]).as_numpy("y")

    expected = grpc_infer(ms_grpc)
    via_front_door = grpc_infer(gw_grpc)
    h = httpclient.InferenceServerClient(url=http_url)
    assert h.is_server_ready() and h.is_model_ready("linear")
    meta = h.get_model_metadata("linear")
    out = {}
    for binary in (False, True):
        i = httpclient.InferInput("x", [3, 16], "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        res = h.infer("linear", [i], outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)])
        out["binary" if binary else "json"] = np.allclose(res.as_numpy("y"), expected, rtol=1e-6)
    out["front_door"] = bool(np.array_equal(via_front_door, expected))
    out["metadata"] = meta["inputs"][0]["name"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
