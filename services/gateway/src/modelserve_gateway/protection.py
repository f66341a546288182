"""Load shedding (a bound on requests in flight) and a circuit breaker per upstream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
import structlog
from prometheus_client import Counter, Gauge

from modelserve_common.errors import Unavailable

log = structlog.get_logger(__name__)

SHED = Counter("modelserve_gateway_shed_total", "Requests shed because too many were in flight.")
IN_FLIGHT = Gauge("modelserve_gateway_in_flight", "Requests the gateway is handling right now.")
BREAKER_STATE = Gauge(
    "modelserve_gateway_breaker_open", "1 while an upstream's circuit breaker is open.", ["upstream"]
)


class Overloaded(Unavailable):
    """Shed or failing fast: answered 503 / UNAVAILABLE with Retry-After."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.headers = [("retry-after", str(max(1, round(retry_after_s))))]


class InFlightLimiter:
    """Admits at most ``limit`` requests at once; the next one is refused at once rather than
    queued, so admitted requests keep their latency under a burst."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    def acquire(self) -> None:
        if self.limit and self.current >= self.limit:
            SHED.inc()
            raise Overloaded(f"gateway overloaded: {self.current} requests in flight (limit {self.limit})")
        self.current += 1
        IN_FLIGHT.inc()

    def release(self) -> None:
        self.current -= 1
        IN_FLIGHT.dec()


BREAKER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class CircuitBreaker:
    """Closed: calls pass; ``failures`` consecutive UNAVAILABLE/DEADLINE_EXCEEDED open it. Open:
    calls fail fast for ``open_s``. Then half-open: one probe passes; its success closes the
    breaker, its failure opens it again."""

    upstream: str
    failures: int
    open_s: float
    _consecutive: int = 0
    _opened_at: float | None = None
    _probing: bool = field(default=False)

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def before_call(self) -> bool:
        """Fails fast while open; True when this call is the half-open probe (the caller passes
        it to :meth:`abandon` if the call ends without an outcome)."""
        state = self.state
        if state == "closed":
            return False
        if state == "open" or self._probing:
            assert self._opened_at is not None
            left = self.open_s - (time.monotonic() - self._opened_at)
            raise Overloaded(f"upstream {self.upstream} unavailable (circuit open)", max(left, 1.0))
        self._probing = True
        return True

    def abandon(self, probe: bool) -> None:
        """A call ended with no outcome to record (its caller went away, or a local error): if it
        was the probe, the next call probes instead (else no call ever passed again)."""
        if probe:
            self._probing = False

    def record(self, code: grpc.StatusCode) -> None:
        if code in BREAKER_CODES:
            self._consecutive += 1
            if self._probing or self._consecutive >= self.failures:
                if self._opened_at is None:
                    log.warning("breaker.opened", upstream=self.upstream)
                self._opened_at = time.monotonic()
                BREAKER_STATE.labels(self.upstream).set(1)
            self._probing = False
            return
        self._consecutive = 0
        if self._opened_at is not None:
            log.info("breaker.closed", upstream=self.upstream)
            BREAKER_STATE.labels(self.upstream).set(0)
        self._opened_at = None
        self._probing = False
