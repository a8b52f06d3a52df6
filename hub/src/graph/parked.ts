/**
 * Steals waiting in a long poll, and the policy that serves them: pure, like the graph it asks.
 * A waiting steal is looked at again only when its time is up or a pool it asks for changed (a
 * task became ready there, or it ran out of work: Graph.takeWoken), so a hub holding thousands of
 * them does not walk them all at every request.
 */
import { DagworkError } from '../../../proto/src/errors.js';
import { DEFAULT_POOL } from '../../../proto/src/spec.js';
import type { StealResult } from '../../../proto/src/types.js';
import type { Graph } from './graph.js';

/** What a steal asks for: the worker, how many, from which pools, and whether to wait past `finished`. */
export interface WaitingSteal {
  worker: string;
  n: number;
  pools: readonly string[];
  waitWhenFinished: boolean;
}

interface Entry<T> {
  client: T;
  steal: WaitingSteal;
  /** The asked pools ("" read as "default"); empty: every pool. */
  pools: Set<string>;
  deadline: number;
}

/** An answer for a waiting steal's client: tasks, finished, or its time is up; or a refusal. */
export type Answer<T> = { client: T; result: StealResult } | { client: T; error: DagworkError };

export class ParkedSteals<T> {
  private entries: Entry<T>[] = [];

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.length;
  }

  /** Parks a steal until `deadline`; false when the hub holds as many as it may. */
  park(client: T, steal: WaitingSteal, deadline: number): boolean {
    if (this.entries.length >= this.capacity) return false;
    this.entries.push({ client, steal, pools: new Set(steal.pools.map((p) => p || DEFAULT_POOL)), deadline });
    return true;
  }

  /**
   * Steals for the waiting ones that can have work now, oldest first, and answers the overdue
   * ones and those whose pools became finished. Returns the answers, in order; the rest wait on.
   * Writes (through the graph): each task leased.
   */
  serve(graph: Graph, now: number): Answer<T>[] {
    graph.advance(now);
    const woken = graph.takeWoken();
    const answers: Answer<T>[] = [];
    if (this.entries.length === 0) return answers;
    const still: Entry<T>[] = [];
    for (const entry of this.entries) {
      const { client, steal } = entry;
      const overdue = entry.deadline <= now;
      if (!overdue && !wakes(entry.pools, woken)) {
        still.push(entry);
        continue;
      }
      const due = overdue || (!steal.waitWhenFinished && graph.isFinished(steal.pools));
      try {
        const result = graph.steal(steal.worker, steal.n, steal.pools, now);
        if (result.tasks.length === 0 && !due) still.push(entry);
        else answers.push({ client, result });
      } catch (err) {
        if (!(err instanceof DagworkError)) throw err;
        answers.push({ client, error: err });
      }
    }
    this.entries = still;
    return answers;
  }

  /** The earliest deadline of a waiting steal, if any. */
  nextDeadline(): number | undefined {
    let at: number | undefined;
    for (const entry of this.entries) if (at === undefined || entry.deadline < at) at = entry.deadline;
    return at;
  }

  /** Every waiting steal's client, and none waits any more (the hub stops or reloads). */
  takeAll(): T[] {
    const clients = this.entries.map((e) => e.client);
    this.entries = [];
    return clients;
  }
}

/** True when a steal asking for `pools` (empty: all) should look at the graph again. */
function wakes(pools: ReadonlySet<string>, woken: ReadonlySet<string>): boolean {
  if (woken.size === 0) return false;
  if (pools.size === 0) return true;
  const [small, large] = pools.size < woken.size ? [pools, woken] : [woken, pools];
  for (const pool of small) if (large.has(pool)) return true;
  return false;
}
