"""The benchmark computation every server in bench/batching runs (pure numpy, no other import).

A call on a batch of n rows costs a fixed part plus a per-row part:

* fixed: FIXED_ITERS float32 matmuls of a FIXED_N x FIXED_N matrix (the same work whatever n; about
  1 ms on one core of the 2-core bench VM). It is real compute, not a sleep, and it runs inside
  BLAS, which releases the GIL, as ONNX Runtime or torch do: a model server's event loop keeps
  running while it computes, but it competes for the same CPUs (a sleep would model a GPU-style
  fixed cost that leaves the CPU free).
* per row: an MLP 16 -> 512 -> 512 -> 4 (ReLU) with fixed seeded weights.

All BLAS calls are single-threaded when the servers run with OPENBLAS_NUM_THREADS=1 (the runner
sets it for every server), so one model instance uses one core.
"""

import numpy as np

D_IN, HIDDEN, D_OUT = 16, 512, 4
FIXED_N = 128
FIXED_ITERS = 4

_rs = np.random.RandomState(0)
W1 = (_rs.randn(D_IN, HIDDEN) / np.sqrt(D_IN)).astype(np.float32)
B1 = (_rs.randn(HIDDEN) * 0.1).astype(np.float32)
W2 = (_rs.randn(HIDDEN, HIDDEN) / np.sqrt(HIDDEN)).astype(np.float32)
B2 = (_rs.randn(HIDDEN) * 0.1).astype(np.float32)
W3 = (_rs.randn(HIDDEN, D_OUT) / np.sqrt(HIDDEN)).astype(np.float32)
B3 = (_rs.randn(D_OUT) * 0.1).astype(np.float32)
_A = (_rs.randn(FIXED_N, FIXED_N) / np.sqrt(FIXED_N)).astype(np.float32)


def fixed_cost() -> None:
    """The per-call part: FIXED_ITERS matmuls whose result is thrown away."""
    out = np.empty_like(_A)
    for _ in range(FIXED_ITERS):
        np.dot(_A, _A, out=out)


def mlp(x: np.ndarray) -> np.ndarray:
    """The per-row part: float32 [n, 16] -> [n, 4]."""
    h = np.maximum(x @ W1 + B1, 0.0)
    h = np.maximum(h @ W2 + B2, 0.0)
    return (h @ W3 + B3).astype(np.float32, copy=False)


def forward(x: np.ndarray) -> np.ndarray:
    """One call of the model on a batch: fixed part + per-row part."""
    fixed_cost()
    return mlp(np.asarray(x, dtype=np.float32).reshape(-1, D_IN))
