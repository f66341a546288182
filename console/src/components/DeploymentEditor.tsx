import { useState } from "preact/hooks";
import { checkWeights, diffTargets, setWeight, Target } from "../weights";

/** Versions with traffic weights; shows the diff and applies only when the weights are valid. */
export function DeploymentEditor({ current, versions, onApply }: { current: Target[]; versions: string[]; onApply: (next: Target[]) => Promise<void> }) {
  const [rows, setRows] = useState<Target[]>(current.length ? current : versions.slice(-1).map((v) => ({ version: v, weight: 100, mirror: false })));
  const [reviewing, setReviewing] = useState(false);
  const [busy, setBusy] = useState(false);
  const check = checkWeights(rows);
  const diff = diffTargets(current, rows);
  const edit = (i: number, patch: Partial<Target>) => {
    setReviewing(false);
    setRows(rows.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  };
  const unused = versions.filter((v) => !rows.some((r) => r.version === v));
  return (
    <section class="deployment-editor" aria-label="deployment editor">
      <table>
        <thead>
          <tr>
            <th>version</th>
            <th>weight %</th>
            <th>mirror</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              <td>v{r.version}</td>
              <td>
                <input type="range" min={0} max={100} value={r.weight} disabled={r.mirror} aria-label={`weight slider v${r.version}`} onInput={(e) => { setReviewing(false); setRows(setWeight(rows, i, Number((e.target as HTMLInputElement).value))); }} />
                <input type="number" min={0} max={100} value={r.weight} disabled={r.mirror} aria-label={`weight v${r.version}`} name={`weight-${r.version}`} onInput={(e) => edit(i, { weight: Number((e.target as HTMLInputElement).value) })} />
              </td>
              <td>
                <input type="checkbox" checked={r.mirror} aria-label={`mirror v${r.version}`} onChange={(e) => edit(i, { mirror: (e.target as HTMLInputElement).checked, weight: 0 })} />
              </td>
              <td>
                <button type="button" onClick={() => { setReviewing(false); setRows(rows.filter((_, j) => j !== i)); }}>remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {unused.length > 0 && (
        <p>
          add version:{" "}
          {unused.map((v) => (
            <button type="button" key={v} onClick={() => { setReviewing(false); setRows([...rows, { version: v, weight: 0, mirror: false }]); }}>
              v{v}
            </button>
          ))}
        </p>
      )}
      <p class={check.ok ? "ok" : "error"} role="status">
        total {check.total}% {check.errors.map((e) => <span key={e}> · {e}</span>)}
      </p>
      {!reviewing ? (
        <button type="button" disabled={!check.ok || diff.length === 0} onClick={() => setReviewing(true)}>
          Review change
        </button>
      ) : (
        <div class="diff" aria-label="deployment diff">
          <ul>
            {diff.map((d) => (
              <li key={d.text} class={d.kind}>
                {d.kind === "added" ? "+ " : d.kind === "removed" ? "− " : "~ "}
                {d.text}
              </li>
            ))}
          </ul>
          <button type="button" disabled={busy} onClick={async () => { setBusy(true); try { await onApply(rows); setReviewing(false); } finally { setBusy(false); } }}>
            Apply
          </button>
          <button type="button" onClick={() => setReviewing(false)}>Cancel</button>
        </div>
      )}
    </section>
  );
}
