import { useState } from "preact/hooks";
import { enc, getKey } from "../api";

const BACKENDS = ["onnx", "python", "triton"];

async function sha256(file: File): Promise<string | null> {
  if (!globalThis.crypto?.subtle) return null; // not a secure context: the registry computes it
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Upload a new version (POST /v1/models/{m}/versions:upload, the raw file as the body) by drag
 * and drop or a file picker, with a progress bar; the digest is checked by the registry. */
export function Upload({ model, onUploaded }: { model: string; onUploaded: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [backend, setBackend] = useState("onnx");
  const [progress, setProgress] = useState<number | null>(null);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [over, setOver] = useState(false);
  const pick = (f: File | undefined | null) => {
    setFile(f ?? null);
    setMessage(null);
  };
  const send = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    const q = new URLSearchParams({ backend });
    const digest = await sha256(file);
    if (digest) q.set("sha256", digest);
    if (/\.(tar|tgz|tar\.gz)$/.test(file.name)) q.set("format", "tar");
    if (/\.zip$/.test(file.name)) q.set("format", "zip");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/models/${enc(model)}/versions:upload?${q}`);
    const key = getKey();
    if (key) xhr.setRequestHeader(key.split(".").length === 3 ? "authorization" : "x-api-key", key.split(".").length === 3 ? `Bearer ${key}` : key);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (ev) => ev.lengthComputable && setProgress(ev.loaded / ev.total);
    xhr.onload = () => {
      setProgress(null);
      let body: any = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 200) {
        setMessage({ ok: true, text: `uploaded v${body?.modelVersion?.version ?? "?"}` });
        setFile(null);
        onUploaded();
      } else {
        setMessage({ ok: false, text: `${xhr.status}: ${body?.message ?? xhr.responseText}` });
      }
    };
    xhr.onerror = () => {
      setProgress(null);
      setMessage({ ok: false, text: "the upload failed (connection)" });
    };
    setProgress(0);
    xhr.send(file);
  };
  return (
    <section aria-label="upload a version">
      <h2>Upload a new version</h2>
      <form onSubmit={send}>
        <div
          class={`dropzone${over ? " over" : ""}`}
          onDragOver={(e) => {
            e.preventDefault();
            setOver(true);
          }}
          onDragLeave={() => setOver(false)}
          onDrop={(e) => {
            e.preventDefault();
            setOver(false);
            pick(e.dataTransfer?.files[0]);
          }}
        >
          <p>{file ? `${file.name} (${file.size} bytes)` : "Drop a model file here, or choose one:"}</p>
          <input type="file" name="artifact" aria-label="model file" onChange={(e) => pick((e.target as HTMLInputElement).files?.[0])} />
        </div>
        <label>
          backend
          <select name="backend" value={backend} onChange={(e) => setBackend((e.target as HTMLSelectElement).value)}>
            {BACKENDS.map((b) => (
              <option key={b}>{b}</option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={!file || progress !== null}>
          Upload
        </button>
        {progress !== null && <progress max={1} value={progress} aria-label="upload progress" />}
      </form>
      {message && (
        <p role="status" class={message.ok ? "ok" : "error"}>
          {message.text}
        </p>
      )}
    </section>
  );
}
