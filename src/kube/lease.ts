/**
 * Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does,
 * so that work that must run once per cluster (status reports, scans, reports) runs on one
 * replica while all of them serve the webhook.
 *
 * A candidate takes the Lease when it does not exist, when its holder let it lapse
 * (renewTime + leaseDurationSeconds in the past, by this candidate's clock), or when it
 * already holds it; it writes with the Lease's resourceVersion, so of two candidates
 * racing, the API server lets one win (409 Conflict for the other). The leader renews every
 * `retryPeriodMs`; if it cannot renew within `renewDeadlineMs` it stops leading at once,
 * before its Lease can lapse and another take it (renewDeadline < leaseDuration), so two
 * replicas never lead at the same time as long as clocks advance alike. On stop, a leader
 * releases the Lease (holder cleared, duration 1 s) so another takes over at once.
 */
import { CoordinationV1Api, V1MicroTime, type V1Lease } from "@kubernetes/client-node";
import type { KubeAccess } from "./config.js";
import { describeFailure, statusOf, type KubeLog } from "./informer.js";
import { withSignal } from "./namespaces.js";
import { sleep } from "../client/retry.js";

export interface LeaseOptions {
  readonly namespace: string;
  readonly name: string;
  /** This candidate, unique among them (pod name and a random suffix). */
  readonly identity: string;
  /** Defaults as client-go's: 15 s, 10 s, 2 s. */
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  readonly now?: () => number;
}

export interface LeaseHealth {
  readonly lease: string;
  readonly identity: string;
  readonly leader: boolean;
  /** The holder the Lease names, as last read. */
  readonly holder: string | null;
  readonly transitions: number;
  readonly lastError: string | null;
}

function millis(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? undefined : parsed;
  }
  return undefined;
}

export class LeaderElection {
  private readonly api: CoordinationV1Api;
  private leading = false;
  /** When this candidate last renewed its Lease (its own clock). */
  private renewedAt = 0;
  private holder: string | null = null;
  private transitions = 0;
  private lastError: string | null = null;
  private readonly listeners: ((leading: boolean) => void)[] = [];

  constructor(
    access: KubeAccess,
    private readonly options: LeaseOptions,
    private readonly log: KubeLog,
  ) {
    this.api = access.config.makeApiClient(CoordinationV1Api);
  }

  private get now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private get durationMs(): number {
    return this.options.leaseDurationMs ?? 15_000;
  }

  /** Whether this replica leads now: false as soon as it could not renew within the deadline. */
  isLeader(): boolean {
    if (this.leading && this.now - this.renewedAt > (this.options.renewDeadlineMs ?? 10_000)) this.step(false, "could not renew the Lease within the renew deadline");
    return this.leading;
  }

  /** Calls `listener` when this replica starts (true) or stops (false) leading. */
  onChange(listener: (leading: boolean) => void): void {
    this.listeners.push(listener);
  }

  health(): LeaseHealth {
    return { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity, leader: this.isLeader(), holder: this.holder, transitions: this.transitions, lastError: this.lastError };
  }

  private step(leading: boolean, why: string): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.log.info(leading ? `leading: holds Lease ${this.options.namespace}/${this.options.name}` : `no longer leading: ${why}`, { identity: this.options.identity });
    for (const listener of this.listeners) listener(leading);
  }

  /** Tries to take or renew the Lease until `signal` aborts, then releases it if held. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.tryAcquireOrRenew();
        this.lastError = null;
      } catch (error) {
        this.lastError = `Lease ${this.options.namespace}/${this.options.name}: ${describeFailure(error)}`;
        this.log.warn(this.lastError);
      }
      this.isLeader();
      await sleep(this.options.retryPeriodMs ?? 2000, signal);
    }
    if (this.leading) await this.release();
  }

  private spec(lease: V1Lease | undefined, holding: boolean): V1Lease["spec"] {
    const now = new V1MicroTime(this.now);
    const transitions = lease?.spec?.leaseTransitions ?? 0;
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.ceil(this.durationMs / 1000),
      acquireTime: holding ? (lease?.spec?.acquireTime ?? now) : now,
      renewTime: now,
      leaseTransitions: holding ? transitions : transitions + 1,
    };
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.options;
    const timeout = () => withSignal(AbortSignal.timeout(Math.max(1000, (this.options.retryPeriodMs ?? 2000) * 2)));
    let lease: V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace }, timeout());
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    const startedAt = this.now;
    if (lease === undefined) {
      try {
        await this.api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.spec(undefined, false) } }, timeout());
      } catch (error) {
        if (statusOf(error) === 409) return; // another candidate created it first
        throw error;
      }
      this.took(startedAt, true);
      return;
    }
    const holder = lease.spec?.holderIdentity ?? null;
    this.holder = holder;
    const holding = holder === identity;
    const renewed = millis(lease.spec?.renewTime);
    const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    const lapsed = holder === null || holder === "" || renewed === undefined || renewed + duration < this.now;
    if (!holding && !lapsed) {
      this.step(false, `Lease held by ${holder}`);
      return;
    }
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: this.spec(lease, holding) } }, timeout());
    } catch (error) {
      if (statusOf(error) === 409) {
        this.step(false, "another candidate wrote the Lease first");
        return;
      }
      throw error;
    }
    this.took(startedAt, !holding);
  }

  private took(at: number, transition: boolean): void {
    this.renewedAt = at;
    this.holder = this.options.identity;
    if (transition) this.transitions++;
    this.step(true, "");
  }

  /** Lets the Lease go at once, so that another replica need not wait for it to lapse. */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.options;
    this.step(false, "stopping");
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace }, withSignal(AbortSignal.timeout(2000)));
      if (lease.spec?.holderIdentity !== identity) return;
      await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: new V1MicroTime(this.now) } } }, withSignal(AbortSignal.timeout(2000)));
    } catch (error) {
      this.log.warn(`releasing Lease ${namespace}/${name} failed: ${describeFailure(error)}`);
    }
  }
}
