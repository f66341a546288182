"""Runs tritonclient.http against a gateway (in its own process: tritonclient must not share a
process with our inference stubs). argv: URL. Prints one JSON line with the results; exits 1 on
the first mismatch."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as httpclient

DTYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def sample(dt: str) -> np.ndarray:
    if dt == "BYTES":
        return np.array([[b"hello", b"w\xc3\xb6rld"], [b"", b"x" * 10]], dtype=np.object_)
    if dt == "BOOL":
        return np.array([[True, False], [False, True]])
    np_dt = DTYPES[dt]
    if np.dtype(np_dt).kind == "f":
        return np.array([[1.5, -2.25], [3.0, 1e3]], dtype=np_dt)
    info = np.iinfo(np_dt)
    return np.array([[info.min, info.max], [0, 7]], dtype=np_dt)


def main() -> None:
    url = sys.argv[1]
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("identity")
    meta = client.get_model_metadata("add")
    assert meta["inputs"][0]["name"] == "INPUT0", meta
    assert client.get_server_metadata()["name"] == "fake"
    results = {}
    for binary in (False, True):
        for dt in DTYPES:
            data = sample(dt)
            if not binary and dt == "FP16":
                continue  # tritonclient.http itself refuses FP16 as JSON
            inp = httpclient.InferInput("INPUT0", list(data.shape), dt)
            inp.set_data_from_numpy(data, binary_data=binary)
            out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
            res = client.infer("identity", [inp], outputs=[out])
            got = res.as_numpy("OUTPUT0")
            if dt == "BYTES":
                ok = [bytes(x) if isinstance(x, bytes) else str(x).encode() for x in got.ravel()] == list(
                    data.ravel()
                )
            else:
                ok = got.dtype == data.dtype and np.array_equal(got, data)
            if not ok:
                print(json.dumps({"failed": dt, "binary": binary, "got": repr(got)}))
                sys.exit(1)
            results[f"{dt}:{'bin' if binary else 'json'}"] = True
    # add: two inputs, default outputs.
    a = np.arange(4, dtype=np.float32)
    i0 = httpclient.InferInput("INPUT0", [4], "FP32")
    i0.set_data_from_numpy(a)
    i1 = httpclient.InferInput("INPUT1", [4], "FP32")
    i1.set_data_from_numpy(a, binary_data=False)
    res = client.infer("add", [i0, i1], model_version="2")
    assert np.array_equal(res.as_numpy("OUTPUT0"), a * 2)
    assert res.get_response()["model_version"] == "2"
    # NaN and infinities as JSON.
    nin = httpclient.InferInput("INPUT0", [1], "FP32")
    nin.set_data_from_numpy(np.zeros(1, dtype=np.float32), binary_data=False)
    for model in ("nan", "nan_typed"):
        res = client.infer(
            model, [nin], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)]
        )
        got = res.as_numpy("OUTPUT0")
        assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf and got[3] == 1.5, got
    # Errors surface as exceptions with the gateway's message.
    try:
        client.infer("missing", [nin])
    except httpclient.InferenceServerException as exc:
        results["missing_error"] = str(exc.message())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
