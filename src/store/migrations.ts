/**
 * The hub's schema, as versioned migrations. Every hub process runs them at start, under
 * an advisory lock, so several processes sharing one PostgreSQL agree on one schema and
 * never apply a migration twice. Migrations are append-only: a released one never changes.
 */
import type { Database } from "./engine.js";

export interface Migration {
  readonly version: number;
  readonly name: string;
  /** Statements, run in order in one transaction. */
  readonly statements: readonly string[];
}

/** Splits plain DDL on statement ends (only for migrations without function bodies). */
function ddl(sql: string): string[] {
  return sql
    .split(/;\s*\n/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "federation, identity, layers, clusters, tokens",
    statements: ddl(`
CREATE TABLE federation (
  id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Bumped by every change; hub processes compare it to know when to reload.
  generation bigint NOT NULL DEFAULT 0
);
CREATE TABLE certificate_authority (
  id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  certificate_pem text NOT NULL,
  -- The private key, encrypted under the operator's key (AES-256-GCM): never in clear.
  key_encrypted jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tokens (
  id text PRIMARY KEY,
  name text NOT NULL,
  role text NOT NULL CHECK (role IN ('global-admin', 'region-operator', 'auditor')),
  region text,
  -- SHA-256 of the token: the token itself is shown once and never stored.
  hash text NOT NULL UNIQUE,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz
);
CREATE TABLE clusters (
  name text PRIMARY KEY,
  region text NOT NULL,
  labels jsonb NOT NULL DEFAULT '{}',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX clusters_region ON clusters (region);
CREATE TABLE join_tokens (
  id text PRIMARY KEY,
  cluster text NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
  hash text NOT NULL UNIQUE,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE TABLE certificates (
  serial text PRIMARY KEY,
  cluster text NOT NULL,
  region text NOT NULL,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  public_key_sha256 text NOT NULL,
  issued_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  certificate_pem text NOT NULL
);
CREATE INDEX certificates_cluster ON certificates (cluster);
CREATE TABLE layers (
  id text PRIMARY KEY,
  tier text NOT NULL CHECK (tier IN ('global', 'region', 'cluster')),
  region text,
  cluster text,
  current_version integer NOT NULL
);
CREATE TABLE layer_versions (
  layer_id text NOT NULL REFERENCES layers (id),
  version integer NOT NULL,
  author text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  content_hash text NOT NULL,
  -- The files as applied ({name, content}), so that errors and history show the source.
  files jsonb NOT NULL,
  PRIMARY KEY (layer_id, version)
);
`),
  },
  {
    version: 2,
    name: "cluster revisions, so that hub processes reload only the clusters that changed",
    statements: [
      "ALTER TABLE clusters ADD COLUMN revision bigint NOT NULL DEFAULT 0",
      "CREATE INDEX clusters_revision ON clusters (revision)",
      "CREATE TABLE cluster_tombstones (name text NOT NULL, revision bigint NOT NULL)",
      "CREATE INDEX cluster_tombstones_revision ON cluster_tombstones (revision)",
      `CREATE FUNCTION polity_cluster_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Writers bump federation.generation first in their transaction; rows carry it.
  IF TG_OP = 'DELETE' THEN
    INSERT INTO cluster_tombstones (name, revision) SELECT OLD.name, generation FROM federation;
    RETURN OLD;
  END IF;
  NEW.revision := (SELECT generation FROM federation);
  RETURN NEW;
END
$$`,
      "CREATE TRIGGER clusters_revision BEFORE INSERT OR UPDATE OR DELETE ON clusters FOR EACH ROW EXECUTE FUNCTION polity_cluster_revision()",
    ],
  },
  {
    version: 3,
    name: "bundles, their signing key, agent status and decision logs",
    statements: [
      `CREATE TABLE signing_keys (
  id text PRIMARY KEY,
  purpose text NOT NULL,
  public_key_pem text NOT NULL,
  -- Sealed under the operator's key, as the CA key is.
  private_key_sealed jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`,
      `CREATE TABLE bundles (
  cluster text PRIMARY KEY,
  version bigint NOT NULL,
  target_hash text NOT NULL,
  revocations_hash text NOT NULL,
  expires_at timestamptz NOT NULL,
  -- The signed metadata line; the target is the cluster's effective set, recomputed.
  envelope text NOT NULL,
  revision bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
)`,
      "CREATE INDEX bundles_revision ON bundles (revision)",
      `CREATE FUNCTION polity_row_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.revision := (SELECT generation FROM federation);
  RETURN NEW;
END
$$`,
      "CREATE TRIGGER bundles_revision BEFORE INSERT OR UPDATE ON bundles FOR EACH ROW EXECUTE FUNCTION polity_row_revision()",
      `CREATE TABLE agent_status (
  cluster text PRIMARY KEY,
  reported_at timestamptz NOT NULL,
  status jsonb NOT NULL
)`,
      `CREATE TABLE decision_batches (
  cluster text NOT NULL,
  batch text NOT NULL,
  received_at timestamptz NOT NULL,
  entries integer NOT NULL,
  dropped bigint NOT NULL,
  PRIMARY KEY (cluster, batch)
)`,
      `CREATE TABLE decision_logs (
  id bigserial PRIMARY KEY,
  cluster text NOT NULL,
  batch text NOT NULL,
  received_at timestamptz NOT NULL,
  entry jsonb NOT NULL
)`,
      "CREATE INDEX decision_logs_cluster ON decision_logs (cluster, id)",
    ],
  },
  {
    version: 4,
    name: "audit log: entries, Merkle tree tiles, signed tree heads",
    statements: [
      // The next entry index. Appenders lock this row until they commit, so indexes are
      // dense and in commit order whichever hub appends.
      "CREATE TABLE audit_state (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), size bigint NOT NULL)",
      "INSERT INTO audit_state (size) VALUES (0)",
      `CREATE TABLE audit_entries (
  idx bigint PRIMARY KEY,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  actor text NOT NULL,
  cluster text,
  region text,
  correlation_id text NOT NULL,
  -- The entry's canonical JSON: the leaf is SHA-256(0x00 || these bytes, UTF-8).
  entry text NOT NULL,
  leaf_hash bytea NOT NULL
)`,
      "CREATE INDEX audit_entries_kind ON audit_entries (kind, idx)",
      "CREATE INDEX audit_entries_cluster ON audit_entries (cluster, idx)",
      "CREATE INDEX audit_entries_region ON audit_entries (region, idx)",
      "CREATE INDEX audit_entries_actor ON audit_entries (actor, idx)",
      "CREATE INDEX audit_entries_correlation ON audit_entries (correlation_id)",
      // Times grow with the index: a block range index is enough, and costs appends little.
      "CREATE INDEX audit_entries_at ON audit_entries USING brin (at)",
      // The hashes of perfect subtrees, 256 to a row: level L, chunk C holds nodes
      // (L, 256·C) to (L, 256·C + 255). Only the last chunk of a level grows.
      `CREATE TABLE audit_tiles (
  level smallint NOT NULL,
  chunk bigint NOT NULL,
  hashes bytea NOT NULL,
  PRIMARY KEY (level, chunk)
)`,
      // How far the tree has integrated the entries.
      "CREATE TABLE audit_tree (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), size bigint NOT NULL)",
      "INSERT INTO audit_tree (size) VALUES (0)",
      `CREATE TABLE audit_heads (
  tree_size bigint NOT NULL,
  root_hash bytea NOT NULL,
  at timestamptz NOT NULL,
  key_id text NOT NULL,
  signature text NOT NULL,
  PRIMARY KEY (at, tree_size)
)`,
      // Defence in depth: the log refuses to be rewritten through its own schema. Someone
      // who can drop these triggers can rewrite rows; the tree heads auditors keep catch it.
      `CREATE FUNCTION polity_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Only the last tile of a level grows: an update that keeps what it held and appends.
  IF TG_TABLE_NAME = 'audit_tiles' AND TG_OP = 'UPDATE' THEN
    IF NEW.level = OLD.level AND NEW.chunk = OLD.chunk AND substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) = OLD.hashes THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END
$$`,
      "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries FOR EACH ROW EXECUTE FUNCTION polity_audit_append_only()",
      "CREATE TRIGGER audit_tiles_append_only BEFORE UPDATE OR DELETE ON audit_tiles FOR EACH ROW EXECUTE FUNCTION polity_audit_append_only()",
      "CREATE TRIGGER audit_heads_append_only BEFORE UPDATE OR DELETE ON audit_heads FOR EACH ROW EXECUTE FUNCTION polity_audit_append_only()",
      // Which change a bundle carries, so that its acknowledgements join the same story.
      "ALTER TABLE bundles ADD COLUMN correlation_id text",
    ],
  },
  {
    version: 6,
    name: "acknowledgements of published bundles only, once; layer versions with their change's correlation id and idempotency key; no revocation list in bundles",
    statements: [
      // An agent acknowledges a bundle the hub published for it (version and hash), once.
      `CREATE TABLE bundle_acknowledgements (
  cluster text NOT NULL,
  version bigint NOT NULL,
  target_hash text NOT NULL,
  acknowledged_at timestamptz NOT NULL,
  PRIMARY KEY (cluster, version)
)`,
      // Bundles made later for a layer version join the change that wrote it.
      "ALTER TABLE layer_versions ADD COLUMN correlation_id text",
      // A client that retries an apply whose answer it lost is told it was committed, by this key.
      "ALTER TABLE layer_versions ADD COLUMN idempotency_key text",
      "CREATE INDEX layer_versions_idempotency ON layer_versions (idempotency_key) WHERE idempotency_key IS NOT NULL",
      // Bundles no longer carry a revocation list (the hubs refuse revoked certificates themselves).
      "ALTER TABLE bundles DROP COLUMN revocations_hash",
    ],
  },
  // Version 7 is left to the Kubernetes-access work (compliance), developed beside this one.
  {
    version: 8,
    name: "governance: who a token's holder is (subject, groups), exception requests, expiries of exceptions in layer files, change proposals",
    statements: [
      "ALTER TABLE tokens ADD COLUMN subject text",
      // A team member reads what an auditor reads, and answers for its teams (exceptions, proposals).
      "ALTER TABLE tokens DROP CONSTRAINT tokens_role_check",
      "ALTER TABLE tokens ADD CONSTRAINT tokens_role_check CHECK (role IN ('global-admin', 'region-operator', 'auditor', 'team-member'))",
      "ALTER TABLE tokens ADD COLUMN groups jsonb NOT NULL DEFAULT '[]'",
      `CREATE TABLE exception_requests (
  id text PRIMARY KEY,
  -- A name for people, as the requester gave it (the id names it to the hub).
  name text,
  policy text NOT NULL,
  -- The layer whose owners answer it (the one that defines the policy), and where a granted one is published.
  layer_id text NOT NULL,
  team text NOT NULL,
  -- The Exception spec asked for (no approver: the hub records who approves).
  spec jsonb NOT NULL,
  region text,
  requested_by text NOT NULL,
  requested_at timestamptz NOT NULL,
  escalate_at timestamptz NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'withdrawn', 'expired')),
  escalated boolean NOT NULL DEFAULT false,
  -- Who approved it (kept when it is later withdrawn or expires), and when.
  approved_by text,
  approved_at timestamptz,
  -- The last answer: approval, denial, withdrawal or expiry.
  decided_by text,
  decided_at timestamptz,
  reason text,
  expires_at timestamptz NOT NULL
)`,
      "CREATE INDEX exception_requests_state ON exception_requests (state)",
      // Exceptions written in layer files that have expired: logged once each.
      `CREATE TABLE exception_expiries (
  layer_id text NOT NULL,
  name text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (layer_id, name, expires_at)
)`,
      `CREATE TABLE proposals (
  id text PRIMARY KEY,
  title text,
  files jsonb NOT NULL,
  -- The version of each layer it changes, as they were when it was proposed: applying it after any of them moved is refused.
  bases jsonb NOT NULL,
  diff jsonb NOT NULL,
  -- The teams whose approval it needs, and who approved for each.
  needs jsonb NOT NULL,
  approvals jsonb NOT NULL DEFAULT '[]',
  proposed_by text NOT NULL,
  proposed_at timestamptz NOT NULL,
  state text NOT NULL CHECK (state IN ('open', 'applied', 'rejected', 'withdrawn')),
  decided_by text,
  decided_at timestamptz,
  reason text,
  correlation_id text NOT NULL
)`,
    ],
  },
  {
    version: 9,
    name: "compliance: each cluster's last scan per policy (the matrix), and how each cell changed",
    statements: [
      // One row per cluster: the scan its agent last reported (a repeated report of the same scan writes nothing).
      `CREATE TABLE compliance_scans (
  cluster text PRIMARY KEY,
  scanned_at timestamptz NOT NULL,
  reported_at timestamptz NOT NULL,
  bundle_version bigint,
  objects bigint NOT NULL,
  omitted_policies bigint NOT NULL
)`,
      // The matrix: clusters × policies, as of each cluster's last scan.
      `CREATE TABLE compliance (
  cluster text NOT NULL,
  policy text NOT NULL,
  pass bigint NOT NULL,
  fail bigint NOT NULL,
  warn bigint NOT NULL,
  -- A few failing objects by kind, namespace and name: never their contents.
  examples jsonb NOT NULL,
  PRIMARY KEY (cluster, policy)
)`,
      // A cell's history: a row when its counts change (not at every report), pruned to the newest per cell.
      `CREATE TABLE compliance_history (
  cluster text NOT NULL,
  policy text NOT NULL,
  at timestamptz NOT NULL,
  pass bigint NOT NULL,
  fail bigint NOT NULL,
  warn bigint NOT NULL,
  PRIMARY KEY (cluster, policy, at)
)`,
      "CREATE INDEX compliance_history_at ON compliance_history (at DESC)",
    ],
  },
  {
    version: 10,
    name: "staged rollouts: one layer's change moved stage by stage, judged by health gates",
    statements: [
      `CREATE TABLE rollouts (
  id text PRIMARY KEY,
  layer_id text NOT NULL,
  -- The layer's version before the change (0: it did not exist) and the version it rolls out.
  from_version integer NOT NULL,
  to_version integer NOT NULL,
  state text NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'rolled-back', 'aborted')),
  -- The stages as fixed at the start: names and clusters, in order.
  stages jsonb NOT NULL,
  -- The index of the stage under way (its clusters and those before it have the new content).
  stage integer NOT NULL,
  stage_started_at timestamptz NOT NULL,
  -- Since when every cluster of the stage acknowledged and every gate held.
  soak_since timestamptz,
  -- Bounds, soak, timeout and the silent-cluster rule.
  settings jsonb NOT NULL,
  -- Each cluster's state: its target hash, baseline, acknowledged version, skipped or not.
  clusters jsonb NOT NULL,
  -- The gates as last measured, for rollout status.
  measured jsonb NOT NULL DEFAULT '[]',
  reason text,
  emergency boolean NOT NULL DEFAULT false,
  correlation_id text NOT NULL,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- Bumped by every write: a transition is taken only on the row it was judged on.
  revision bigint NOT NULL DEFAULT 0
)`,
      // One rollout at a time on a layer, whichever hub starts it.
      "CREATE UNIQUE INDEX rollouts_one_per_layer ON rollouts (layer_id) WHERE state IN ('running', 'paused')",
      // The impact of a change: a candidate effective set sent to a cluster's agent, and what it answered.
      `CREATE TABLE impact_requests (
  id text PRIMARY KEY,
  cluster text NOT NULL,
  -- The candidate set (canonical JSON) and its hash; the set the agent holds is its own.
  candidate text NOT NULL,
  candidate_hash text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  sent_at timestamptz,
  answer jsonb,
  answered_at timestamptz
)`,
      "CREATE INDEX impact_requests_waiting ON impact_requests (cluster, created_at) WHERE answered_at IS NULL",
    ],
  },
  {
    version: 11,
    name: "one audit entry per change and region for the bundles it published, and their lists (src/bundle/publication.ts)",
    statements: [
      `CREATE TABLE bundle_publications (
  -- The list's hash, as its audit entry names it; the list is its canonical JSON.
  list_hash text PRIMARY KEY,
  region text NOT NULL,
  correlation_id text NOT NULL,
  published_at timestamptz NOT NULL,
  bundles integer NOT NULL,
  list text NOT NULL
)`,
      "CREATE INDEX bundle_publications_correlation ON bundle_publications (correlation_id)",
    ],
  },
  {
    version: 12,
    name: "cluster facts: what a cluster can hold (Kubernetes version, NetworkPolicy enforcement, capacity, zones), checked before intents reach it",
    statements: ["ALTER TABLE clusters ADD COLUMN facts jsonb"],
  },
  {
    version: 13,
    name: "facts reported by a cluster's agent, and the result of its last apply of its bundle's manifests",
    statements: [
      "ALTER TABLE clusters ADD COLUMN reported_facts jsonb",
      "ALTER TABLE clusters ADD COLUMN facts_reported_at timestamptz",
      `CREATE TABLE apply_status (
  cluster text PRIMARY KEY,
  reported_at timestamptz NOT NULL,
  bundle_version bigint NOT NULL,
  outcome text NOT NULL,
  -- The agent's report as validated (src/api/intents.ts).
  report jsonb NOT NULL
)`,
    ],
  },
  {
    version: 14,
    name: "drift: what agents found on the objects their intents made, and what they did (re-applied, reported, a fight)",
    statements: [
      // One row per event (paths only, never values), newest DRIFT_EVENTS_PER_CLUSTER kept per cluster.
      `CREATE TABLE drift_events (
  cluster text NOT NULL,
  id text NOT NULL,
  at timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  api_version text NOT NULL,
  kind text NOT NULL,
  namespace text,
  name text NOT NULL,
  policy text,
  missing boolean NOT NULL,
  fields jsonb NOT NULL,
  omitted_fields integer NOT NULL,
  remediation text NOT NULL CHECK (remediation IN ('enforce', 'inform')),
  outcome text NOT NULL CHECK (outcome IN ('remediated', 'reported', 'fight', 'failed')),
  reapplies integer NOT NULL,
  other_manager text,
  reason text,
  PRIMARY KEY (cluster, id)
)`,
      "CREATE INDEX drift_events_at ON drift_events (cluster, at DESC)",
      // Totals per cluster (they outlive the pruned events): the compliance matrix shows them.
      `CREATE TABLE drift_totals (
  cluster text PRIMARY KEY,
  remediated bigint NOT NULL DEFAULT 0,
  reported bigint NOT NULL DEFAULT 0,
  fights bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  dropped bigint NOT NULL DEFAULT 0,
  last_at timestamptz
)`,
      // A batch is taken once: one sent again after a lost answer stores nothing.
      `CREATE TABLE drift_batches (
  cluster text NOT NULL,
  batch text NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (cluster, batch)
)`,
    ],
  },
  // Issue 15: the root of trust (15) and regional hubs (16), their tokens' hostnames (18); 17 is issue 12's facts reports.
  {
    version: 15,
    name: "the federation's root of trust (src/trust): root versions, key lifecycles, regional CAs",
    statements: [
      `CREATE TABLE trust_roots (
  version integer PRIMARY KEY,
  -- The signed root, canonical JSON (src/trust): what agents verify each version against the one before.
  envelope text NOT NULL,
  created_at timestamptz NOT NULL
)`,
      // A key's life: active (signs), overlap (still listed, no longer signs), retired (left the root), revoked.
      "ALTER TABLE signing_keys ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'overlap', 'retired', 'revoked'))",
      "ALTER TABLE signing_keys ADD COLUMN state_changed_at timestamptz",
      "ALTER TABLE signing_keys ADD COLUMN revoke_reason text",
      // The first root version that lists the key, and the first that no longer does (or revokes it).
      "ALTER TABLE signing_keys ADD COLUMN root_version integer",
      "ALTER TABLE signing_keys ADD COLUMN left_root_version integer",
      // Keys the federation did not make: a region's delegated key (its private key stays in the region).
      "ALTER TABLE signing_keys ALTER COLUMN private_key_sealed DROP NOT NULL",
      "ALTER TABLE signing_keys ADD COLUMN region text",
      `CREATE TABLE regional_authorities (
  serial text PRIMARY KEY,
  region text NOT NULL,
  certificate_pem text NOT NULL,
  issued_at timestamptz NOT NULL,
  not_after timestamptz NOT NULL
)`,
    ],
  },
  {
    version: 16,
    name: "regional hubs: a parent's record of its regional hubs, their tokens, heads, mirrored bundles and conflicts; a regional hub's link to its parent",
    statements: ddl(`
CREATE TABLE region_tokens (
  id text PRIMARY KEY,
  region text NOT NULL,
  hash text NOT NULL UNIQUE,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE TABLE regional_hubs (
  region text PRIMARY KEY,
  serial text NOT NULL,
  public_key_sha256 text NOT NULL,
  bundle_key_pem text NOT NULL,
  audit_key_pem text NOT NULL,
  enrolled_at timestamptz NOT NULL,
  revoked_at timestamptz,
  last_seen timestamptz,
  -- The last summary it sent (status and compliance counts, no region-scoped details).
  summary jsonb
);
CREATE TABLE regional_heads (
  region text NOT NULL,
  tree_size bigint NOT NULL,
  root_hash text NOT NULL,
  head jsonb NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (region, tree_size)
);
CREATE TABLE regional_bundles (
  cluster text PRIMARY KEY,
  region text NOT NULL,
  version bigint NOT NULL,
  bytes bytea NOT NULL,
  received_at timestamptz NOT NULL
);
CREATE TABLE region_conflicts (
  id text PRIMARY KEY,
  region text NOT NULL,
  layer_id text NOT NULL,
  detected_at timestamptz NOT NULL,
  detected_by text NOT NULL,
  reason text NOT NULL,
  resolution text NOT NULL,
  reverted_version integer
);
CREATE TABLE regional_link (
  id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  region text NOT NULL,
  parent_url text NOT NULL,
  -- The parent's global layer as last mirrored: an older one offered later is refused.
  global_version integer NOT NULL DEFAULT 0,
  global_hash text,
  -- The region layer version the parent last accepted (0: none yet), and its files.
  accepted_region_version integer NOT NULL DEFAULT 0,
  accepted_region_files jsonb,
  last_contact timestamptz,
  -- Certificates and bundles already sent up (by issue time and bundle revision).
  sent_certificates_at timestamptz,
  sent_bundle_revision bigint NOT NULL DEFAULT 0,
  -- The last tree head the parent acknowledged.
  acknowledged_size bigint NOT NULL DEFAULT 0
)`),
  },
  {
    version: 17,
    name: "each agent's latest facts report, signed or withheld, and a per-cluster budget of drift audit entries",
    statements: [
      // The latest report (the signed ones are also clusters.reported_facts); `withheld`: why it was not signed.
      `CREATE TABLE facts_reports (
  cluster text PRIMARY KEY,
  facts jsonb NOT NULL,
  reported_at timestamptz NOT NULL,
  withheld jsonb,
  -- The effective facts last audited as withheld: each distinct withheld facts is audited once.
  withheld_key text
)`,
      // Drift is listed in the order the hub received it (an agent's clock orders nothing).
      "CREATE INDEX drift_events_received ON drift_events (cluster, received_at DESC)",
      "ALTER TABLE drift_totals ADD COLUMN audit_window timestamptz",
      "ALTER TABLE drift_totals ADD COLUMN audit_spent integer NOT NULL DEFAULT 0",
    ],
  },
  {
    version: 18,
    name: "region tokens: the hostnames a regional hub's certificate may name, fixed by the global admin, and whether loopback is allowed",
    statements: ddl(`
ALTER TABLE region_tokens ADD COLUMN hostnames jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE region_tokens ADD COLUMN allow_loopback boolean NOT NULL DEFAULT false`),
  },
  {
    version: 19,
    name: "regional CAs revoked with their region's delegated key: the certificates they issued are refused by the global hub",
    statements: ["ALTER TABLE regional_authorities ADD COLUMN revoked_at timestamptz"],
  },
  {
    version: 20,
    name: "data residency: the zones each region's data may be kept in (declared on the global hub, mirrored to the region's hub), and the zone its hub runs in",
    statements: ddl(`
CREATE TABLE region_residency (
  region text PRIMARY KEY,
  -- Null: nothing declared. Otherwise the zones (JSON array of names) a hub keeping the region's data may be in.
  allowed_zones jsonb,
  version integer NOT NULL DEFAULT 0,
  declared_at timestamptz,
  declared_by text,
  -- On the global hub: the zone the region's hub says it runs in (sent with its summaries).
  hub_zone text,
  hub_zone_at timestamptz
)`),
  },
  // Issue 15: the federation CA rotates (src/hub/ca-rotation.ts).
  {
    version: 21,
    name: "federation CAs that rotate: each CA, its sealed key and its state in the root of trust",
    statements: ddl(`
CREATE TABLE federation_authorities (
  -- SHA-256 of the certificate's DER, as the root lists it.
  fingerprint text PRIMARY KEY,
  certificate_pem text NOT NULL,
  -- The private key, encrypted under the operator's key (AES-256-GCM): never in clear.
  key_encrypted jsonb NOT NULL,
  -- active (issues), overlap (replaced, still trusted and listed in the root), retired (left the root, refused).
  state text NOT NULL CHECK (state IN ('active', 'overlap', 'retired')),
  created_at timestamptz NOT NULL,
  state_changed_at timestamptz,
  -- The hub's serving certificate comes from this CA (the old one until agents trust the new).
  serving boolean NOT NULL DEFAULT false,
  root_version integer,
  left_root_version integer
);
-- Which CA issued a cluster certificate (its fingerprint; NULL: the federation's first CA, before any rotation).
ALTER TABLE certificates ADD COLUMN authority text`),
  },
  {
    version: 23,
    name: "certificates: whether this hub issued it (not one a region's CA issued, sent up, nor one the parent issued, mirrored down)",
    statements: ddl(`
ALTER TABLE certificates ADD COLUMN issued_here boolean NOT NULL DEFAULT true;
-- On a global hub, the rows its regional hubs sent up before this column existed.
UPDATE certificates SET issued_here = false WHERE region IN (SELECT region FROM regional_hubs);
CREATE INDEX certificates_region_issued ON certificates (region, issued_at) WHERE issued_here`),
  },
  {
    version: 24,
    name: "regional_link: the last bundle sent up is a revision and a cluster (one change's bundles share a revision, and may take several summaries)",
    statements: ddl(`ALTER TABLE regional_link ADD COLUMN sent_bundle_cluster text NOT NULL DEFAULT ''`),
  },
  {
    version: 25,
    name: "regional_bundles: a region's bundles kept as sent, each metadata line apart and each target once (regional_targets)",
    statements: ddl(`
-- bytes: a whole bundle (as older regional hubs send them); or envelope (the metadata line) and target_hash.
ALTER TABLE regional_bundles ALTER COLUMN bytes DROP NOT NULL;
ALTER TABLE regional_bundles ADD COLUMN envelope bytea;
ALTER TABLE regional_bundles ADD COLUMN target_hash text;
CREATE INDEX regional_bundles_target ON regional_bundles (target_hash);
CREATE TABLE regional_targets (
  hash text PRIMARY KEY,
  bytes bytea NOT NULL,
  received_at timestamptz NOT NULL
)`),
  },
];

const LOCK_KEY = 7_346_201; // "polity" migrations

export async function migrate(db: Database): Promise<number[]> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [LOCK_KEY]);
    await tx.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const done = new Set((await tx.query<{ version: number }>("SELECT version FROM schema_migrations")).map((r) => r.version));
    const applied: number[] = [];
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version)) continue;
      for (const statement of migration.statements) await tx.query(statement);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
      applied.push(migration.version);
    }
    const newest = Math.max(...done, 0);
    const known = Math.max(...MIGRATIONS.map((m) => m.version));
    if (newest > known) {
      throw new Error(`the database is at schema version ${newest}, newer than this polity (${known}): upgrade polity`);
    }
    return applied;
  });
}
