import { useState } from "preact/hooks";
import { ApiError, call, enc, errorText } from "../api";

/** One click: restore the deployment before the last change (POST …/deployment:rollback with the
 * loaded etag, so a concurrent change is reported, not overwritten). */
export function Rollback({ model, etag, onDone }: { model: string; etag: string; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const rollback = async () => {
    setBusy(true);
    try {
      await call("POST", `/v1/models/${enc(model)}/deployment:rollback`, { etag });
      setMsg({ ok: true, text: "rolled back to the previous deployment" });
      onDone();
    } catch (e) {
      const text =
        e instanceof ApiError && e.status === 409
          ? "the deployment was changed by someone else since it was loaded; nothing was rolled back — reload and try again"
          : errorText(e);
      setMsg({ ok: false, text });
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="rollback">
      <button type="button" disabled={busy} onClick={rollback}>
        Roll back to previous deployment
      </button>
      {msg && (
        <p role="status" aria-label="rollback result" class={msg.ok ? "ok" : "error"}>
          {msg.text}
        </p>
      )}
    </div>
  );
}
