"""A benchmarked server's process tree, CPU time and RSS from /proc (Linux): one copy for the
bench scripts that measure a server and its workers."""

from __future__ import annotations

import os


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant (children of any of its threads)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (gone ones count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pids: list[int]) -> float:
    """Resident memory of ``pids`` together, MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024
