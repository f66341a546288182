// A pipeline definition as text the user edits: JSON or YAML (the `yaml` package; YAML 1.2, so
// "no" stays a string and every JSON document is valid YAML).
import { parse, stringify } from "yaml";

export type Format = "json" | "yaml";

/** The pipeline the text describes; throws an Error naming the format and the problem. */
export function parsePipeline(text: string, format: Format): any {
  let doc: unknown;
  try {
    doc = format === "json" ? JSON.parse(text) : parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new Error(`not valid ${format.toUpperCase()}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error(`the ${format.toUpperCase()} must be one object (the Pipeline)`);
  return doc;
}

export function formatPipeline(pipeline: unknown, format: Format): string {
  return format === "json" ? JSON.stringify(pipeline, null, 2) : stringify(pipeline);
}
