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

/** What an agent's webhook answered to an AdmissionReview. */
export interface ReviewAnswer {
  readonly allowed: boolean;
  /** The denial's message (status.message). */
  readonly message?: string;
  readonly warnings?: readonly string[];
}

/** Sends an AdmissionReview to an agent's webhook; its answer (fails after `timeoutMs`, 10 s unless said). */
export function reviewAnswer(agent: { readonly webhookUrl: string; readonly webhookCaPem: string }, body: string, timeoutMs = 10_000): Promise<ReviewAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(agent.webhookUrl, { method: "POST", ca: agent.webhookCaPem, headers: { "content-type": "application/json" }, timeout: timeoutMs }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      res.on("end", () => {
        try {
          const { response } = JSON.parse(text) as { response: { allowed: boolean; status?: { message?: string }; warnings?: string[] } };
          resolve({ allowed: response.allowed, ...(response.status?.message === undefined ? {} : { message: response.status.message }), ...(response.warnings === undefined ? {} : { warnings: response.warnings }) });
        } catch (error) {
          reject(new Error(`the webhook answered ${res.statusCode}, not an AdmissionReview: ${text.slice(0, 200)} (${String(error)})`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`the webhook gave no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** Sends an AdmissionReview to an agent's webhook; whether it was allowed. */
export async function reviewAllowed(agent: { readonly webhookUrl: string; readonly webhookCaPem: string }, body: string): Promise<boolean> {
  return (await reviewAnswer(agent, body)).allowed;
}
