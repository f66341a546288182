"""Counters, gauges and histograms for the request path: plain attribute updates, no lock, exposed
through prometheus_client's registry at scrape time under the same names and labels.

prometheus_client takes a lock on every ``inc``/``observe`` (a histogram observation is two
locked adds and a linear bucket search), which costs the model server's request path several
per cent of its throughput with a handful of metrics per request. The request path of every
service runs on its event loop's one thread, so a child's value can simply be added to; the
exposition thread only reads. Use these for metrics updated on the event loop only (an update
from another thread could lose an increment); prometheus_client's classes for everything else.

Exposition is the same as prometheus_client's for these types, except that counters carry no
``_created`` sample.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry
from prometheus_client.utils import floatToGoString

C = TypeVar("C")


class _Family(Generic[C]):
    """A metric family: children by label values, collected at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: Any) -> C:
        """The child for these label values (created on first use, then the same object)."""
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {key}")
            child = self._children[key] = self._child()
        return child

    def remove(self, *values: Any) -> None:
        self._children.pop(tuple(str(v) for v in values), None)

    def _child(self) -> C:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Any, labels: list[str], child: C) -> None:
        """One child's sample (counters and gauges: its value)."""
        family.add_metric(labels, child.value)  # type: ignore[attr-defined]

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for key, child in list(self._children.items()):
            self._add(family, list(key), child)
        return [family]


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def get(self) -> float:
        return self.value


class Counter(_Family[CounterChild]):
    """A counter; the name may end in ``_total`` (as prometheus_client's)."""

    def _child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> Metric:
        return CounterMetricFamily(self._name, self._doc, labels=self._labelnames)


class GaugeChild(CounterChild):
    __slots__ = ()

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class Gauge(_Family[GaugeChild]):
    def _child(self) -> GaugeChild:
        return GaugeChild()

    def _family(self) -> Metric:
        return GaugeMetricFamily(self._name, self._doc, labels=self._labelnames)


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # the first bound >= value: "le"
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram(_Family[HistogramChild]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
        *,
        buckets: Sequence[float],
    ) -> None:
        bounds = tuple(float(b) for b in buckets if b != float("inf"))
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing")
        self._bounds = bounds
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def _child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)

    def _add(self, family: Any, labels: list[str], child: HistogramChild) -> None:
        cumulative, total = [], 0
        for le, n in zip(self._le, list(child.counts), strict=True):
            total += n
            cumulative.append((le, total))
        family.add_metric(labels, cumulative, child.sum)


__all__ = ["Counter", "CounterChild", "Gauge", "GaugeChild", "Histogram", "HistogramChild"]
