/**
 * Events per second over a sliding window of whole seconds (default: the last minute), or over
 * the time since the first event when that is shorter (a run of 2 s is not spread over a minute).
 */
export class RateWindow {
  private readonly counts: Float64Array;
  private readonly seconds: Float64Array;
  private first = -1;

  constructor(private readonly windowSeconds = 60) {
    this.counts = new Float64Array(windowSeconds);
    this.seconds = new Float64Array(windowSeconds).fill(-1);
  }

  add(nowMs: number, count = 1): void {
    const second = Math.floor(nowMs / 1000);
    if (this.first < 0) this.first = second;
    const i = second % this.windowSeconds;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.counts[i] = 0;
    }
    this.counts[i] = (this.counts[i] ?? 0) + count;
  }

  perSecond(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < this.windowSeconds; i++) {
      const age = second - (this.seconds[i] ?? -1);
      if (age >= 0 && age < this.windowSeconds) sum += this.counts[i] ?? 0;
    }
    if (this.first < 0) return 0;
    // Whole seconds seen, the current one counted: from 1 up to the window.
    return sum / Math.min(this.windowSeconds, Math.max(1, second - this.first + 1));
  }
}
