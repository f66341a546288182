import { describe, expect, it } from "vitest";
import { checkWeights, diffTargets, fromDeployment, setWeight, toDeploymentTargets } from "../src/weights";

const t = (version: string, weight: number, mirror = false) => ({ version, weight, mirror });

describe("checkWeights", () => {
  it("accepts served weights summing to exactly 100", () => {
    expect(checkWeights([t("1", 90), t("2", 10)])).toEqual({ ok: true, total: 100, errors: [] });
  });
  it("refuses a total other than 100 and says what it is", () => {
    const c = checkWeights([t("1", 90), t("2", 20)]);
    expect(c.ok).toBe(false);
    expect(c.errors).toContain("weights must sum to 100, they sum to 110");
  });
  it("ignores a mirror's weight and allows only one mirror", () => {
    expect(checkWeights([t("1", 100), t("2", 0, true)]).ok).toBe(true);
    expect(checkWeights([t("1", 100), t("2", 0, true), t("3", 0, true)]).errors).toContain("at most one mirror target");
  });
  it("refuses fractions, negatives, duplicates and an empty deployment", () => {
    expect(checkWeights([t("1", 50.5), t("2", 49.5)]).errors[0]).toMatch(/whole number/);
    expect(checkWeights([t("1", 110), t("2", -10)]).ok).toBe(false);
    expect(checkWeights([t("1", 50), t("1", 50)]).errors).toContain("version 1 is listed twice");
    expect(checkWeights([]).errors).toContain("at least one version must serve traffic");
    expect(checkWeights([t("1", 0, true)]).ok).toBe(false);
  });
});

describe("setWeight", () => {
  it("keeps the total at 100 by moving the difference to the other served versions", () => {
    const out = setWeight([t("1", 100), t("2", 0)], 1, 10);
    expect(out.map((x) => x.weight)).toEqual([90, 10]);
    expect(checkWeights(out).ok).toBe(true);
  });
  it("spills over several versions in order and never goes below 0", () => {
    const out = setWeight([t("1", 20), t("2", 30), t("3", 50)], 2, 100);
    expect(out.map((x) => x.weight)).toEqual([0, 0, 100]);
  });
  it("clamps and rounds, and leaves mirrors and the input alone", () => {
    const input = [t("1", 50), t("2", 50), t("3", 0, true)];
    const out = setWeight(input, 0, 140.6);
    expect(out.map((x) => x.weight)).toEqual([100, 0, 0]);
    expect(input[0].weight).toBe(50);
    expect(setWeight(input, 2, 30)).toEqual(input);
  });
});

describe("diffTargets and conversions", () => {
  it("lists added, removed and changed targets", () => {
    const d = diffTargets([t("1", 100), t("3", 0, true)], [t("1", 90), t("2", 10)]);
    expect(d).toEqual([
      { kind: "changed", text: "v1 100% → v1 90%" },
      { kind: "removed", text: "v3 mirror" },
      { kind: "added", text: "v2 10%" },
    ]);
    expect(diffTargets([t("1", 100)], [t("1", 100)])).toEqual([]);
  });
  it("reads the registry's JSON and writes the PUT body", () => {
    const rows = fromDeployment({ targets: [{ version: "1", versionNumber: "1", weight: 90 }, { versionNumber: "2", weight: 10 }, { version: "3", mirror: true }] });
    expect(rows).toEqual([t("1", 90), t("2", 10), t("3", 0, true)]);
    expect(toDeploymentTargets(rows)).toEqual([{ version: "1", weight: 90 }, { version: "2", weight: 10 }, { version: "3", mirror: true }]);
    expect(fromDeployment(null)).toEqual([]);
  });
});
