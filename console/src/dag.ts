// The pipeline's DAG for drawing: edges come from the tensor references inside each node
// ("<node>.<tensor>", "inputs.<name>", or a bare node name such as a switch target), nodes are
// placed in layers by their longest path from the pipeline's inputs.

export interface DagNode {
  name: string;
  kind: string;
  layer: number;
  row: number;
}
export interface Dag {
  nodes: DagNode[];
  edges: Array<[string, string]>;
  layers: number;
}

export const INPUTS = "inputs";
const KINDS = ["model", "ensemble", "switch", "splitter"];

function strings(value: unknown, out: string[], depth = 0): void {
  if (depth > 12) return; // a pipeline document is shallow; bound the walk anyway
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out, depth + 1);
  else if (value && typeof value === "object") for (const v of Object.values(value)) strings(v, out, depth + 1);
}

/** Layers and edges of a pipeline (the JSON of orchestrator.v1.Pipeline). A cycle (which the
 * server refuses) does not loop: layers stop growing after one pass per node. */
export function layout(pipeline: { nodes?: any[] } | null | undefined): Dag {
  const nodes = (pipeline?.nodes ?? []).map((n: any) => ({ name: String(n.name ?? ""), spec: n }));
  const names = new Set(nodes.map((n) => n.name));
  const edges: Array<[string, string]> = [];
  for (const n of nodes) {
    const refs: string[] = [];
    strings(n.spec[KINDS.find((k) => n.spec[k]) ?? ""] ?? {}, refs);
    const from = new Set<string>();
    for (const r of refs) {
      const head = r.split(".")[0];
      if (head === INPUTS && r.includes(".")) from.add(INPUTS);
      else if (head !== n.name && names.has(head)) from.add(head);
    }
    for (const f of [...from].sort()) edges.push([f, n.name]);
  }
  const layer = new Map<string, number>([[INPUTS, 0]]);
  for (const n of nodes) layer.set(n.name, 1);
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const [a, b] of edges) {
      const want = (layer.get(a) ?? 0) + 1;
      if (want > (layer.get(b) ?? 1) && want <= nodes.length) {
        layer.set(b, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const rows = new Map<number, number>();
  const placed: DagNode[] = [{ name: INPUTS, kind: "inputs", layer: 0, row: 0 }];
  rows.set(0, 1);
  for (const n of nodes) {
    const l = layer.get(n.name) ?? 1;
    const row = rows.get(l) ?? 0;
    rows.set(l, row + 1);
    placed.push({ name: n.name, kind: KINDS.find((k) => n.spec[k]) ?? "node", layer: l, row });
  }
  return { nodes: placed, edges, layers: Math.max(0, ...placed.map((p) => p.layer)) + 1 };
}
