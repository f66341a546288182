import { useState } from "preact/hooks";
import { ApiError, call, enc, errorText, get } from "../api";
import { DeploymentEditor } from "../components/DeploymentEditor";
import { Rollback } from "../components/Rollback";
import { TryIt } from "../components/TryIt";
import { Upload } from "../components/Upload";
import { useLoad } from "../hooks";
import { fromDeployment, Target, toDeploymentTargets } from "../weights";

const STATUS: Record<string, string> = { STATUS_READY: "ready", STATUS_PENDING: "pending", STATUS_FAILED: "failed" };

function Versions({ versions }: { versions: any[] }) {
  return (
    <table aria-label="versions">
      <thead>
        <tr>
          <th>version</th>
          <th>status</th>
          <th>backend</th>
          <th>sha256</th>
          <th>size</th>
          <th>aliases</th>
          <th>created</th>
        </tr>
      </thead>
      <tbody>
        {versions.map((v) => (
          <tr key={v.version}>
            <td>v{v.version}</td>
            <td title={v.statusMessage}>{STATUS[v.status] ?? v.status}{v.statusMessage ? `: ${v.statusMessage}` : ""}</td>
            <td>{v.backend}</td>
            <td class="mono">{(v.artifactSha256 ?? "").slice(0, 12)}</td>
            <td>{v.artifactSizeBytes ?? ""}</td>
            <td>{(v.aliases ?? []).join(", ")}</td>
            <td>{v.createTime ?? ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Aliases({ model, aliases, reload }: { model: string; aliases: any[]; reload: () => void }) {
  const [alias, setAlias] = useState("");
  const [version, setVersion] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await call("PUT", `/v1/models/${enc(model)}/aliases/${enc(alias)}`, { version });
      setError(null);
      reload();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section aria-label="aliases">
      <h2>Aliases</h2>
      <ul>{aliases.map((a) => <li key={a.alias}>{a.alias} → v{a.version}</li>)}</ul>
      <form onSubmit={submit} class="inline">
        <input name="alias" placeholder="alias" value={alias} onInput={(e) => setAlias((e.target as HTMLInputElement).value)} required />
        <input name="aliasVersion" placeholder="version" value={version} onInput={(e) => setVersion((e.target as HTMLInputElement).value)} required />
        <button type="submit">Set alias</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </section>
  );
}

/** A model: versions, aliases, deployment (editable with its etag) and try-it. */
export function ModelPage({ name }: { name: string }) {
  const versions = useLoad(() => get(`/v1/models/${enc(name)}/versions?pageSize=200`), [name]);
  const aliases = useLoad(() => get(`/v1/models/${enc(name)}/aliases`), [name]);
  const dep = useLoad(() => get(`/v1/models/${enc(name)}/deployment`).catch((e) => (e instanceof ApiError && e.status === 404 ? { deployment: null } : Promise.reject(e))), [name]);
  const [applyMsg, setApplyMsg] = useState<string | null>(null);
  const current: Target[] = fromDeployment(dep.data?.deployment ?? null);
  const versionList: string[] = (versions.data?.modelVersions ?? []).map((v: any) => String(v.version));
  const apply = async (next: Target[]) => {
    const loaded = dep.data?.deployment ?? {};
    // the rest of the deployment (rate limit, batching overrides, prediction logging) unchanged
    const body: Record<string, unknown> = { targets: toDeploymentTargets(next), etag: loaded.etag ?? "" };
    for (const k of ["rateLimit", "batchingOverrides", "predictionLogging"]) if (loaded[k]) body[k] = loaded[k];
    try {
      await call("PUT", `/v1/models/${enc(name)}/deployment`, body);
      setApplyMsg("applied");
    } catch (e) {
      setApplyMsg(e instanceof ApiError && e.status === 409 ? "the deployment was changed by someone else since it was loaded; nothing was applied — reload and review again" : errorText(e));
    }
    dep.reload();
  };
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const remove = async () => {
    if (!confirm(`Delete model ${name} and all its versions? This cannot be undone.`)) return;
    try {
      await call("DELETE", `/v1/models/${enc(name)}`);
      location.hash = "#/models";
    } catch (e) {
      setDeleteError(errorText(e));
    }
  };
  return (
    <main>
      <h1>{name}</h1>
      {versions.error && <p class="error" role="alert">{versions.error}</p>}
      <section>
        <h2>Versions</h2>
        {versions.data && <Versions versions={versions.data.modelVersions ?? []} />}
      </section>
      <Upload model={name} onUploaded={versions.reload} />
      {aliases.data && <Aliases model={name} aliases={aliases.data.aliases ?? []} reload={aliases.reload} />}
      <section>
        <h2>Deployment</h2>
        {dep.error && <p class="error">{dep.error}</p>}
        {dep.data?.deployment?.rateLimit && (
          <p>
            rate limit: {dep.data.deployment.rateLimit.requestsPerSecond ?? 0} requests/s, burst {dep.data.deployment.rateLimit.burst ?? 0}
          </p>
        )}
        {dep.data && versions.data && (
          <DeploymentEditor key={dep.data.deployment?.etag ?? "none"} current={current} versions={versionList} onApply={apply} />
        )}
        {current.length > 0 && (
          <button type="button" class="danger" onClick={() => confirm(`Undeploy ${name}? It stops serving until deployed again.`) && apply([])}>
            Undeploy…
          </button>
        )}
        {dep.data?.deployment?.etag && <Rollback model={name} etag={dep.data.deployment.etag} onDone={dep.reload} />}
        {applyMsg && <p role="status" class={applyMsg === "applied" ? "ok" : "error"}>{applyMsg}</p>}
      </section>
      <TryIt model={name} />
      <section aria-label="danger zone">
        <h2>Delete</h2>
        <button type="button" class="danger" onClick={remove}>
          Delete model…
        </button>
        {deleteError && <p class="error" role="alert">{deleteError}</p>}
      </section>
    </main>
  );
}
