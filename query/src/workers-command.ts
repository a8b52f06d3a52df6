/** `dquery workers`: per worker, what it did (done, failed, run times) and what it runs now. */
import type { Command } from 'commander';
import { formatWorkers } from './format.js';
import type { Context } from './main.js';

export function registerWorkers(program: Command, ctx: Context): void {
  program
    .command('workers')
    .description('per worker: tasks done and failed, busy time, mean and longest run, last seen, what it runs now')
    .option('--json', 'print a JSON array: worker, done, failed, runs, busyMs, maxRunMs, lastSeen (ms since the epoch), exited, running, tasks')
    .addHelpText(
      'after',
      `
A run is a lease that ended, done or failed (a failure the worker reported, or a lease it let
expire), timed from the lease to its end; tasks given back (release, worker exit) are not runs.
The figures are kept across hub restarts: the hub rebuilds them at start from the tasks' state
logs (each keeps a task's first and latest 64 changes). Workers holding tasks are listed first,
then the most recently seen, at most 1,000.

Examples:
  dquery workers
  dquery workers --json | jq -r '.[] | select(.failed > 0) | .worker'`,
    )
    .action(async (o: { json?: boolean }) => {
      const status = await ctx.hub({ interactive: true }).status();
      if (o.json === true) console.log(JSON.stringify(status.workers, null, 2));
      else console.log(formatWorkers(status));
    });
}
