import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DeploymentEditor } from "../src/components/DeploymentEditor";

afterEach(cleanup);

describe("<DeploymentEditor>", () => {
  it("blocks a total other than 100, shows the diff, then applies", async () => {
    const onApply = vi.fn().mockResolvedValue(undefined);
    render(<DeploymentEditor current={[{ version: "1", weight: 100, mirror: false }]} versions={["1", "2"]} onApply={onApply} />);
    fireEvent.click(screen.getByRole("button", { name: "v2" }));
    const review = screen.getByRole("button", { name: "Review change" }) as HTMLButtonElement;
    fireEvent.input(screen.getByLabelText("weight v2"), { target: { value: "10" } });
    expect(screen.getByRole("status").textContent).toContain("weights must sum to 100, they sum to 110");
    expect(review.disabled).toBe(true);
    fireEvent.input(screen.getByLabelText("weight v1"), { target: { value: "90" } });
    expect(review.disabled).toBe(false);
    fireEvent.click(review);
    const diff = screen.getByLabelText("deployment diff").textContent ?? "";
    expect(diff).toContain("v1 100% → v1 90%");
    expect(diff).toContain("+ v2 10%");
    fireEvent.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(onApply).toHaveBeenCalledTimes(1));
    expect(onApply.mock.calls[0][0]).toEqual([
      { version: "1", weight: 90, mirror: false },
      { version: "2", weight: 10, mirror: false },
    ]);
  });
  it("moves the other weight when a slider moves", () => {
    render(<DeploymentEditor current={[{ version: "1", weight: 50, mirror: false }, { version: "2", weight: 50, mirror: false }]} versions={["1", "2"]} onApply={vi.fn()} />);
    fireEvent.input(screen.getByLabelText("weight slider v1"), { target: { value: "80" } });
    expect((screen.getByLabelText("weight v2") as HTMLInputElement).value).toBe("20");
    expect(screen.getByRole("status").textContent).toContain("total 100%");
  });
});
