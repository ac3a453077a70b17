import { describe, expect, it } from "vitest";
import type { RootMetadata } from "../trust/index.js";
import { serverTrust } from "./trust-bundle.js";

const pem = (name: string) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(name).toString("base64")}\n-----END CERTIFICATE-----`;
const OLD = pem("the CA pinned at enrolment");
const NEW = pem("the CA a rotation made");
const listing = (...cas: { certificate: string; status: "active" | "overlap" }[]) => ({ certificateAuthorities: cas.map((ca) => ({ ...ca, fingerprint: "f" })) }) as unknown as RootMetadata;

describe("the CAs an agent or the CLI trusts for a hub's certificate", () => {
  it("is the pinned CA while no root lists CAs", () => {
    expect(serverTrust(OLD, undefined)).toBe(`${OLD}\n`);
    expect(serverTrust(OLD, listing())).toBe(`${OLD}\n`);
  });

  it("is what the newest verified root lists once it lists any: the pinned CA during the overlap, not after it retired", () => {
    expect(serverTrust(OLD, listing({ certificate: NEW, status: "active" }, { certificate: OLD, status: "overlap" }))).toBe(`${NEW}\n${OLD}\n`);
    // Retired (perhaps because its key was stolen): whoever holds it cannot pose as the hub.
    expect(serverTrust(OLD, listing({ certificate: NEW, status: "active" }))).toBe(`${NEW}\n`);
  });
});
