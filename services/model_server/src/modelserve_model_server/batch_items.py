"""The request items a Scheduler (batcher.py) queues, and what it does with a taken batch outside
its own state: merging inputs, splitting outputs back per request, the batch's trace span and the
error its callers get when it fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog
from opentelemetry import trace

from modelserve_common.errors import InvalidArgument, ServiceError
from modelserve_model_server.backend import Tensors
from modelserve_model_server.codec import Decoded
from modelserve_model_server.errors import ModelNotReady, model_error

log = structlog.get_logger(__name__)

QUEUED, RUNNING, DONE = 0, 1, 2
clock_ns = time.perf_counter_ns


class Item:
    """One request in a scheduler: queued, running or done."""

    __slots__ = (
        "decoded",
        "future",
        "state",
        "enqueued",
        "deadline",
        "handle",
        "result",
        "error",
        "span",
        "parent",
    )

    def __init__(self, decoded: Decoded, enqueued: int, deadline: int) -> None:
        self.decoded = decoded
        self.deadline = deadline
        """perf_counter_ns by which the caller stops waiting (its gRPC deadline); 0 = none."""
        self.future: asyncio.Future[Tensors] | None = None
        self.state = QUEUED
        self.enqueued = enqueued
        self.handle: asyncio.TimerHandle | None = None
        self.result: Tensors | None = None
        self.error: BaseException | None = None
        self.span: Any = None
        self.parent: Any = None  # the caller's span (tracing on): gets the batch it rode in


def merge(batch: list[Item], all_outputs: tuple[str, ...]) -> tuple[Tensors, list[str], int]:
    """The batch's inputs concatenated, the outputs any of its requests wants (every output when
    one wants all) and its rows."""
    first = batch[0].decoded
    inputs = {name: np.concatenate([it.decoded.inputs[name] for it in batch]) for name in first.inputs}
    wanted: set[str] = set()
    for it in batch:
        if not it.decoded.outputs:
            return inputs, list(all_outputs), sum(it.decoded.rows for it in batch)
        wanted.update(it.decoded.outputs)
    names = [n for n in all_outputs if n in wanted]
    return inputs, names, sum(it.decoded.rows for it in batch)


def split(batch: list[Item], out: Tensors, names: Sequence[str], rows: int) -> list[Tensors]:
    """Each request's rows of the batch's outputs; RuntimeError when an output lacks the batch dim."""
    for name in names:
        array = out.get(name)
        if array is None:
            raise RuntimeError(f"model did not produce output {name!r}")
        if not isinstance(array, np.ndarray) or array.ndim == 0 or array.shape[0] != rows:
            shape = getattr(array, "shape", None)
            raise RuntimeError(f"output {name!r} has shape {shape}; expected a leading batch dim of {rows}")
    results: list[Tensors] = []
    start = 0
    for item in batch:
        end = start + item.decoded.rows
        results.append({name: out[name][start:end] for name in names})
        start = end
    return results


def trace_batch(tracer: Any, name: str, version: str, batch: list[Item], t0: int) -> Any:
    """Each request's span gets a ``model.batch`` event (batch size, its queue time, model,
    version); the batch's ``model.compute`` span is a child of the first request's span and
    links to the others' (a batch serves several traces). None when no request of the batch is
    sampled."""
    if all(item.parent is None for item in batch):
        return None
    attrs = {"model": name, "version": version, "batch_size": len(batch)}
    for item in batch:
        if item.parent is not None:
            item.parent.add_event("model.batch", {**attrs, "queue_time_ms": (t0 - item.enqueued) / 1e6})
    parents = [item.parent.get_span_context() for item in batch if item.parent is not None]
    first = next(item.parent for item in batch if item.parent is not None)
    return tracer.start_span(
        "model.compute",
        context=trace.set_span_in_context(first),
        attributes=attrs,
        links=[trace.Link(ctx) for ctx in parents[1:]],
    )


def failure(name: str, version: str, exc: BaseException) -> BaseException:
    """The error every caller of a failed batch gets; the model's own failures are logged."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        return ModelNotReady(f"model {name!r}: the batch was cancelled")
    err = model_error(name, version, exc)
    if isinstance(err, InvalidArgument):  # the caller's input: no stack (clients control it)
        log.info("model.rejected_input", model=name, version=version, error=err.message)
    else:
        log.error("model.execute_failed", model=name, version=version, exc_info=exc)
    return err
