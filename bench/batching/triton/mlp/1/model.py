"""Triton python-backend model "mlp": concatenate the dynamic batch, one mlp_compute.forward call
(fixed part once per batch), split back. The runner copies mlp_compute.py next to this file."""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlp_compute  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        mlp_compute.forward(np.zeros((1, mlp_compute.D_IN), np.float32))

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "x").as_numpy() for r in requests]
        y = mlp_compute.forward(np.concatenate(xs, axis=0) if len(xs) > 1 else xs[0])
        out, i = [], 0
        for x in xs:
            n = x.shape[0]
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", y[i : i + n])]))
            i += n
        return out
