/**
 * The commands a worker runs for each task (steal, complete, fail, heartbeat, release, exit): a
 * module of their own, light to load, since a shell loop starts dquery once a task or more.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { countArg, uint32Arg } from '../../proto/src/args.js';
import type { LeasedTask } from '../../proto/src/types.js';
import type { StealOptions } from '../../worker-kit/src/client.js';
import { shown } from './format.js';
import { EXIT, plural, reportResults, UsageError } from './io.js';
import type { Context } from './main.js';

function readInput(path: string): Buffer {
  return readFileSync(path === '-' ? 0 : path);
}
const utf8 = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const printJson = (value: unknown): void => console.log(JSON.stringify(value));

export function registerWorkerCommands(program: Command, ctx: Context): void {
  stealOptions(
    program
      .command('steal')
      .description('take ready tasks: prints "NAME<TAB>PAYLOAD" a line (exit 3: nothing ready now, 4: all finished)'),
    { n: 1, wait: 0 },
  )
    .option('--json', 'print one JSON object a line: name, payload (as text), attempt, leaseDeadline, leaseMs, pool, priority')
    .addHelpText(
      'after',
      `
Plain output is one task a line: a newline in a payload is printed as a space (on a terminal,
control characters are shown as \\xHH, so a payload cannot rewrite the screen). For the exact
payload use -0 or --json. Task names hold no control characters, so a name never holds a tab or
a newline.

Examples:
  dquery steal -n 8 -q | while IFS= read -r t; do ./run "$t" </dev/null && dquery complete "$t"; done
  task=$(dquery steal -0) && name=\${task%%"$(printf '\\t')"*}     # one task, payload intact
  dquery steal -n 100 --json | jq -r .payload`,
    )
    .action(async (o: StealFlags) => {
      if (o.null === true && o.json === true) throw new UsageError('give -0 or --json, not both');
      printStolen(await ctx.hub().steal(stealRequest(o)), o);
    });

  stealOptions(
    program
      .command('complete')
      .description('mark tasks done, releasing the tasks that depend on them; with --next, take the next task in the same request')
      .argument('<names...>', 'tasks this worker holds')
      .option('--result <file>', 'keep this file (or - for stdin) as the result (one task only)')
      .option('--next', 'then take ready tasks in the same request, printed as steal prints them (with the options below)'),
    {},
    'with --next: ',
  )
    .option('--json', 'print the answer for each task as one JSON object: {"results": [{name, outcome, message}]}; with --next, then the tasks taken as steal --json prints them')
    .addHelpText(
      'after',
      `
With --next the exit status is steal's: 0 tasks taken (printed), 3 nothing ready, 4 all work is
finished. A completion the hub refuses (not leased to this worker, already done, ...) is said on
stderr as complete says it (and is in --json's "results") but does not change that status: the
tasks the same request took are this worker's, printed, and to be run. 1 is a request that
failed as a whole: refused by the hub (nothing completed or taken), or never answered (what it
did is unknown; a task it took goes back to ready when its lease ends).

Examples:
  ./run.sh > out.txt && dquery complete render-7 --result out.txt
  task=$(dquery complete render-7 --result out.txt --next -0 --wait 10000)   # done, and the next one`,
    )
    .action(async (names: string[], o: StealFlags & { result?: string; next?: boolean }) => {
      if (o.result !== undefined && names.length !== 1) throw new UsageError('--result takes exactly one task name');
      if (o.next !== true) {
        const given = STEAL_FLAGS.filter((f) => o[f.key] !== undefined).map((f) => f.flag);
        if (given.length > 0) throw new UsageError(`${given.join(', ')}: only with --next`);
      } else if (o.null === true && o.json === true) throw new UsageError('give -0 or --json, not both');
      const result = o.result === undefined ? undefined : readInput(o.result);
      const completions = names.map((name) => (result === undefined ? { name } : { name, result }));
      const { results, next } = await ctx.hub().complete(completions, o.next === true ? stealRequest(o) : undefined);
      if (o.json === true) printJson({ results });
      const accepted = reportResults(results, 'complete');
      // With --next a refusal is said above but the status is the steal's: what it took is printed.
      if (o.next === true) printStolen(next ?? { tasks: [], finished: false }, o);
      else if (!accepted) process.exitCode = EXIT.error;
    });

  program
    .command('fail')
    .description('report a failed run: retried after a backoff while attempts remain, then failed')
    .argument('<name>', 'task this worker holds')
    .requiredOption('--reason <text>', "what went wrong (kept as the task's last error)")
    .option('--permanent', 'do not retry: fail it now and block what depends on it')
    .option('--json', 'print the answer as one JSON object: result, state, notBefore')
    .addHelpText('after', '\nExample:\n  dquery fail render-7 --reason "exit 3: input missing" --permanent')
    .action(async (name: string, o: { reason: string; permanent?: boolean; json?: boolean }) => {
      const r = await ctx.hub().fail(name, o.reason, { permanent: o.permanent === true });
      if (o.json === true) printJson(r);
      if (!reportResults([r.result], 'fail')) process.exitCode = EXIT.error;
      else if (o.json === true) return;
      else if (r.state === 'failed') console.log(`${name} failed for good`);
      else console.log(`${name} will be retried from ${new Date(r.notBefore).toISOString()}`);
    });

  program
    .command('heartbeat')
    .description('extend the leases of tasks this worker runs; lists the ones it lost (exit 1 if any)')
    .argument('<names...>')
    .option('--json', 'print the lost leases as one JSON object: {"lost": [{name, outcome, message}]}')
    .addHelpText('after', '\nExample:\n  while sleep 20; do dquery heartbeat render-7 || kill $job; done')
    .action(async (names: string[], o: { json?: boolean }) => {
      const lost = await ctx.hub().heartbeat(names);
      if (o.json === true) printJson({ lost });
      else for (const r of lost) console.log(shown(`lost ${r.name}: ${r.outcome}: ${r.message}`));
      if (lost.length > 0) process.exitCode = EXIT.error;
    });

  program
    .command('release')
    .description('give tasks back without using an attempt')
    .argument('<names...>')
    .option('--json', 'print the answer for each task as one JSON object: {"results": [...]}')
    .addHelpText('after', '\nExample:\n  trap \'dquery release "$name"; exit 143\' TERM')
    .action(async (names: string[], o: { json?: boolean }) => {
      const results = await ctx.hub().release(names);
      if (o.json === true) printJson({ results });
      if (!reportResults(results, 'release')) process.exitCode = EXIT.error;
    });

  program
    .command('exit')
    .description('tell the hub a worker leaves: every lease it holds goes back to ready')
    .argument('[worker]', 'worker id (default: this worker)')
    .option('--json', 'print {"worker", "released"}')
    .addHelpText('after', '\nExample:\n  dquery exit node17-worker3     # that worker died; hand its tasks out again now')
    .action(async (worker: string | undefined, o: { json?: boolean }) => {
      const client = ctx.hub();
      const released = await client.exit(worker);
      if (o.json === true) printJson({ worker: worker ?? client.worker, released });
      else console.log(`released ${plural(released, 'task')}`);
    });
}

/** How steal prints a task: for scripts the bytes as they are, on a terminal its control characters shown. */
function stealLine(t: LeasedTask, quiet: boolean, tty: boolean): string {
  const show = tty ? shown : (s: string): string => s;
  return quiet ? show(t.name) : `${show(t.name)}\t${show(utf8(t.payload).replace(/\n/g, ' '))}`;
}

/** What steal prints and takes: its own options, and complete --next's. */
interface StealFlags {
  n?: number;
  wait?: number;
  waitWhenFinished?: boolean;
  pool?: string[];
  quiet?: boolean;
  null?: boolean;
  json?: boolean;
}

/** steal's options of what to take and how to print it, and their flags (complete takes them only with --next). */
const STEAL_FLAGS = [
  { key: 'n', flag: '-n' },
  { key: 'wait', flag: '--wait' },
  { key: 'waitWhenFinished', flag: '--wait-when-finished' },
  { key: 'pool', flag: '--pool' },
  { key: 'quiet', flag: '-q' },
  { key: 'null', flag: '-0' },
] as const satisfies readonly { key: keyof StealFlags; flag: string }[];

/** Adds steal's options (but --json, whose text differs) to `command`; `defaults` for steal itself, none for complete. */
function stealOptions(command: Command, defaults: { n?: number; wait?: number }, prefix = ''): Command {
  return command
    .option('-n, --n <n>', `${prefix}how many tasks at most${defaults.n === undefined ? ' (default 1)' : ''}`, countArg, defaults.n)
    .option('--wait <ms>', `${prefix}with nothing ready, wait up to this long for work (returns at once when all is finished)${defaults.wait === undefined ? ' (default 0)' : ''}`, uint32Arg, defaults.wait)
    .option('--wait-when-finished', `${prefix}keep waiting even when all work is finished, for tasks not created yet`)
    .option('--pool <pool...>', `${prefix}take only from these pools`)
    .option('-q, --quiet', `${prefix}print only the task names, one a line`)
    .option('-0, --null', `${prefix}print NAME<TAB>PAYLOAD with the payload exactly as it is, tasks separated by a NUL byte (none after the last)`);
}

function stealRequest(o: StealFlags): StealOptions {
  return { n: o.n ?? 1, waitMs: o.wait ?? 0, pools: o.pool ?? [], waitWhenFinished: o.waitWhenFinished === true };
}

/** Prints what a steal took as `o` asks; with nothing taken, says why and sets exit 3 (nothing ready) or 4 (finished). */
function printStolen({ tasks, finished }: { tasks: readonly LeasedTask[]; finished: boolean }, o: StealFlags): void {
  tasks.forEach((t, i) => {
    if (o.json === true) console.log(JSON.stringify({ ...t, payload: utf8(t.payload) }));
    else if (o.null === true) {
      const record = o.quiet === true ? [Buffer.from(t.name)] : [Buffer.from(`${t.name}\t`), Buffer.from(t.payload)];
      process.stdout.write(Buffer.concat(i === 0 ? record : [Buffer.from([0]), ...record]));
    } else console.log(stealLine(t, o.quiet === true, process.stdout.isTTY === true));
  });
  if (tasks.length === 0) {
    if (o.quiet !== true) process.stderr.write(finished ? 'all work is finished\n' : 'nothing ready now\n');
    process.exitCode = finished ? EXIT.finished : EXIT.nothingReady;
  }
}
