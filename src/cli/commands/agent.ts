/** `polity agent` (a cluster's agent) and `polity agent webhook-config` (its registration). */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startAgent, jsonLog } from "../../agent/index.js";
import { PolityError } from "../../errors.js";
import { loadKubeAccess, type KubeAccess } from "../../kube/index.js";
import { IdentitySecret, parseSecretName, type SecretName } from "../../kube/identity-secret.js";
import { parseListen, stringOption, stringsOption, type Command } from "../command.js";
import { EXIT, UsageError } from "../io.js";
import { parseDuration } from "../time.js";

export const agentCommand: Command = {
  name: "agent",
  summary: "run a cluster's agent: pull its signed bundle, serve the admission webhook",
  usage: "polity agent --hub <url> [--hub <url2> …] --cluster <name> [--ca <ca.pem> --join-token <token>] [--data <dir>] [--listen host:port] [--kubeconfig <file>]",
  options: {
    hub: { type: "string", multiple: true },
    cluster: { type: "string" },
    ca: { type: "string" },
    "join-token": { type: "string" },
    "join-token-file": { type: "string" },
    data: { type: "string" },
    listen: { type: "string" },
    "webhook-name": { type: "string", multiple: true },
    "caller-ca": { type: "string" },
    "decision-log-limit": { type: "string" },
    "require-caller-certificate": { type: "boolean" },
    "poll-wait": { type: "string" },
    "root-check-interval": { type: "string" },
    kubeconfig: { type: "string" },
    "scan-period": { type: "string" },
    "identity-secret": { type: "string" },
    lease: { type: "string" },
    "register-webhook": { type: "string" },
    "no-apply": { type: "boolean" },
    "facts-interval": { type: "string" },
    "apply-retry": { type: "string" },
  },
  help: `Runs the agent of one cluster. At its first start it enrols with a join token (its key is
made here and never leaves); afterwards its identity, its last good bundle and its decision
logs live in the data folder, and it needs no token.

It enforces the bundle on its disk at once (verifying its signature again), then long-polls
the hub for newer ones over mutual TLS: a bundle with a bad signature, an older version
than the one held, or already expired is refused. With the hub unreachable it keeps
enforcing its last good bundle, even past its expiry, and reports itself stale; it never
loosens policy because the hub is gone. With no bundle at all it fails closed.

The webhook (AdmissionReview admission.k8s.io/v1, HTTPS, POST /validate) decides from the
bundle alone. GET /healthz and /readyz tell its state; /healthz names each loop's error
(errors.identity, .bundle, .logs, .status) until that loop succeeds again. A hub that keeps
sending a bundle the agent refuses is asked again later and later (1 s up to 60 s).

With a Kubernetes API server it keeps the cluster's Namespaces in memory (list, then watch)
so that every decision gets its namespace's labels and namespaceObject, as polity eval does
with the Namespace among its inputs; /readyz waits for their first list. It finds the API
server as kubectl does: --kubeconfig, else KUBECONFIG, else the in-cluster service account
(KUBERNETES_SERVICE_HOST); never ~/.kube/config. Without any it runs as before, and
/healthz says so (kube.source "none"): policies that select namespaces by label, or read
namespaceObject, then fail closed under their failure policy. A namespace not yet in the
cache is read once (2 s at most); if it still cannot be known, those policies fail closed,
saying why.

With an API server it also scans what already runs: it lists and watches the kinds its
bundle's policies match (and the workloads whose pod templates policies on pods judge),
judges each object as the webhook would judge its creation now, and writes one policy
report per namespace (openreports.io/v1alpha1 Report where the cluster serves it, else
wgpolicyk8s.io/v1alpha2 PolicyReport; ClusterPolicyReport for cluster-scoped objects),
a few seconds after a change, again on every new bundle and every --scan-period. Its
compliance summary goes to the hub with the status (polity get compliance).

In a cluster (the in-cluster service account) it also keeps its identity in a Secret of its
own namespace, polity-agent-identity unless --identity-secret names another, so that a
rescheduled pod without its volume resumes as the same cluster, without a join token; it
makes a new key at each renewal and writes the Secret again. Outside a cluster the Secret is
kept only when --identity-secret names it. A Secret that is not a usable identity (edited
by hand) is said in the log and /healthz (kube.identitySecret) and replaced at the next save.

Replicas sharing one identity serve the webhook alike; the work done once per cluster
(status reports) runs on the one holding a coordination.k8s.io/v1 Lease: in a cluster
polity-agent in the agent's namespace unless --lease names another; elsewhere only with
--lease. /healthz shows kube.lease (leader, holder).

With an API server the leader also makes the cluster hold what its bundle's intents make:
it renders the manifests itself from the verified bundle and the cluster facts the hub
signed into it, refuses (keeping what it applied before) when its rendering's hash is not
the one the hub signed, and server-side applies them (field manager polity, in dependency
order; never force unless the intent says forceConflicts). A version one of whose objects
fails, or conflicts with another field manager, is rolled back to the objects of the last
good apply, and tried again every --apply-retry. Objects Polity applied and the new version
lacks are deleted, and only those, and only for a bundle newly verified from the hub: a
bundle loaded from disk at boot is applied again without deleting anything. What it
applied last is kept in <data>/intents/applied.json. Each result goes to the hub (polity
cluster status NAME); --no-apply turns this off. It observes the cluster's facts (GET
/version; nodes' topology.kubernetes.io/zone labels and allocatable cpu and memory) every
--facts-interval and reports them when they change. /healthz shows kube.intents and
kube.facts.

With --register-webhook <namespace>/<service> the leader keeps the
ValidatingWebhookConfiguration polity itself (server-side apply): caBundle the webhook's
CA, rules only for what its bundle's policies match (updated with every bundle), the system
namespaces and polity-system exempt, failure policy Fail.

Exits with status 2 and the reason when it cannot start as asked: a data folder holding
another cluster's identity, a --listen address in use, or a Kubernetes configuration that
cannot be used (a missing file, a plain-HTTP server, insecure-skip-tls-verify).

Flags:
      --hub <url>                 the hub; repeat it for more bundle sources, in order (its
                                  regional hub, then the global hub, a mirror): bundles come
                                  from the first that answers, verified the same way from any;
                                  renewal too (the next is asked only when one is unreachable);
                                  enrolment, status and decision logs go to the first
      --cluster <name>            this cluster
      --ca <file>                 the federation CA (first enrolment only)
      --join-token <token>        from polity cluster join-token (first enrolment only)
      --join-token-file <file>    or a file holding it
      --data <dir>                state: identity, bundles, decision logs (default .polity/agent-<cluster>)
      --listen <host:port>        the webhook (default 127.0.0.1:9443; port 0 picks one)
      --webhook-name <dns>        another DNS name for the webhook's certificate (repeatable)
      --caller-ca <file>          the CA of the API server's client certificate: each decision
                                  records whether its caller presented one (authenticated);
                                  only authenticated denials raise the hub's denial-spike finding
      --require-caller-certificate
                                  refuse reviews (401) from callers without such a certificate
      --poll-wait <seconds>       how long each long poll waits at the hub (default 30)
      --root-check-interval <d>   how often every --hub is asked for a newer root of trust
                                  (default 5m; from 10s to 24h)
      --kubeconfig <file>         the cluster's API server (default: KUBECONFIG, then the
                                  in-cluster service account, then none)
      --scan-period <seconds>     how often the background scan judges everything again
                                  (default 600)
      --identity-secret [<ns>/]<name>
                                  keep the identity in this Secret too (in a cluster: default
                                  polity-agent-identity in the agent's namespace)
      --lease [<ns>/]<name>       the Lease for work done once per cluster (in a cluster:
                                  default polity-agent in the agent's namespace)
      --register-webhook <ns>/<service>
                                  keep the ValidatingWebhookConfiguration, pointing at that
                                  Service
      --no-apply                  do not apply the bundle's intents (facts are still reported)
      --facts-interval <seconds>  how often the cluster's facts are observed (default 60)
      --apply-retry <seconds>     how long before a version whose apply failed is tried again
                                  (default 30)
      --decision-log-limit <MiB>  decision logs kept on disk while the hub cannot take them
                                  (default 64); past it the oldest are dropped, and counted

Example:
  polity agent --hub https://127.0.0.1:8443 --cluster eu-west-1 --ca .polity/hub/ca.pem --join-token "$TOKEN"
  polity agent --hub https://127.0.0.1:8444 --hub https://127.0.0.1:8443 --cluster eu-west-1 --data .polity/agent-eu-west-1

Logs are JSON lines on standard error. Stops cleanly on SIGINT or SIGTERM.`,
  async run(parsed, io) {
    const hubs = stringsOption(parsed, "hub").map((u) => u.replace(/\/$/, ""));
    for (const u of hubs) if (!/^https:\/\//.test(u)) throw new UsageError(`--hub ${u}: must be an https:// URL`);
    const hub = hubs[0];
    const cluster = stringOption(parsed, "cluster");
    if (hub === undefined || cluster === undefined) throw new UsageError("give --hub <url> and --cluster <name>");
    const dataDir = resolve(stringOption(parsed, "data") ?? `.polity/agent-${cluster}`);
    const caFile = stringOption(parsed, "ca");
    if (caFile !== undefined && !existsSync(caFile)) throw new UsageError(`--ca ${caFile}: no such file`);
    const tokenFile = stringOption(parsed, "join-token-file");
    if (tokenFile !== undefined && !existsSync(tokenFile)) throw new UsageError(`--join-token-file ${tokenFile}: no such file`);
    const joinToken = stringOption(parsed, "join-token") ?? (tokenFile === undefined ? undefined : readFileSync(tokenFile, "utf8").trim());
    let kube: KubeAccess | undefined;
    try {
      kube = loadKubeAccess({ kubeconfig: stringOption(parsed, "kubeconfig"), env: process.env });
    } catch (error) {
      if (error instanceof PolityError) throw new UsageError(error.problems[0]?.message ?? error.message);
      throw error;
    }
    const secretFlag = stringOption(parsed, "identity-secret");
    if (secretFlag !== undefined && kube === undefined) throw new UsageError("--identity-secret needs a Kubernetes API server (--kubeconfig, KUBECONFIG or in-cluster)");
    let identitySecret: SecretName | undefined;
    if (kube !== undefined && (secretFlag !== undefined || kube.source === "in-cluster")) {
      const where = parseSecretName(secretFlag ?? "polity-agent-identity", kube.namespace);
      if (typeof where === "string") throw new UsageError(`--identity-secret: ${where}`);
      identitySecret = where;
    }
    const leaseFlag = stringOption(parsed, "lease");
    if (leaseFlag !== undefined && kube === undefined) throw new UsageError("--lease needs a Kubernetes API server (--kubeconfig, KUBECONFIG or in-cluster)");
    let lease: SecretName | undefined;
    if (kube !== undefined && (leaseFlag !== undefined || kube.source === "in-cluster")) {
      const where = parseSecretName(leaseFlag ?? "polity-agent", kube.namespace);
      if (typeof where === "string") throw new UsageError(`--lease: ${where.replace("Secret", "Lease")}`);
      lease = where;
    }
    const registerFlag = stringOption(parsed, "register-webhook");
    let registerWebhook: SecretName | undefined;
    if (registerFlag !== undefined) {
      if (kube === undefined) throw new UsageError("--register-webhook needs a Kubernetes API server (--kubeconfig, KUBECONFIG or in-cluster)");
      const where = registerFlag.includes("/") ? parseSecretName(registerFlag, kube.namespace) : "give <namespace>/<service>";
      if (typeof where === "string") throw new UsageError(`--register-webhook: ${where.replace("Secret", "Service")}`);
      registerWebhook = where;
    }
    const enrolled = existsSync(join(dataDir, "identity", "identity.json"));
    if (!enrolled && (joinToken === undefined || caFile === undefined)) {
      // A rescheduled pod: its identity may be in its Secret.
      const inSecret = identitySecret === undefined || kube === undefined ? undefined : await new IdentitySecret(kube, identitySecret, cluster).read().catch((error: unknown) => ({ refused: (error as Error).message }));
      if (inSecret !== undefined && "refused" in inSecret) throw new UsageError(`cluster ${cluster} has no identity in ${dataDir}, and ${inSecret.refused}: give --ca and --join-token to enrol again`);
      if (inSecret === undefined || "absent" in inSecret) {
        const where = identitySecret === undefined ? "" : ` nor in Secret ${identitySecret.namespace}/${identitySecret.name}`;
        throw new UsageError(`cluster ${cluster} has no identity in ${dataDir}${where} yet: give --ca and --join-token for its first enrolment`);
      }
    }
    const listen = stringOption(parsed, "listen") ?? "127.0.0.1:9443";
    const { host, port } = parseListen(listen);
    const wait = Number(stringOption(parsed, "poll-wait") ?? "30");
    if (!Number.isInteger(wait) || wait < 1 || wait > 60) throw new UsageError("--poll-wait must be a whole number of seconds from 1 to 60");
    const rootCheck = parseDuration(stringOption(parsed, "root-check-interval") ?? "5m", "--root-check-interval");
    if (rootCheck < 10_000 || rootCheck > 86_400_000) throw new UsageError("--root-check-interval must be from 10s to 24h");
    const limit = Number(stringOption(parsed, "decision-log-limit") ?? "64");
    if (!Number.isInteger(limit) || limit < 1 || limit > 1_048_576) throw new UsageError("--decision-log-limit must be a whole number of MiB from 1 to 1048576");
    const callerCa = stringOption(parsed, "caller-ca");
    if (callerCa !== undefined && !existsSync(callerCa)) throw new UsageError(`--caller-ca ${callerCa}: no such file`);
    const requireCaller = parsed.values["require-caller-certificate"] === true;
    if (requireCaller && callerCa === undefined) throw new UsageError("--require-caller-certificate needs --caller-ca <file>: the CA the callers' certificates must come from");
    const factsInterval = Number(stringOption(parsed, "facts-interval") ?? "60");
    if (!Number.isInteger(factsInterval) || factsInterval < 1 || factsInterval > 86_400) throw new UsageError("--facts-interval must be a whole number of seconds from 1 to 86400");
    const applyRetry = Number(stringOption(parsed, "apply-retry") ?? "30");
    if (!Number.isInteger(applyRetry) || applyRetry < 1 || applyRetry > 86_400) throw new UsageError("--apply-retry must be a whole number of seconds from 1 to 86400");
    const scanPeriod = Number(stringOption(parsed, "scan-period") ?? "600");
    if (!Number.isInteger(scanPeriod) || scanPeriod < 10 || scanPeriod > 86_400) throw new UsageError("--scan-period must be a whole number of seconds from 10 to 86400");
    const now = () => new Date();
    const agent = await startAgent({
      dataDir,
      hubUrl: hub,
      fallbackUrls: hubs.slice(1),
      cluster,
      ...(caFile === undefined ? {} : { caPem: readFileSync(caFile, "utf8") }),
      ...(joinToken === undefined ? {} : { joinToken }),
      webhookHost: host,
      webhookPort: port,
      webhookNames: stringsOption(parsed, "webhook-name"),
      ...(callerCa === undefined ? {} : { callerCaPem: readFileSync(callerCa, "utf8"), requireAuthenticatedCaller: requireCaller }),
      pollWaitSeconds: wait,
      rootCheckIntervalMs: rootCheck,
      logs: { maxDiskBytes: limit * 1024 * 1024 },
      ...(kube === undefined ? {} : { kube }),
      scanPeriodMs: scanPeriod * 1000,
      applyIntents: parsed.values["no-apply"] !== true,
      factsIntervalMs: factsInterval * 1000,
      applyRetryMs: applyRetry * 1000,
      ...(identitySecret === undefined ? {} : { identitySecret }),
      ...(lease === undefined ? {} : { lease }),
      ...(registerWebhook === undefined ? {} : { registerWebhook }),
      now,
      log: jsonLog(`agent/${cluster}`, now),
    }).catch((error: unknown) => {
      // An address in use, not of this host, or not ours to bind is the operator's to fix.
      if ((error as NodeJS.ErrnoException).syscall === "listen") {
        throw new UsageError(`--listen ${listen}: the webhook cannot listen there (${(error as Error).message})`);
      }
      throw error;
    });
    io.out(`agent of cluster ${cluster}: webhook ${agent.webhookUrl} (CA ${join(dataDir, "webhook", "ca.pem")})\n`);
    io.out(kube === undefined ? "no Kubernetes API server: namespace labels are not known (see /healthz)\n" : `Kubernetes API server ${kube.server} (${kube.source}, context ${kube.context})\n`);
    await new Promise<void>((done) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        done();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    await agent.close();
    return EXIT.ok;
  },
};

export const webhookConfigCommand: Command = {
  name: "agent webhook-config",
  summary: "print the ValidatingWebhookConfiguration that registers an agent's webhook",
  usage: "polity agent webhook-config --cluster <name> [--data <dir>] [--service <ns>/<name> | --url <https://…>]",
  options: {
    cluster: { type: "string" },
    data: { type: "string" },
    service: { type: "string" },
    url: { type: "string" },
    "failure-policy": { type: "string" },
  },
  help: `Prints a ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1) for kubectl apply:
every resource and subresource, admission.k8s.io/v1 reviews, the caBundle of the agent's
webhook certificate, and a namespace selector that exempts kube-system, kube-public,
kube-node-lease and polity-system, so that a stopped agent can never lock the cluster out
of repairing itself. The failure policy is Fail (a stopped agent refuses, outside those
namespaces); --failure-policy Ignore chooses to fail open instead.

For the agent to know its caller is the API server (polity agent --caller-ca), give the
API server a client certificate for the webhook: an AdmissionConfiguration
(--admission-control-config-file) whose ValidatingAdmissionWebhook plugin names a
kubeConfigFile with a user for the webhook's host (polity-agent.polity-system.svc) holding
client-certificate and client-key issued by that CA.

Flags:
      --cluster <name>          the cluster (to find the agent's data folder)
      --data <dir>              the agent's data folder (default .polity/agent-<cluster>)
      --service <ns>/<name>     reach the agent as an in-cluster Service (default polity-system/polity-agent)
      --url <https://…>         or at a URL
      --failure-policy <p>      Fail (default) or Ignore

Example:
  polity agent webhook-config --cluster eu-west-1 | kubectl apply -f -`,
  run(parsed, io) {
    const cluster = stringOption(parsed, "cluster");
    if (cluster === undefined) throw new UsageError("give --cluster <name>");
    const dataDir = resolve(stringOption(parsed, "data") ?? `.polity/agent-${cluster}`);
    const caFile = join(dataDir, "webhook", "ca.pem");
    if (!existsSync(caFile)) throw new UsageError(`no webhook certificate in ${dataDir}: start the agent once (polity agent …) to make it`);
    const failurePolicy = stringOption(parsed, "failure-policy") ?? "Fail";
    if (failurePolicy !== "Fail" && failurePolicy !== "Ignore") throw new UsageError("--failure-policy must be Fail or Ignore");
    const url = stringOption(parsed, "url");
    const service = stringOption(parsed, "service") ?? "polity-system/polity-agent";
    const [namespace, name] = service.split("/");
    if (url === undefined && (namespace === undefined || name === undefined || name === "")) throw new UsageError("--service must be <namespace>/<name>");
    const caBundle = Buffer.from(readFileSync(caFile, "utf8")).toString("base64");
    const clientConfig =
      url !== undefined
        ? `    clientConfig:\n      url: ${JSON.stringify(url.replace(/\/$/, "").endsWith("/validate") ? url : `${url.replace(/\/$/, "")}/validate`)}\n      caBundle: ${caBundle}`
        : `    clientConfig:\n      service: { namespace: ${namespace}, name: ${name}, path: /validate, port: 443 }\n      caBundle: ${caBundle}`;
    io.out(`# Registers the Polity agent of cluster ${cluster} as a validating admission webhook.
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: polity
  labels: { app.kubernetes.io/name: polity, polity.dev/cluster: ${cluster} }
webhooks:
  - name: validate.polity.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: ${failurePolicy}
    matchPolicy: Equivalent
    timeoutSeconds: 5
${clientConfig}
    rules:
      - apiGroups: ["*"]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE, CONNECT]
        resources: ["*", "*/*"]
        scope: "*"
    # The system namespaces and Polity's own are never judged: the cluster can always heal itself.
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: [kube-system, kube-public, kube-node-lease, polity-system]
`);
    return EXIT.ok;
  },
};
