"""The backend protocol: how a model version is loaded, executed and unloaded.

A :class:`Backend` turns a model version folder into a :class:`LoadedModel`. The server decodes and
validates requests, batches them (:mod:`batcher`) and calls :meth:`LoadedModel.execute` with whole
batches (the leading dimension is the batch when ``max_batch_size > 0``), up to
``spec.instance_count`` calls at once.

Models served by NVIDIA Triton do not go through a backend: the Triton router (triton.py) forwards
their requests undecoded to the replica pool (triton_pool.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from modelserve_model_server.config import ModelSpec

Tensors = dict[str, np.ndarray[Any, Any]]
T = TypeVar("T")


@runtime_checkable
class LoadedModel(Protocol):
    """One loaded version of a model."""

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        """Runs one batch; returns at least the named outputs. Must not block the event loop.

        When the awaiting task is cancelled, execute must not return (raise CancelledError)
        before the work it started has stopped: the batcher hands the instance to the next batch
        as soon as execute returns. Work in a thread cannot be stopped, so a backend awaits it
        with :func:`hold_until_done`."""
        ...

    async def unload(self) -> None:
        """Releases what load acquired (sessions, threads)."""
        ...


class Backend(Protocol):
    """Loads model versions of one kind (``backend`` in config.pbtxt)."""

    name: str

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        """Loads ``version_dir``; raises an exception whose message says why when it cannot."""
        ...


async def hold_until_done(future: asyncio.Future[T]) -> T:
    """Awaits ``future`` (a thread's work, e.g. ``loop.run_in_executor``) without letting a
    cancellation cut the wait short: when the awaiting task is cancelled, the thread cannot be
    stopped, so this keeps waiting until it has returned and then raises CancelledError. Only a
    second cancellation (the server shutting down) stops the wait early; the backend must then
    release the instance from the future's done callback itself."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if not future.done():
            try:
                await asyncio.wait((future,))
            except asyncio.CancelledError:
                future.add_done_callback(_consume)
                raise
        _consume(future)
        raise


def _consume(future: asyncio.Future[Any]) -> None:
    """Marks the abandoned future's outcome as retrieved (no "exception never retrieved" log)."""
    if not future.cancelled():
        future.exception()
