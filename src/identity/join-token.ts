/**
 * A join token names the region of the cluster it was minted for: `join_<region>.<secret>`.
 * The region is not a secret and proves nothing to the hub (the hub looks the whole token up
 * by its hash, so a token whose region was changed is simply unknown). It tells the agent,
 * which does not know its region before it enrols, which hubs may receive the token: the
 * global hub (`spiffe://<federation>/hub`) or the hub of that region
 * (`spiffe://<federation>/region/<region>/hub`), never another region's hub, whose
 * certificate the same federation CA issued for a hostname it may share.
 *
 * A token of the older form (`join_<secret>`, no region: no `.`) may be given to the global hub only.
 *
 * Pure.
 */

const REGION = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const FORM = /^join_([a-z0-9-]+)\.([A-Za-z0-9_-]+)$/;

/** The text of a join token for a cluster of `region`, around a random `secret` (base64url). */
export function joinTokenText(region: string, secret: string): string {
  if (!REGION.test(region)) throw new Error(`region ${JSON.stringify(region)} cannot be written in a join token`);
  return `join_${region}.${secret}`;
}

/** The region a join token names, if it names one. */
export function joinTokenRegion(token: string): string | undefined {
  const m = FORM.exec(token);
  return m !== null && REGION.test(m[1]!) ? m[1] : undefined;
}

/** The SPIFFE paths of the hubs an agent may give `token` to (src/client/http.ts `serverIds`). */
export function joinTokenServerIds(token: string): readonly string[] {
  const region = joinTokenRegion(token);
  return region === undefined ? ["/hub"] : [`/region/${region}/hub`, "/hub"];
}
