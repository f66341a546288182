"""Wire compatibility with Triton's own protos: messages serialized with our classes parse with
tritonclient.grpc's classes field-for-field, and what tritonclient re-serializes parses back with
ours into an equal message. tritonclient.grpc runs in a subprocess (its protos clash with ours)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import json_format

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import model_config_pb2 as config_pb

P = pb.InferParameter


def messages() -> dict[str, object]:
    req = pb.ModelInferRequest(
        model_name="m",
        model_version="3",
        id="req-1",
        parameters={
            "priority": P(uint64_param=2),
            "timeout": P(int64_param=1500),
            "flag": P(bool_param=True),
            "s": P(string_param="x"),
            "d": P(double_param=0.5),
        },
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="a",
                datatype="FP32",
                shape=[2, 3],
                parameters={"binary_data_size": P(int64_param=24)},
                contents=pb.InferTensorContents(
                    bool_contents=[True],
                    int_contents=[-1],
                    int64_contents=[-(2**63)],
                    uint_contents=[2**32 - 1],
                    uint64_contents=[2**64 - 1],
                    fp32_contents=[1.5],
                    fp64_contents=[-2.25],
                    bytes_contents=[b"\x00\xff"],
                ),
            ),
            pb.ModelInferRequest.InferInputTensor(name="b", datatype="BYTES", shape=[1]),
        ],
        outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(
                name="y", parameters={"classification": P(int64_param=2)}
            )
        ],
        raw_input_contents=[b"\x01\x02", b"\x03\x00\x00\x00abc"],
    )
    resp = pb.ModelInferResponse(
        model_name="m",
        model_version="3",
        id="req-1",
        parameters={"sequence_end": P(bool_param=False)},
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name="y",
                datatype="INT64",
                shape=[2, 1],
                contents=pb.InferTensorContents(int64_contents=[1, 2]),
            )
        ],
        raw_output_contents=[b"\x00" * 16],
    )
    cfg = config_pb.ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=8,
        default_model_filename="model.onnx",
        parameters={"k": config_pb.ModelParameter(string_value="v")},
    )
    cfg.input.add(name="x", data_type=config_pb.TYPE_FP32, dims=[-1, 4], optional=True)
    cfg.output.add(name="y", data_type=config_pb.TYPE_STRING, dims=[1])
    cfg.instance_group.add(name="g", kind=config_pb.ModelInstanceGroup.KIND_CPU, count=2, gpus=[0])
    db = cfg.dynamic_batching
    db.preferred_batch_size.extend([4, 8])
    db.max_queue_delay_microseconds = 100
    db.preserve_ordering = True
    db.priority_levels = 3
    db.default_priority_level = 2
    db.default_queue_policy.timeout_action = config_pb.ModelQueuePolicy.DELAY
    db.default_queue_policy.default_timeout_microseconds = 5000
    db.default_queue_policy.allow_timeout_override = True
    db.default_queue_policy.max_queue_size = 16
    d = pb.StatisticDuration
    stats = pb.ModelStatisticsResponse(
        model_stats=[
            pb.ModelStatistics(
                name="m",
                version="3",
                last_inference=1700000000000,
                inference_count=10,
                execution_count=4,
                inference_stats=pb.InferStatistics(
                    success=d(count=10, ns=1000),
                    fail=d(count=1, ns=5),
                    queue=d(count=10, ns=300),
                    compute_input=d(count=10, ns=40),
                    compute_infer=d(count=10, ns=500),
                    compute_output=d(count=10, ns=60),
                    cache_hit=d(count=0, ns=0),
                    cache_miss=d(count=0, ns=0),
                ),
                batch_stats=[pb.InferBatchStatistics(batch_size=4, compute_infer=d(count=2, ns=9))],
            )
        ]
    )
    tm = pb.ModelMetadataResponse.TensorMetadata
    return {
        "ModelInferRequest": req,
        "ModelInferResponse": resp,
        "ModelStreamInferResponse": pb.ModelStreamInferResponse(error_message="boom", infer_response=resp),
        "ModelConfigResponse": pb.ModelConfigResponse(config=cfg),
        "ModelStatisticsResponse": stats,
        "ModelMetadataResponse": pb.ModelMetadataResponse(
            name="m",
            versions=["1", "3"],
            platform="python",
            inputs=[tm(name="x", datatype="FP32", shape=[-1, 4])],
        ),
        "RepositoryIndexResponse": pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(name="m", version="1", state="READY", reason="")]
        ),
    }


PEER = textwrap.dedent(
    """
    import base64, json, sys
    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2
    cases = json.load(open(sys.argv[1]))
    out = {}
    for name, case in cases.items():
        msg = getattr(service_pb2, name)()
        msg.ParseFromString(base64.b64decode(case["bytes"]))
        from google.protobuf import unknown_fields
        unknown = unknown_fields.UnknownFieldSet(msg)  # top level; nested ones drop out of the dict
        out[name] = {
            "dict": json_format.MessageToDict(msg, preserving_proto_field_name=True),
            "bytes": base64.b64encode(msg.SerializeToString(deterministic=True)).decode(),
            "unknown": len(unknown),
        }
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def test_wire_messages_parse_field_for_field_in_tritonclient_and_back(tmp_path: Path) -> None:
    import base64

    msgs = messages()
    cases = {
        name: {"bytes": base64.b64encode(m.SerializeToString(deterministic=True)).decode()}  # type: ignore[attr-defined]
        for name, m in msgs.items()
    }
    src, dst = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(cases))
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    done = subprocess.run(
        [sys.executable, str(script), str(src), str(dst)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    theirs = json.loads(dst.read_text())
    assert set(theirs) == set(msgs)
    for name, msg in msgs.items():
        ours = json_format.MessageToDict(msg, preserving_proto_field_name=True)  # type: ignore[arg-type]
        assert theirs[name]["dict"] == ours, f"{name}: tritonclient reads different fields"
        assert theirs[name]["unknown"] == 0, f"{name}: tritonclient saw unknown fields"
        back = type(msg)()
        back.ParseFromString(base64.b64decode(theirs[name]["bytes"]))
        assert back == msg, f"{name}: does not round-trip through tritonclient"


@pytest.mark.parametrize("field", ["ModelInferRequest", "ModelStatisticsResponse"])
def test_wire_messages_are_not_empty(field: str) -> None:
    """Guards the round-trip test against vacuity: the samples set many fields."""
    data = json_format.MessageToDict(messages()[field], preserving_proto_field_name=True)  # type: ignore[arg-type]
    assert len(json.dumps(data)) > 200
