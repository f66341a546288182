"""Input drift of a model version: per-feature reference statistics and the population stability
index (PSI) of a window of logged inputs against them. Pure functions over numpy; no I/O.

A feature is one column of a 2-D input (``"<input>[<column>]"``, e.g. ``"features[2]"``, rows are
the batch) or a whole 1-D input (``"<input>"``). BYTES and other non-numeric inputs, and inputs of
more than two dimensions, have no features.

Why PSI rather than Kolmogorov-Smirnov: PSI is computed from binned counts, so the reference is a
short list of bin edges and proportions (no raw sample kept), a window is scored in one pass over
its values, and the score is additive over bins and nearly symmetric. It is the standard score of
model monitoring with well-known thresholds (< 0.1 stable, 0.1-0.25 moderate, > 0.25 significant
shift), and unlike the KS p-value it does not swing towards "drift" simply because a window is
large. The bins are the reference's deciles (``bins`` quantiles), so each reference bin holds about
the same share and a shift of the location or the spread moves mass across bins."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve_common.tensors import InvalidTensor, from_raw

EPSILON = 1e-4
"""Floor of a bin's share, so an empty bin gives a large but finite PSI term."""
NUMERIC = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
)


@dataclass(frozen=True)
class LoggedTensor:
    """A tensor as logged: raw KServe v2 layout (empty when it was over the size cap)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes = b""


@dataclass
class FeatureReference:
    """Reference statistics of one feature: interior bin edges and each bin's share."""

    edges: list[float]
    shares: list[float]
    mean: float
    count: int


@dataclass(frozen=True)
class FeatureScore:
    feature: str
    score: float
    count: int
    mean: float
    reference_mean: float


@dataclass
class FeatureValues:
    """Values per feature gathered from many logged tensors (bounded by ``max_features``)."""

    max_features: int
    values: dict[str, list[np.ndarray[Any, Any]]] = field(default_factory=dict)

    def add(self, tensors: Iterable[LoggedTensor]) -> None:
        """CPU work proportional to the data (callers run it in a worker thread). A 2-D tensor is
        cut to its first ``max_features`` columns before anything is converted: columns are taken
        in order, so column j can be a feature only when columns 0..j are, j < max_features."""
        for t in tensors:
            for name, column in _columns(t, self.max_features):
                if name not in self.values and len(self.values) >= self.max_features:
                    continue
                self.values.setdefault(name, []).append(column)

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        return {k: np.concatenate(v) for k, v in self.values.items() if v}


def _columns(t: LoggedTensor, max_columns: int) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """The tensor's features: a 1-D tensor whole, a 2-D one's first ``max_columns`` columns (the
    rest is never converted, so a [1, 2_000_000] tensor costs what 256 columns cost)."""
    if t.datatype not in NUMERIC or not t.raw or len(t.shape) not in (1, 2):
        return []
    try:
        array = from_raw(t.raw, t.datatype, list(t.shape), f"tensor {t.name!r}")
    except InvalidTensor:
        return []
    if array.ndim == 2:
        array = array[:, :max_columns]
    array = array.astype(np.float64)
    array = array[np.isfinite(array).all(axis=-1)] if array.ndim == 2 else array[np.isfinite(array)]
    if array.ndim == 1:
        return [(t.name, array)]
    return [(f"{t.name}[{j}]", array[:, j]) for j in range(array.shape[1])]


def reference_of(values: np.ndarray[Any, Any], bins: int) -> FeatureReference:
    """The reference of one feature: ``bins`` quantile bins (fewer when values repeat), plus an
    empty bin below the reference's minimum and one above its maximum, so values outside the
    reference's range always count as drift (even for a constant feature)."""
    if values.size:
        qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
        low, high = float(values.min()), float(np.nextafter(values.max(), np.inf))
        edges = sorted({low, high, *(float(q) for q in qs)})
    else:
        edges = []
    return FeatureReference(
        edges=edges,
        shares=_shares(values, edges).tolist(),
        mean=float(values.mean()) if values.size else 0.0,
        count=int(values.size),
    )


def _shares(values: np.ndarray[Any, Any], edges: Sequence[float]) -> np.ndarray[Any, Any]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    total = max(int(counts.sum()), 1)
    return np.asarray(counts, dtype=np.float64) / total


def psi(reference: FeatureReference, values: np.ndarray[Any, Any]) -> float:
    """Population stability index of ``values`` over the reference's bins (0 for no values)."""
    if values.size == 0:
        return 0.0
    expected = np.maximum(np.asarray(reference.shares, dtype=np.float64), EPSILON)
    actual = np.maximum(_shares(values, reference.edges), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def score(
    reference: dict[str, FeatureReference], window: dict[str, np.ndarray[Any, Any]]
) -> list[FeatureScore]:
    """One score per reference feature, in the reference's feature order."""
    out = []
    for name, ref in reference.items():
        values = window.get(name, np.array([], dtype=np.float64))
        out.append(
            FeatureScore(
                feature=name,
                score=psi(ref, values),
                count=int(values.size),
                mean=float(values.mean()) if values.size else 0.0,
                reference_mean=ref.mean,
            )
        )
    return out


def build_reference(
    samples: Iterable[Iterable[LoggedTensor]], max_features: int, bins: int
) -> dict[str, FeatureReference]:
    """The reference of every feature of ``samples`` (each a request's inputs), in name order;
    CPU-bound: callers run it in a worker thread so the event loop keeps serving."""
    values = FeatureValues(max_features)
    for tensors in samples:
        values.add(tensors)
    return {k: reference_of(v, bins) for k, v in sorted(values.arrays().items())}


def score_window(
    reference: dict[str, FeatureReference], samples: Iterable[Iterable[LoggedTensor]], max_features: int
) -> list[FeatureScore]:
    """``score`` of the features of ``samples`` (a window's logged inputs); CPU-bound, as above."""
    values = FeatureValues(max_features)
    for tensors in samples:
        values.add(tensors)
    return score(reference, values.arrays())
