"""The change stream: changes above a revision in revision order, then new ones as they
commit, with progress notes while nothing changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import Change
from modelserve_registry.metrics import WATCH_LAG_SECONDS, WATCH_STREAMS
from modelserve_registry.store import now_us
from modelserve_registry.validation import require

WATCH_BATCH = 500


def start_revision(after_revision: int, head: int, compacted: int) -> int:
    """Where a watch starts: the head for a negative revision, else ``after_revision`` unless
    the changes after it were compacted away."""
    if after_revision < 0:
        return head
    if after_revision < compacted:
        raise errors.RevisionCompacted(
            f"changes up to revision {compacted} were compacted; resume from {compacted} or later "
            "after listing the current state"
        )
    return after_revision


class WatchOps(ServiceCore):
    async def watch(self, caller: Caller, after_revision: int, model: str) -> AsyncIterator[Change]:
        """Changes above ``after_revision`` in revision order, then new ones as they commit; a
        Change with ``resource=None`` is a progress note carrying the current revision. Counted in
        modelserve_registry_watch_streams while open; each change's commit-to-send time is
        modelserve_registry_watch_lag_seconds."""
        WATCH_STREAMS.inc()
        try:
            async for change in self._changes(caller, after_revision, model):
                if change.resource is not None:
                    WATCH_LAG_SECONDS.observe(max(0.0, (now_us() - change.commit_time) / 1e6))
                yield change
        finally:
            WATCH_STREAMS.dec()

    async def _changes(self, caller: Caller, after_revision: int, model: str) -> AsyncIterator[Change]:
        require(caller, "read")
        tenant = None if caller.is_trusted else caller.tenant
        async with self._store.transaction(write=False) as tx:
            if model:
                # a model the caller may read (its own, or shared): that model's tenant's changes
                tenant = None if caller.is_trusted else (await self._model(tx, caller, model)).tenant
            head, compacted = await tx.revisions()
        after = start_revision(after_revision, head, compacted)
        last_sent = time.monotonic()
        while True:
            wake = self._wake
            async with self._store.transaction(write=False) as tx:
                changes, scanned = await tx.changes_after(
                    after, tenant=tenant, model=model or None, limit=WATCH_BATCH
                )
            for change in changes:
                yield change
                last_sent = time.monotonic()
            moved = scanned > after
            after = max(after, scanned)
            if moved:
                continue
            if time.monotonic() - last_sent >= self._limits.watch_progress_interval_s:
                yield Change(revision=after, type="UPDATED", commit_time=now_us(), tenant="", resource=None)
                last_sent = time.monotonic()
            try:
                await asyncio.wait_for(wake.wait(), self._limits.watch_poll_interval_s)
            except TimeoutError:
                pass
