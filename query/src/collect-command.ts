/** `dquery collect` (collect.ts) and `dquery gc`: getting results out of the hub, and its files cleaned up. */
import type { Command } from 'commander';
import { collect } from './collect.js';
import { byteCount as bytes } from './format.js';
import { plural, UsageError } from './io.js';
import type { Context } from './main.js';


export function registerCollect(program: Command, ctx: Context): void {
  program
    .command('collect')
    .description("fetch what tasks left: each done task's output files and result into a directory, all results joined, or one JSON object a task")
    .option('--pool <pool>', 'only tasks of this pool')
    .option('--prefix <text>', 'only tasks whose name starts with this (a sweep\'s tasks: SWEEP/)')
    .option('--dir <dir>', "each done task's output files into DIR/TASK/NAME and its result into DIR/TASK/stdout; run again, only what is new is fetched")
    .option('--concat <file>', "every done task's result (stdout), joined in creation order (- for standard output)")
    .option('--jsonl <file>', 'one JSON object a task, every matching task whatever its state (- for standard output)')
    .option('--json', 'print the summary as one JSON object: tasks, done, fetched, fetchedBytes, present')
    .addHelpText(
      'after',
      `
A sweep's barrier tasks (SWEEP, SWEEP/barrier-L-K) run nothing and leave nothing: they are
skipped by --dir, --concat and --jsonl alike, and not counted.

--dir: TASK is the task's name as one directory name: letters, digits, -, _ and . are kept,
every other byte is written %XX, and so is a leading . (render/7 is render%2F7, .. is %2E.);
a name that would be over 255 bytes keeps its first 200 characters, then ~ and 16 hex digits of
its SHA-256. A task whose outputs include one named stdout has its result in dagwork.stdout
(dagwork.stdout.1 when that is an output too, and so on).
Every file is written under a temporary name and renamed when whole: a file that is there with
the right size is not fetched again.

--jsonl: name, state, pool, params (an object), attempts, worker, createdAt, startedAt (null if
never started), changedAt (ms since the epoch), lastError, result (done tasks; null otherwise)
with resultEncoding "utf8" or "base64" (a result that is not UTF-8), and outputs (name, sha256,
size, executable).

Examples:
  dquery collect --prefix runs.txt/ --dir results       # results/runs.txt%2F2/out.pdb, .../stdout
  dquery collect --prefix runs.txt/ --concat all.txt --jsonl runs.jsonl`,
    )
    .action(async (o: { pool?: string; prefix?: string; dir?: string; concat?: string; jsonl?: string; json?: boolean }) => {
      if (o.dir === undefined && o.concat === undefined && o.jsonl === undefined) throw new UsageError('give --dir, --concat or --jsonl (or several)');
      if (o.concat === '-' && o.jsonl === '-') throw new UsageError('--concat and --jsonl cannot both go to standard output');
      const summary = await collect(
        ctx.hub(),
        { ...(o.pool === undefined ? {} : { pool: o.pool }), ...(o.prefix === undefined ? {} : { prefix: o.prefix }) },
        { ...(o.dir === undefined ? {} : { dir: o.dir }), ...(o.concat === undefined ? {} : { concat: o.concat }), ...(o.jsonl === undefined ? {} : { jsonl: o.jsonl }) },
      );
      const say = (line: string): void => void (o.concat === '-' || o.jsonl === '-' ? process.stderr.write(`${line}\n`) : console.log(line));
      if (o.json === true) say(JSON.stringify(summary));
      else {
        const files = o.dir === undefined ? '' : `; fetched ${plural(summary.fetched, 'file')} (${bytes(summary.fetchedBytes)}), ${summary.present} there already`;
        say(`${plural(summary.tasks, 'task')}, ${summary.done} done${files}`);
      }
    });

  program
    .command('gc')
    .description('remove the files no task names any more (and uploads left unfinished for a day) from the hub (admin)')
    .option('--dry-run', 'only count what would be removed')
    .option('--json', 'print {"removed", "removedBytes", "kept", "keptBytes", "dryRun"}')
    .addHelpText(
      'after',
      `
Files uploaded, or asked about (stat, put, get), in the last hour are kept even when no task
names them yet, so that a client may upload inputs and then create the tasks that name them.

Example:
  dquery gc --dry-run && dquery gc`,
    )
    .action(async (o: { dryRun?: boolean; json?: boolean }) => {
      const r = await ctx.hub().gc({ dryRun: o.dryRun === true });
      if (o.json === true) console.log(JSON.stringify({ ...r, dryRun: o.dryRun === true }));
      else {
        console.log(
          `${o.dryRun === true ? 'would remove' : 'removed'} ${plural(r.removed, 'file')} (${bytes(r.removedBytes)}); ${o.dryRun === true ? 'would keep' : 'kept'} ${plural(r.kept, 'file')} (${bytes(r.keptBytes)})`,
        );
      }
    });
}
