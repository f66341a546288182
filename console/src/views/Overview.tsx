import { useMemo, useRef } from "preact/hooks";
import { call, get } from "../api";
import { Chart, Series } from "../components/Chart";
import { useLoad } from "../hooks";
import { ModelTotals, point, Point, readStats } from "../stats";

const POLL_MS = 3000;
const KEEP = 60; // points per chart (3 minutes at the poll interval)

interface Sample {
  t: number;
  byModel: Map<string, ModelTotals>;
}

async function probe(path: string): Promise<string> {
  try {
    await call("GET", path);
    return "ok";
  } catch (e) {
    return (e as Error).message;
  }
}

/** Service health, model readiness and live per-model charts from /v2/models/stats. */
export function Overview() {
  const health = useLoad(async () => ({
    gateway: await probe("/healthz"),
    "model server (ready)": await probe("/v2/health/ready"),
    registry: await probe("/v1/models?pageSize=1"),
    orchestrator: await probe("/v1/pipelines?pageSize=1"),
  }), [], 10000);
  const models = useLoad(async () => {
    const list = (await get("/v1/models?pageSize=100")).models ?? [];
    return Promise.all(
      list.map(async (m: any) => {
        try {
          const r = await call("GET", `/v2/models/${encodeURIComponent(m.name)}/ready`);
          return { name: m.name, ready: Boolean(r.data?.ready), reason: "" };
        } catch (e) {
          return { name: m.name, ready: false, reason: (e as Error).message };
        }
      }),
    );
  }, [], 10000);
  const samples = useRef<Sample[]>([]);
  const stats = useLoad(async () => {
    const byModel = readStats(await get("/v2/models/stats"));
    samples.current = [...samples.current, { t: Date.now() / 1000, byModel }].slice(-KEEP);
    return samples.current;
  }, [], POLL_MS);
  const charts = useMemo(() => perModel(stats.data ?? []), [stats.data]);
  const ready = (models.data ?? []).filter((m) => m.ready);
  const failed = (models.data ?? []).filter((m) => !m.ready);
  return (
    <main>
      <h1>Overview</h1>
      <section aria-label="service health">
        <h2>Services</h2>
        {health.data ? (
          <ul class="health">
            {Object.entries(health.data).map(([k, v]) => (
              <li key={k} class={v === "ok" ? "ok" : "error"}>
                {k}: {v}
              </li>
            ))}
          </ul>
        ) : (
          <p>checking…</p>
        )}
      </section>
      <section aria-label="model readiness">
        <h2>
          Models: <span class="ok">{ready.length} ready</span>, <span class="error">{failed.length} not ready</span>
        </h2>
        <ul>
          {failed.map((m) => (
            <li key={m.name}>
              <a href={`#/models/${encodeURIComponent(m.name)}`}>{m.name}</a>: {m.reason || "not ready"}
            </li>
          ))}
        </ul>
      </section>
      <section aria-label="model charts">
        <h2>Traffic</h2>
        <p class="hint">
          From the model server's v2 statistics (GET /v2/models/stats: cumulative counters and latency
          histograms) polled every {POLL_MS / 1000} s; each point is the difference between two polls:
          requests/s, errors/s, p50/p99 of the successful requests' end-to-end latency, the mean and p99
          time in the queue, and the realised batch size (rows per executed batch, mean and largest).
        </p>
        {stats.error && <p class="error">{stats.error}</p>}
        <div class="charts">
          {charts.map((c) => (
            <div key={c.name} class="card">
              <h3>{c.name}</h3>
              <p class="latest" aria-label={`latest ${c.name}`}>{c.latest}</p>
              <Chart title="requests / errors per s" unit="per s" times={c.times} series={c.rate} />
              <Chart title="latency p50 / p99" unit="ms" times={c.times} series={c.latency} />
              <Chart title="queue time mean / p99" unit="ms" times={c.times} series={c.queue} />
              <Chart title="batch size mean / max" unit="rows" times={c.times} series={c.batch} />
            </div>
          ))}
        </div>
      </section>
    </main>
  );
}

function perModel(samples: Sample[]) {
  const names = new Set<string>();
  samples.forEach((s) => s.byModel.forEach((_, n) => names.add(n)));
  const times = samples.slice(1).map((s) => s.t);
  return [...names].sort().map((name) => {
    const points: Array<Point | null> = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].byModel.get(name);
      const b = samples[i].byModel.get(name);
      points.push(a && b ? point(a, b, samples[i].t - samples[i - 1].t) : null);
    }
    const col = (k: keyof Point) => points.map((p) => (p ? p[k] : null));
    const rate: Series[] = [
      { label: "requests/s", values: col("rps"), color: "#1f6feb" },
      { label: "errors/s", values: col("eps"), color: "#cf222e" },
    ];
    const latency: Series[] = [
      { label: "p50", values: col("p50Ms"), color: "#1a7f37" },
      { label: "p99", values: col("p99Ms"), color: "#9a6700" },
    ];
    const queue: Series[] = [
      { label: "mean", values: col("queueMeanMs"), color: "#8250df" },
      { label: "p99", values: col("queueP99Ms"), color: "#bf3989" },
    ];
    const batch: Series[] = [
      { label: "mean", values: col("batchMean"), color: "#0969da" },
      { label: "max", values: col("batchMax"), color: "#57606a" },
    ];
    return { name, times, rate, latency, queue, batch, latest: latest(points) };
  });
}

const fmt = (v: number | null, digits = 2) => (v === null ? "–" : v.toFixed(digits));

/** The last interval that had successful requests, as text (what the charts' right edge shows). */
function latest(points: Array<Point | null>): string {
  const p = [...points].reverse().find((x) => x && x.p50Ms !== null);
  if (!p) return "no successful requests in the last polls";
  return `latest interval with requests: ${fmt(p.rps)} req/s · p50 ${fmt(p.p50Ms)} ms · p99 ${fmt(p.p99Ms)} ms · queue ${fmt(p.queueMeanMs)} ms · batch ${fmt(p.batchMean, 1)}`;
}
