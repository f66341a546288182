import { useState } from "preact/hooks";
import { ApiError, call, clearKey, errorText, setKey } from "../api";

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setKey(key.trim());
    try {
      await call("GET", "/v1/models?pageSize=1"); // proves the key before anything is shown
      onSignedIn();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        onSignedIn(); // a valid key without the read scope: the views show what it may do
        return;
      }
      clearKey();
      setError(errorText(err));
    }
  };
  return (
    <main class="signin">
      <h1>ModelServe console</h1>
      <form onSubmit={submit} aria-label="sign in">
        <label>
          API key or JWT
          <input name="apiKey" type="password" autoComplete="off" value={key} onInput={(e) => setValue((e.target as HTMLInputElement).value)} required />
        </label>
        <button type="submit">Sign in</button>
        {error && <p class="error" role="alert">{error}</p>}
        <p class="hint">The key stays in this tab's session storage and is sent as x-api-key to this gateway only.</p>
      </form>
    </main>
  );
}
