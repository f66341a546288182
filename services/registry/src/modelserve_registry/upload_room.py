"""Quota room held by uploads in flight, so concurrent uploads of one tenant cannot each be given
the whole remaining quota. A reservation is taken (under one lock, together with the read of the
tenant's use) before a byte is stored and released once the blob is recorded for the tenant in the
database (from then on ``tenant_storage_used`` counts it) or when the upload fails.

The reservations live in this process: replicas of the registry each hold their own, and the
check when the version is created (artifacts.py) still refuses a version that would go over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Reservation:
    tenant: str
    room: int
    """Bytes this upload may store."""
    used: int
    """The tenant's use (stored and reserved by other uploads) when the room was given."""
    _owner: UploadRoom | None = field(default=None, repr=False)

    def release(self) -> None:
        """Gives the room back (idempotent)."""
        if self._owner is not None:
            self._owner._give_back(self.tenant, self.room)
            self._owner = None


class UploadRoom:
    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def reserved(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    @asynccontextmanager
    async def reserve(
        self, tenant: str, stored: Callable[[], Awaitable[int]], room: Callable[[int], int]
    ) -> AsyncIterator[Reservation]:
        """``stored()`` reads the tenant's stored use; ``room(used)`` says how much this upload
        may take given the use (stored + reserved), raising when there is none. Released on exit
        at the latest."""
        async with self._lock:
            used = await stored() + self.reserved(tenant)
            size = room(used)
            self._held[tenant] = self.reserved(tenant) + size
        reservation = Reservation(tenant, size, used, self)
        try:
            yield reservation
        finally:
            reservation.release()

    def _give_back(self, tenant: str, size: int) -> None:
        left = self._held.get(tenant, 0) - size
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)
