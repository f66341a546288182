#!/usr/bin/env python
"""Builds the example ONNX model of models/ (models/classifier/1/model.onnx) with onnx.helper.

Deterministic and idempotent: the file is rewritten only when its bytes would change. `make setup`
runs this; the generated file is committed too, so a checkout serves without running it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = ROOT / "models" / "classifier" / "1" / "model.onnx"

# A linear classifier over 4 features (sepal/petal length/width) into 3 classes.
WEIGHTS = np.array(
    [[0.42, 0.97, -1.39], [0.97, -0.31, -1.28], [-2.39, 0.25, 2.85], [-1.07, -0.86, 2.49]], dtype=np.float32
)
BIAS = np.array([0.26, 1.09, -1.35], dtype=np.float32)


def classifier() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Gemm", ["features", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=[numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="modelserve")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def main() -> int:
    changed = write_if_changed(CLASSIFIER, classifier().SerializeToString())
    print(f"make_examples: {CLASSIFIER.relative_to(ROOT)} {'written' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
