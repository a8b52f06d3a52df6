/** What every dquery command shares: exit statuses, how errors are said, plurals. */
import type { TaskResult } from '../../proto/src/types.js';
import { plural, shown } from './format.js';

export { plural };

/**
 * Exit statuses, documented in --help and README. 3 and 4 mean one thing per command:
 * steal: 3 nothing ready now, 4 all work finished; status --watch: 3 finished with tasks not done.
 */
export const EXIT = { ok: 0, error: 1, usage: 2, nothingReady: 3, notAllDone: 3, finished: 4, interrupted: 130 } as const;

/** Bad usage found by a command itself (commander reports its own). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Writes an error line to stderr, its control characters shown escaped (messages may quote worker text). */
export function complain(message: string): void {
  process.stderr.write(`dquery: ${shown(message, { lines: true })}\n`);
}

/** "a, b, c and 7 more": a few names of `total`, shown for a terminal. */
export function someNames(names: readonly string[], total: number, few = 5): string {
  const listed = names.slice(0, few).map((n) => shown(n));
  const more = total - listed.length;
  return more > 0 ? `${listed.join(', ')} and ${more} more` : listed.join(', ');
}

/** Prints results that were not accepted to stderr; true if all were. */
export function reportResults(results: readonly TaskResult[], verb: string): boolean {
  let ok = true;
  for (const r of results) {
    if (r.outcome === 'ACCEPTED') continue;
    ok = false;
    complain(`${verb} ${r.name}: ${r.outcome}: ${r.message}`);
  }
  return ok;
}
