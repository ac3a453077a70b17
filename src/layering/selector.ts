/**
 * Kubernetes label selectors (metav1.LabelSelector): matchLabels and matchExpressions are
 * ANDed; In needs the key with one of the values; NotIn matches when the key is absent or
 * has another value; Exists and DoesNotExist test the key only. An empty selector matches
 * everything; so does an absent one, where Polity uses it for scope.
 */
import type { LabelSelector } from "../policy/schema.js";

export type Labels = Readonly<Record<string, string>>;

export function matchesSelector(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (selector === undefined) return true;
  if (selector.matchLabels !== undefined) {
    for (const key of Object.keys(selector.matchLabels)) {
      if (!Object.hasOwn(labels, key) || labels[key] !== selector.matchLabels[key]) return false;
    }
  }
  for (const requirement of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(labels, requirement.key);
    const value = present ? labels[requirement.key] : undefined;
    switch (requirement.operator) {
      case "In":
        if (!present || !(requirement.values ?? []).includes(value!)) return false;
        break;
      case "NotIn":
        if (present && (requirement.values ?? []).includes(value!)) return false;
        break;
      case "Exists":
        if (!present) return false;
        break;
      case "DoesNotExist":
        if (present) return false;
        break;
    }
  }
  return true;
}

/** The label keys a selector looks at. */
export function selectorKeys(selector: LabelSelector | undefined): string[] {
  if (selector === undefined) return [];
  return [...new Set([...Object.keys(selector.matchLabels ?? {}), ...(selector.matchExpressions ?? []).map((r) => r.key)])].sort();
}

/** `env=prod,team in (a,b),!legacy`: a selector as kubectl prints it. */
export function formatSelector(selector: LabelSelector | undefined): string {
  if (selector === undefined) return "everything";
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const r of selector.matchExpressions ?? []) {
    if (r.operator === "Exists") parts.push(r.key);
    else if (r.operator === "DoesNotExist") parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${r.operator === "In" ? "in" : "notin"} (${(r.values ?? []).join(",")})`);
  }
  return parts.length === 0 ? "everything" : parts.join(",");
}
