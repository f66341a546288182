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

// Raw tensors (modelserve.common.v1.Tensor: raw_contents, little-endian; BYTES as 4-byte length
// prefixes), as the orchestrator's JSON carries them (rawContents in base64).

type Typed = { new (n: number): ArrayLike<number | bigint> & { buffer: ArrayBufferLike; [i: number]: number | bigint } };
const RAW: Record<string, [Typed, boolean]> = {
  FP32: [Float32Array as unknown as Typed, false],
  FP64: [Float64Array as unknown as Typed, false],
  INT8: [Int8Array as unknown as Typed, false],
  INT16: [Int16Array as unknown as Typed, false],
  INT32: [Int32Array as unknown as Typed, false],
  INT64: [BigInt64Array as unknown as Typed, true],
  UINT8: [Uint8Array as unknown as Typed, false],
  UINT16: [Uint16Array as unknown as Typed, false],
  UINT32: [Uint32Array as unknown as Typed, false],
  UINT64: [BigUint64Array as unknown as Typed, true],
  BOOL: [Uint8Array as unknown as Typed, false],
};

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** One input of buildRequest → a raw Tensor for the orchestrator (little-endian hosts: every browser). */
export function toRawTensor(input: Record<string, unknown>): Record<string, unknown> {
  const dt = String(input.datatype);
  const data = input.data as unknown[];
  let bytes: Uint8Array;
  if (dt === "BYTES") {
    const parts = data.map((v) => new TextEncoder().encode(String(v)));
    bytes = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
    const view = new DataView(bytes.buffer);
    let at = 0;
    for (const p of parts) {
      view.setUint32(at, p.length, true);
      bytes.set(p, at + 4);
      at += 4 + p.length;
    }
  } else {
    const spec = RAW[dt];
    if (!spec) throw new TensorInputError(`${String(input.name)}: ${dt} inputs are not supported by the console`);
    const arr = new spec[0](data.length);
    data.forEach((v, i) => (arr[i] = spec[1] ? BigInt(v as number) : dt === "BOOL" ? (v ? 1 : 0) : (v as number)));
    bytes = new Uint8Array(arr.buffer);
  }
  return { name: input.name, datatype: dt, shape: input.shape, rawContents: toBase64(bytes) };
}

/** A raw Tensor from the orchestrator → {name, datatype, shape, data} for display. */
export function fromRawTensor(t: { name: string; datatype: string; shape?: Array<string | number>; rawContents?: string }): { name: string; datatype: string; shape: number[]; data: unknown[] } {
  const bytes = fromBase64(t.rawContents ?? "");
  const shape = (t.shape ?? []).map(Number);
  let data: unknown[];
  if (t.datatype === "BYTES") {
    data = [];
    const view = new DataView(bytes.buffer);
    for (let at = 0; at + 4 <= bytes.length; ) {
      const n = view.getUint32(at, true);
      data.push(new TextDecoder().decode(bytes.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
  } else {
    const spec = RAW[t.datatype];
    if (!spec) return { name: t.name, datatype: t.datatype, shape, data: [`${bytes.length} bytes`] };
    const size = (spec[0] as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    const copy = bytes.slice(0, bytes.length - (bytes.length % size));
    const arr = new (spec[0] as unknown as new (b: ArrayBufferLike) => ArrayLike<number | bigint>)(copy.buffer);
    data = Array.from(arr, (v) => (typeof v === "bigint" ? Number(v) : t.datatype === "BOOL" ? v !== 0 : v));
  }
  return { name: t.name, datatype: t.datatype, shape, data };
}
