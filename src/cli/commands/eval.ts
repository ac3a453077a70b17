/**
 * `polity eval`: decisions on resources or AdmissionReviews, from policies and layers on
 * disk, exactly as an agent's webhook would decide them.
 */
import { evaluate, type Decision } from "../../decision/evaluate.js";
import { decidedResource, requestForResource, looksLikeAdmissionReview, type AdmissionRequest } from "../../decision/request.js";
import { decideReviewBytes, type AdmissionReviewResponse } from "../../decision/review.js";
import { PolityError, formatProblem } from "../../errors.js";
import { effectivePolicySet } from "../../layering/effective.js";
import type { Operation } from "../../policy/schema.js";
import { parseDocuments, type SourceDocument } from "../../source/parse.js";
import { readSomeDocuments, readStdin, STDIN } from "../../files/read.js";
import { flag, outputFormat, stringOption, type Command } from "../command.js";
import { colors, EXIT, UsageError } from "../io.js";
import { LAYER_HELP, LAYER_OPTIONS, loadLayers } from "../layers.js";
import { parseTime } from "../time.js";

interface Outcome {
  readonly source: string;
  readonly index: number;
  readonly kind: string;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly decision: Decision;
  readonly review?: AdmissionReviewResponse;
}

function metadataOf(value: unknown): { name?: string; namespace?: string } {
  const metadata = typeof value === "object" && value !== null ? (value as { metadata?: unknown }).metadata : undefined;
  if (typeof metadata !== "object" || metadata === null) return {};
  const m = metadata as Record<string, unknown>;
  return {
    ...(typeof m.name === "string" ? { name: m.name } : {}),
    ...(typeof m.namespace === "string" ? { namespace: m.namespace } : {}),
  };
}

export const evalCommand: Command = {
  name: "eval",
  summary: "decide resources or AdmissionReviews against policies, as the webhook would",
  usage: "polity eval [--policy …] [--layer tier=path …] [--cluster name --labels k=v,…] [-o json] <input>…",
  options: {
    ...LAYER_OPTIONS,
    output: { type: "string", short: "o" },
    operation: { type: "string" },
    now: { type: "string" },
    quiet: { type: "boolean", short: "q" },
  },
  help: `Decides each input document and prints the decision. Inputs are YAML or JSON files or
folders (many documents per file; Kubernetes Lists are expanded) holding resources or
AdmissionReviews (admission.k8s.io/v1); "-" reads standard input. A resource is judged as
the CREATE request the API server would send for it (--operation UPDATE or DELETE to
change that), with its fields as the API server encodes them (null is absent, except where
Kubernetes writes null: a Role's rules, for one); an AdmissionReview as it is, and its AdmissionReview response is printed.
Namespace documents among the inputs give their labels to the resources in them.

${LAYER_HELP}

Output:
  -o, --output text|json    text (default) for people; json prints one object per input
                            document and line: {"source", "index", "kind", "namespace",
                            "name", "allowed", "violations": [{"policy", "rule", "message",
                            "enforcement"}], "warnings": [...]}; a violation in a workload's pod
                            template adds "target": "pod template", a decision that an
                            exception relaxed adds "exemptions", and an AdmissionReview input
                            adds "review" (the response)
  -q, --quiet               text output only for documents that are not plainly allowed
      --operation <op>      CREATE (default), UPDATE or DELETE, for plain resources
      --now <RFC 3339 time> the time exceptions are judged at (default: now)

Examples:
  polity eval --policy builtin:pod-security/restricted deployment.yaml
  polity eval -p builtin:pod-security/baseline@v1.25 -o json pods/
  polity eval --layer global=examples/layers/global --layer region=examples/layers/eu-west \\
      --cluster eu-west-1 --labels env=prod examples/resources/
  kubectl get pods -A -o yaml | polity eval -p builtin:pod-security/restricted -q -

Exit status: 0 when every input is allowed, 1 when any is denied, 2 for bad usage or bad input.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["text", "json"] as const, "text");
    const operation = (stringOption(parsed, "operation") ?? "CREATE").toUpperCase();
    if (!["CREATE", "UPDATE", "DELETE"].includes(operation)) {
      throw new UsageError(`--operation must be CREATE, UPDATE or DELETE, got ${JSON.stringify(operation)}`);
    }
    const now = parseTime(stringOption(parsed, "now"), "--now");
    if (parsed.positionals.length === 0) throw new UsageError("no inputs: give files, folders or - for standard input");
    const { layers, cluster } = loadLayers(parsed);
    const set = effectivePolicySet(layers, cluster);

    let badInput = false;
    const documents: SourceDocument[] = [];
    for (const input of parsed.positionals) {
      try {
        if (input === "-") {
          const docs = parseDocuments(await readStdin(), STDIN);
          if (docs.length === 0) throw PolityError.of("invalid", "standard input holds no YAML or JSON documents", { location: { file: STDIN, line: 0, column: 0 } });
          documents.push(...docs);
        } else {
          documents.push(...readSomeDocuments(input));
        }
      } catch (error) {
        if (!(error instanceof PolityError)) throw error;
        for (const problem of error.problems) {
          io.err(`error: ${formatProblem({ ...problem, location: problem.location ?? { file: input === "-" ? STDIN : input, line: 0, column: 0 } })}\n`);
        }
        badInput = true;
      }
    }
    const namespaces = new Map<string, unknown>();
    for (const doc of documents) {
      const value = doc.value as { kind?: unknown; apiVersion?: unknown };
      if (value?.kind === "Namespace" && value.apiVersion === "v1") {
        const name = metadataOf(value).name;
        if (name !== undefined) namespaces.set(name, decidedResource(value));
      }
    }

    const outcomes: Outcome[] = [];
    for (const doc of documents) {
      try {
        let decided: { request: AdmissionRequest; decision: Decision; review?: AdmissionReviewResponse };
        if (looksLikeAdmissionReview(doc.value)) {
          // The webhook's own path, from the review's JSON bytes to the answer's, as the API
          // server would send it (encoded as JSON, whatever file it was read from).
          decided = decideReviewBytes(set, Buffer.from(JSON.stringify(doc.value), "utf8"), { now, namespace: (name) => namespaces.get(name) });
        } else {
          const request = requestForResource(decidedResource(doc.value), operation as Operation);
          const namespaceObject = request.namespace === undefined ? undefined : namespaces.get(request.namespace);
          decided = { request, decision: evaluate(set, request, { now, namespaceObject }) };
        }
        const { request, decision, review } = decided;
        const meta = metadataOf(request.object ?? request.oldObject);
        outcomes.push({
          source: doc.file,
          index: doc.index,
          kind: request.kind.kind,
          namespace: request.namespace ?? meta.namespace,
          name: request.name ?? meta.name,
          decision,
          ...(review === undefined ? {} : { review }),
        });
      } catch (error) {
        if (!(error instanceof PolityError)) throw error;
        for (const problem of error.problems) {
          io.err(`error: ${doc.file}[${doc.index}]: ${formatProblem(problem)}\n`);
        }
        badInput = true;
      }
    }

    if (format === "json") {
      for (const o of outcomes) {
        io.out(
          JSON.stringify({
            source: o.source,
            index: o.index,
            kind: o.kind,
            namespace: o.namespace ?? null,
            name: o.name ?? null,
            allowed: o.decision.allowed,
            violations: o.decision.violations,
            warnings: o.decision.warnings,
            ...(o.decision.exemptions.length > 0 ? { exemptions: o.decision.exemptions } : {}),
            ...(o.review === undefined ? {} : { review: o.review }),
          }) + "\n",
        );
      }
    } else {
      printText(outcomes, io, flag(parsed, "quiet"));
    }
    if (badInput) return EXIT.usage;
    return outcomes.every((o) => o.decision.allowed) ? EXIT.ok : EXIT.failed;
  },
};

function printText(outcomes: readonly Outcome[], io: Parameters<Command["run"]>[1], quiet: boolean): void {
  const c = colors(io);
  let denied = 0;
  for (const o of outcomes) {
    if (!o.decision.allowed) denied++;
    const plain = o.decision.allowed && o.decision.violations.length === 0 && o.decision.exemptions.length === 0;
    if (quiet && plain) continue;
    const where = o.namespace === undefined ? (o.name ?? "") : `${o.namespace}/${o.name ?? ""}`;
    const verdict = o.decision.allowed ? c.green("allowed") : c.red("DENIED");
    io.out(`${c.dim(`${o.source}[${o.index}]`)} ${o.kind} ${where}: ${verdict}\n`);
    for (const v of o.decision.violations) {
      const mark = v.enforcement === "deny" ? c.red("✗") : v.enforcement === "warn" ? c.yellow("!") : c.dim("~");
      const target = v.target === undefined ? "" : ` (${v.target})`;
      io.out(`  ${mark} ${v.policy}/${v.rule} [${v.enforcement}]${target}: ${v.message}\n`);
    }
    for (const e of o.decision.exemptions) {
      io.out(`  ${c.dim("⊘")} ${e.policy}/${e.rule}: exempted by exception ${e.exception} until ${e.expiresAt}\n`);
    }
  }
  const total = outcomes.length;
  io.out(`${total} document${total === 1 ? "" : "s"}: ${total - denied} allowed, ${denied} denied\n`);
}
