/**
 * The overview's numbers, from the model server's KServe v2 statistics (GET /v2/models/stats,
 * Triton's ModelStatistics shape plus ModelServe's cumulative duration histograms
 * `success_histogram` and `queue_histogram`). Every figure is cumulative on the server; a chart
 * point is the difference between two polls, so percentiles are those of the requests answered
 * between them, not since start-up.
 */

/** A duration histogram: counts[i] events in (bounds[i-1], bounds[i]] ns; one more count than bounds. */
export interface Hist {
  bounds: number[];
  counts: number[];
}

/** One model's cumulative statistics, its versions added together. */
export interface ModelTotals {
  count: number; // successful requests
  ns: number; // their total end-to-end time
  fail: number;
  queueCount: number;
  queueNs: number;
  inferences: number; // rows run (one per batch row)
  executions: number; // batches run
  batches: Map<number, number>; // executions per batch size
  success: Hist | null;
  queue: Hist | null;
}

/** One chart point of one model, between two polls; null where nothing happened or a counter went back. */
export interface Point {
  rps: number | null;
  eps: number | null;
  meanMs: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  queueMeanMs: number | null;
  queueP99Ms: number | null;
  batchMean: number | null;
  batchMax: number | null;
}

const num = (v: unknown) => Number(v ?? 0);

function readHist(h: any): Hist | null {
  if (!h || !Array.isArray(h.bounds_ns) || !Array.isArray(h.counts)) return null;
  const bounds = h.bounds_ns.map(num);
  const counts = h.counts.map(num);
  return counts.length === bounds.length + 1 ? { bounds, counts } : null;
}

function sameBounds(a: Hist, b: Hist): boolean {
  return a.bounds.length === b.bounds.length && a.bounds.every((x, i) => x === b.bounds[i]);
}

/** a + b; null when either is missing or their bounds differ. */
export function addHist(a: Hist | null, b: Hist | null): Hist | null {
  if (!a || !b || !sameBounds(a, b)) return null;
  return { bounds: a.bounds, counts: a.counts.map((c, i) => c + b.counts[i]) };
}

/** later - earlier per bucket; null when missing, bounds differ or a count went back (a reload). */
export function histDelta(earlier: Hist | null, later: Hist | null): number[] | null {
  if (!earlier || !later || !sameBounds(earlier, later)) return null;
  const d = later.counts.map((c, i) => c - earlier.counts[i]);
  return d.some((x) => x < 0) ? null : d;
}

/**
 * The q-quantile (0 < q <= 1) in ns of events counted per bucket, interpolated linearly inside
 * its bucket (the first bucket starts at 0); in the overflow bucket, the last bound. Null for none.
 */
export function percentile(bounds: number[], counts: number[], q: number): number | null {
  const total = counts.reduce((s, c) => s + c, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c > 0 && cum + c >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      if (i >= bounds.length) return lo;
      return lo + ((bounds[i] - lo) * (rank - cum)) / c;
    }
    cum += c;
  }
  return bounds[bounds.length - 1];
}

/** The statistics answer as totals per model (versions added together). */
export function readStats(resp: any): Map<string, ModelTotals> {
  const out = new Map<string, ModelTotals>();
  for (const s of resp?.model_stats ?? []) {
    const st = s.inference_stats ?? {};
    const batches = new Map<number, number>();
    for (const b of s.batch_stats ?? []) batches.set(num(b.batch_size), num(b.compute_infer?.count));
    const cur: ModelTotals = {
      count: num(st.success?.count),
      ns: num(st.success?.ns),
      fail: num(st.fail?.count),
      queueCount: num(st.queue?.count),
      queueNs: num(st.queue?.ns),
      inferences: num(s.inference_count),
      executions: num(s.execution_count),
      batches,
      success: readHist(s.success_histogram),
      queue: readHist(s.queue_histogram),
    };
    const prev = out.get(s.name);
    if (!prev) {
      out.set(s.name, cur);
      continue;
    }
    for (const [size, n] of cur.batches) prev.batches.set(size, (prev.batches.get(size) ?? 0) + n);
    out.set(s.name, {
      count: prev.count + cur.count,
      ns: prev.ns + cur.ns,
      fail: prev.fail + cur.fail,
      queueCount: prev.queueCount + cur.queueCount,
      queueNs: prev.queueNs + cur.queueNs,
      inferences: prev.inferences + cur.inferences,
      executions: prev.executions + cur.executions,
      batches: prev.batches,
      success: addHist(prev.success, cur.success),
      queue: addHist(prev.queue, cur.queue),
    });
  }
  return out;
}

const ms = (ns: number | null) => (ns === null ? null : ns / 1e6);

/** The chart point between two readings ``dt`` seconds apart. */
export function point(a: ModelTotals, b: ModelTotals, dt: number): Point {
  const none: Point = {
    rps: null, eps: null, meanMs: null, p50Ms: null, p99Ms: null,
    queueMeanMs: null, queueP99Ms: null, batchMean: null, batchMax: null,
  };
  const dc = b.count - a.count;
  const df = b.fail - a.fail;
  if (dc < 0 || df < 0 || dt <= 0) return none; // a counter went back: the version was reloaded
  const p: Point = { ...none, rps: dc / dt, eps: df / dt };
  if (dc > 0) p.meanMs = ms((b.ns - a.ns) / dc);
  const succ = histDelta(a.success, b.success);
  if (succ && b.success) {
    p.p50Ms = ms(percentile(b.success.bounds, succ, 0.5));
    p.p99Ms = ms(percentile(b.success.bounds, succ, 0.99));
  }
  const dq = b.queueCount - a.queueCount;
  if (dq > 0) p.queueMeanMs = ms((b.queueNs - a.queueNs) / dq);
  const queue = histDelta(a.queue, b.queue);
  if (queue && b.queue) p.queueP99Ms = ms(percentile(b.queue.bounds, queue, 0.99));
  const de = b.executions - a.executions;
  const di = b.inferences - a.inferences;
  if (de > 0 && di >= 0) p.batchMean = di / de;
  let max: number | null = null;
  for (const [size, n] of b.batches) if (n - (a.batches.get(size) ?? 0) > 0) max = Math.max(max ?? 0, size);
  p.batchMax = max;
  return p;
}
