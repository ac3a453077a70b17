/** The bound on re-applies: five a minute per object, then one fight for the rest of the minute, then a fresh window. */
import { describe, expect, it } from "vitest";
import { ReapplyBound } from "./bound.js";

describe("the re-apply bound", () => {
  it("lets an object act five times in a window, reports the fight once, and opens a new window when it ends", () => {
    const bound = new ReapplyBound(5, 60_000);
    const t0 = 1_000_000;
    expect([0, 1, 2, 3, 4].map((i) => bound.admit("quota", t0 + i))).toEqual([1, 2, 3, 4, 5].map((actions) => ({ act: true, actions })));
    expect(bound.admit("quota", t0 + 10)).toEqual({ act: false, actions: 5, firstRefusal: true, endsAt: t0 + 60_000 });
    expect(bound.admit("quota", t0 + 20)).toEqual({ act: false, actions: 5, firstRefusal: false, endsAt: t0 + 60_000 });
    // Another object has its own window.
    expect(bound.admit("netpol", t0 + 30)).toEqual({ act: true, actions: 1 });
    expect(bound.admit("quota", t0 + 60_000)).toEqual({ act: true, actions: 1 });
  });

  it("forgets windows that ended", () => {
    const bound = new ReapplyBound(1, 1000);
    bound.admit("a", 0);
    expect(bound.admit("a", 10).act).toBe(false);
    bound.prune(1000);
    expect(bound.admit("a", 1001)).toEqual({ act: true, actions: 1 });
  });
});
