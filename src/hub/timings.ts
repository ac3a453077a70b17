/**
 * What the hub's work costs, phase by phase (planning a change, signing and storing its
 * bundles, its audit entries, the reload, waking the long polls, enrolment's steps): sums
 * and counts kept in this process's memory, never logged nor served. The benchmarks read
 * them (bench/hub-process.ts) to say where the time of a change or an enrolment goes.
 *
 * One registry per process, as a metrics library keeps one: hub processes are one per
 * process outside the tests, and in the tests nothing reads it.
 */
export interface PhaseTotal {
  /** Milliseconds spent, summed over `count` times. */
  readonly ms: number;
  readonly count: number;
}

export interface TimingsSnapshot {
  readonly phases: Readonly<Record<string, PhaseTotal>>;
  /** The wall-clock time (epoch ms) each named moment last happened: the last wake of long polls, … */
  readonly moments: Readonly<Record<string, number>>;
}

export class Timings {
  private phases = new Map<string, { ms: number; count: number }>();
  private moments = new Map<string, number>();

  add(phase: string, ms: number): void {
    const total = this.phases.get(phase);
    if (total === undefined) this.phases.set(phase, { ms, count: 1 });
    else {
      total.ms += ms;
      total.count += 1;
    }
  }

  /** Times synchronous work. */
  time<T>(phase: string, work: () => T): T {
    const start = performance.now();
    try {
      return work();
    } finally {
      this.add(phase, performance.now() - start);
    }
  }

  /** Times asynchronous work (its wall time, awaits included). */
  async timeAsync<T>(phase: string, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.add(phase, performance.now() - start);
    }
  }

  moment(name: string): void {
    this.moments.set(name, Date.now());
  }

  /** What was measured since the last take, and a fresh start. */
  take(): TimingsSnapshot {
    const snapshot = { phases: Object.fromEntries(this.phases), moments: Object.fromEntries(this.moments) };
    this.phases = new Map();
    this.moments = new Map();
    return snapshot;
  }
}

export const timings = new Timings();
