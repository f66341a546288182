#!/usr/bin/env python
"""Writes ours_onnx/mlp/1/model.onnx: mlp_compute's computation as an ONNX graph for our server's
ONNX Runtime backend (the weights are mlp_compute's, so the answers match numpy).

Fixed part: FIXED_ITERS chained [FIXED_N x FIXED_N] MatMuls, as many FLOPs as mlp_compute.fixed_cost.
Its start depends on the input (A + 0 * sum(x)) so ONNX Runtime cannot fold it into a constant at
load time, and its result is added to y multiplied by 0 (a finite value times 0: y is exact).
Per row: the MLP 16 -> 512 -> 512 -> 4 with ReLU.

    .venv/bin/python bench/batching/make_onnx.py OUT.onnx     (the runner does this itself)
"""

from __future__ import annotations

import sys

import mlp_compute as m
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build() -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(arr, name)
        for name, arr in {
            "W1": m.W1, "B1": m.B1, "W2": m.W2, "B2": m.B2, "W3": m.W3, "B3": m.B3, "A": m._A,
            "zero": np.zeros((), np.float32),
        }.items()
    ]  # fmt: skip
    n = [
        helper.make_node("ReduceSum", ["x"], ["sx"], keepdims=0),
        helper.make_node("Mul", ["sx", "zero"], ["sx0"]),
        helper.make_node("Add", ["A", "sx0"], ["M0"]),
    ]
    for i in range(m.FIXED_ITERS):
        n.append(helper.make_node("MatMul", [f"M{i}", "A"], [f"M{i + 1}"]))
    n += [
        helper.make_node("ReduceSum", [f"M{m.FIXED_ITERS}"], ["fs"], keepdims=0),
        helper.make_node("Mul", ["fs", "zero"], ["f0"]),
        helper.make_node("MatMul", ["x", "W1"], ["h1m"]),
        helper.make_node("Add", ["h1m", "B1"], ["h1a"]),
        helper.make_node("Relu", ["h1a"], ["h1"]),
        helper.make_node("MatMul", ["h1", "W2"], ["h2m"]),
        helper.make_node("Add", ["h2m", "B2"], ["h2a"]),
        helper.make_node("Relu", ["h2a"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W3"], ["ym"]),
        helper.make_node("Add", ["ym", "B3"], ["yb"]),
        helper.make_node("Add", ["yb", "f0"], ["y"]),
    ]
    graph = helper.make_graph(
        n,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", m.D_IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", m.D_OUT])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), sys.argv[1])
