// Server-streaming REST routes: newline-delimited JSON, one {"result": ...} a line, a failure
// after the first line as one last {"error": Status} line.
import { ApiError, authHeaders } from "./api";

/** Reads an NDJSON stream, calling onResult for each result; resolves when the stream ends,
 * rejects with the server's error (an error line or an error status). Aborted by `signal`. */
export async function watchLines(path: string, onResult: (doc: any) => void, signal: AbortSignal): Promise<void> {
  const resp = await fetch(path, { headers: { accept: "application/x-ndjson", ...authHeaders() }, signal });
  if (!resp.ok || !resp.body) {
    const text = await resp.text();
    let msg = text;
    try {
      msg = JSON.parse(text).message ?? text;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, `${resp.status}: ${msg}`, text);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const line = (text: string) => {
    if (!text.trim()) return;
    const doc = JSON.parse(text);
    if (doc.error) throw new ApiError(0, doc.error.message ?? JSON.stringify(doc.error), doc.error);
    onResult(doc.result);
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      line(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  }
  line(buffered + decoder.decode());
}

/** An execution as the watch events build it: SNAPSHOT and FINISHED carry the whole execution,
 * STARTED the state, NODE_COMPLETED one node's trace (replacing an earlier one of that node). */
export function applyExecutionEvent(current: any, event: any): any {
  if (event.execution) return event.execution;
  const next = { ...(current ?? {}) };
  if (event.state) next.state = event.state;
  if (event.node) {
    const trace: any[] = (next.trace ?? []).filter((t: any) => t.node !== event.node.node);
    next.trace = [...trace, event.node];
  }
  return next;
}
