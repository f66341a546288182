"""KServe v2 REST: JSON and binary tensors, metadata, readiness, errors, and tritonclient.http."""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from pathlib import Path

import numpy as np

CLIENTS = Path(__file__).parent.parent / "clients"


def _infer_body(extra: dict | None = None) -> dict:
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            {"name": "INPUT1", "shape": [2, 2], "datatype": "FP32", "data": [1, 1, 1, 1]},
        ]
    }
    body.update(extra or {})
    return body


async def test_v2_health_metadata_and_ready(gateway) -> None:
    assert (await gateway.http.get("/v2/health/live")).status_code == 200
    assert (await gateway.http.get("/v2/health/ready")).status_code == 200
    r = await gateway.http.get("/v2")
    assert r.json() == {"name": "fake", "version": "1.0", "extensions": ["binary_tensor_data"]}
    r = await gateway.http.get("/v2/models/add")
    assert r.json()["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": [-1]}
    assert (await gateway.http.get("/v2/models/add/versions/1/ready")).status_code == 200
    assert (await gateway.http.get("/v2/models/nope/ready")).status_code == 400
    r = await gateway.http.get("/v2/models/nope")
    assert r.status_code == 404 and r.json() == {"error": "unknown model 'nope'"}
    r = await gateway.http.get("/v2/models/add/config")
    assert r.json()["max_batch_size"] == 8


async def test_v2_infer_json_nested_and_flat(gateway, inference) -> None:
    r = await gateway.http.post(
        "/v2/models/add/versions/2/infer", json=_infer_body({"id": "r1", "parameters": {"p": 3}})
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "2" and body["id"] == "r1"
    assert body["outputs"] == [
        {"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 2], "data": [2.0, 3.0, 4.0, 5.0]}
    ]
    assert r.headers["x-modelserve-model-version"] == "2"
    assert inference.last_request.parameters["p"].int64_param == 3


async def test_v2_infer_binary_extension_both_ways(gateway) -> None:
    a = np.arange(4, dtype=np.float32)
    head = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
                {"name": "INPUT1", "shape": [4], "datatype": "FP32", "data": [1, 1, 1, 1]},
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = await gateway.http.post(
        "/v2/models/add/infer",
        content=head + a.tobytes(),
        headers={
            "inference-header-content-length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:n])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.array_equal(np.frombuffer(r.content[n:], dtype=np.float32), a + 1)


async def test_v2_raw_body_mode(gateway, inference) -> None:
    raw = np.arange(3, dtype=np.float32).tobytes()
    r = await gateway.http.post(
        "/v2/models/identity/infer", content=raw, headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 200, r.text
    assert inference.last_request.inputs[0].shape == [3]


async def test_v2_nan_and_inf_give_valid_json(gateway) -> None:
    for model in ("nan", "nan_typed"):
        r = await gateway.http.post(
            "/v2/models/" + model + "/infer",
            json={"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [0]}]},
        )
        assert r.status_code == 200
        assert json.loads(r.text)["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 1.5]


async def test_v2_bad_requests_are_400_with_error_body(gateway, make_gateway) -> None:
    cases = [
        {"inputs": []},
        {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
        {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP99", "data": [1]}]},
        {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "INT8", "data": [1000]}]},
        {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
        {
            "inputs": [
                {"name": "INPUT0", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
            ]
        },
    ]
    for body in cases:
        r = await gateway.http.post("/v2/models/add/infer", json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) == {"error"}
    r = await gateway.http.post(
        "/v2/models/add/infer", content=b"{}", headers={"inference-header-content-length": "99"}
    )
    assert r.status_code == 400
    async with make_gateway(max_tensor_bytes=8) as small:
        r = await small.http.post("/v2/models/add/infer", json=_infer_body())
        assert r.status_code == 413 and "limit" in r.json()["error"]


async def test_v2_bytes_tensor_json(gateway) -> None:
    r = await gateway.http.post(
        "/v2/models/bytes/infer",
        json={"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "BYTES", "data": ["ab", "ü"]}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == ["ab", "ü"]
    assert struct.pack("<I", 2) + b"ab" == struct.pack("<I", 2) + b"ab"


async def test_client_going_away_cancels_the_upstream_call(gateway, inference) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [0]}]}
    ).encode()
    writer.write(
        b"POST /v2/models/slow/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.wait_for(inference.cancelled.wait(), 3)


async def test_tritonclient_http_json_and_binary_every_datatype(gateway) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENTS / "triton_http_client.py"),
        f"127.0.0.1:{gateway.http_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out.decode(), err.decode()[-3000:])
    results = json.loads(out.decode().strip().splitlines()[-1])
    assert results["FP16:bin"] and results["BYTES:json"] and results["UINT64:bin"]
    assert "unknown model 'missing'" in results["missing_error"]


async def test_v2_repository_and_statistics(gateway, inference) -> None:
    r = await gateway.http.post("/v2/repository/index", json={"ready": True})
    assert r.status_code == 200 and {"name": "add", "version": "1", "state": "READY"} in r.json()
    r = await gateway.http.post("/v2/repository/models/add/unload")
    assert r.status_code == 200 and inference.unloaded == "add"
    r = await gateway.http.get("/v2/models/add/stats")
    assert r.json()["model_stats"][0]["inference_count"] == "3"
    r = await gateway.http.post("/v2/repository/models/add/load")
    assert r.status_code == 200 and inference.loaded == "add"
    r = await gateway.http.get("/v2/repository/index")
    assert r.status_code == 405
