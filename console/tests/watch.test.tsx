import { cleanup, render, screen, waitFor } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { applyExecutionEvent, watchLines } from "../src/watch";
import { Execution } from "../src/views/Executions";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

/** A streamed response whose body arrives in the given chunks (lines may be split across them). */
function streaming(chunks: string[], status = 200) {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(new TextEncoder().encode(c));
      controller.close();
    },
  });
  const fetch = vi.fn().mockImplementation(() => Promise.resolve(new Response(body, { status })));
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

const SNAPSHOT = { type: "EXECUTION_EVENT_TYPE_SNAPSHOT", execution: { execution: "e1", pipeline: "p", pipelineVersion: 1, state: "EXECUTION_STATE_RUNNING", trace: [] } };
const NODE = { type: "EXECUTION_EVENT_TYPE_NODE_COMPLETED", state: "EXECUTION_STATE_RUNNING", node: { node: "n1", status: "NODE_STATUS_SUCCEEDED", latency: "0.012s" } };
const FINISHED = { type: "EXECUTION_EVENT_TYPE_FINISHED", execution: { ...SNAPSHOT.execution, state: "EXECUTION_STATE_SUCCEEDED", trace: [NODE.node] } };
const line = (result: unknown) => JSON.stringify({ result }) + "\n";

describe("watchLines", () => {
  it("parses results split across chunks and reports an error line", async () => {
    const text = line(SNAPSHOT) + line(NODE);
    streaming([text.slice(0, 17), text.slice(17, 200), text.slice(200), JSON.stringify({ error: { code: 14, message: "orchestrator went away" } })]);
    const seen: any[] = [];
    await expect(watchLines("/v1/executions/e1:watch", (d) => seen.push(d), new AbortController().signal)).rejects.toThrow("orchestrator went away");
    expect(seen).toEqual([SNAPSHOT, NODE]);
  });
  it("builds the execution from its events", () => {
    let ex = applyExecutionEvent(null, SNAPSHOT);
    ex = applyExecutionEvent(ex, NODE);
    ex = applyExecutionEvent(ex, { ...NODE, node: { ...NODE.node, latency: "0.020s" } });
    expect(ex.trace).toEqual([{ ...NODE.node, latency: "0.020s" }]);
    expect(applyExecutionEvent(ex, FINISHED).state).toBe("EXECUTION_STATE_SUCCEEDED");
  });
});

describe("<Execution>", () => {
  it("shows the timeline from the watch stream, without polling", async () => {
    const fetch = streaming([line(SNAPSHOT), line(NODE), line(FINISHED)]);
    render(<Execution id="e1" />);
    await waitFor(() => expect(screen.getByRole("status").textContent).toContain("SUCCEEDED"));
    expect(screen.getByLabelText("timeline").textContent).toContain("n1 SUCCEEDED · 12.0 ms");
    const urls = fetch.mock.calls.map((c) => c[0]);
    expect(urls[0]).toBe("/v1/executions/e1:watch");
    expect(urls.filter((u: string) => u === "/v1/executions/e1")).toEqual([]);
  });
});
