/** AdmissionReviews for the suites that decide pods, written from the admission.k8s.io/v1 reference. */
import { request as httpsRequest } from "node:https";

/** The bytes of an AdmissionReview v1 for the CREATE of `pod` (its metadata names it and its namespace). */
export function podReview(pod: { metadata: { name: string; namespace: string; labels?: Record<string, string> }; spec: unknown }, uid = "00000000-0000-0000-0000-000000000001"): Uint8Array {
  const review = {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid,
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      name: pod.metadata.name,
      namespace: pod.metadata.namespace,
      operation: "CREATE",
      userInfo: { username: "dev" },
      object: { apiVersion: "v1", kind: "Pod", ...pod },
    },
  };
  return new TextEncoder().encode(JSON.stringify(review));
}

/** Sends an AdmissionReview to an agent's webhook; whether it was allowed. */
export function reviewAllowed(agent: { readonly webhookUrl: string; readonly webhookCaPem: string }, body: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(agent.webhookUrl, { method: "POST", ca: agent.webhookCaPem, headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      res.on("end", () => resolve((JSON.parse(text) as { response: { allowed: boolean } }).response.allowed));
    });
    req.on("error", reject);
    req.end(body);
  });
}
