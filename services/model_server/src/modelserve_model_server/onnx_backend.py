"""The ONNX Runtime backend (CPU): ``<version>/model.onnx`` (or ``default_model_filename``).

One InferenceSession per model version, shared by ``instance_group.count`` worker threads (a
session's ``run`` is thread-safe and releases the GIL), so inference never blocks the event loop.
Threads per run come from the settings (``onnx_intra_op_threads``; 1 by default, which suits small
models on few cores: parallelism comes from instances and batching instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modelserve_model_server.backend import LoadedModel, Tensors, hold_until_done
from modelserve_model_server.config import ModelSpec

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxModel:
    """An ONNX Runtime session and the threads that run it."""

    def __init__(self, session: Any, instances: int) -> None:
        self._session = session
        self._pool = ThreadPoolExecutor(instances, thread_name_prefix="onnx")
        self._all_outputs = [o.name for o in session.get_outputs()]
        self._string_inputs = {i.name for i in session.get_inputs() if i.type == "tensor(string)"}

    def _run(self, inputs: Tensors, outputs: list[str]) -> Tensors:
        feed = inputs
        if self._string_inputs:
            feed = dict(inputs)
            for name in self._string_inputs:
                if name in feed:
                    feed[name] = np.array([b.decode() for b in feed[name].reshape(-1)], dtype=object).reshape(
                        feed[name].shape
                    )
        results = self._session.run(outputs, feed)
        return dict(zip(outputs, results, strict=True))

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._run, inputs, list(outputs) or self._all_outputs)
        # a cancelled request's run keeps its thread busy until it returns: so does this call
        return await hold_until_done(future)

    async def unload(self) -> None:
        self._pool.shutdown(wait=False)
        self._session = None


class OnnxBackend:
    """Loads ``.onnx`` models into ONNX Runtime on CPU."""

    name = "onnxruntime"

    def __init__(self, intra_op_threads: int = 1, inter_op_threads: int = 1) -> None:
        self._intra = intra_op_threads
        self._inter = inter_op_threads

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        path = version_dir / (spec.default_model_filename or "model.onnx")
        if not path.is_file():
            raise RuntimeError(f"{path.name} not found in {version_dir}")
        return await asyncio.to_thread(self._load, spec, path)

    def _load(self, spec: ModelSpec, path: Path) -> OnnxModel:
        import onnxruntime as ort  # imported on first use: it costs memory a python-only server need not pay

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._intra
        opts.inter_op_num_threads = self._inter
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        declared = {i.name: i for i in session.get_inputs()}
        for t in spec.inputs:
            got = declared.get(t.name)
            if got is None:
                raise RuntimeError(
                    f"config input {t.name!r} is not an input of {path.name} ({sorted(declared)})"
                )
            if _ORT_TYPES.get(got.type) != t.datatype.name:
                raise RuntimeError(
                    f"config input {t.name!r} is {t.datatype.name} but {path.name} expects {got.type}"
                )
        produced = {o.name for o in session.get_outputs()}
        for t in spec.outputs:
            if t.name not in produced:
                raise RuntimeError(
                    f"config output {t.name!r} is not an output of {path.name} ({sorted(produced)})"
                )
        return OnnxModel(session, spec.instance_count)
