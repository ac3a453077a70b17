/**
 * What is shown of a failure (health, logs, errors) never holds a credential. The API
 * server's own messages hold none; but an exec credential plugin's failure quotes what it
 * printed, and a kubeconfig that does not parse is quoted by its parser.
 */

/** Quoted text and long credential-like runs taken out of a message. */
export function redacted(message: string): string {
  return message.replace(/"[^"]*"(\.\.\.)?|'[^']*'/g, "(…)").replace(/[A-Za-z0-9_.+=~-]{20,}/g, "(redacted)");
}

/** The exact credentials given taken out of a message. */
export function withoutSecrets(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join("(redacted)");
  return out;
}
