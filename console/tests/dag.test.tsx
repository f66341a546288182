import { cleanup, render, screen } from "@testing-library/preact";
import { afterEach, describe, expect, it } from "vitest";
import { PipelineDag } from "../src/components/PipelineDag";
import { layout } from "../src/dag";

afterEach(cleanup);

const DIAMOND = {
  nodes: [
    { name: "merge", ensemble: { sources: ["a.y", "b.y"] } },
    { name: "a", model: { model: { name: "m1" }, inputs: [{ name: "x", source: "inputs.x" }] } },
    { name: "b", model: { model: { name: "m2" }, inputs: [{ name: "x", source: "a.y" }] } },
  ],
};

describe("layout", () => {
  it("places each node one layer after the deepest node it reads", () => {
    const dag = layout(DIAMOND);
    const layer = Object.fromEntries(dag.nodes.map((n) => [n.name, n.layer]));
    expect(layer).toEqual({ inputs: 0, a: 1, b: 2, merge: 3 });
    expect(dag.edges).toEqual([
      ["a", "merge"],
      ["b", "merge"],
      ["inputs", "a"],
      ["a", "b"],
    ]);
    expect(dag.layers).toBe(4);
  });
  it("stops on a cycle instead of looping", () => {
    const dag = layout({ nodes: [{ name: "p", model: { inputs: [{ source: "q.y" }] } }, { name: "q", model: { inputs: [{ source: "p.y" }] } }] });
    expect(dag.nodes.every((n) => n.layer <= 2)).toBe(true);
  });
  it("draws a box per node and a line per edge", () => {
    const { container } = render(<PipelineDag pipeline={DIAMOND} />);
    expect(screen.getByRole("img", { name: "pipeline graph" })).toBeTruthy();
    expect(container.querySelectorAll("[data-node]").length).toBe(4);
    expect(container.querySelector('[data-edge="b->merge"]')).toBeTruthy();
    expect(container.querySelector('[data-node="merge"]')?.getAttribute("data-layer")).toBe("3");
  });
});
