"""The JSON-lines sink's rotation edges (the component test covers the usual case): no backups
keeps only the current file, a line larger than the size limit gets a file of its own, and the
files never hold more than (backups + 1) files' worth."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve_model_server.prediction_sinks import JsonLinesSink, cloud_event, record_json


def _record(i: int, payload: bytes = b"") -> reg_pb.PredictionLog:
    ts = Timestamp()
    ts.FromJsonString("2026-12-02T01:02:03.000000004Z")
    inputs = [tensor_pb.Tensor(name="x", datatype="BYTES", shape=[1], raw_contents=payload)]
    return reg_pb.PredictionLog(model="m", version=2, request_id=f"r{i}", time=ts, tenant="t", inputs=inputs)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_no_backups_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = JsonLinesSink(path, max_bytes=1024, backups=0)
    for i in range(40):
        await sink.write([_record(i)])
    assert _names(tmp_path) == ["p.jsonl"]
    kept = _lines(path)
    assert path.stat().st_size <= 1024 and kept[-1]["request_id"] == "r39"
    assert [r["request_id"] for r in kept] == [f"r{i}" for i in range(40 - len(kept), 40)]


async def test_a_line_over_the_limit_gets_its_own_file_and_backups_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = JsonLinesSink(path, max_bytes=1024, backups=1)
    await sink.write([_record(0), _record(1, b"\x00" * 2000), _record(2)])
    assert _lines(path.with_name("p.jsonl.1"))[0]["request_id"] == "r1"  # alone, over the limit
    assert [r["request_id"] for r in _lines(path)] == ["r2"]
    await sink.write([_record(3, b"\x01" * 2000)])
    assert _names(tmp_path) == ["p.jsonl", "p.jsonl.1"]  # r0 rotated out
    big = _lines(path)[0]
    assert base64.b64decode(big["inputs"][0]["raw_contents"]) == b"\x01" * 2000


def test_record_json_and_event_attributes() -> None:
    record = _record(7, b"ab")
    doc = record_json(record)
    assert doc == {
        "model": "m",
        "version": 2,
        "tenant": "t",
        "request_id": "r7",
        "time": "2026-12-02T01:02:03.000000004Z",
        "error": "",
        "inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "raw_contents": "YWI="}],
        "outputs": [],
    }
    event = cloud_event(record, "/src")
    assert (
        event["id"] == cloud_event(_record(7, b"ab"), "/src")["id"] != cloud_event(_record(8), "/src")["id"]
    )
    assert (event["specversion"], event["source"], event["subject"], event["data"]) == (
        "1.0",
        "/src",
        "m/2",
        doc,
    )
