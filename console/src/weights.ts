// The deployment editor's traffic logic: pure functions, tested in tests/weights.test.ts.

export interface Target {
  version: string;
  weight: number;
  mirror: boolean;
}

export interface WeightCheck {
  ok: boolean;
  total: number;
  errors: string[];
}

/** Served (non-mirror) targets must carry whole weights 0..100 summing to exactly 100. */
export function checkWeights(targets: Target[]): WeightCheck {
  const errors: string[] = [];
  const served = targets.filter((t) => !t.mirror);
  let total = 0;
  const seen = new Set<string>();
  for (const t of targets) {
    if (!t.version.trim()) errors.push("every target needs a version");
    else if (seen.has(t.version)) errors.push(`version ${t.version} is listed twice`);
    seen.add(t.version);
  }
  for (const t of served) {
    if (!Number.isInteger(t.weight) || t.weight < 0 || t.weight > 100) {
      errors.push(`version ${t.version || "?"}: weight must be a whole number 0..100, got ${t.weight}`);
    }
    total += Number.isFinite(t.weight) ? t.weight : 0;
  }
  if (served.length === 0) errors.push("at least one version must serve traffic");
  else if (total !== 100) errors.push(`weights must sum to 100, they sum to ${total}`);
  if (targets.filter((t) => t.mirror).length > 1) errors.push("at most one mirror target");
  return { ok: errors.length === 0, total, errors };
}

/** Sets one target's weight and gives the difference to the other served targets, in order,
 * so the total stays 100 whenever it was 100 before (the slider behaviour). */
export function setWeight(targets: Target[], index: number, weight: number): Target[] {
  const w = Math.max(0, Math.min(100, Math.round(weight)));
  const out = targets.map((t) => ({ ...t }));
  if (!out[index] || out[index].mirror) return out;
  let delta = w - out[index].weight;
  out[index].weight = w;
  for (let i = 0; i < out.length && delta !== 0; i++) {
    if (i === index || out[i].mirror) continue;
    const next = Math.max(0, Math.min(100, out[i].weight - delta));
    delta -= out[i].weight - next;
    out[i].weight = next;
  }
  return out;
}

export interface DiffLine {
  kind: "added" | "removed" | "changed";
  text: string;
}

function describe(t: Target): string {
  return t.mirror ? `v${t.version} mirror` : `v${t.version} ${t.weight}%`;
}

/** What applying ``next`` over ``current`` changes, one line per target. */
export function diffTargets(current: Target[], next: Target[]): DiffLine[] {
  const lines: DiffLine[] = [];
  const before = new Map(current.map((t) => [t.version, t]));
  const after = new Map(next.map((t) => [t.version, t]));
  for (const [v, t] of before) {
    const n = after.get(v);
    if (!n) lines.push({ kind: "removed", text: describe(t) });
    else if (n.weight !== t.weight || n.mirror !== t.mirror)
      lines.push({ kind: "changed", text: `${describe(t)} → ${describe(n)}` });
  }
  for (const [v, t] of after) if (!before.has(v)) lines.push({ kind: "added", text: describe(t) });
  return lines;
}

/** Registry JSON (DeploymentTarget) → editor rows. */
export function fromDeployment(dep: { targets?: Array<Record<string, unknown>> } | null): Target[] {
  return (dep?.targets ?? []).map((t) => ({
    version: String(t.version ?? t.versionNumber ?? ""),
    weight: Number(t.weight ?? 0),
    mirror: Boolean(t.mirror),
  }));
}

/** Editor rows → the PUT body's targets (a mirror carries no weight). */
export function toDeploymentTargets(targets: Target[]): Array<Record<string, unknown>> {
  return targets.map((t) => (t.mirror ? { version: t.version, mirror: true } : { version: t.version, weight: t.weight }));
}
