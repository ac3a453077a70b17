/**
 * Inputs the benchmarks share: a realistic AdmissionReview for a pod a Deployment created
 * (three containers, probes, resources, env, a projected service-account volume: about
 * 3 KB, as the API server sends it), and generators of layers and clusters.
 */

export function deploymentPodReview(uid = "b0e5c0de-5b6f-4c8e-9a58-0c6c7e3f9a11"): unknown {
  const container = (name: string, image: string, port: number) => ({
    name,
    image,
    imagePullPolicy: "IfNotPresent",
    ports: [{ name: "http", containerPort: port, protocol: "TCP" }],
    env: [{ name: "LOG_LEVEL", value: "info" }],
    resources: { limits: { cpu: "500m", memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
    readinessProbe: { httpGet: { path: "/healthz", port }, periodSeconds: 10 },
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, readOnlyRootFilesystem: true },
    volumeMounts: [{ name: "kube-api-access-7x2kq", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
  });
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "checkout-7d9f8b6c5d-",
      namespace: "shop",
      uid: "4b7f0a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
      creationTimestamp: null,
      labels: { app: "checkout", team: "payments", "pod-template-hash": "7d9f8b6c5d" },
      annotations: { "kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z" },
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: "checkout-7d9f8b6c5d", uid: "9c8b7a6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d", controller: true, blockOwnerDeletion: true },
      ],
    },
    spec: {
      volumes: [
        {
          name: "kube-api-access-7x2kq",
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        container("app", "registry.example.com/shop/checkout:1.4.2", 8080),
        container("sidecar-proxy", "registry.example.com/mesh/proxy:2.1.0", 15001),
        container("metrics", "registry.example.com/obs/exporter:0.9.3", 9100),
      ],
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "checkout",
      securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: "RuntimeDefault" } },
      schedulerName: "default-scheduler",
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: "PreemptLowerPriority",
    },
    status: {},
  };
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      requestResource: { group: "", version: "v1", resource: "pods" },
      namespace: "shop",
      operation: "CREATE",
      userInfo: { username: "system:serviceaccount:kube-system:replicaset-controller", uid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", groups: ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: "CreateOptions", apiVersion: "meta.k8s.io/v1" },
    },
  };
}

/** Percentiles of a sample of durations, in the sample's unit. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Times `fn` once per sample, after a warm-up; returns durations in microseconds, sorted. */
export function sample(fn: () => void, samples: number, warmup = Math.min(20_000, samples)): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const out = new Array<number>(samples);
  for (let i = 0; i < samples; i++) {
    const start = process.hrtime.bigint();
    fn();
    out[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  return out.sort((a, b) => a - b);
}

export const fmt = (us: number) => (us < 10 ? us.toFixed(2) : us < 100 ? us.toFixed(1) : us.toFixed(0));
