import { useState } from "preact/hooks";
import { ApiError, call, enc, errorText, get } from "../api";
import { PipelineDag } from "../components/PipelineDag";
import { TensorForm } from "../components/TensorForm";
import { toRawTensor } from "../tensors";
import { useLoad } from "../hooks";
import { Format, formatPipeline, parsePipeline } from "../pipelineText";

const EXAMPLE = JSON.stringify(
  {
    name: "my-pipeline",
    inputs: [{ name: "x", datatype: "FP32", shape: [-1, 4] }],
    nodes: [
      {
        name: "n1",
        model: { model: { name: "classifier" }, inputs: [{ name: "features", source: "inputs.x" }], outputs: ["probabilities"] },
      },
    ],
    outputs: [{ name: "p", sources: ["n1.probabilities"] }],
  },
  null,
  2,
);

/** The server's validation message, with the node it names pulled out when it names one. */
export function describeError(e: unknown, nodes: string[]): { node: string | null; message: string } {
  const message = e instanceof ApiError && e.body && typeof e.body === "object" ? String((e.body as any).message ?? e.message) : errorText(e);
  const node = nodes.find((n) => new RegExp(`\\b${n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`).test(message)) ?? null;
  return { node, message };
}

export function Pipelines() {
  const list = useLoad(() => get("/v1/pipelines?pageSize=200"), []);
  const [text, setText] = useState(EXAMPLE);
  const [format, setFormat] = useState<Format>("json");
  const [error, setError] = useState<{ node: string | null; message: string } | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const switchTo = (next: Format) => {
    if (next === format) return;
    try {
      setText(formatPipeline(parsePipeline(text, format), next)); // the same pipeline, re-written
      setError(null);
    } catch (err) {
      setError({ node: null, message: errorText(err) }); // keep the text as it is: nothing lost
      return;
    }
    setFormat(next);
  };
  const create = async (e: Event) => {
    e.preventDefault();
    let pipeline: any;
    try {
      pipeline = parsePipeline(text, format);
    } catch (err) {
      setError({ node: null, message: errorText(err) });
      return;
    }
    try {
      await call("POST", "/v1/pipelines", pipeline); // the body is the Pipeline
      setCreated(pipeline.name);
      setError(null);
      list.reload();
    } catch (err) {
      setCreated(null);
      setError(describeError(err, (pipeline.nodes ?? []).map((n: any) => String(n.name))));
    }
  };
  return (
    <main>
      <h1>Pipelines</h1>
      {list.error && <p class="error">{list.error}</p>}
      <ul aria-label="pipelines">
        {(list.data?.pipelines ?? []).map((p: any) => (
          <li key={p.name}>
            <a href={`#/pipelines/${encodeURIComponent(p.name)}`}><strong>{p.name}</strong></a> v{p.version} · {(p.nodes ?? []).map((n: any) => n.name).join(" → ")}{" "}
            <a href={`#/executions?pipeline=${encodeURIComponent(p.name)}`}>executions</a>
          </li>
        ))}
      </ul>
      <h2>Create</h2>
      <form onSubmit={create} aria-label="create pipeline">
        <fieldset class="inline" aria-label="format">
          {(["json", "yaml"] as Format[]).map((f) => (
            <label key={f}>
              <input type="radio" name="format" value={f} checked={format === f} onChange={() => switchTo(f)} /> {f.toUpperCase()}
            </label>
          ))}
        </fieldset>
        <textarea name="pipeline" rows={16} class="mono wide" value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
        <button type="submit">Create</button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error.node && <strong>node {error.node}: </strong>}
          {error.message}
        </p>
      )}
      {created && <p class="ok" role="status">created {created}</p>}
    </main>
  );
}

/** One pipeline: its definition and an asynchronous run with typed inputs (CreateExecution). */
export function PipelinePage({ name }: { name: string }) {
  const p = useLoad(() => get(`/v1/pipelines/${enc(name)}`), [name]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async (body: { inputs: Array<Record<string, unknown>> }) => {
    setBusy(true);
    try {
      const inputs = body.inputs.map(toRawTensor);
      const r = await call("POST", `/v1/pipelines/${enc(name)}/executions`, { inputs });
      location.hash = `#/executions/${encodeURIComponent(r.data.execution.execution)}`;
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const pipeline = p.data?.pipeline;
  return (
    <main>
      <h1>Pipeline {name}</h1>
      {p.error && <p class="error" role="alert">{p.error}</p>}
      {pipeline && (
        <>
          <p>
            v{pipeline.version} · {(pipeline.nodes ?? []).map((n: any) => n.name).join(" → ")}{" "}
            <a href={`#/executions?pipeline=${encodeURIComponent(name)}`}>executions</a>
          </p>
          <section aria-label="graph">
            <h2>Graph</h2>
            <PipelineDag pipeline={pipeline} />
          </section>
          <section aria-label="run pipeline">
            <h2>Run (asynchronous execution)</h2>
            <TensorForm inputs={(pipeline.inputs ?? []).map((i: any) => ({ ...i, shape: (i.shape ?? []).map(Number) }))} onSubmit={run} busy={busy} />
            {error && <p class="error" role="alert">{error}</p>}
          </section>
          <details>
            <summary>definition</summary>
            <pre class="mono">{JSON.stringify(pipeline, null, 2)}</pre>
          </details>
        </>
      )}
    </main>
  );
}
