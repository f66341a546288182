"""Test helpers shared by every service's tests: tracing into memory, free ports, health waits and
a subprocess launcher for end-to-end tests. Imported only by tests."""

from modelserve_common.testing.launcher import ServiceProcess, free_port, wait_for_health
from modelserve_common.testing.tracing import memory_tracing

__all__ = ["ServiceProcess", "free_port", "memory_tracing", "wait_for_health"]
