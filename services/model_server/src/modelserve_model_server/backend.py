"""The backend protocol: how a model version is loaded, executed and unloaded.

A :class:`Backend` turns a model version folder into a :class:`LoadedModel`. The server decodes and
validates requests, batches them (:mod:`batcher`) and calls :meth:`LoadedModel.execute` with whole
batches (the leading dimension is the batch when ``max_batch_size > 0``), up to
``spec.instance_count`` calls at once.

A backend whose models live elsewhere (the next step: NVIDIA Triton) may instead return a model that
also implements :class:`ForwardingModel`: the server then skips decoding, validation and batching
and hands the protobuf request over as it came (tensors untouched), returning the response as-is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server.config import ModelSpec

Tensors = dict[str, np.ndarray]


@runtime_checkable
class LoadedModel(Protocol):
    """One loaded version of a model."""

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        """Runs one batch; returns at least the named outputs. Must not block the event loop."""
        ...

    async def unload(self) -> None:
        """Releases what load acquired (sessions, threads)."""
        ...


@runtime_checkable
class ForwardingModel(Protocol):
    """The raw fast path: a model that answers the serialized request itself (no decoding)."""

    async def forward(self, request: pb.ModelInferRequest, timeout_s: float | None) -> pb.ModelInferResponse:
        """Answers ``request`` (already routed to this model and version) within ``timeout_s``."""
        ...


class Backend(Protocol):
    """Loads model versions of one kind (``backend`` in config.pbtxt)."""

    name: str

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        """Loads ``version_dir``; raises an exception whose message says why when it cannot."""
        ...
