"""The in-process queue knows which executions have an entry waiting (for the reconcile)."""

from __future__ import annotations

from modelserve_orchestrator.queue import MemoryWorkQueue


async def test_missing_lists_executions_without_a_waiting_entry() -> None:
    q = MemoryWorkQueue()
    await q.enqueue("a")
    await q.enqueue("a")
    await q.enqueue("b")
    assert await q.missing(["a", "b", "c"]) == ["c"]
    [(mid, eid)] = await q.receive(1, 0.1)
    assert eid == "a"
    assert await q.missing(["a", "b"]) == []  # a second entry of "a" still waits
    taken = await q.receive(2, 0.1)
    assert [e for _, e in taken] == ["a", "b"]
    assert await q.missing(["a", "b"]) == ["a", "b"]  # taken entries no longer count
    assert await q.missing([]) == []
