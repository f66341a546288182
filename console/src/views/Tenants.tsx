import { useState } from "preact/hooks";
import { call, enc, errorText, get } from "../api";
import { KeyForm } from "../components/KeyForm";
import { useLoad } from "../hooks";
import { describeExpiry, describeLimit } from "../keys";

function Keys({ tenant }: { tenant: string }) {
  const keys = useLoad(() => get(`/v1/tenants/${enc(tenant)}/apiKeys`), [tenant]);
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [grace, setGrace] = useState("");
  const act = async (fn: () => Promise<any>) => {
    try {
      const r = await fn();
      setSecret(r?.data?.secret ?? null);
      setError(null);
      keys.reload();
    } catch (e) {
      setError(errorText(e));
    }
  };
  return (
    <div class="keys">
      <table aria-label={`keys of ${tenant}`}>
        <tbody>
          {(keys.data?.apiKeys ?? []).map((k: any) => (
            <tr key={k.key} data-key={k.displayName || k.key}>
              <td>{k.displayName || k.key}</td>
              <td>{(k.scopes ?? []).join(", ")}</td>
              <td>{describeLimit(k)}</td>
              <td>{describeExpiry(k, new Date())}</td>
              <td>{k.revokeTime ? "revoked" : "active"}</td>
              <td>
                <button type="button" onClick={() => act(() => call("POST", `/v1/tenants/${enc(tenant)}/apiKeys/${enc(k.key)}:rotate`, grace.trim() ? { gracePeriod: `${Number(grace)}s` } : {}))}>rotate</button>
                <button type="button" onClick={() => confirm(`Revoke ${k.displayName || k.key}?`) && act(() => call("DELETE", `/v1/tenants/${enc(tenant)}/apiKeys/${enc(k.key)}`))}>revoke</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <label>
        rotation grace (s, empty: the server's default)
        <input name="grace" type="number" min={0} value={grace} onInput={(e) => setGrace((e.target as HTMLInputElement).value)} />
      </label>
      <KeyForm onCreate={(body) => act(() => call("POST", `/v1/tenants/${enc(tenant)}/apiKeys`, body))} />
      {secret && (
        <p class="secret" role="status">
          New secret (shown once): <code>{secret}</code>{" "}
          <button type="button" onClick={() => navigator.clipboard?.writeText(secret)}>copy</button>{" "}
          <button type="button" onClick={() => setSecret(null)}>hide</button>
        </p>
      )}
      {error && <p class="error" role="alert">{error}</p>}
    </div>
  );
}

/** Tenants and their keys; what a caller may see is decided by the server (admins see all). */
export function Tenants() {
  const list = useLoad(() => get("/v1/tenants?pageSize=200"), []);
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <main>
      <h1>Tenants and API keys</h1>
      {list.error && <p class="error">{list.error}</p>}
      {(list.data?.tenants ?? []).map((t: any) => (
        <section key={t.name} aria-label={`tenant ${t.name}`}>
          <h2>{t.name}</h2>
          <Keys tenant={t.name} />
        </section>
      ))}
      <form class="inline" onSubmit={async (e) => { e.preventDefault(); try { await call("POST", "/v1/tenants", { name }); setError(null); list.reload(); } catch (err) { setError(errorText(err)); } }}>
        <input name="tenantName" placeholder="new tenant name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} required />
        <button type="submit">Create tenant</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </main>
  );
}
