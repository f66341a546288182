import { useState } from "preact/hooks";
import { get } from "../api";
import { useLoad } from "../hooks";

/** Every model the caller may see, with a name search and a tag filter (key=value). */
export function Models() {
  const { data, error } = useLoad(() => get("/v1/models?pageSize=500"), []);
  const [q, setQ] = useState("");
  const [tag, setTag] = useState("");
  const [tk, tv] = tag.split("=", 2);
  const models: any[] = (data?.models ?? []).filter((m: any) => {
    if (q && !m.name.toLowerCase().includes(q.toLowerCase())) return false;
    if (tk && (m.tags ?? {})[tk.trim()] === undefined) return false;
    if (tk && tv !== undefined && (m.tags ?? {})[tk.trim()] !== tv.trim()) return false;
    return true;
  });
  return (
    <main>
      <h1>Models</h1>
      <div class="filters">
        <label>
          search <input name="search" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          tag (key or key=value) <input name="tag" value={tag} onInput={(e) => setTag((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {!data && !error && <p>loading…</p>}
      <table class="models" aria-label="models">
        <thead>
          <tr>
            <th>name</th>
            <th>tenant</th>
            <th>latest</th>
            <th>tags</th>
            <th>shared</th>
          </tr>
        </thead>
        <tbody>
          {models.map((m) => (
            <tr key={m.name}>
              <td>
                <a href={`#/models/${encodeURIComponent(m.name)}`}>{m.name}</a>
              </td>
              <td>{m.tenant || "platform"}</td>
              <td>{m.latestVersion ?? ""}</td>
              <td>{Object.entries(m.tags ?? {}).map(([k, v]) => `${k}=${v}`).join(", ")}</td>
              <td>{m.shared ? "yes" : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && models.length === 0 && <p>No models.</p>}
    </main>
  );
}
