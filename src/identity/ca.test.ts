/**
 * Cluster certificates, written in DER by the hub (src/identity/der.ts), read back by two
 * independent X.509 readers (Node's, over OpenSSL, and @peculiar/x509): what they say, and
 * that they chain to the federation's CA; CSRs whose signature does not hold are refused.
 */
import { createHash, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createCsr, newPrivateKey } from "./enrollment.js";
import { createCertificateAuthority, CsrError, issueClusterCertificate, readCsr } from "./ca.js";
import { x509 } from "./x509.js";

const NOW = new Date("2026-12-07T03:00:00.000Z");

describe("a cluster certificate", () => {
  it("says who the cluster is, for how long, and what it may do, and chains to the CA, for OpenSSL and for @peculiar/x509 alike", async () => {
    const { authority } = await createCertificateAuthority("acme", NOW);
    const key = await newPrivateKey();
    const csr = await readCsr(await createCsr("eu-west-1", key));
    const issued = await issueClusterCertificate(authority, csr, { region: "eu-west", cluster: "eu-west-1" }, NOW, 24 * 3600_000);

    const node = new X509Certificate(issued.pem);
    const ca = new X509Certificate(authority.certificatePem);
    expect(node.verify(ca.publicKey)).toBe(true);
    expect(node.checkIssued(ca)).toBe(true);
    expect(node.ca).toBe(false);
    expect(node.subject.split("\n")).toEqual(["CN=eu-west-1", "OU=eu-west", "O=polity"]);
    expect(node.issuer).toBe(ca.subject);
    expect(node.subjectAltName).toBe("URI:spiffe://acme/region/eu-west/cluster/eu-west-1");
    expect(node.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(node.serialNumber.toLowerCase().replace(/^0+/, "")).toBe(issued.serial);
    expect(new Date(node.validFrom).getTime()).toBe(issued.notBefore.getTime());
    expect(new Date(node.validTo).getTime()).toBe(issued.notAfter.getTime());
    expect(issued.publicKeySha256).toBe(createHash("sha256").update(node.publicKey.export({ type: "spki", format: "der" })).digest("hex"));

    const peculiar = new x509.X509Certificate(issued.pem);
    expect(await peculiar.verify({ publicKey: authority.certificate.publicKey, signatureOnly: true })).toBe(true);
    const ext = <T extends x509.Extension>(type: new (...args: never[]) => T) => peculiar.extensions.find((e): e is T => e instanceof type)!;
    expect(ext(x509.BasicConstraintsExtension)).toMatchObject({ ca: false, critical: true });
    expect(ext(x509.KeyUsagesExtension)).toMatchObject({ usages: x509.KeyUsageFlags.digitalSignature, critical: true });
    expect(ext(x509.SubjectAlternativeNameExtension).critical).toBe(true);
    expect(ext(x509.ExtendedKeyUsageExtension).usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    expect(ext(x509.SubjectKeyIdentifierExtension).keyId).toBe(Buffer.from(await peculiar.publicKey.getKeyIdentifier()).toString("hex"));
    expect(ext(x509.AuthorityKeyIdentifierExtension).keyId).toBe(authority.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  });

  it("is refused for a CSR whose signature does not hold, or that is not DER", async () => {
    const pem = await createCsr("eu-west-1", await newPrivateKey());
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s/g, ""), "base64");
    const altered = Buffer.from(der);
    altered[altered.length - 5] = altered[altered.length - 5]! ^ 0x01; // in the signature
    await expect(readCsr(x509.PemConverter.encode(altered, "CERTIFICATE REQUEST"))).rejects.toThrow(CsrError);
    const renamed = Buffer.from(der.toString("latin1").replace("eu-west-1", "eu-west-2"), "latin1"); // the signed name
    await expect(readCsr(x509.PemConverter.encode(renamed, "CERTIFICATE REQUEST"))).rejects.toThrow(/does not verify/);
    await expect(readCsr("not a csr")).rejects.toThrow(CsrError);
  });
});
