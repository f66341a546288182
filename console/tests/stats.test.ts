// @vitest-environment node
import { describe, expect, it } from "vitest";
import { histDelta, percentile, point, readStats } from "../src/stats";

const bounds = [1e6, 2e6, 4e6, 8e6]; // 1, 2, 4, 8 ms

function answer(name: string, version: string, o: { ok: number; okNs: number; fail?: number; succ: number[]; queue: number[]; rows?: number; runs?: number; batches?: Record<number, number> }) {
  const q = o.queue.reduce((s, c) => s + c, 0);
  return {
    name,
    version,
    inference_count: String(o.rows ?? o.ok),
    execution_count: String(o.runs ?? o.ok),
    inference_stats: {
      success: { count: String(o.ok), ns: String(o.okNs) },
      fail: { count: String(o.fail ?? 0) },
      queue: { count: String(q), ns: String(q * 500_000) },
    },
    batch_stats: Object.entries(o.batches ?? {}).map(([size, n]) => ({ batch_size: size, compute_infer: { count: String(n) } })),
    success_histogram: { bounds_ns: bounds.map(String), counts: o.succ.map(String) },
    queue_histogram: { bounds_ns: bounds.map(String), counts: o.queue.map(String) },
  };
}

describe("percentile", () => {
  it("interpolates inside the bucket the rank falls in, the first bucket from 0", () => {
    expect(percentile(bounds, [10, 0, 0, 0, 0], 0.5)).toBe(0.5e6);
    expect(percentile(bounds, [0, 0, 4, 0, 0], 0.5)).toBe(3e6);
    expect(percentile(bounds, [50, 49, 1, 0, 0], 0.99)).toBe(2e6);
    expect(percentile(bounds, [50, 49, 0, 0, 1], 1)).toBe(8e6); // overflow: the last bound
  });
  it("has no value without events", () => {
    expect(percentile(bounds, [0, 0, 0, 0, 0], 0.5)).toBeNull();
  });
});

describe("histDelta", () => {
  const h = (counts: number[]) => ({ bounds, counts });
  it("subtracts per bucket", () => {
    expect(histDelta(h([1, 2, 3, 0, 0]), h([2, 2, 5, 1, 0]))).toEqual([1, 0, 2, 1, 0]);
  });
  it("refuses a count that went back (a reload) and different bounds", () => {
    expect(histDelta(h([5, 0, 0, 0, 0]), h([1, 0, 0, 0, 0]))).toBeNull();
    expect(histDelta({ bounds: [1, 2], counts: [0, 0, 0] }, h([1, 0, 0, 0, 0]))).toBeNull();
  });
});

describe("readStats and point", () => {
  it("adds a model's versions together and gives rates, percentiles, queue time and batch size between two polls", () => {
    const before = readStats({
      model_stats: [
        answer("m", "1", { ok: 10, okNs: 10e6, succ: [10, 0, 0, 0, 0], queue: [10, 0, 0, 0, 0], batches: { 1: 10 } }),
        answer("m", "2", { ok: 0, okNs: 0, succ: [0, 0, 0, 0, 0], queue: [0, 0, 0, 0, 0] }),
      ],
    });
    const after = readStats({
      model_stats: [
        // 100 more on v1: 50 under 1 ms, 49 in 1-2 ms, 1 in 2-4 ms; 80 rows in 20 batches of 4
        answer("m", "1", { ok: 110, okNs: 160e6, fail: 4, succ: [60, 49, 1, 0, 0], queue: [110, 0, 0, 0, 0], rows: 90, runs: 30, batches: { 1: 10, 4: 20 } }),
        answer("m", "2", { ok: 0, okNs: 0, succ: [0, 0, 0, 0, 0], queue: [0, 0, 0, 0, 0] }),
      ],
    });
    expect([...after.keys()]).toEqual(["m"]);
    const p = point(before.get("m")!, after.get("m")!, 2);
    expect(p.rps).toBe(50);
    expect(p.eps).toBe(2);
    expect(p.meanMs).toBe(1.5);
    expect(p.p50Ms).toBe(1);
    expect(p.p99Ms).toBe(2);
    expect(p.queueMeanMs).toBe(0.5);
    expect(p.queueP99Ms).toBeCloseTo(0.99);
    expect(p.batchMean).toBe(4);
    expect(p.batchMax).toBe(4);
  });
  it("shows no point where a counter went back (the version was reloaded)", () => {
    const a = readStats({ model_stats: [answer("m", "1", { ok: 10, okNs: 1, succ: [10, 0, 0, 0, 0], queue: [0, 0, 0, 0, 0] })] });
    const b = readStats({ model_stats: [answer("m", "1", { ok: 2, okNs: 1, succ: [2, 0, 0, 0, 0], queue: [0, 0, 0, 0, 0] })] });
    expect(point(a.get("m")!, b.get("m")!, 3).rps).toBeNull();
  });
  it("has no percentiles from a server without the histograms (plain Triton statistics)", () => {
    const plain = (ok: number) => ({ model_stats: [{ name: "t", version: "1", inference_stats: { success: { count: String(ok), ns: String(ok * 1e6) } } }] });
    const p = point(readStats(plain(1)).get("t")!, readStats(plain(4)).get("t")!, 1);
    expect(p.rps).toBe(3);
    expect(p.meanMs).toBe(1);
    expect(p.p50Ms).toBeNull();
  });
});
