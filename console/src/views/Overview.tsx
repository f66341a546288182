import { useMemo, useRef } from "preact/hooks";
import { call, get } from "../api";
import { Chart, Series } from "../components/Chart";
import { useLoad } from "../hooks";

const POLL_MS = 3000;
const KEEP = 60; // points per chart (3 minutes at the poll interval)

interface Sample {
  t: number;
  byModel: Map<string, { count: number; fail: number; ns: number }>;
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
    const r = await get("/v2/models/stats");
    const byModel = new Map<string, { count: number; fail: number; ns: number }>();
    for (const s of r.model_stats ?? []) {
      const prev = byModel.get(s.name) ?? { count: 0, fail: 0, ns: 0 };
      const st = s.inference_stats ?? {};
      prev.count += Number(st.success?.count ?? 0);
      prev.ns += Number(st.success?.ns ?? 0);
      prev.fail += Number(st.fail?.count ?? 0);
      byModel.set(s.name, prev);
    }
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
        <p class="hint">From the model server's v2 statistics (GET /v2/models/stats, cumulative counters) polled every {POLL_MS / 1000} s: requests/s, errors/s and the mean success latency between two polls.</p>
        {stats.error && <p class="error">{stats.error}</p>}
        <div class="charts">
          {charts.map((c) => (
            <div key={c.name} class="card">
              <h3>{c.name}</h3>
              <Chart title="requests / errors per s" unit="per s" times={c.times} series={c.rate} />
              <Chart title="mean latency" unit="ms" times={c.times} series={c.latency} />
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
    const rps: Array<number | null> = [];
    const eps: Array<number | null> = [];
    const ms: Array<number | null> = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].byModel.get(name);
      const b = samples[i].byModel.get(name);
      const dt = samples[i].t - samples[i - 1].t || 1;
      if (!a || !b) {
        rps.push(null), eps.push(null), ms.push(null);
        continue;
      }
      const dc = b.count - a.count;
      rps.push(dc / dt);
      eps.push((b.fail - a.fail) / dt);
      ms.push(dc > 0 ? (b.ns - a.ns) / dc / 1e6 : null);
    }
    const rate: Series[] = [
      { label: "requests/s", values: rps, color: "#1f6feb" },
      { label: "errors/s", values: eps, color: "#cf222e" },
    ];
    const latency: Series[] = [{ label: "ms", values: ms, color: "#1a7f37" }];
    return { name, times, rate, latency };
  });
}
