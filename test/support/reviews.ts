/** AdmissionReviews for the suites that decide pods, written from the admission.k8s.io/v1 reference. */

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
