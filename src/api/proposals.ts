/** Change proposals: layer files proposed, approved by the teams they touch, then applied. */
import { z } from "zod";
import { shownText } from "../policy/schema.js";
import { displayName, sourceFiles } from "./fields.js";

export const proposalRequest = z.strictObject({
  files: sourceFiles,
  /** What the change is for, in a line. */
  title: displayName(200).optional(),
});
export type ProposalRequest = z.infer<typeof proposalRequest>;

export const proposalAnswer = z.strictObject({ reason: shownText(1, 2000).optional() });

export const PROPOSAL_STATES = ["open", "applied", "rejected", "withdrawn"] as const;
export type ProposalState = (typeof PROPOSAL_STATES)[number];
export const isProposalState = (value: string): value is ProposalState => (PROPOSAL_STATES as readonly string[]).includes(value);

export interface ProposalView {
  readonly id: string;
  readonly title: string | null;
  readonly state: ProposalState;
  /** A layer it changes has a newer version than the one it was proposed on: it cannot be applied, only proposed again. */
  readonly stale: boolean;
  /** Each layer it changes, the version it was proposed on and the version there is now, and the documents it adds, removes and changes. */
  readonly layers: readonly {
    readonly id: string;
    readonly baseVersion: number;
    readonly currentVersion: number;
    readonly added: readonly string[];
    readonly removed: readonly string[];
    readonly changed: readonly string[];
  }[];
  /** The teams whose approval it needs, why, and who approved for each (null: not yet). */
  readonly needs: readonly { readonly team: string; readonly why: string; readonly approvedBy: string | null; readonly approvedAt: string | null }[];
  readonly proposedBy: string;
  readonly proposedAt: string;
  readonly decidedBy: string | null;
  readonly decidedAt: string | null;
  readonly reason: string | null;
  /** The correlation id of its entries in the audit log (and of the change, once applied). */
  readonly correlationId: string;
  /** The files, with `?files=true` or on one proposal. */
  readonly files?: readonly { readonly name: string; readonly content: string }[];
}
