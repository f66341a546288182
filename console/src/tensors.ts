// The try-it form's logic: fields from the model's v2 metadata, parsing, request body, curl.

export interface TensorMeta {
  name: string;
  datatype: string;
  shape: number[];
}

export interface FieldState {
  meta: TensorMeta;
  shape: string; // "1,4": the concrete shape the user sends (-1 replaced)
  values: string; // JSON array (nested or flat) or comma-separated values
}

const INTS = new Set(["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]);
const FLOATS = new Set(["FP16", "FP32", "FP64", "BF16"]);

export function initialFields(inputs: TensorMeta[]): FieldState[] {
  return inputs.map((meta) => {
    const shape = meta.shape.map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    const zero = meta.datatype === "BYTES" ? '""' : meta.datatype === "BOOL" ? "false" : "0";
    return { meta, shape: shape.join(","), values: n <= 64 ? `[${Array(n).fill(zero).join(", ")}]` : "" };
  });
}

export class TensorInputError extends Error {}

function parseShape(field: FieldState): number[] {
  const parts = field.shape.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const shape = parts.map(Number);
  if (parts.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TensorInputError(`${field.meta.name}: shape must be whole numbers ≥ 0 separated by commas, got "${field.shape}"`);
  }
  const declared = field.meta.shape;
  if (declared.length && declared.length !== shape.length) {
    throw new TensorInputError(`${field.meta.name}: the model expects ${declared.length} dimensions [${declared.join(", ")}], got ${shape.length}`);
  }
  declared.forEach((d, i) => {
    if (d >= 0 && d !== shape[i]) {
      throw new TensorInputError(`${field.meta.name}: dimension ${i} must be ${d}, got ${shape[i]}`);
    }
  });
  return shape;
}

function parseValues(field: FieldState): unknown[] {
  const text = field.values.trim();
  let raw: unknown;
  try {
    raw = JSON.parse(text.startsWith("[") ? text : `[${text}]`);
  } catch {
    throw new TensorInputError(`${field.meta.name}: values must be a JSON array or comma-separated values`);
  }
  const flat = (raw as unknown[]).flat(Infinity as 1);
  const dt = field.meta.datatype;
  flat.forEach((v, i) => {
    const bad =
      (INTS.has(dt) && !(typeof v === "number" && Number.isInteger(v))) ||
      (FLOATS.has(dt) && typeof v !== "number") ||
      (dt === "BOOL" && typeof v !== "boolean") ||
      (dt === "BYTES" && typeof v !== "string");
    if (bad) throw new TensorInputError(`${field.meta.name}: element ${i} (${JSON.stringify(v)}) is not a ${dt} value`);
    if (dt.startsWith("UINT") && (v as number) < 0) {
      throw new TensorInputError(`${field.meta.name}: element ${i} is negative, ${dt} is unsigned`);
    }
  });
  return flat;
}

/** The KServe v2 JSON request; throws TensorInputError naming the field at fault. */
export function buildRequest(fields: FieldState[]): { inputs: Array<Record<string, unknown>> } {
  return {
    inputs: fields.map((f) => {
      const shape = parseShape(f);
      const data = parseValues(f);
      const want = shape.reduce((a, b) => a * b, 1);
      if (data.length !== want) {
        throw new TensorInputError(`${f.meta.name}: shape [${shape.join(", ")}] needs ${want} values, got ${data.length}`);
      }
      return { name: f.meta.name, shape, datatype: f.meta.datatype, data };
    }),
  };
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The same call as curl (the key is left as a variable, never printed). */
export function curlFor(origin: string, model: string, body: unknown): string {
  const url = `${origin}/v2/models/${encodeURIComponent(model)}/infer`;
  return [
    `curl -sS -X POST ${shellQuote(url)}`,
    `  -H "x-api-key: $MODELSERVE_API_KEY"`,
    `  -H 'content-type: application/json'`,
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

/** The same call with tritonclient's HTTP client. */
export function pythonFor(origin: string, model: string, body: { inputs: Array<Record<string, unknown>> }): string {
  const host = origin.replace(/^https?:\/\//, "");
  const lines = [
    "import os, numpy as np, tritonclient.http as httpclient",
    `client = httpclient.InferenceServerClient(${JSON.stringify(host)})`,
    "inputs = []",
  ];
  for (const i of body.inputs) {
    lines.push(`x = httpclient.InferInput(${JSON.stringify(i.name)}, ${JSON.stringify(i.shape)}, ${JSON.stringify(i.datatype)})`);
    lines.push(`x.set_data_from_numpy(np.array(${JSON.stringify(i.data)}).reshape(${JSON.stringify(i.shape)}))`);
    lines.push("inputs.append(x)");
  }
  lines.push(`result = client.infer(${JSON.stringify(model)}, inputs, headers={"x-api-key": os.environ["MODELSERVE_API_KEY"]})`);
  return lines.join("\n");
}
