/** `dquery status`: counts, pools, workers, rate; `--watch` follows a run to its end and says how it ended. */
import type { Command } from 'commander';
import type { Status } from '../../proto/src/types.js';
import { finishedLine, formatStatus, isFinished } from './format.js';
import { EXIT, UsageError } from './io.js';
import type { Context } from './main.js';

/** The exit status of `status --watch` once the run is finished: 0 when every task is done. */
export function watchExit(status: Status): number {
  return status.counts.done === status.total ? EXIT.ok : EXIT.notAllDone;
}

export function registerStatus(program: Command, ctx: Context): void {
  program
    .command('status')
    .description('counts per state and pool, workers, completion rate, and which hub answered')
    .option('--json', 'print a JSON object (counts: waiting, ready, running, done, failed, blocked, cancelled, verifying; with --watch, one line a round)')
    .option('-w, --watch [seconds]', 'print it again every few seconds (default 2) until the run is finished: nothing ready, running or verifying')
    .addHelpText(
      'after',
      `
A run is finished when nothing is ready, running or verifying: nothing more can happen unless tasks are
created (tasks still waiting then wait on names that do not exist). --watch then prints how it
ended and exits 0 if every task is done, 3 if not (failed, blocked, cancelled, or waiting on
names that don't exist); 1 if the hub cannot be reached.

Examples:
  dquery status --watch           # follow a run to its end
  dquery status --json | jq .counts
  dquery status --watch 10 --json | jq -c .counts`,
    )
    .action(async (o: { json?: boolean; watch?: string | boolean }) => {
      const every = o.watch === undefined ? 0 : o.watch === true ? 2 : Number(o.watch);
      if (!(every > 0 || o.watch === undefined) || !Number.isFinite(every)) throw new UsageError(`--watch takes a number of seconds above 0, not "${String(o.watch)}"`);
      const hub = ctx.hub({ interactive: true });
      for (;;) {
        const status = await hub.status();
        const finished = isFinished(status.counts);
        if (o.json === true) {
          console.log(every > 0 ? JSON.stringify(status) : JSON.stringify(status, null, 2));
        } else {
          // On a terminal each round replaces the last; into a pipe or file they follow each other.
          if (every > 0 && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
          console.log(
            formatStatus(status, { endpoint: hub.endpoint, storeId: status.storeId, startedMs: status.startedMs, files: { count: status.files, bytes: status.filesBytes } }),
          );
          if (every > 0 && finished) console.log(`\n${finishedLine(status)}`);
        }
        if (every === 0) return;
        if (finished) {
          process.exitCode = watchExit(status);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, every * 1000));
      }
    });
}
