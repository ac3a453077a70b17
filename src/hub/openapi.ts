/** The hub API as OpenAPI 3.1, generated from the route table the server registers. */
import type { Requirement } from "./principal.js";
import type { Route } from "./route.js";

/** Who may call, as OpenAPI security requirements. */
function security(access: Requirement): Record<string, string[]>[] {
  switch (access.kind) {
    case "public":
      return [];
    case "agent":
    case "regional-hub":
      // A regional hub's certificate is a client certificate of the federation's CA too.
      return [{ clusterCertificate: [] }];
    case "role":
      return [{ bearer: [] }];
    default:
      return [{ bearer: [] }, { clusterCertificate: [] }];
  }
}

export function openApiDocument(routes: readonly Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, "{$1}");
    const parameters = [...route.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
    const operation: Record<string, unknown> = {
      summary: route.summary,
      ...(parameters.length === 0 ? {} : { parameters }),
      ...(route.bodySchema === undefined ? {} : { requestBody: { required: true, content: { "application/json": { schema: route.bodySchema } } } }),
      security: security(route.access),
      ...(route.access.kind === "role" ? { "x-polity-roles": route.access.roles } : {}),
      responses: {
        "2XX": { description: "Success" },
        "4XX": { description: "A Kubernetes-style Status saying what is wrong", content: { "application/json": { schema: { $ref: "#/components/schemas/Status" } } } },
      },
    };
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Polity hub",
      version: "v1",
      description: "Layers, clusters, identity and tokens of a Polity federation. People and automation authenticate with bearer tokens (roles global-admin, region-operator, auditor); agents with their cluster certificate over mutual TLS.",
    },
    paths,
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "A token minted by a global admin (polity token create)" },
        clusterCertificate: { type: "mutualTLS", description: "A cluster certificate issued by the federation CA at enrolment" },
      },
      schemas: {
        Status: {
          type: "object",
          required: ["kind", "apiVersion", "status", "code", "reason", "message"],
          properties: {
            kind: { const: "Status" },
            apiVersion: { const: "v1" },
            status: { const: "Failure" },
            code: { type: "integer" },
            reason: { type: "string" },
            message: { type: "string" },
            details: {
              type: "object",
              properties: { causes: { type: "array", items: { type: "object", properties: { field: { type: "string" }, message: { type: "string" }, location: { type: "string" } } } } },
            },
          },
        },
      },
    },
  };
}
