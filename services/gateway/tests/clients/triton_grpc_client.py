"""Runs tritonclient.grpc against the gateway's gRPC front door (in its own process: it registers
the same `inference.*` proto symbols as our stubs). argv: target. Prints one JSON line."""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> None:
    client = grpcclient.InferenceServerClient(url=sys.argv[1])
    assert client.is_server_live()
    assert client.is_model_ready("add")
    meta = client.get_model_metadata("add", as_json=True)
    assert meta["inputs"][0]["name"] == "INPUT0", meta
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    i0 = grpcclient.InferInput("INPUT0", [2, 3], "FP32")
    i0.set_data_from_numpy(a)
    i1 = grpcclient.InferInput("INPUT1", [2, 3], "FP32")
    i1.set_data_from_numpy(a)
    res = client.infer("add", [i0, i1], model_version="2", headers={"x-trace": "1"})
    assert np.array_equal(res.as_numpy("OUTPUT0"), a * 2)
    assert res.get_response().model_version == "2"
    b = np.array([b"x", b"yz"], dtype=np.object_)
    ib = grpcclient.InferInput("INPUT0", [2], "BYTES")
    ib.set_data_from_numpy(b)
    res = client.infer("identity", [ib])
    assert list(res.as_numpy("OUTPUT0")) == [b"x", b"yz"]
    # Bidirectional streaming through the proxy.
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for _ in range(3):
        client.async_stream_infer("add", [i0, i1])
    got = [results.get(timeout=10) for _ in range(3)]
    client.stop_stream()
    assert all(err is None and np.array_equal(r.as_numpy("OUTPUT0"), a * 2) for r, err in got), got
    error = ""
    try:
        client.infer("missing", [i0])
    except grpcclient.InferenceServerException as exc:
        error = exc.status() + ": " + exc.message()
    print(json.dumps({"ok": True, "error": error}))


if __name__ == "__main__":
    main()
