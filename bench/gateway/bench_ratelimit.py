"""The gateway's Redis rate-limit check in process, one run: ``RedisRateLimiter.check`` (checks
that arrive while one is in flight go as one pipeline) beside one script call per check (what every
check cost before issue 19: the same GCRA script through redis-py, one round trip each), rounds
alternating. Prints JSON and a table: checks/s, CPU µs per check of this process, p50/max
latency, checks Redis did not answer in time (the limiter fails open on those).

    .venv/bin/python bench/gateway/bench_ratelimit.py --concurrency 1,32 --checks 100 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import numpy as np
from redis.exceptions import RedisError

from modelserve_gateway.ratelimit import LIMITER_ERRORS, Limit, RedisRateLimiter


async def one_call_per_check(rl: RedisRateLimiter, key: str, limit: Limit) -> bool:
    """True when Redis answered (the limiter fails open otherwise, as before)."""
    try:
        await rl._script(keys=[rl._prefix + key], args=[repr(limit.rate), limit.burst])
    except (TimeoutError, RedisError, OSError):
        return False
    return True


async def batched(rl: RedisRateLimiter, key: str, limit: Limit) -> bool:
    before = LIMITER_ERRORS.labels("open")._value.get()
    await rl.check(key, limit)
    return LIMITER_ERRORS.labels("open")._value.get() == before


async def cell(url: str, how, conc: int, checks: int) -> dict:
    rl = RedisRateLimiter(url, prefix=f"bench:ratelimit:{uuid.uuid4().hex[:8]}:")
    limit = Limit(1e6, 1_000_000)  # never refuses: every check is a full GCRA step
    await how(rl, "k", limit)  # connects, loads the script
    lat: list[float] = []
    failed = [0]

    async def worker() -> None:
        for _ in range(checks):
            t = time.perf_counter()
            if not await how(rl, "k", limit):
                failed[0] += 1
            lat.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await rl.close()
    n = len(lat)
    return {
        "checks_per_s": n / wall,
        "cpu_us_per_check": cpu / n * 1e6,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "max_ms": max(lat) * 1e3,
        "redis_failures": failed[0],
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default=os.environ.get("MODELSERVE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--checks", type=int, default=100, help="checks per concurrent caller")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    load = os.getloadavg()
    rows = []
    for conc in [int(c) for c in args.concurrency.split(",")]:
        got: dict[str, list[dict]] = {"one_call_per_check": [], "batched": []}
        for _ in range(args.rounds):
            for name, how in (("one_call_per_check", one_call_per_check), ("batched", batched)):
                got[name].append(await cell(args.redis_url, how, conc, args.checks))
        for name, cells in got.items():
            row = {k: float(np.median([c[k] for c in cells])) for k in cells[0]}
            rows.append({"mode": name, "concurrency": conc, **row})
    print(json.dumps({"loadavg": load, "rows": rows}))
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| mode | c | checks/s | CPU µs/check | p50 ms | max ms | Redis failures (failed open) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['concurrency']} | {r['checks_per_s']:.0f} | {r['cpu_us_per_check']:.0f} "
            f"| {r['p50_ms']:.2f} | {r['max_ms']:.0f} | {r['redis_failures']:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
