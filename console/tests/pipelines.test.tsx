import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { formatPipeline, parsePipeline } from "../src/pipelineText";
import { Pipelines } from "../src/views/Pipelines";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function server() {
  const fetch = vi.fn().mockImplementation((_url: string, init?: RequestInit) =>
    Promise.resolve(new Response(JSON.stringify(init?.method === "POST" ? { pipeline: JSON.parse(String(init.body)) } : { pipelines: [] }), { status: 200 })),
  );
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

const YAML = `name: from-yaml
inputs:
  - { name: x, datatype: FP32, shape: [-1, 4] }
nodes:
  - name: n1
    model:
      model: { name: classifier }
      inputs: [{ name: features, source: inputs.x }]
      outputs: [probabilities]
outputs:
  - name: p
    sources: [n1.probabilities]
`;

describe("pipeline text", () => {
  it("round-trips between JSON and YAML and refuses what is not one object", () => {
    const p = parsePipeline(YAML, "yaml");
    expect(p.nodes[0].model.inputs[0].source).toBe("inputs.x");
    expect(parsePipeline(formatPipeline(p, "json"), "json")).toEqual(p);
    expect(parsePipeline(formatPipeline(p, "yaml"), "yaml")).toEqual(p);
    expect(() => parsePipeline("- a\n- b\n", "yaml")).toThrow("must be one object");
    expect(() => parsePipeline("name: [unclosed", "yaml")).toThrow("not valid YAML");
  });
});

describe("<Pipelines>", () => {
  it("switches the editor to YAML and creates the pipeline from it", async () => {
    const fetch = server();
    render(<Pipelines />);
    fireEvent.click(screen.getByLabelText("YAML"));
    const area = screen.getByRole("textbox") as HTMLTextAreaElement;
    expect(area.value).toContain("name: my-pipeline");
    fireEvent.input(area, { target: { value: YAML } });
    fireEvent.click(screen.getByRole("button", { name: "Create" }));
    await waitFor(() => expect(screen.getByRole("status").textContent).toContain("created from-yaml"));
    const post = fetch.mock.calls.find((c) => c[1]?.method === "POST")!;
    expect(post[0]).toBe("/v1/pipelines");
    expect(JSON.parse(post[1].body).outputs).toEqual([{ name: "p", sources: ["n1.probabilities"] }]);
  });
  it("keeps invalid text and says why instead of switching", () => {
    server();
    render(<Pipelines />);
    const area = screen.getByRole("textbox") as HTMLTextAreaElement;
    fireEvent.input(area, { target: { value: "{ not json" } });
    fireEvent.click(screen.getByLabelText("YAML"));
    expect(screen.getByRole("alert").textContent).toContain("not valid JSON");
    expect(area.value).toBe("{ not json");
    expect((screen.getByLabelText("JSON") as HTMLInputElement).checked).toBe(true);
  });
});
