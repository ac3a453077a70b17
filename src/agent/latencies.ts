/** Decision latencies, the last 4096, for percentiles in status reports. */
export class Latencies {
  private readonly samples = new Float64Array(4096);
  private next = 0;
  private filled = 0;

  add(micros: number): void {
    this.samples[this.next] = micros;
    this.next = (this.next + 1) % this.samples.length;
    if (this.filled < this.samples.length) this.filled++;
  }

  percentiles(): { p50: number; p90: number; p99: number; samples: number } {
    const sorted = Array.from(this.samples.subarray(0, this.filled)).sort((a, b) => a - b);
    const at = (p: number) => (sorted.length === 0 ? 0 : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! * 10) / 10);
    return { p50: at(50), p90: at(90), p99: at(99), samples: sorted.length };
  }
}
