/**
 * `polity import`: Kubernetes admission policies (ValidatingAdmissionPolicy with its
 * bindings and params, Kyverno CEL ValidatingPolicy) as Polity policies, printed as YAML
 * to review and apply; what Polity cannot express is refused, with the reason, on
 * standard error.
 */
import { stringify } from "yaml";
import { PolityError, formatProblem } from "../../errors.js";
import { readSomeDocuments, readStdin, STDIN } from "../../files/read.js";
import { importPolicies, type ImportInput } from "../../policy/import.js";
import { parseDocuments } from "../../source/parse.js";
import { outputFormat, stringOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";

export const importCommand: Command = {
  name: "import",
  summary: "convert ValidatingAdmissionPolicies and Kyverno CEL policies into Polity policies",
  usage: "polity import [--owner name] [--domain domain] [-o yaml|json] <file|folder|->…",
  options: {
    output: { type: "string", short: "o" },
    owner: { type: "string" },
    domain: { type: "string" },
  },
  help: `Reads Kubernetes admission policies and prints the Polity policies that decide as they
do. Inputs are YAML or JSON files or folders ("-" reads standard input) holding:

  ValidatingAdmissionPolicy (admissionregistration.k8s.io)
      with its ValidatingAdmissionPolicyBindings and the params objects they name:
      one Polity policy per binding (named after the binding), or per policy
      without a binding among the inputs (then imported as bound everywhere with
      Deny, and said so). matchConstraints become match.resourceRules and
      excludeResourceRules, the namespace selector the policy's scope, an object
      selector a match condition; matchConditions, variables and validations
      (expression, message, messageExpression) are kept as written, since
      Polity's CEL is Kubernetes'; failurePolicy is kept; the binding's
      validationActions become the enforcement (Deny → deny, Warn → warn,
      Audit → audit); the params object's fields become params, so that
      params.spec.x reads as before.
  ValidatingPolicy (policies.kyverno.io), Kyverno's CEL policies: the same
      fields, and its validationActions.

Refused, with the reason on standard error: an expression Polity cannot compile
(Kyverno's resource, http, image and globalContext libraries, the authorizer);
params chosen by a selector (paramRef.selector); a binding that narrows the
policy's resource rules; auditAnnotations computed by CEL; resourceNames;
background-only and JSON-mode Kyverno policies. A refused field is left out
of a policy that is still printed; a refused policy is not printed.

Options:
  --owner <name>       metadata.owner of the policies (default: the layer's first owner)
  --domain <domain>    spec.domain of the policies (default: workload-security)
  -o, --output yaml|json   YAML documents (default), or one JSON array

Examples:
  polity import vap.yaml binding.yaml params.yaml > imported.yaml
  kubectl get validatingadmissionpolicies,validatingadmissionpolicybindings -o yaml | polity import -
  polity import --owner platform-team --domain network kyverno/

Exit status: 0 when everything was imported, 1 when something was refused (the
rest is printed), 2 for bad usage or unreadable input.`,
  async run(parsed, io) {
    const format = outputFormat(parsed, ["yaml", "json"] as const, "yaml");
    if (parsed.positionals.length === 0) throw new UsageError("no inputs: give files, folders or - for standard input");
    const inputs: ImportInput[] = [];
    for (const input of parsed.positionals) {
      try {
        const docs = input === "-" ? parseDocuments(await readStdin(), STDIN) : readSomeDocuments(input);
        for (const doc of docs) {
          // Kubernetes Lists (kubectl get -o yaml) hold the documents in items.
          const value = doc.value as { kind?: unknown; items?: unknown };
          const items = typeof value?.kind === "string" && value.kind.endsWith("List") && Array.isArray(value.items) ? value.items : [doc.value];
          for (const item of items) inputs.push({ source: `${doc.file}[${doc.index}]`, value: item });
        }
      } catch (error) {
        if (!(error instanceof PolityError)) throw error;
        for (const problem of error.problems) io.err(`error: ${formatProblem(problem)}\n`);
        return EXIT.usage;
      }
    }
    const domain = stringOption(parsed, "domain");
    const owner = stringOption(parsed, "owner");
    const result = importPolicies(inputs, { ...(domain === undefined ? {} : { domain }), ...(owner === undefined ? {} : { owner }) });
    if (format === "json") {
      io.out(`${JSON.stringify(result.policies.map((p) => p.document), null, 2)}\n`);
    } else {
      io.out(result.policies.map((p) => `# from ${p.from}\n${stringify(p.document, { lineWidth: 0 })}`).join("---\n"));
    }
    for (const refusal of result.refusals) {
      io.err(`${refusal.field === undefined ? "not imported" : "left out"}: ${refusal.source}: ${refusal.subject}${refusal.field === undefined ? "" : `: ${refusal.field}`}: ${refusal.reason}\n`);
    }
    for (const note of result.notes) io.err(`note: ${note.source}: ${note.subject}: ${note.reason}\n`);
    for (const skipped of result.ignored) io.err(`note: ${skipped.source}: ${skipped.what} is not a policy Polity imports; ignored\n`);
    io.err(`${result.policies.length} ${result.policies.length === 1 ? "policy" : "policies"} imported, ${result.refusals.length} ${result.refusals.length === 1 ? "refusal" : "refusals"}\n`);
    return result.refusals.length === 0 ? EXIT.ok : EXIT.failed;
  },
};
