import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Rollback } from "../src/components/Rollback";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function answering(status: number, body: unknown) {
  const fetch = vi.fn().mockResolvedValue(new Response(JSON.stringify(body), { status }));
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

describe("<Rollback>", () => {
  it("posts the loaded etag to deployment:rollback and reloads", async () => {
    const fetch = answering(200, { deployment: { model: "m", etag: "9" } });
    const onDone = vi.fn();
    render(<Rollback model="my model" etag="7" onDone={onDone} />);
    fireEvent.click(screen.getByRole("button", { name: "Roll back to previous deployment" }));
    await waitFor(() => expect(onDone).toHaveBeenCalledTimes(1));
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("/v1/models/my%20model/deployment:rollback");
    expect(init.method).toBe("POST");
    expect(JSON.parse(init.body)).toEqual({ etag: "7" });
    expect(screen.getByLabelText("rollback result").textContent).toContain("rolled back");
  });
  it("reports a concurrent change (409) and does not reload", async () => {
    answering(409, { message: "deployment was changed since it was read" });
    const onDone = vi.fn();
    render(<Rollback model="m" etag="3" onDone={onDone} />);
    fireEvent.click(screen.getByRole("button", { name: "Roll back to previous deployment" }));
    await waitFor(() => expect(screen.getByLabelText("rollback result").textContent).toContain("changed by someone else"));
    expect(onDone).not.toHaveBeenCalled();
  });
  it("shows the server's reason when there is nothing to roll back to", async () => {
    answering(400, { message: "model 'm' has no previous deployment to roll back to" });
    render(<Rollback model="m" etag="3" onDone={vi.fn()} />);
    fireEvent.click(screen.getByRole("button", { name: "Roll back to previous deployment" }));
    await waitFor(() => expect(screen.getByLabelText("rollback result").textContent).toContain("no previous deployment"));
  });
});
