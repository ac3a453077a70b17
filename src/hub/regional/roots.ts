/**
 * A regional hub's copy of the federation's root of trust. It makes no root of its own: the
 * roots are the global hub's, pulled from its parent (`GET /v1/trust/roots`), each verified
 * as an agent verifies it (version 1 by its own root keys and federation, each later one
 * against its predecessor), and stored as they are, so that its agents pin the global root
 * version 1 at enrolment and follow the same chain whatever hub serves it.
 */
import type { HubEndpoint } from "../../client/http.js";
import { call } from "../../client/http.js";
import { canonicalJson } from "../../canonical/index.js";
import type { Database } from "../../store/database.js";
import { parseRootEnvelope, verifyRootChain, verifyRootSelf, type RootEnvelope, type RootMetadata } from "../../trust/index.js";

/** Pulls the roots after the newest held, verifies them and stores them; returns the newest held. */
export async function pullRoots(db: Database, parent: HubEndpoint, federation: string, now: Date): Promise<RootMetadata | undefined> {
  const [row] = await db.query<{ envelope: string }>("SELECT envelope FROM trust_roots ORDER BY version DESC LIMIT 1");
  let held: RootMetadata | undefined = row === undefined ? undefined : parseRootEnvelope(row.envelope).signed;
  for (;;) {
    const after = held?.version ?? 0;
    const items = (await call<{ items: unknown[] }>(parent, "GET", `/v1/trust/roots?after=${after}`, undefined, { timeoutMs: 10_000 })).body.items.map((i) => parseRootEnvelope(i));
    if (items.length === 0) return held;
    const verified: RootEnvelope[] = [];
    for (const envelope of items) {
      if (held === undefined && envelope.signed.version !== 1) throw new Error(`the parent's first root is version ${envelope.signed.version}, not 1`);
      held = held === undefined ? verifyRootSelf(envelope, federation) : verifyRootChain(held, [envelope]);
      verified.push(envelope);
    }
    await db.transaction(async (tx) => {
      for (const envelope of verified) {
        await tx.query("INSERT INTO trust_roots (version, envelope, created_at) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING", [envelope.signed.version, canonicalJson(envelope), now]);
      }
    });
  }
}
