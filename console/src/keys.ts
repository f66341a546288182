/**
 * The create-key form's logic: what the registry's ApiKey carries (scopes, rate_limit
 * {requests_per_second, burst}, expire_time), checked before it is sent. The registry checks the
 * same and more (a tenant caller may not give a key more than the tenant's own limit); its answer
 * is shown when it refuses.
 */

export const SCOPES = ["read", "write", "infer", "tenant-admin"];
const MAX_BURST = 2 ** 31 - 1; // int32 in the contract
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59); // the registry's latest expiry

export interface KeyDraft {
  name: string;
  scopes: string[];
  rps: string; // requests per second; empty: the tenant's limit
  burst: string; // empty: the rate rounded up
  expires: string; // a datetime-local value (the browser's time zone); empty: never
}

export interface KeyBody {
  displayName: string;
  scopes: string[];
  rateLimit?: { requestsPerSecond: number; burst?: number };
  expireTime?: string;
}

export const emptyDraft = (): KeyDraft => ({ name: "", scopes: ["read", "infer"], rps: "", burst: "", expires: "" });

/** The errors of a draft (empty when it may be sent) and the body to send. */
export function checkKey(d: KeyDraft, now: Date): { errors: string[]; body: KeyBody } {
  const errors: string[] = [];
  const body: KeyBody = { displayName: d.name.trim(), scopes: SCOPES.filter((s) => d.scopes.includes(s)) };
  if (body.scopes.length === 0) errors.push("choose at least one scope");
  const unknown = d.scopes.filter((s) => !SCOPES.includes(s));
  if (unknown.length) errors.push(`unknown scope ${unknown.join(", ")}`);
  const rps = d.rps.trim() === "" ? null : Number(d.rps);
  const burst = d.burst.trim() === "" ? null : Number(d.burst);
  if (rps !== null && !(Number.isFinite(rps) && rps > 0)) errors.push("rate limit: requests/s must be a number above 0 (empty: the tenant's limit)");
  if (burst !== null && !(Number.isInteger(burst) && burst > 0 && burst <= MAX_BURST)) errors.push(`burst: a whole number from 1 to ${MAX_BURST} (empty: the rate rounded up)`);
  if (burst !== null && rps === null) errors.push("burst needs a rate limit (requests/s)");
  if (rps !== null && Number.isFinite(rps) && rps > 0) {
    body.rateLimit = { requestsPerSecond: rps };
    if (burst !== null && Number.isInteger(burst) && burst > 0) body.rateLimit.burst = burst;
  }
  if (d.expires.trim() !== "") {
    const at = new Date(d.expires);
    if (Number.isNaN(at.getTime())) errors.push("expiry: not a date and time");
    else if (at.getTime() <= now.getTime()) errors.push("expiry must be in the future");
    else if (at.getTime() > MAX_TIME_MS) errors.push("expiry must be no later than 9999-12-31T23:59:59Z");
    else body.expireTime = at.toISOString();
  }
  return { errors, body };
}

/** A key's limit and expiry as the table shows them (the ApiKey as the REST route answers it). */
export function describeLimit(k: { rateLimit?: { requestsPerSecond?: number; burst?: number } }): string {
  const rps = Number(k.rateLimit?.requestsPerSecond ?? 0);
  if (!rps) return "tenant's limit";
  const burst = Number(k.rateLimit?.burst ?? 0);
  return burst ? `${rps}/s, burst ${burst}` : `${rps}/s`;
}

export function describeExpiry(k: { expireTime?: string }, now: Date): string {
  if (!k.expireTime) return "never expires";
  const at = new Date(k.expireTime);
  return `${at.getTime() <= now.getTime() ? "expired" : "expires"} ${at.toISOString().replace(".000Z", "Z")}`;
}
