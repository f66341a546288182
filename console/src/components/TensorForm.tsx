import { useState } from "preact/hooks";
import { buildRequest, FieldState, initialFields, TensorInputError, TensorMeta } from "../tensors";

/** Fields generated from the model's inputs; calls ``onSubmit`` with a valid v2 request body. */
export function TensorForm({ inputs, onSubmit, busy }: { inputs: TensorMeta[]; onSubmit: (body: { inputs: Array<Record<string, unknown>> }) => void; busy?: boolean }) {
  const [fields, setFields] = useState<FieldState[]>(() => initialFields(inputs));
  const [error, setError] = useState<string | null>(null);
  const update = (i: number, patch: Partial<FieldState>) => setFields(fields.map((f, j) => (j === i ? { ...f, ...patch } : f)));
  const submit = (e: Event) => {
    e.preventDefault();
    try {
      const body = buildRequest(fields);
      setError(null);
      onSubmit(body);
    } catch (err) {
      if (err instanceof TensorInputError) setError(err.message);
      else throw err;
    }
  };
  return (
    <form class="tensor-form" onSubmit={submit} aria-label="inference inputs">
      {fields.map((f, i) => (
        <fieldset key={f.meta.name}>
          <legend>
            {f.meta.name} <small>{f.meta.datatype} [{f.meta.shape.join(", ")}]</small>
          </legend>
          <label>
            shape
            <input name={`${f.meta.name}.shape`} value={f.shape} onInput={(e) => update(i, { shape: (e.target as HTMLInputElement).value })} />
          </label>
          <label>
            values (JSON array)
            <textarea name={`${f.meta.name}.values`} rows={3} value={f.values} onInput={(e) => update(i, { values: (e.target as HTMLTextAreaElement).value })} />
          </label>
        </fieldset>
      ))}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" disabled={busy}>
        {busy ? "Sending…" : "Send"}
      </button>
    </form>
  );
}
