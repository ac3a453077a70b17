/**
 * Workload identities in the SPIFFE style: a cluster is
 * `spiffe://<federation>/region/<region>/cluster/<cluster>`.
 */

export interface ClusterSpiffeId {
  readonly federation: string;
  readonly region: string;
  readonly cluster: string;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function clusterSpiffeId(id: ClusterSpiffeId): string {
  for (const [what, value] of Object.entries(id)) {
    if (!NAME.test(value)) throw new Error(`${what} ${JSON.stringify(value)} cannot be part of a SPIFFE ID`);
  }
  return `spiffe://${id.federation}/region/${id.region}/cluster/${id.cluster}`;
}

export function parseClusterSpiffeId(uri: string): ClusterSpiffeId | undefined {
  const m = /^spiffe:\/\/([a-z0-9.-]+)\/region\/([a-z0-9.-]+)\/cluster\/([a-z0-9.-]+)$/.exec(uri);
  if (m === null) return undefined;
  return { federation: m[1]!, region: m[2]!, cluster: m[3]! };
}
