"""grpc.health.v1 with honest statuses.

The overall status ("") and each business service start NOT_SERVING and turn SERVING only when the
service says its dependencies are ready. ``liveness`` is SERVING for as long as the process runs
(Kubernetes liveness probes use it, so a database outage does not restart pods). On shutdown
everything turns NOT_SERVING first, so load balancers stop sending work while in-flight RPCs drain."""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2

from modelserve_common.metrics import record_readiness

LIVENESS = "liveness"
OVERALL = ""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Wraps the aio HealthServicer with the statuses of one server."""

    def __init__(self, services: Iterable[str]) -> None:
        self.servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._services = [OVERALL, *services]
        self._serving = False
        self._shutting_down = False

    @property
    def serving(self) -> bool:
        return self._serving

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, SERVING)
        for name in self._services:
            await self.servicer.set(name, NOT_SERVING)

    async def set_serving(self) -> None:
        """Dependencies are ready: every service SERVING (ignored once shutting down)."""
        if self._shutting_down:
            return
        record_readiness(True, self._serving)
        self._serving = True
        for name in self._services:
            await self.servicer.set(name, SERVING)

    async def set_not_serving(self) -> None:
        """A dependency went away: every service NOT_SERVING; liveness stays SERVING."""
        record_readiness(False, self._serving)
        self._serving = False
        for name in self._services:
            await self.servicer.set(name, NOT_SERVING)

    async def enter_graceful_shutdown(self) -> None:
        """Everything NOT_SERVING for good, liveness included; later set_serving calls are ignored."""
        self._shutting_down = True
        self._serving = False
        await self.servicer.enter_graceful_shutdown()
