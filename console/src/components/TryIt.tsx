import { useState } from "preact/hooks";
import { call, enc, errorText, get } from "../api";
import { useLoad } from "../hooks";
import { curlFor, pythonFor } from "../tensors";
import { TensorForm } from "./TensorForm";

/** The try-it panel: a form from the model's v2 metadata, the reply, latency, served version
 * and the same call as curl and Python. */
export function TryIt({ model }: { model: string }) {
  const meta = useLoad(() => get(`/v2/models/${enc(model)}`), [model]);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ body: unknown; ms: number; version: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [sent, setSent] = useState<{ inputs: Array<Record<string, unknown>> } | null>(null);
  const send = async (body: { inputs: Array<Record<string, unknown>> }) => {
    setBusy(true);
    setSent(body);
    try {
      const r = await call("POST", `/v2/models/${enc(model)}/infer`, body);
      setResult({ body: r.data, ms: r.ms, version: r.headers.get("x-modelserve-model-version") ?? r.data?.model_version ?? "" });
      setError(null);
    } catch (e) {
      setError(errorText(e));
      setResult(null);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-label="try it">
      <h2>Try it</h2>
      {meta.error && <p class="error">{meta.error}</p>}
      {meta.data && <TensorForm inputs={meta.data.inputs ?? []} onSubmit={send} busy={busy} />}
      {error && <p class="error" role="alert">{error}</p>}
      {result && (
        <div class="result" aria-label="inference result">
          <p>
            {result.ms.toFixed(1)} ms · served version {result.version || "?"}
          </p>
          <pre class="output">{JSON.stringify(result.body, null, 2)}</pre>
        </div>
      )}
      {sent && (
        <details>
          <summary>curl and Python</summary>
          <pre class="mono">{curlFor(location.origin, model, sent)}</pre>
          <pre class="mono">{pythonFor(location.origin, model, sent)}</pre>
        </details>
      )}
    </section>
  );
}
