/**
 * A certificate's standing is read from the database on every request, in batches (the
 * checks asked while one query runs share the next, src/hub/standing.ts): a burst of
 * requests from many clusters, as a change that wakes every long poll brings, is judged
 * certificate by certificate. A real hub, real mutual TLS.
 */
import { describe, expect, it, beforeAll } from "vitest";
import { call, HubError, type HubEndpoint } from "../src/client/http.js";
import { clusterEndpoint, enroll, type Credentials } from "../src/identity/enrollment.js";
import { example, HubFixture, type TestHub } from "./support/hubs.js";

const hubs = new HubFixture("polity-standing-", "standing-test-operator-key-0123456789");
const CLUSTERS = ["eu-west-1", "eu-west-2", "eu-west-3", "us-east-1", "us-east-2"];

describe("a certificate's standing, read in batches", () => {
  let h: TestHub;
  const creds = new Map<string, Credentials>();

  beforeAll(async () => {
    h = await hubs.startCopy("hub");
    await call(h.admin, "POST", "/v1/apply", { files: [example("global.yaml"), example("region-eu-west.yaml")] });
    for (const name of CLUSTERS) {
      await call(h.admin, "POST", "/v1/clusters", { name, region: name.slice(0, -2) });
      const { token } = (await call<{ token: string }>(h.admin, "POST", `/v1/clusters/${name}/join-tokens`, {})).body;
      creds.set(name, await enroll(h.hub, name, token));
    }
  }, 60_000);

  const burst = async () => {
    // Ten requests per cluster, all at once, each on a connection of its own cluster.
    const asked = CLUSTERS.flatMap((name) => Array.from({ length: 10 }, () => name));
    const endpoints = new Map<string, HubEndpoint>(CLUSTERS.map((name) => [name, clusterEndpoint(h.hub.url, creds.get(name)!)]));
    return Promise.all(
      asked.map(async (name) => {
        try {
          return [name, (await call(endpoints.get(name)!, "GET", `/v1/clusters/${name}/effective`)).status, ""] as const;
        } catch (error) {
          if (error instanceof HubError) return [name, error.status, error.message] as const;
          throw error;
        }
      }),
    );
  };

  it("answers every cluster of a burst with its own standing", async () => {
    expect(new Set((await burst()).map(([, status]) => status))).toEqual(new Set([200]));
  });

  it("refuses the revoked clusters of a burst with 401 and answers the others", async () => {
    await call(h.admin, "POST", "/v1/clusters/eu-west-2/revoke");
    await call(h.admin, "POST", "/v1/clusters/us-east-1/revoke");
    const answers = await burst();
    for (const [name, status, message] of answers) {
      if (name === "eu-west-2" || name === "us-east-1") expect([name, status, message]).toEqual([name, 401, `cluster ${name}'s identity is revoked`]);
      else expect([name, status]).toEqual([name, 200]);
    }
    // A certificate whose cluster was removed is refused as well, in the same burst as the others.
    await call(h.admin, "DELETE", "/v1/clusters/us-east-2");
    const after = await burst();
    expect(after.filter(([name]) => name === "us-east-2").map(([, status, message]) => [status, message])).toEqual(Array.from({ length: 10 }, () => [401, "cluster us-east-2 is no longer registered"]));
    expect(after.filter(([name]) => name === "eu-west-1" || name === "eu-west-3").every(([, status]) => status === 200)).toBe(true);
  });
});
