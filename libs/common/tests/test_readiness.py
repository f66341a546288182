"""modelserve_common.readiness: SERVING only while every dependency answers in time; a failing,
slow or raising check turns it NOT_SERVING; recovery needs no restart; fatal errors propagate."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from modelserve_common.health import HealthReporter
from modelserve_common.readiness import DependencyReadiness


class Dep:
    def __init__(self) -> None:
        self.answer: str | None = None
        self.error: Exception | None = None
        self.delay_s = 0.0

    async def __call__(self) -> str | None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.answer


async def _health() -> HealthReporter:
    h = HealthReporter(["svc"])
    await h.start()
    return h


async def test_serving_follows_every_dependency() -> None:
    db, cache = Dep(), Dep()
    r = DependencyReadiness("svc", {"db": db, "cache": cache}, interval_s=0.01, timeout_s=0.2)
    h = await _health()
    assert await r.update(h) == [] and h.serving
    cache.answer = "cache is READ_ONLY"
    assert await r.update(h) == ["cache is READ_ONLY"] and not h.serving
    cache.answer, db.error = None, ConnectionError("refused")
    assert await r.update(h) == ["db: refused"] and not h.serving
    db.error = None
    assert await r.update(h) == [] and h.serving


async def test_a_slow_dependency_counts_as_down_within_the_timeout() -> None:
    db = Dep()
    db.delay_s = 5.0
    r = DependencyReadiness("svc", {"db": db}, interval_s=0.01, timeout_s=0.05)
    h = await _health()
    async with asyncio.timeout(2):
        assert await r.update(h) == ["db: no answer within 0.05s"]
    assert not h.serving


async def test_serving_is_restored_after_someone_else_turned_it_off() -> None:
    r = DependencyReadiness("svc", {"db": Dep()}, interval_s=0.01, timeout_s=0.2)
    h = await _health()
    await r.update(h)
    await h.set_not_serving()  # e.g. an RPC met an outage
    await r.update(h)
    assert h.serving


async def test_fatal_errors_propagate() -> None:
    db = Dep()
    db.error = LookupError("schema too new")
    r = DependencyReadiness("svc", {"db": db}, interval_s=0.01, timeout_s=0.2, fatal=(LookupError,))
    with pytest.raises(LookupError):
        await r.check()


async def test_follow_recovers_and_logs_each_transition_once() -> None:
    db = Dep()
    db.answer = "down"
    r = DependencyReadiness("svc", {"db": db}, interval_s=0.01, timeout_s=0.2)
    h = await _health()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(r.follow(h))
        try:
            await asyncio.sleep(0.3)  # several rounds while down
            assert r.problems == ["down"] and not h.serving
            db.answer = None
            await asyncio.sleep(0.3)  # several rounds while up
            assert r.problems == [] and h.serving
        finally:
            task.cancel()
    events = [e["event"] for e in logs]
    assert events.count("svc.not_ready") == 1 and events.count("svc.ready") == 1
