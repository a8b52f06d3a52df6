/**
 * Completions and failed attempts per minute since the hub started, in a ring of whole minutes
 * (bounded: the oldest minutes are dropped), so that a dashboard opened late shows the history.
 */

/** Minutes kept by default: 7 days. */
export const HISTORY_MINUTES = 7 * 24 * 60;

/** One series per field, one entry per minute, oldest first; `t` in seconds since the epoch (minute starts). */
export interface ThroughputSeries {
  t: number[];
  done: number[];
  failed: number[];
}

/** Counters that only grow (Graph.ended). */
export interface EndedTotals {
  readonly done: number;
  readonly failed: number;
}

export class ThroughputHistory {
  private readonly done: Float64Array;
  private readonly failed: Float64Array;
  /** The minute (ms since the epoch / 60,000) each slot holds; -1: none. */
  private readonly minutes: Float64Array;
  private readonly firstMinute: number;
  private source: EndedTotals | undefined;
  private seenDone = 0;
  private seenFailed = 0;

  constructor(startMs: number, private readonly capacity = HISTORY_MINUTES) {
    this.done = new Float64Array(capacity);
    this.failed = new Float64Array(capacity);
    this.minutes = new Float64Array(capacity).fill(-1);
    this.firstMinute = Math.floor(startMs / 60_000);
  }

  /**
   * Counts what `totals` gained since the last call into the minute of `nowMs`. Other totals
   * than last time (the graph was reloaded) count from their values now.
   */
  observe(totals: EndedTotals, nowMs: number): void {
    if (totals !== this.source) {
      this.source = totals;
      this.seenDone = totals.done;
      this.seenFailed = totals.failed;
      return;
    }
    const done = totals.done - this.seenDone;
    const failed = totals.failed - this.seenFailed;
    if (done === 0 && failed === 0) return;
    this.seenDone = totals.done;
    this.seenFailed = totals.failed;
    const i = this.slot(Math.floor(nowMs / 60_000));
    this.done[i] = (this.done[i] ?? 0) + done;
    this.failed[i] = (this.failed[i] ?? 0) + failed;
  }

  /** Every minute from the hub's start (or the oldest kept) to `nowMs`'s, empty ones as 0. */
  series(nowMs: number, lastMinutes = this.capacity): ThroughputSeries {
    const now = Math.floor(nowMs / 60_000);
    const from = Math.max(this.firstMinute, now - Math.min(this.capacity, lastMinutes) + 1);
    const out: ThroughputSeries = { t: [], done: [], failed: [] };
    for (let m = from; m <= now; m++) {
      const i = m % this.capacity;
      const held = this.minutes[i] === m;
      out.t.push(m * 60);
      out.done.push(held ? (this.done[i] ?? 0) : 0);
      out.failed.push(held ? (this.failed[i] ?? 0) : 0);
    }
    return out;
  }

  private slot(minute: number): number {
    const i = minute % this.capacity;
    if (this.minutes[i] !== minute) {
      this.minutes[i] = minute;
      this.done[i] = 0;
      this.failed[i] = 0;
    }
    return i;
  }
}
