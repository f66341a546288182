// The only way the console talks to the platform: the gateway's REST routes, same origin,
// with the caller's key from sessionStorage as x-api-key (never in a URL or a cookie).

const KEY = "modelserve.apiKey";

export function getKey(): string | null {
  return sessionStorage.getItem(KEY);
}
export function setKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}
export function clearKey(): void {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body: unknown,
  ) {
    super(message);
  }
}

export interface Timed<T> {
  data: T;
  ms: number;
  headers: Headers;
}

/** The caller's credentials as request headers. */
export function authHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const key = getKey();
  if (key) {
    // a JWT (three dot-separated parts) goes as a bearer token, an API key as x-api-key
    if (key.split(".").length === 3) headers.authorization = `Bearer ${key}`;
    else headers["x-api-key"] = key;
  }
  return headers;
}

export async function call<T = any>(method: string, path: string, body?: unknown): Promise<Timed<T>> {
  const headers: Record<string, string> = { accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const started = performance.now();
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const ms = performance.now() - started;
  const text = await resp.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const msg = typeof data === "object" && data ? (data.message ?? data.error ?? text) : text;
    throw new ApiError(resp.status, `${resp.status}: ${msg}`, data);
  }
  return { data: data as T, ms, headers: resp.headers };
}

export const get = <T = any>(path: string) => call<T>("GET", path).then((r) => r.data);

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export const enc = encodeURIComponent;
