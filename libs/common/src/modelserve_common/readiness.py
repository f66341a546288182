"""Readiness that follows a service's dependencies (the registry's database; the orchestrator's
database, Redis and model server): each check runs at once, bounded by a timeout; NOT_SERVING
while any does not answer, SERVING again when all do (no restart needed). Transitions are logged
once, as ``<name>.ready`` and ``<name>.not_ready`` (with the problems)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog

from modelserve_common.health import HealthReporter

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[str | None]]
"""One dependency check: None when it answers, else what is wrong. Raising counts as a problem
too (its message), except the ``fatal`` exceptions, which propagate."""


class DependencyReadiness:
    def __init__(
        self,
        name: str,
        probes: Mapping[str, Probe],
        *,
        interval_s: float,
        timeout_s: float | Callable[[], float],
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._name = name
        self._probes = dict(probes)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._fatal = fatal
        self.problems: list[str] = ["not checked yet"]

    def _timeout(self) -> float:
        return self._timeout_s() if callable(self._timeout_s) else self._timeout_s

    async def _probe(self, what: str, probe: Probe, timeout_s: float) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                return await probe()
        except TimeoutError:
            return f"{what}: no answer within {timeout_s}s"
        except self._fatal:
            raise
        except Exception as exc:
            return f"{what}: {str(exc) or type(exc).__name__}"

    async def check(self, timeout_s: float | None = None) -> list[str]:
        """Runs every probe at once (each within ``timeout_s``, default the configured timeout);
        returns what is wrong (empty: ready). Changes no status."""
        limit = self._timeout() if timeout_s is None else timeout_s
        results = await asyncio.gather(*(self._probe(w, p, limit) for w, p in self._probes.items()))
        return [r for r in results if r is not None]

    async def update(self, health: HealthReporter, timeout_s: float | None = None) -> list[str]:
        """Checks, then sets ``health``: SERVING when nothing is wrong, NOT_SERVING otherwise."""
        problems = await self.check(timeout_s)
        if not problems:
            if self.problems or not health.serving:
                if self.problems:
                    log.info(f"{self._name}.ready")
                await health.set_serving()
        else:
            if problems != self.problems:
                log.warning(f"{self._name}.not_ready", problems=problems)
            if health.serving or problems != self.problems:
                await health.set_not_serving()
        self.problems = problems
        return problems

    async def follow(self, health: HealthReporter) -> None:
        """Updates ``health`` every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.update(health)
