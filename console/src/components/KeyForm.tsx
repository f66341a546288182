import { useState } from "preact/hooks";
import { checkKey, emptyDraft, KeyBody, KeyDraft, SCOPES } from "../keys";

/** Create an API key: name, scopes, rate limit (requests/s, burst) and expiry, checked as typed. */
export function KeyForm({ onCreate, now = () => new Date() }: { onCreate: (body: KeyBody) => Promise<unknown>; now?: () => Date }) {
  const [draft, setDraft] = useState<KeyDraft>(emptyDraft());
  const [busy, setBusy] = useState(false);
  const { errors, body } = checkKey(draft, now());
  const set = (patch: Partial<KeyDraft>) => setDraft({ ...draft, ...patch });
  const value = (e: Event) => (e.target as HTMLInputElement).value;
  return (
    <form
      class="inline keyform"
      aria-label="create key"
      onSubmit={async (e) => {
        e.preventDefault();
        if (errors.length || busy) return;
        setBusy(true);
        try {
          await onCreate(body);
        } finally {
          setBusy(false);
        }
      }}
    >
      <label>
        key name
        <input name="keyName" placeholder="key name" value={draft.name} onInput={(e) => set({ name: value(e) })} />
      </label>
      <fieldset>
        <legend>scopes</legend>
        {SCOPES.map((s) => (
          <label key={s}>
            <input type="checkbox" name={`scope-${s}`} checked={draft.scopes.includes(s)} onChange={(e) => set({ scopes: (e.target as HTMLInputElement).checked ? [...draft.scopes, s] : draft.scopes.filter((x) => x !== s) })} />
            {s}
          </label>
        ))}
      </fieldset>
      <label>
        rate limit (requests/s)
        <input name="rps" type="number" min={0} step="any" placeholder="default" value={draft.rps} onInput={(e) => set({ rps: value(e) })} />
      </label>
      <label>
        burst
        <input name="burst" type="number" min={1} step={1} placeholder="default" value={draft.burst} onInput={(e) => set({ burst: value(e) })} />
      </label>
      <label>
        expires (your time zone)
        <input name="expires" type="datetime-local" value={draft.expires} onInput={(e) => set({ expires: value(e) })} />
      </label>
      <button type="submit" disabled={errors.length > 0 || busy}>Create key</button>
      {errors.length > 0 && (
        <ul class="error" role="alert" aria-label="key form errors">
          {errors.map((m) => <li key={m}>{m}</li>)}
        </ul>
      )}
    </form>
  );
}
