import { useEffect, useState } from "preact/hooks";
import { call, enc, errorText, get } from "../api";
import { useLoad } from "../hooks";
import { fromRawTensor } from "../tensors";
import { applyExecutionEvent, watchLines } from "../watch";

/** Reconnects of an execution's watch stream that ended before the execution did (each one
 * starts again from a snapshot, so nothing is missed). */
const MAX_RECONNECTS = 5;

const DONE = new Set(["EXECUTION_STATE_SUCCEEDED", "EXECUTION_STATE_FAILED", "EXECUTION_STATE_CANCELLED"]);

const STATES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

export function Executions({ pipeline }: { pipeline: string }) {
  const [state, setState] = useState("");
  const q = `?pageSize=100${pipeline ? `&pipeline=${enc(pipeline)}` : ""}${state ? `&state=EXECUTION_STATE_${state}` : ""}`;
  const list = useLoad(() => get(`/v1/executions${q}`), [q], 5000);
  return (
    <main>
      <h1>Executions{pipeline ? ` of ${pipeline}` : ""}</h1>
      <label>
        state
        <select name="state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          {STATES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </label>
      {list.error && <p class="error">{list.error}</p>}
      <table aria-label="executions">
        <thead>
          <tr><th>execution</th><th>pipeline</th><th>state</th><th>created</th></tr>
        </thead>
        <tbody>
          {(list.data?.executions ?? []).map((x: any) => (
            <tr key={x.execution}>
              <td><a href={`#/executions/${enc(x.execution)}`}>{x.execution}</a></td>
              <td>{x.pipeline}</td>
              <td>{String(x.state ?? "").replace("EXECUTION_STATE_", "")}</td>
              <td>{x.createTime ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

function seconds(d: string | undefined): number {
  return d ? parseFloat(d) : 0; // proto3 JSON Duration: "0.012s"
}

/** One execution's events (GET /v1/executions/{id}:watch, NDJSON) until the terminal one. */
export function useExecutionWatch(id: string): { execution: any; error: string | null } {
  const [execution, setExecution] = useState<any>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    let latest: any = null;
    const run = async () => {
      for (let attempt = 0; attempt <= MAX_RECONNECTS && !abort.signal.aborted; attempt++) {
        await watchLines(
          `/v1/executions/${enc(id)}:watch`,
          (event) => {
            latest = applyExecutionEvent(latest, event);
            setExecution(latest);
          },
          abort.signal,
        );
        if (DONE.has(latest?.state)) return;
      }
      if (!abort.signal.aborted) setError("the execution's watch stream keeps ending early; reload the page");
    };
    run().catch((e) => !abort.signal.aborted && setError(errorText(e)));
    return () => abort.abort();
  }, [id]);
  return { execution, error };
}

/** One execution's timeline per node, fed by its watch stream. */
export function Execution({ id }: { id: string }) {
  const x = useExecutionWatch(id);
  const ex = x.execution;
  const trace: any[] = ex?.trace ?? [];
  const longest = Math.max(0.001, ...trace.map((t) => seconds(t.latency)));
  return (
    <main>
      <h1>Execution {id}</h1>
      {x.error && <p class="error">{x.error}</p>}
      {ex && (
        <>
          <p role="status">
            {ex.pipeline} v{ex.pipelineVersion} · <strong class="state">{String(ex.state).replace("EXECUTION_STATE_", "")}</strong>
            {ex.error && <span class="error"> · {ex.error}</span>}
          </p>
          {!DONE.has(ex.state) && (
            <button type="button" onClick={() => call("POST", `/v1/executions/${enc(id)}:cancel`, {}).catch(() => undefined)}>Cancel</button>
          )}
          <ol class="timeline" aria-label="timeline">
            {trace.map((t) => (
              <li key={t.node}>
                <span class="node">{t.node}</span> {String(t.status ?? "").replace("NODE_STATUS_", "")} · {(seconds(t.latency) * 1000).toFixed(1)} ms
                {t.attempts > 1 && ` · ${t.attempts} attempts`}
                {t.message && <span class="error"> · {t.message}</span>}
                <span class="bar" style={{ width: `${(seconds(t.latency) / longest) * 100}%` }} />
              </li>
            ))}
          </ol>
          <Deliveries id={id} final={DONE.has(ex.state)} />
          <h2>Outputs</h2>
          <pre class="output">{JSON.stringify((ex.outputs ?? []).map(fromRawTensor), null, 2)}</pre>
        </>
      )}
    </main>
  );
}

/** Webhook deliveries of an execution with their attempts (read once the execution has ended). */
function Deliveries({ id, final }: { id: string; final: boolean }) {
  const d = useLoad(() => (final ? get(`/v1/executions/${enc(id)}/webhookDeliveries`) : Promise.resolve(null)), [id, final]);
  const list: any[] = d.data?.deliveries ?? [];
  if (!list.length) return null;
  return (
    <section aria-label="webhook deliveries">
      <h2>Webhook deliveries</h2>
      <ul>
        {list.map((w, i) => (
          <li key={i}>
            {w.url}: {String(w.event ?? "").replace(/^WEBHOOK_EVENT_/, "")} {String(w.state ?? "").replace(/^DELIVERY_STATE_/, "")} · {(w.attempts ?? []).length} attempt(s)
            {(w.attempts ?? []).map((a: any, j: number) => (
              <div key={j} class="hint">
                attempt {a.attempt}: {a.httpStatus ? `HTTP ${a.httpStatus}` : ""} {a.latency ?? ""} {a.error ?? ""}
              </div>
            ))}
          </li>
        ))}
      </ul>
    </section>
  );
}
