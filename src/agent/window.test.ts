import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AdmissionWindow } from "./window.js";

const root = mkdtempSync(join(tmpdir(), "polity-window-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const text = (buffers: Iterable<Buffer>) => [...buffers].map((b) => b.toString("utf8"));

describe("the window of recorded admission requests", () => {
  it("keeps the newest requests within its count and age bounds, across a restart", () => {
    const dir = join(root, "bounds");
    const window = new AdmissionWindow(dir, { maxRequests: 3, maxAgeMs: 60_000, maxReviewBytes: 1024 });
    for (let i = 0; i < 5; i++) window.record(Buffer.from(`review-${i}`), 1_000 + i);
    expect(text(window.reviews(2_000))).toEqual(["review-2", "review-3", "review-4"]);
    const again = new AdmissionWindow(dir, { maxRequests: 3, maxAgeMs: 60_000, maxReviewBytes: 1024 });
    expect(text(again.reviews(2_000))).toEqual(["review-2", "review-3", "review-4"]);
    // A minute later, all of them are too old.
    expect(text(again.reviews(1_004 + 60_001))).toEqual([]);
  });

  it("does not record a review past its size bound, and counts it", () => {
    const window = new AdmissionWindow(join(root, "size"), { maxRequests: 10, maxAgeMs: 60_000, maxReviewBytes: 8 });
    window.record(Buffer.from("0123456789"), 1);
    expect(window.skipped).toBe(1);
    expect(text(window.reviews(2))).toEqual([]);
  });

  it("encrypts every record under a key of its own (mode 600), and skips a record altered on disk", () => {
    const dir = join(root, "sealed");
    const window = new AdmissionWindow(dir, { maxRequests: 10, maxAgeMs: 60_000, maxReviewBytes: 1024 });
    window.record(Buffer.from("secret-pod-name"), 1);
    window.record(Buffer.from("other-pod-name"), 2);
    window.flush(3);
    expect(statSync(join(dir, "key")).mode & 0o777).toBe(0o600);
    const segment = join(dir, readdirSync(dir).find((n) => n.endsWith(".window"))!);
    const lines = readFileSync(segment, "utf8").trim().split("\n");
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(Buffer.from(line, "base64").includes("pod-name")).toBe(false);
    const raw = Buffer.from(lines[0]!, "base64");
    raw[raw.length - 1]! ^= 1;
    writeFileSync(segment, `${raw.toString("base64")}\n${lines[1]}\n`);
    expect(text(new AdmissionWindow(dir, { maxRequests: 10, maxAgeMs: 60_000, maxReviewBytes: 1024 }).reviews(3))).toEqual(["other-pod-name"]);
  });
});
