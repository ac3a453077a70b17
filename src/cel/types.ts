/**
 * The types the checker reasons with: static types of expressions, and the declared types
 * of variables whose shape is known.
 */

export type StaticType =
  | "int"
  | "uint"
  | "double"
  | "string"
  | "bytes"
  | "bool"
  | "null"
  | "list"
  | "map"
  | "timestamp"
  | "duration"
  | "type"
  | "optional"
  | "quantity"
  | "ip"
  | "cidr"
  | "url"
  | "semver"
  | "format"
  | "dyn";

/**
 * The declared type of a variable whose shape is known (Kubernetes' AdmissionRequest, a
 * Namespace, a policy's params): a static type, an object with named fields (selecting
 * any other field is a compile error), or a list or map of a declared type.
 */
export type DeclaredType =
  | StaticType
  | { readonly object: string; readonly fields: Readonly<Record<string, DeclaredType>> }
  | { readonly list: DeclaredType }
  | { readonly map: DeclaredType };

export function staticTypeOf(declared: DeclaredType): StaticType {
  if (typeof declared === "string") return declared;
  return "list" in declared ? "list" : "map";
}

