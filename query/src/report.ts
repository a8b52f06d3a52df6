/**
 * `dquery report`: what a run did, computed from its tasks as `list` shows them and the workers as
 * `status` shows them. Pure: the command (report-command.ts) does the requests and the writing.
 * Memory grows with the tasks, but each keeps only what the report needs: a done task its times,
 * pool, worker and deps (for the critical path); a failed one its time and the first line of its
 * reason; the others a count.
 */
import { emptyCounts, type Param, type StateCounts, type TaskState, type TaskSummary, type WorkerStatus } from '../../proto/src/types.js';

/** Tasks listed as the slowest. */
export const SLOWEST = 20;
/** Failure reasons listed (the most frequent first); `failures.groupsTotal` counts them all. */
export const FAILURE_GROUPS = 50;
/** Example tasks named per failure reason. */
export const FAILURE_EXAMPLES = 3;
/** Characters of a failure reason's first line kept. */
const REASON_CHARS = 300;

/** A done task as the critical path needs it. */
export interface DoneTask {
  /** When its last attempt was handed out; a barrier (never handed out): when it became done. */
  start: number;
  /** When it became done. */
  end: number;
  created: number;
  deps: readonly string[];
}

/** One task of the critical path, first to last. */
export interface PathStep {
  name: string;
  /** From the end of the dependency it waited for (the first task: from its creation) to its start. */
  waitMs: number;
  /** From its start to its end. */
  runMs: number;
  startedAt: number;
  doneAt: number;
}

export interface CriticalPath {
  /** From the first task's creation to the last one's end: the sum of the steps' waits and runs. */
  totalMs: number;
  tasks: PathStep[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The chain of done tasks that decided when the last one finished: start at the task that
 * finished last; step back each time to the dependency that finished last (the one it waited
 * for), until a task with no done dependency. Ties go to the first name in code-unit order.
 * Dependencies that are not in `done` (not done, or outside the report's pool) are not followed.
 */
export function criticalPath(done: ReadonlyMap<string, DoneTask>): CriticalPath {
  let last: string | undefined;
  let lastEnd = -Infinity;
  for (const [name, t] of done) {
    if (t.end > lastEnd || (t.end === lastEnd && last !== undefined && byName(name, last) < 0)) {
      last = name;
      lastEnd = t.end;
    }
  }
  const chain: string[] = [];
  // A dependency rerun after its dependent finished can end later than it; never walk in a circle.
  const seen = new Set<string>();
  for (let name = last; name !== undefined && !seen.has(name); ) {
    seen.add(name);
    chain.push(name);
    let next: string | undefined;
    let nextEnd = -Infinity;
    for (const dep of (done.get(name) as DoneTask).deps) {
      const d = done.get(dep);
      if (d === undefined || seen.has(dep)) continue;
      if (d.end > nextEnd || (d.end === nextEnd && next !== undefined && byName(dep, next) < 0)) {
        next = dep;
        nextEnd = d.end;
      }
    }
    name = next;
  }
  chain.reverse();
  const tasks: PathStep[] = [];
  let before: number | undefined;
  for (const name of chain) {
    const t = done.get(name) as DoneTask;
    tasks.push({ name, waitMs: Math.max(0, t.start - (before ?? t.created)), runMs: Math.max(0, t.end - t.start), startedAt: t.start, doneAt: t.end });
    before = t.end;
  }
  const first = chain[0] === undefined ? undefined : done.get(chain[0]);
  return { totalMs: first === undefined ? 0 : lastEnd - first.created, tasks };
}

/** Min, median, p95 and max of some durations (ms), by nearest rank. */
export interface RunStats {
  runs: number;
  minMs: number;
  medianMs: number;
  p95Ms: number;
  maxMs: number;
}

/** The figures of `values` (sorted here, in place); undefined when there are none. */
export function runStats(values: number[]): RunStats | undefined {
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  const rank = (q: number): number => values[Math.max(0, Math.ceil(q * values.length) - 1)] as number;
  return { runs: values.length, minMs: values[0] as number, medianMs: rank(0.5), p95Ms: rank(0.95), maxMs: values[values.length - 1] as number };
}

/** Bucket widths of the timeline (ms), finest first. */
const STEPS_MS = [100, 500, 1000, 5000, 15_000, 60_000, 300_000, 900_000, 3_600_000, 86_400_000];
/** Most buckets for a width under a minute; a minute or more may have up to a day of minutes. */
const FINE_BUCKETS = 120;
const COARSE_BUCKETS = 1440;

/** The timeline's bucket width for a run of `spanMs`: per minute (coarser past a day), finer for a run under 30 minutes. */
export function timelineStep(spanMs: number): number {
  for (const step of STEPS_MS) if (Math.ceil((spanMs + 1) / step) <= (step < 60_000 ? FINE_BUCKETS : COARSE_BUCKETS)) return step;
  return STEPS_MS[STEPS_MS.length - 1] as number;
}

/** Counts of `times` per bucket of `step` ms from `start`, `buckets` of them. */
function bucketed(times: Iterable<number>, start: number, step: number, buckets: number): number[] {
  const counts = new Array<number>(buckets).fill(0);
  for (const at of times) {
    const i = Math.min(buckets - 1, Math.max(0, Math.floor((at - start) / step)));
    counts[i] = (counts[i] as number) + 1;
  }
  return counts;
}

/** Everything `dquery report` shows; `--json` prints it as it is. */
export interface Report {
  /** The pool reported on; null: every pool. */
  pool: string | null;
  /** The hub's clock when the report was made (ms since the epoch). */
  now: number;
  /** No task is waiting, ready, running or verifying. */
  finished: boolean;
  tasks: number;
  counts: StateCounts;
  /** From the first task's creation to the last completion or failure (null: none yet). */
  span: { start: number; end: number; ms: number } | null;
  /** Completions and failures (tasks that are FAILED now, when they failed) per bucket of stepMs from start. */
  timeline: { start: number; stepMs: number; done: number[]; failed: number[] };
  /** Per pool, run times of its done tasks (barriers excluded), from the last attempt's lease to done. */
  pools: ({ pool: string } & RunStats)[];
  /** The done tasks that ran longest (at most 20), longest first. */
  slowest: { name: string; pool: string; worker: string; runMs: number; startedAt: number; doneAt: number }[];
  criticalPath: CriticalPath;
  /** Tasks FAILED now, grouped by the first line of their last error, the most frequent first. */
  failures: { total: number; groupsTotal: number; groups: { reason: string; count: number; examples: { name: string; params: Record<string, string> }[] }[] };
  /** Per worker (every pool: workers are not per pool), as the hub's status lists them. */
  workers: { total: number; listed: { worker: string; done: number; failed: number; runs: number; busyMs: number; meanRunMs: number; maxRunMs: number }[] };
}

interface Failure {
  count: number;
  examples: string[];
}

/** What the report is made from, given task by task (list pages), then the workers. */
export class ReportBuilder {
  private readonly counts = emptyCounts();
  private tasks = 0;
  private firstCreated = Infinity;
  private readonly done = new Map<string, DoneTask & { pool: string; worker: string; barrier: boolean }>();
  private readonly failedAt: number[] = [];
  private readonly failures = new Map<string, Failure>();
  /** Pool and worker names, one string each however many tasks name them. */
  private readonly names = new Map<string, string>();

  constructor(private readonly pool: string | undefined) {}

  /** Takes one listed task (listed with deps). */
  add(t: TaskSummary): void {
    this.tasks++;
    this.counts[t.state]++;
    if (t.createdAt > 0 && t.createdAt < this.firstCreated) this.firstCreated = t.createdAt;
    const state: TaskState = t.state;
    switch (state) {
      case 'done':
        this.done.set(t.name, {
          start: t.barrier || t.startedAt === 0 ? t.changedAt : t.startedAt,
          end: t.changedAt,
          created: t.createdAt,
          deps: t.deps ?? [],
          pool: this.intern(t.pool),
          worker: this.intern(t.worker),
          barrier: t.barrier,
        });
        return;
      case 'failed': {
        this.failedAt.push(t.changedAt);
        const first = (t.lastError.split('\n')[0] ?? '').slice(0, REASON_CHARS);
        const group = this.failures.get(first) ?? { count: 0, examples: [] };
        group.count++;
        if (group.examples.length < FAILURE_EXAMPLES) group.examples.push(t.name);
        this.failures.set(first, group);
        return;
      }
      case 'waiting':
      case 'ready':
      case 'running':
      case 'verifying':
      case 'blocked':
      case 'cancelled':
        return;
      default: {
        const _: never = state;
        throw new TypeError(`unknown state ${String(_)}`);
      }
    }
  }

  private intern(name: string): string {
    const kept = this.names.get(name);
    if (kept !== undefined) return kept;
    this.names.set(name, name);
    return name;
  }

  /** The failure reasons listed, each with its example tasks: the names whose params the report shows. */
  failureGroups(): { reason: string; count: number; examples: string[] }[] {
    return [...this.failures]
      .map(([reason, f]) => ({ reason, count: f.count, examples: f.examples }))
      .sort((a, b) => b.count - a.count || byName(a.reason, b.reason))
      .slice(0, FAILURE_GROUPS);
  }

  /** The report, with the workers of the hub's status and the params of the example tasks (by name). */
  finish(now: number, workers: { listed: readonly WorkerStatus[]; total: number }, params: ReadonlyMap<string, readonly Param[]>): Report {
    const c = this.counts;
    const finished = c.waiting + c.ready + c.running + c.verifying === 0;
    let end = -Infinity;
    for (const t of this.done.values()) if (t.end > end) end = t.end;
    for (const at of this.failedAt) if (at > end) end = at;
    const span = this.firstCreated === Infinity || end === -Infinity ? null : { start: this.firstCreated, end, ms: Math.max(0, end - this.firstCreated) };
    const stepMs = timelineStep(span?.ms ?? 0);
    const buckets = span === null ? 0 : Math.floor(span.ms / stepMs) + 1;
    const start = span?.start ?? 0;

    const runs = new Map<string, number[]>();
    const slowest: Report['slowest'] = [];
    for (const [name, t] of this.done) {
      if (t.barrier) continue; // a barrier runs nothing
      const runMs = Math.max(0, t.end - t.start);
      const list = runs.get(t.pool) ?? [];
      list.push(runMs);
      runs.set(t.pool, list);
      slowest.push({ name, pool: t.pool, worker: t.worker, runMs, startedAt: t.start, doneAt: t.end });
      // Keep the list short as it goes: sorted, cut back once it is twice the size shown.
      if (slowest.length >= 2 * SLOWEST) slowestFirst(slowest).splice(SLOWEST);
    }
    slowestFirst(slowest).splice(SLOWEST);

    const groups = this.failureGroups();
    return {
      pool: this.pool ?? null,
      now,
      finished,
      tasks: this.tasks,
      counts: { ...c },
      span,
      timeline: { start, stepMs, done: bucketed(Array.from(this.done.values(), (t) => t.end), start, stepMs, buckets), failed: bucketed(this.failedAt, start, stepMs, buckets) },
      pools: [...runs]
        .sort(([a], [b]) => byName(a, b))
        .map(([pool, values]) => ({ pool, ...(runStats(values) as RunStats) })),
      slowest,
      criticalPath: criticalPath(this.done),
      failures: {
        total: c.failed,
        groupsTotal: this.failures.size,
        groups: groups.map((g) => ({ reason: g.reason, count: g.count, examples: g.examples.map((name) => ({ name, params: Object.fromEntries((params.get(name) ?? []).map((p) => [p.name, p.value])) })) })),
      },
      workers: {
        total: workers.total,
        listed: workers.listed.map((w) => ({ worker: w.worker, done: w.done, failed: w.failed, runs: w.runs, busyMs: w.busyMs, meanRunMs: w.runs === 0 ? 0 : Math.round(w.busyMs / w.runs), maxRunMs: w.maxRunMs })),
      },
    };
  }
}

/** Sorts the slowest first (ties by name) and returns the same array. */
function slowestFirst<T extends { name: string; runMs: number }>(list: T[]): T[] {
  return list.sort((a, b) => b.runMs - a.runMs || byName(a.name, b.name));
}
