import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SignIn } from "../src/views/SignIn";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

function answering(status: number, body: unknown) {
  const fetch = vi.fn().mockResolvedValue(new Response(JSON.stringify(body), { status }));
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

function signIn(key: string) {
  const onSignedIn = vi.fn();
  render(<SignIn onSignedIn={onSignedIn} />);
  fireEvent.input(screen.getByLabelText("API key or JWT"), { target: { value: key } });
  fireEvent.click(screen.getByRole("button", { name: "Sign in" }));
  return onSignedIn;
}

describe("<SignIn>", () => {
  it("keeps a working key in sessionStorage only and sends it as x-api-key", async () => {
    const fetch = answering(200, { models: [] });
    const done = signIn(" ms_key ");
    await waitFor(() => expect(done).toHaveBeenCalled());
    expect(sessionStorage.getItem("modelserve.apiKey")).toBe("ms_key");
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("/v1/models?pageSize=1");
    expect(init.headers["x-api-key"]).toBe("ms_key");
    expect(init.headers.authorization).toBeUndefined();
    expect(document.cookie).toBe("");
  });
  it("sends a JWT as a bearer token", async () => {
    const fetch = answering(200, {});
    signIn("aaa.bbb.ccc");
    await waitFor(() => expect(fetch).toHaveBeenCalled());
    expect(fetch.mock.calls[0][1].headers.authorization).toBe("Bearer aaa.bbb.ccc");
  });
  it("refuses a wrong key with the gateway's message and forgets it", async () => {
    answering(401, { code: 16, message: "invalid API key" });
    const done = signIn("nope");
    expect((await screen.findByRole("alert")).textContent).toBe("401: invalid API key");
    expect(done).not.toHaveBeenCalled();
    expect(sessionStorage.length).toBe(0);
  });
  it("lets in a valid key without the read scope", async () => {
    answering(403, { code: 7, message: "needs scope 'read'" });
    const done = signIn("infer-only");
    await waitFor(() => expect(done).toHaveBeenCalled());
    expect(sessionStorage.getItem("modelserve.apiKey")).toBe("infer-only");
  });
});
