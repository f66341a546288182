"""loopmetrics exposes exactly what prometheus_client's own classes expose for the same updates
(except counters' ``_created`` samples), so dashboards and alerts cannot tell them apart."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelserve_common import loopmetrics

BUCKETS = (0.0005, 0.001, 0.01, 0.1, 1, 5)


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if line and "_created" not in line)


def test_same_exposition_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    labels = ["grpc_type", "grpc_method"]
    c1 = loopmetrics.Counter("calls_total", "Calls.", labels, registry=ours)
    c2 = prometheus_client.Counter("calls_total", "Calls.", labels, registry=theirs)
    g1 = loopmetrics.Gauge("in_flight", "In flight.", ["svc"], registry=ours)
    g2 = prometheus_client.Gauge("in_flight", "In flight.", ["svc"], registry=theirs)
    h1 = loopmetrics.Histogram("latency_seconds", "Latency.", labels, registry=ours, buckets=BUCKETS)
    h2 = prometheus_client.Histogram("latency_seconds", "Latency.", labels, registry=theirs, buckets=BUCKETS)
    values = [0.0001, 0.0005, 0.00051, 0.001, 0.5, 1.0, 4.9, 5.0, 7.0, 0.02]
    for i, v in enumerate(values):
        key = ("unary", "Infer" if i % 3 else "Ready")
        for c in (c1, c2):
            c.labels(*key).inc()
        for h in (h1, h2):
            h.labels(*key).observe(v)
    for g in (g1, g2):
        g.labels("a").inc(3)
        g.labels("a").dec()
        g.labels("b").set(7.5)
    c1.labels("unary", "Ready").inc(2.5)
    c2.labels("unary", "Ready").inc(2.5)
    assert _exposition(ours) == _exposition(theirs)


def test_children_are_cached_and_labels_checked() -> None:
    reg = CollectorRegistry()
    c = loopmetrics.Counter("x_total", "X.", ["a", "b"], registry=reg)
    assert c.labels("1", 2) is c.labels(1, "2")
    with pytest.raises(ValueError):
        c.labels("only-one")
    c.labels("1", "2").inc()
    c.remove("1", "2")
    assert "x_total{" not in generate_latest(reg).decode()


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError):
        loopmetrics.Histogram("bad_seconds", "Bad.", registry=None, buckets=(1, 0.5))
