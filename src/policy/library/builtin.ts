/**
 * What an entry of the built-in library supplies to the policy that names it. Its own file
 * so that the library's index and its families (pod-security/) both depend on it, and
 * neither on the other's module.
 */
import type { Match, Validation } from "../schema.js";

export interface BuiltinPolicy {
  /** The name a policy made from this entry gets by default. */
  readonly name: string;
  readonly description: string;
  readonly domain: string;
  readonly match: Match;
  readonly matchConditions: readonly { name: string; expression: string }[];
  readonly variables: readonly { name: string; expression: string }[];
  readonly validations: readonly Validation[];
}
