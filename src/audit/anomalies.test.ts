import { describe, expect, it } from "vitest";
import type { Json } from "../canonical/index.js";
import {
  DEFAULT_DETECTOR_OPTIONS,
  MAX_EVIDENCE,
  denialSpikes,
  detectAnomalies,
  lookback,
  repeatedFailedEnrolments,
  tokensOutOfScope,
  unacknowledgedBundles,
  type IndexedEntry,
} from "./anomalies.js";
import type { EntryKind } from "./entry.js";

const MINUTE = 60_000;
/** Two minutes into a five-minute window. */
const NOW = new Date("2026-11-25T06:07:00.000Z");
const WINDOW_START = new Date("2026-11-25T06:05:00.000Z");

/** A log built entry by entry, indexes in order. */
class Log {
  readonly entries: IndexedEntry[] = [];
  /** The lists of published bundles the `bundles.published` entries name, by hash. */
  readonly lists = new Map<string, { cluster: string; version: number }[]>();

  add(kind: EntryKind, minutesBeforeNow: number, fields: { cluster?: string | null; region?: string | null; correlationId?: string; data?: { [key: string]: Json } } = {}): IndexedEntry {
    const entry: IndexedEntry = {
      v: 1,
      index: this.entries.length,
      kind,
      time: new Date(NOW.getTime() - minutesBeforeNow * MINUTE).toISOString(),
      actor: "hub",
      cluster: fields.cluster === undefined ? "eu-west-1" : fields.cluster,
      region: fields.region === undefined ? "eu-west" : fields.region,
      correlationId: fields.correlationId ?? `c-${this.entries.length}`,
      data: fields.data ?? {},
    };
    this.entries.push(entry);
    return entry;
  }

  /** `count` denials, `authenticated` of them from a caller the agent authenticated (all, unless said). */
  denials(minutesBeforeNow: number, count: number, cluster = "eu-west-1", authenticated = count): IndexedEntry {
    return this.add("agent.denials", minutesBeforeNow, { cluster, data: { count, authenticated } });
  }

  failure(minutesBeforeNow: number, reason: string, cluster: string | null = "eu-west-1"): IndexedEntry {
    return this.add("enrolment.failed", minutesBeforeNow, { cluster, region: cluster === null ? null : "eu-west", data: { reason, ...(reason === "wrong-cluster" ? { requested: "us-east-1" } : {}) } });
  }

  published(minutesBeforeNow: number, cluster: string, version: number, correlationId: string, region = "eu-west"): IndexedEntry {
    return this.publishedList(minutesBeforeNow, correlationId, [{ cluster, version }], region);
  }

  /** One change's bundles in one region: one entry naming their list. */
  publishedList(minutesBeforeNow: number, correlationId: string, bundles: { cluster: string; version: number }[], region = "eu-west"): IndexedEntry {
    const listHash = `sha256:list-${this.entries.length}`;
    this.lists.set(listHash, bundles);
    const one = bundles.length === 1 ? bundles[0]! : undefined;
    return this.add("bundles.published", minutesBeforeNow, { cluster: one?.cluster ?? null, region, correlationId, data: { bundles: bundles.length, listHash, ...(one === undefined ? {} : { version: one.version }) } });
  }

  acknowledged(minutesBeforeNow: number, cluster: string, version: number): IndexedEntry {
    return this.add("bundle.acknowledged", minutesBeforeNow, { cluster, data: { version } });
  }
}

const indexes = (entries: readonly IndexedEntry[]) => entries.map((e) => e.index);

describe("the denial-spike detector", () => {
  it("counts only denials whose caller the agent authenticated: forged reviews alone raise nothing", () => {
    const log = new Log();
    for (let w = 1; w <= 12; w++) log.denials(2 + w * 5, 2);
    // Anyone who reaches a webhook can make it deny: 3,000 denials from unauthenticated callers.
    log.denials(1, 3000, "eu-west-1", 0);
    expect(denialSpikes(log.entries, NOW)).toEqual([]);
    // With 60 of them from the API server, a spike, of those 60.
    log.denials(0, 60, "eu-west-1", 60);
    expect(denialSpikes(log.entries, NOW).map((f) => f.summary)).toEqual([expect.stringMatching(/ denied 60 requests /)]);
  });

  it("flags a cluster whose denials this window reach 50 and five times its hourly baseline, naming the entries", () => {
    const log = new Log();
    for (let w = 1; w <= 12; w++) log.denials(2 + w * 5, 2); // 2 per window for an hour: a mean of 2
    const spike = [log.denials(2, 20), log.denials(1, 20), log.denials(0, 20)];
    const [finding, ...more] = denialSpikes(log.entries, NOW);
    expect(more).toEqual([]);
    expect(finding).toMatchObject({
      detector: "denial-spike",
      key: `denial-spike/eu-west-1/${WINDOW_START.toISOString()}`,
      cluster: "eu-west-1",
      region: "eu-west",
      evidence: indexes(spike),
    });
    expect(finding!.summary).toBe(`cluster eu-west-1 denied 60 requests since ${WINDOW_START.toISOString()}, against a mean of 2.0 per 5 minutes over the hour before (at least 5× and 50 make a spike)`);
  });

  it("stays silent below 50 denials, below five times the baseline, and for denials of other clusters", () => {
    const log = new Log();
    log.denials(1, 49);
    expect(denialSpikes(log.entries, NOW)).toEqual([]);
    log.denials(1, 1, "us-east-1");
    expect(denialSpikes(log.entries, NOW)).toEqual([]);
    const busy = new Log();
    for (let w = 1; w <= 12; w++) busy.denials(2 + w * 5, 20); // a mean of 20: a spike needs 100
    busy.denials(1, 99);
    expect(denialSpikes(busy.entries, NOW)).toEqual([]);
    busy.denials(0, 1);
    expect(denialSpikes(busy.entries, NOW).map((f) => f.cluster)).toEqual(["eu-west-1"]);
  });

  it("does not count the current window's denials made before it began", () => {
    const log = new Log();
    log.denials(3, 49); // 06:04, the window before
    log.denials(1, 49);
    expect(denialSpikes(log.entries, NOW)).toEqual([]);
  });

  it(`names at most ${MAX_EVIDENCE} entries, the first ones`, () => {
    const log = new Log();
    for (let i = 0; i < MAX_EVIDENCE + 10; i++) log.denials(1, 1);
    const [finding] = denialSpikes(log.entries, NOW);
    expect(finding!.evidence).toEqual(indexes(log.entries.slice(0, MAX_EVIDENCE)));
  });
});

describe("the token-out-of-scope detector", () => {
  it("flags each join token presented for a cluster other than its own, naming that failure", () => {
    const log = new Log();
    log.failure(3, "unknown-token", null);
    const wrong = log.failure(2, "wrong-cluster");
    log.failure(1, "used-token");
    expect(tokensOutOfScope(log.entries)).toEqual([
      {
        detector: "token-out-of-scope",
        key: `token-out-of-scope/${wrong.index}`,
        cluster: "eu-west-1",
        region: "eu-west",
        summary: 'a join token of cluster eu-west-1 was presented to enrol "us-east-1": a credential used outside its scope',
        evidence: [wrong.index],
      },
    ]);
  });

  it("stays silent for every other reason an enrolment fails", () => {
    const log = new Log();
    for (const reason of ["unknown-token", "used-token", "expired-token", "revoked-cluster", "bad-csr"]) log.failure(1, reason);
    expect(tokensOutOfScope(log.entries)).toEqual([]);
  });
});

describe("the repeated-failed-enrolments detector", () => {
  it("flags three failed enrolments for one cluster within ten minutes, naming them and their reasons", () => {
    const log = new Log();
    const failures = [log.failure(9, "used-token"), log.failure(5, "wrong-cluster"), log.failure(1, "expired-token")];
    const [finding, ...more] = repeatedFailedEnrolments(log.entries, NOW);
    expect(more).toEqual([]);
    expect(finding).toMatchObject({ detector: "repeated-failed-enrolments", cluster: "eu-west-1", region: "eu-west", evidence: indexes(failures) });
    expect(finding!.summary).toBe("3 failed enrolments for cluster eu-west-1 within 10 minutes (3 make a finding): used-token, wrong-cluster, expired-token");
  });

  it("groups failures with unknown join tokens together, for no cluster", () => {
    const log = new Log();
    for (let i = 0; i < 3; i++) log.failure(i, "unknown-token", null);
    const [finding] = repeatedFailedEnrolments(log.entries, NOW);
    expect(finding).toMatchObject({ cluster: null, region: null, evidence: [0, 1, 2] });
    expect(finding!.summary).toMatch(/^3 failed enrolments with unknown join tokens within 10 minutes/);
  });

  it("stays silent for two failures, for three spread over more than ten minutes, and for failures of different clusters", () => {
    const log = new Log();
    log.failure(2, "used-token");
    log.failure(1, "used-token");
    expect(repeatedFailedEnrolments(log.entries, NOW)).toEqual([]);
    log.failure(11, "used-token");
    expect(repeatedFailedEnrolments(log.entries, NOW)).toEqual([]);
    log.failure(1, "used-token", "eu-west-3");
    expect(repeatedFailedEnrolments(log.entries, NOW)).toEqual([]);
  });

  it("keeps one finding for a run of failures that goes on while its window slides", () => {
    const log = new Log();
    for (const minutesAgo of [30, 26, 22]) log.failure(minutesAgo, "used-token");
    const first = repeatedFailedEnrolments(log.entries, new Date(NOW.getTime() - 21 * MINUTE));
    expect(first.map((f) => f.evidence)).toEqual([[0, 1, 2]]);
    // The run goes on; the first failure has left the window.
    for (const minutesAgo of [18, 14]) log.failure(minutesAgo, "used-token");
    const later = detectAnomalies(log.entries, new Date(NOW.getTime() - 13 * MINUTE), new Set(first.map((f) => f.key)));
    expect(later).toEqual([]);
    // A new run, after a quiet spell longer than the window, is a new finding.
    for (const minutesAgo of [2, 1, 0]) log.failure(minutesAgo, "used-token");
    const next = detectAnomalies(log.entries, NOW, new Set(first.map((f) => f.key)));
    expect(next.map((f) => f.evidence)).toEqual([[5, 6, 7]]);
  });
});

describe("the bundle-unacknowledged detector", () => {
  it("flags a change whose bundles fewer clusters acknowledged within ten minutes than it was published to, naming the missing ones", () => {
    const log = new Log();
    log.published(15, "eu-west-1", 3, "change-1");
    log.published(15, "eu-west-2", 7, "change-1");
    const missing = log.published(15, "eu-west-3", 2, "change-1");
    log.acknowledged(14, "eu-west-1", 3);
    log.acknowledged(3, "eu-west-2", 8); // a later version acknowledges this one too
    log.acknowledged(14, "eu-west-3", 1); // an older one does not
    expect(unacknowledgedBundles(log.entries, NOW, undefined, log.lists)).toEqual([
      {
        detector: "bundle-unacknowledged",
        key: "bundle-unacknowledged/change-1",
        cluster: "eu-west-3",
        region: "eu-west",
        summary: "change change-1 published 3 bundles; 2 were acknowledged within 10 minutes, 1 were not: eu-west-3",
        evidence: [missing.index],
      },
    ]);
  });

  it("waits ten minutes after a change's last bundle before it counts one missing", () => {
    const log = new Log();
    log.published(12, "eu-west-1", 3, "change-1");
    log.published(9, "eu-west-2", 3, "change-1");
    expect(unacknowledgedBundles(log.entries, NOW, undefined, log.lists)).toEqual([]);
    expect(unacknowledgedBundles(log.entries, new Date(NOW.getTime() + MINUTE), undefined, log.lists).map((f) => f.evidence)).toEqual([[0, 1]]);
  });

  it("stays silent when every cluster acknowledged its bundle", () => {
    const log = new Log();
    log.published(20, "eu-west-1", 3, "change-1");
    log.published(20, "us-east-1", 4, "change-1");
    log.acknowledged(19, "eu-west-1", 3);
    log.acknowledged(19, "us-east-1", 4);
    expect(unacknowledgedBundles(log.entries, NOW, undefined, log.lists)).toEqual([]);
  });

  it("reads one entry per change and region through the list it names, and names that entry as evidence", () => {
    const log = new Log();
    const eu = log.publishedList(20, "change-1", [{ cluster: "eu-west-1", version: 3 }, { cluster: "eu-west-2", version: 3 }, { cluster: "eu-west-3", version: 3 }]);
    log.publishedList(20, "change-1", [{ cluster: "us-east-1", version: 5 }], "us-east");
    log.acknowledged(19, "eu-west-1", 3);
    log.acknowledged(19, "eu-west-2", 3);
    log.acknowledged(19, "us-east-1", 5);
    const [finding] = unacknowledgedBundles(log.entries, NOW, undefined, log.lists);
    expect(finding).toMatchObject({ cluster: "eu-west-3", region: "eu-west", evidence: [eu.index] });
    expect(finding!.summary).toBe("change change-1 published 4 bundles; 3 were acknowledged within 10 minutes, 1 were not: eu-west-3");
    // Without its list, an entry shows nothing missing: the detector never guesses.
    expect(unacknowledgedBundles(log.entries, NOW)).toEqual([]);
  });

  it("names a finding across regions for no single cluster or region", () => {
    const log = new Log();
    log.published(20, "eu-west-1", 3, "change-1");
    log.published(20, "us-east-1", 4, "change-1", "us-east");
    const [finding] = unacknowledgedBundles(log.entries, NOW, undefined, log.lists);
    expect(finding).toMatchObject({ cluster: null, region: null, evidence: [0, 1] });
  });
});

describe("all detectors together", () => {
  function everything(): Log {
    const log = new Log();
    log.denials(1, 60);
    log.failure(3, "wrong-cluster");
    log.failure(2, "used-token");
    log.failure(1, "used-token");
    log.published(20, "eu-west-1", 3, "change-1");
    return log;
  }

  it("report each kind of finding once", () => {
    const findings = detectAnomalies(everything().entries, NOW, new Set(), undefined, everything().lists);
    expect(findings.map((f) => f.detector)).toEqual(["denial-spike", "token-out-of-scope", "repeated-failed-enrolments", "bundle-unacknowledged"]);
    expect(new Set(findings.map((f) => f.key)).size).toBe(4);
  });

  it("leave out findings already logged, by their key, so that running them again logs nothing new", () => {
    const log = everything();
    const known = new Set(detectAnomalies(log.entries, NOW, new Set(), undefined, log.lists).map((f) => f.key));
    expect(detectAnomalies(log.entries, NOW, known, undefined, log.lists)).toEqual([]);
    expect(detectAnomalies(log.entries, new Date(NOW.getTime() + 30_000), known, undefined, log.lists)).toEqual([]);
  });

  it("read entries in log order, whatever order they are given in (the text order of their indexes, say)", () => {
    const log = new Log();
    for (let i = 0; i < 9; i++) log.add("token.created", 5);
    log.failure(3, "used-token");
    log.failure(2, "used-token");
    log.failure(1, "used-token");
    const byText = [...log.entries].sort((a, b) => String(a.index).localeCompare(String(b.index)));
    expect(byText.map((e) => e.index).slice(0, 3)).toEqual([0, 1, 10]);
    expect(detectAnomalies(byText, NOW, new Set(), undefined, log.lists)).toEqual(detectAnomalies(log.entries, NOW, new Set(), undefined, log.lists));
    expect(detectAnomalies(byText, NOW, new Set(), undefined, log.lists)[0]!.evidence).toEqual([9, 10, 11]);
  });

  it("are pure: the same entries and time give the same findings", () => {
    const log = everything();
    expect(detectAnomalies(log.entries, NOW, new Set(), undefined, log.lists)).toEqual(detectAnomalies([...log.entries], new Date(NOW), new Set(), undefined, log.lists));
  });

  it("ask for an hour and five minutes of log by default: the spike's baseline and its window", () => {
    expect(lookback()).toBe(65 * MINUTE);
    expect(lookback({ ...DEFAULT_DETECTOR_OPTIONS, acknowledgeWithinMs: 30 * MINUTE })).toBe(180 * MINUTE);
  });
});
