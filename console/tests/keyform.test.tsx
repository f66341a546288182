import { cleanup, fireEvent, render, screen } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { KeyForm } from "../src/components/KeyForm";
import { checkKey, describeExpiry, describeLimit, emptyDraft } from "../src/keys";

afterEach(cleanup);

const NOW = new Date("2026-12-02T00:00:00Z");
const draft = (patch: object) => ({ ...emptyDraft(), ...patch });

describe("key logic", () => {
  it("sends scopes only when nothing else is set (the tenant's limit, never expires)", () => {
    expect(checkKey(draft({ name: " ci " }), NOW)).toEqual({ errors: [], body: { displayName: "ci", scopes: ["read", "infer"] } });
  });
  it("sends a rate limit, a burst and an expiry as the contract names them", () => {
    const { errors, body } = checkKey(draft({ rps: "2.5", burst: "10", expires: "2027-01-01T00:00Z" }), NOW);
    expect(errors).toEqual([]);
    expect(body.rateLimit).toEqual({ requestsPerSecond: 2.5, burst: 10 });
    expect(body.expireTime).toBe("2027-01-01T00:00:00.000Z");
  });
  it("names each fault", () => {
    expect(checkKey(draft({ scopes: [] }), NOW).errors).toEqual(["choose at least one scope"]);
    expect(checkKey(draft({ rps: "-1" }), NOW).errors[0]).toMatch(/requests\/s must be a number above 0/);
    expect(checkKey(draft({ rps: "0" }), NOW).errors[0]).toMatch(/above 0/);
    expect(checkKey(draft({ rps: "5", burst: "1.5" }), NOW).errors[0]).toMatch(/^burst: a whole number/);
    expect(checkKey(draft({ rps: "5", burst: "3000000000" }), NOW).errors[0]).toMatch(/^burst: a whole number/);
    expect(checkKey(draft({ burst: "4" }), NOW).errors).toEqual(["burst needs a rate limit (requests/s)"]);
    expect(checkKey(draft({ expires: "2026-12-01T00:00Z" }), NOW).errors).toEqual(["expiry must be in the future"]);
    expect(checkKey(draft({ expires: "nonsense" }), NOW).errors).toEqual(["expiry: not a date and time"]);
  });
  it("describes a key's limit and expiry", () => {
    expect(describeLimit({})).toBe("tenant's limit");
    expect(describeLimit({ rateLimit: { requestsPerSecond: 3, burst: 6 } })).toBe("3/s, burst 6");
    expect(describeExpiry({}, NOW)).toBe("never expires");
    expect(describeExpiry({ expireTime: "2027-01-01T00:00:00Z" }, NOW)).toBe("expires 2027-01-01T00:00:00Z");
    expect(describeExpiry({ expireTime: "2026-01-01T00:00:00Z" }, NOW)).toBe("expired 2026-01-01T00:00:00Z");
  });
});

describe("<KeyForm>", () => {
  it("blocks a faulty key with the reason, then sends the fixed one", async () => {
    const onCreate = vi.fn(async (_body: unknown) => undefined);
    render(<KeyForm onCreate={onCreate} now={() => NOW} />);
    const create = screen.getByRole("button", { name: "Create key" }) as HTMLButtonElement;
    fireEvent.input(screen.getByLabelText("burst"), { target: { value: "20" } });
    expect(screen.getByRole("alert").textContent).toContain("burst needs a rate limit");
    expect(create.disabled).toBe(true);
    fireEvent.input(screen.getByLabelText("rate limit (requests/s)"), { target: { value: "10" } });
    fireEvent.input(screen.getByLabelText("expires (your time zone)"), { target: { value: "2027-06-01T12:00" } });
    fireEvent.click(screen.getByLabelText("write"));
    fireEvent.input(screen.getByLabelText("key name"), { target: { value: "batch-jobs" } });
    expect(screen.queryByRole("alert")).toBeNull();
    fireEvent.click(create);
    await vi.waitFor(() => expect(onCreate).toHaveBeenCalledTimes(1));
    expect(onCreate.mock.calls[0][0]).toEqual({
      displayName: "batch-jobs",
      scopes: ["read", "write", "infer"],
      rateLimit: { requestsPerSecond: 10, burst: 20 },
      expireTime: new Date("2027-06-01T12:00").toISOString(),
    });
  });
  it("refuses an expiry in the past and no scope at all", () => {
    render(<KeyForm onCreate={vi.fn()} now={() => NOW} />);
    fireEvent.input(screen.getByLabelText("expires (your time zone)"), { target: { value: "2025-01-01T00:00" } });
    fireEvent.click(screen.getByLabelText("read"));
    fireEvent.click(screen.getByLabelText("infer"));
    const text = screen.getByRole("alert").textContent ?? "";
    expect(text).toContain("expiry must be in the future");
    expect(text).toContain("choose at least one scope");
    expect((screen.getByRole("button", { name: "Create key" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
