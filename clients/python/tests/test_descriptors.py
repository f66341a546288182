"""The SDK's private descriptors match the project's generated contracts, and the SDK works in
one process with tritonclient.grpc (both define the protobuf package `inference`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GEN = Path(__file__).resolve().parents[1] / "scripts" / "gen_descriptors.py"


def test_descriptors_are_fresh() -> None:
    r = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"stale: run python {GEN}\n{r.stderr}"


COEXIST = r"""
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2 as tpb
import modelserve_client
from modelserve_client import _pool
from modelserve_client._messages import infer_request, infer_outputs

req = infer_request("m", {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, None, None, None, None, None)
wire = req.SerializeToString()
# tritonclient's own class parses our bytes: same wire contract, different pools
t = tpb.ModelInferRequest.FromString(wire)
assert t.model_name == "m" and list(t.inputs[0].shape) == [2, 3] and t.inputs[0].datatype == "FP32"
assert type(req).DESCRIPTOR.file.pool is not tpb.ModelInferRequest.DESCRIPTOR.file.pool
resp_cls = _pool.message("inference.ModelInferResponse")
r = resp_cls(model_name="m")
o = r.outputs.add(); o.name = "y"; o.datatype = "INT64"; o.shape.extend([2])
r.raw_output_contents.append(np.array([7, 8], "<i8").tobytes())
back = infer_outputs(resp_cls.FromString(r.SerializeToString()))
assert back["y"].tolist() == [7, 8]
tc.InferInput("x", [1], "FP32")  # tritonclient still usable
client = modelserve_client.Client("127.0.0.1:1", api_key="k")
client.close()
print("ok")
"""


def test_sdk_works_after_tritonclient_grpc_is_imported() -> None:
    r = subprocess.run([sys.executable, "-c", COEXIST], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
