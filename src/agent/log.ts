/** The agent's own log: what it did and what failed, for the operator. */

export interface Log {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export const silentLog: Log = { info: () => undefined, warn: () => undefined };

/** JSON lines on standard error, each stamped with the agent's clock. */
export function jsonLog(component: string, now: () => Date): Log {
  const write = (level: string, message: string, fields?: Record<string, unknown>) =>
    process.stderr.write(`${JSON.stringify({ time: now().toISOString(), level, component, msg: message, ...fields })}\n`);
  return { info: (m, f) => write("info", m, f), warn: (m, f) => write("warn", m, f) };
}
