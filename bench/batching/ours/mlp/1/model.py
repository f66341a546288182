"""Our model server's python-backend model: mlp_compute.forward on the whole (dynamic) batch.

A plain (not async) predict: the server runs it in the instance's own thread; the BLAS work
releases the GIL, so the event loop keeps serving requests meanwhile. The runner copies
mlp_compute.py next to this file."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlp_compute  # noqa: E402


class Model:
    def load(self) -> None:
        mlp_compute.forward(np.zeros((1, mlp_compute.D_IN), np.float32))  # warm BLAS

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": mlp_compute.forward(inputs["x"])}
