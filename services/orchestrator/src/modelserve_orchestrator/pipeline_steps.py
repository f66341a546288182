"""What a node computes without calling a model (switch conditions, ensemble combiners, splitter
choices) and how a run ends (cancelling node tasks, gathering outputs, a failed node's error)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from modelserve_common.errors import (
    Internal,
    InvalidArgument,
    ServiceError,
    from_status,
)
from modelserve_orchestrator.domain import (
    Combiner,
    Condition,
    EnsembleStep,
    NodeResult,
    NodeTrace,
    Operator,
    Pipeline,
    Reduce,
    SplitterStep,
)


def _compare(op: Operator, left: float | str, right: float | str) -> bool:
    if op == Operator.EQ:
        return left == right
    if op == Operator.NE:
        return left != right
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == Operator.LT:
        return left < right  # type: ignore[operator]
    if op == Operator.LE:
        return left <= right  # type: ignore[operator]
    if op == Operator.GT:
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def evaluate(cond: Condition, tensors: Mapping[str, np.ndarray[Any, Any]], params: Mapping[str, str]) -> bool:
    """True when the condition holds; a missing tensor or parameter makes it false."""
    if cond.tensor:
        array = tensors.get(cond.tensor)
        if array is None or array.size == 0 or cond.number is None:
            return False
        values = np.asarray(array, dtype=np.float64)
        r = cond.reduce
        value = float(
            values.min()
            if r == Reduce.MIN
            else values.mean()
            if r == Reduce.MEAN
            else values.reshape(-1)[0]
            if r == Reduce.FIRST
            else values.max()
        )
        return _compare(cond.operator, value, cond.number)
    raw = params.get(cond.parameter)
    if raw is None:
        return False
    if cond.number is not None:
        try:
            return _compare(cond.operator, float(raw), cond.number)
        except ValueError:
            return False
    return _compare(cond.operator, raw, cond.text or "")


def combine(step: EnsembleStep, present: list[tuple[int, np.ndarray[Any, Any]]]) -> np.ndarray[Any, Any]:
    """Combines the present sources (index into step.sources, array)."""
    arrays = [a for _, a in present]
    try:
        if step.combiner == Combiner.CONCAT:
            return np.concatenate(arrays, axis=step.axis)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InvalidArgument(f"ensemble sources have different shapes {sorted(shapes)}")
        stack = np.stack(arrays)
        if step.combiner == Combiner.MAJORITY_VOTE:
            flat = stack.reshape(len(arrays), -1)
            out = np.empty(flat.shape[1], dtype=stack.dtype)
            for j in range(flat.shape[1]):
                values, counts = np.unique(flat[:, j], return_counts=True)
                out[j] = values[int(np.argmax(counts))]  # np.unique sorts: ties pick the smallest
            return out.reshape(arrays[0].shape)
        out_type = np.float64 if stack.dtype == np.float64 else np.float32
        if step.combiner == Combiner.WEIGHTED_MEAN:
            w = np.array([step.weights[i] for i, _ in present], dtype=np.float64)
            w = w / w.sum()
            combined: np.ndarray[Any, Any] = np.tensordot(w, stack.astype(np.float64), axes=1).astype(
                out_type
            )
        else:
            combined = stack.astype(np.float64).mean(axis=0).astype(out_type)
        return combined
    except (ValueError, np.AxisError) as exc:
        raise InvalidArgument(f"ensemble cannot combine its sources: {exc}") from exc


def choose_target(step: SplitterStep, node: str, params: Mapping[str, str], salt: str) -> str:
    """The splitter's target: by weight, at random, or sticky (the same value of the sticky
    parameter always picks the same target for the same salt and node)."""
    total = sum(t.weight for t in step.targets)
    key = params.get(step.sticky_parameter) if step.sticky_parameter else None
    if key is not None:
        digest = hashlib.sha256(f"{salt}{node}:{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    else:
        point = random.random() * total
    acc = 0.0
    target = step.targets[-1].target
    for t in step.targets:
        acc += t.weight
        if point < acc:
            target = t.target
            break
    return target


async def cancel_all(running: Mapping[asyncio.Task[NodeResult], str]) -> None:
    """Cancels the node tasks still running and waits for them to end."""
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)


def collect_outputs(
    p: Pipeline, tensors: Mapping[str, np.ndarray[Any, Any]]
) -> tuple[dict[str, np.ndarray[Any, Any]], list[str]]:
    """Each pipeline output from its first source that was produced; the names of the outputs
    none of whose sources was."""
    outputs: dict[str, np.ndarray[Any, Any]] = {}
    missing: list[str] = []
    for o in p.outputs:
        found = next((tensors[s] for s in o.sources if s in tensors), None)
        if found is None:
            missing.append(o.name)
        else:
            outputs[o.name] = found
    return outputs, missing


def error_of(trace: NodeTrace) -> ServiceError:
    """The error a failed node's trace records, with the status it was recorded with."""
    code = grpc.StatusCode.__members__.get(trace.error_code)
    if code is None or code is grpc.StatusCode.OK:
        return Internal(trace.message or "node failed")
    return from_status(code, trace.message)
