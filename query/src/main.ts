#!/usr/bin/env node
/** dquery: the dagwork command line. Every command is one or a few requests to the hub. */
import { readFileSync, writeFileSync } from 'node:fs';
import { curveKeyPair } from 'zeromq';
import { formatKeyFile, formatPublicKeyFile } from '../../proto/src/keys.js';
import { Command, CommanderError } from 'commander';
import { countArg, int32Arg, leaseArg, positiveArg, uint32Arg } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { DEFAULT_POOL, defaultSpecLimits } from '../../proto/src/spec.js';
import type { LeasedTask, TaskResult, TaskSpecInput } from '../../proto/src/types.js';
import { Client, curveOptions, defaultClientOptions, HubUnreachableError } from '../../worker-kit/src/client.js';
import { formatLookup, formatStatus, lookupJson, shown } from './format.js';

/** Exit statuses, documented in --help and README. */
export const EXIT = { ok: 0, error: 1, usage: 2, nothingReady: 3, finished: 4 } as const;

const env = defaultClientOptions();

/** Writes an error line to stderr, its control characters shown escaped (messages may quote worker text). */
function complain(message: string): void {
  process.stderr.write(`dquery: ${shown(message, { lines: true })}\n`);
}

// A reader that went away (`dquery --help | head -1`, `dquery status --watch | head`) ends dquery
// quietly: with 0 for help, with the command's own status otherwise (the hub has answered by the
// time anything is printed). Without a listener, Node reports EPIPE with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? EXIT.ok);
});
process.stderr.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

/** The hub's defaults, for --help only: dquery sends zero and the hub fills them in. */
const SPEC_DEFAULTS = defaultSpecLimits();

/** Bad usage found by a command itself (commander reports its own). */
class UsageError extends Error {}

function readInput(path: string): Buffer {
  return readFileSync(path === '-' ? 0 : path);
}
const utf8 = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

const program = new Command('dquery')
  .description('Talk to a dagwork hub (dhub): add tasks, take and finish them from scripts, watch progress.')
  .option('--hub <endpoint>', 'hub endpoint (env DAGWORK_HUB)', env.hub)
  .option('--worker <id>', 'worker identity for steal/complete/... (env DAGWORK_WORKER, else the host name)', env.worker)
  .option('--timeout <ms>', 'how long to wait for each reply before retrying', positiveArg, env.timeoutMs)
  .option('--curve-server-key <key|file>', "the hub's CURVE public key, or its .pub file (env DAGWORK_CURVE_SERVER_KEY)", process.env.DAGWORK_CURVE_SERVER_KEY)
  .option('--curve-key <file>', "this client's key pair file from dquery keygen (env DAGWORK_CURVE_KEY)", process.env.DAGWORK_CURVE_KEY)
  .showHelpAfterError('(add --help for usage)')
  .addHelpText(
    'after',
    `
Exit status: 0 ok; 1 error (message on stderr); 2 bad usage; for steal also
  3 nothing ready now (try again later) and 4 all work finished (nothing waiting, ready or running).

Example, a worker in plain shell:
  while :; do
    line=$(dquery steal --wait 10000); rc=$?
    [ $rc -eq 4 ] && break; [ $rc -ne 0 ] && continue
    name=\${line%%$'\\t'*}; cmd=\${line#*$'\\t'}
    if out=$(sh -c "$cmd"); then printf '%s' "$out" | dquery complete "$name" --result -
    else dquery fail "$name" --reason "exit $?"; fi
  done`,
  );

let client: Client | undefined;
const globalOptions = (): { hub: string; worker: string; timeout: number; curveServerKey?: string; curveKey?: string } => program.opts();
function hub(): Client {
  const o = globalOptions();
  if ((o.curveServerKey === undefined) !== (o.curveKey === undefined)) throw new UsageError('--curve-server-key and --curve-key go together');
  const curve = o.curveServerKey === undefined || o.curveKey === undefined ? undefined : curveOptions(o.curveServerKey, o.curveKey);
  client ??= new Client({ hub: o.hub, worker: o.worker, timeoutMs: o.timeout, curve });
  return client;
}

/** Prints results that were not accepted to stderr; true if all were. */
function reportResults(results: TaskResult[], verb: string): boolean {
  let ok = true;
  for (const r of results) {
    if (r.outcome === 'ACCEPTED') continue;
    ok = false;
    complain(`${verb} ${r.name}: ${r.outcome}: ${r.message}`);
  }
  return ok;
}

program
  .command('create')
  .description('create one task (re-creating an identical task is a no-op)')
  .argument('<name>', 'task name')
  .argument('[deps...]', 'tasks that must be done first (they may be created later)')
  .option('--cmd <command>', 'shell command to run (the payload)')
  .option('--payload <text>', 'payload, when it is not a shell command')
  // No defaults here: what is not given is sent as zero, and the hub applies its own.
  .option('--priority <n>', 'higher runs first, from -2147483648 to 2147483647 (default: 0)', int32Arg)
  .option('--pool <pool>', `pool of workers that may take it (default: the hub's, "${DEFAULT_POOL}")`)
  .option('--attempts <n>', `runs before it counts as failed (default: the hub's, ${SPEC_DEFAULTS.defaultAttempts})`, countArg)
  .option(
    '--lease <duration>',
    `how long a worker may hold it without a heartbeat: 90 (seconds), 90s, 10m, 2h, 1d2h, 3h50m, 01:30:00 (default: the hub's, ${SPEC_DEFAULTS.defaultLeaseMs / 1000}s)`,
    leaseArg,
  )
  .addHelpText('after', '\nExample:\n  dquery create render-7 fetch-7 --cmd "./render 7" --priority 5 --lease 10m')
  .action(async (name: string, deps: string[], o: { cmd?: string; payload?: string; priority?: number; pool?: string; attempts?: number; lease?: number }) => {
    if (o.cmd !== undefined && o.payload !== undefined) throw new UsageError('give --cmd or --payload, not both');
    const text = o.cmd ?? o.payload;
    const spec: TaskSpecInput = {
      name,
      deps,
      ...(o.priority === undefined ? {} : { priority: o.priority }),
      ...(o.pool === undefined ? {} : { pool: o.pool }),
      ...(o.attempts === undefined ? {} : { maxAttempts: o.attempts }),
      ...(o.lease === undefined ? {} : { leaseMs: o.lease }),
      ...(text === undefined ? {} : { payload: Buffer.from(text, 'utf8') }),
    };
    const { created } = await hub().create([spec]);
    console.log(created === 1 ? `created ${name}` : `${name} exists already, unchanged`);
  });

program
  .command('addfile')
  .description('add every task of a file (or - for stdin): all lines are checked before any is sent, then sent in batches')
  .argument('<file>', 'task file (UTF-8), or - for standard input')
  .option('--batch <n>', "most tasks per request (fewer when the hub's --max-batch or --max-message-bytes say so)", positiveArg, 5000)
  .addHelpText(
    'after',
    `
Lines (both forms may be mixed; blank lines are skipped, and so is a line whose first character is #):
  name,dep1,dep2,...                                   dwork's format, no payload
  {"name":"b","deps":["a"],"cmd":"echo b","priority":1,"pool":"default","attempts":3,"lease":"10m"}
A task whose name starts with # is written as JSON: {"name":"#b"}.

Every line is checked first (syntax, names, numbers, duplicates, cycles, the hub's size limits);
a bad line is reported with its number and nothing is sent. The tasks then go in batches sized to
the hub's limits: each batch is added all or nothing; a file of several batches is not. If the hub
refuses a later batch (a task that exists with another definition, say), the error names its line
and says which batches were added. Re-adding the same file is safe: identical tasks are left alone.

Example:
  python3 gen_tasks.py 100 1000 | dquery addfile -`,
  )
  .action(async (file: string, o: { batch: number }) => {
    // Loaded here only: the other commands need not pay for the graph's code at start.
    const { decodeTaskFile, parseTaskFile } = await import('./taskfile.js');
    const { addTaskFile, AddFileError } = await import('./addfile.js');
    const tasks = parseTaskFile(decodeTaskFile(readInput(file)));
    try {
      const { created, unchanged } = await addTaskFile(hub(), tasks, o.batch);
      console.log(`added ${created} tasks${unchanged > 0 ? ` (${unchanged} were there already)` : ''}`);
    } catch (err) {
      if (!(err instanceof AddFileError)) throw err;
      process.exitCode = exitFor(err.cause);
      if (err.added !== undefined) complain(err.added);
    }
  });

program
  .command('steal')
  .description('take ready tasks: prints "NAME<TAB>PAYLOAD" a line (exit 3: nothing ready now, 4: all finished)')
  .option('-n, --n <n>', 'how many tasks at most', countArg, 1)
  .option('--wait <ms>', 'with nothing ready, wait up to this long for work (returns at once when all is finished)', uint32Arg, 0)
  .option('--wait-when-finished', 'keep waiting even when all work is finished, for tasks not created yet')
  .option('--pool <pool...>', 'take only from these pools')
  .option('-q, --quiet', 'print only the task names, one a line')
  .option('--json', 'print one JSON object a line: name, payload, attempt, leaseDeadline, ...')
  .addHelpText(
    'after',
    `
Into a pipe or file each payload is printed as it is (newlines as spaces, so one task a line);
on a terminal its control characters are shown as \\xHH, so a payload cannot rewrite the screen.
Example:
  for t in $(dquery steal -n 8 -q); do ...; dquery complete "$t"; done`,
  )
  .action(async (o: { n: number; wait: number; waitWhenFinished?: boolean; pool?: string[]; quiet?: boolean; json?: boolean }) => {
    const { tasks, finished } = await hub().steal({ n: o.n, waitMs: o.wait, pools: o.pool ?? [], waitWhenFinished: o.waitWhenFinished === true });
    for (const t of tasks) {
      if (o.json === true) console.log(JSON.stringify({ ...t, payload: utf8(t.payload) }));
      else console.log(stealLine(t, o.quiet === true, process.stdout.isTTY === true));
    }
    if (tasks.length === 0) {
      if (o.quiet !== true) process.stderr.write(finished ? 'all work is finished\n' : 'nothing ready now\n');
      process.exitCode = finished ? EXIT.finished : EXIT.nothingReady;
    }
  });

/** How steal prints a task: for scripts the bytes as they are, on a terminal its control characters shown. */
function stealLine(t: LeasedTask, quiet: boolean, tty: boolean): string {
  const show = tty ? shown : (s: string): string => s;
  return quiet ? show(t.name) : `${show(t.name)}\t${show(utf8(t.payload).replace(/\n/g, ' '))}`;
}

program
  .command('complete')
  .description('mark tasks done, releasing the tasks that depend on them')
  .argument('<names...>', 'tasks this worker holds')
  .option('--result <file>', 'keep this file (or - for stdin) as the result (one task only)')
  .addHelpText('after', '\nExample:\n  ./run.sh > out.txt && dquery complete render-7 --result out.txt')
  .action(async (names: string[], o: { result?: string }) => {
    if (o.result !== undefined && names.length !== 1) throw new UsageError('--result takes exactly one task name');
    const result = o.result === undefined ? undefined : readInput(o.result);
    const { results } = await hub().complete(names.map((name) => (result === undefined ? { name } : { name, result })));
    if (!reportResults(results, 'complete')) process.exitCode = EXIT.error;
  });

program
  .command('fail')
  .description('report a failed run: retried after a backoff while attempts remain, then failed')
  .argument('<name>', 'task this worker holds')
  .requiredOption('--reason <text>', 'what went wrong (kept as the task\'s last error)')
  .option('--permanent', 'do not retry: fail it now and block what depends on it')
  .addHelpText('after', '\nExample:\n  dquery fail render-7 --reason "exit 3: input missing" --permanent')
  .action(async (name: string, o: { reason: string; permanent?: boolean }) => {
    const r = await hub().fail(name, o.reason, { permanent: o.permanent === true });
    if (!reportResults([r.result], 'fail')) process.exitCode = EXIT.error;
    else if (r.state === 'failed') console.log(`${name} failed for good`);
    else console.log(`${name} will be retried from ${new Date(r.notBefore).toISOString()}`);
  });

program
  .command('heartbeat')
  .description('extend the leases of tasks this worker runs; lists the ones it lost (exit 1 if any)')
  .addHelpText('after', '\nExample:\n  while sleep 20; do dquery heartbeat render-7 || kill $job; done')
  .argument('<names...>')
  .action(async (names: string[]) => {
    const lost = await hub().heartbeat(names);
    for (const r of lost) console.log(shown(`lost ${r.name}: ${r.outcome}: ${r.message}`));
    if (lost.length > 0) process.exitCode = EXIT.error;
  });

program
  .command('release')
  .description('give tasks back without using an attempt')
  .addHelpText('after', '\nExample:\n  trap \'dquery release "$name"\' TERM')
  .argument('<names...>')
  .action(async (names: string[]) => {
    if (!reportResults(await hub().release(names), 'release')) process.exitCode = EXIT.error;
  });

program
  .command('exit')
  .description('tell the hub a worker leaves: every lease it holds goes back to ready')
  .addHelpText('after', '\nExample:\n  dquery exit node17-worker3     # that worker died; hand its tasks out again now')
  .argument('[worker]', 'worker id (default: this worker)')
  .action(async (worker?: string) => {
    const released = await hub().exit(worker);
    console.log(`released ${released} task${released === 1 ? '' : 's'}`);
  });

program
  .command('retry')
  .description('put failed or cancelled tasks back to work with fresh attempts, unblocking what depends on them')
  .argument('[names...]', 'failed or cancelled tasks')
  .option('--failed', 'retry every failed task (not the cancelled ones: name those)')
  .addHelpText('after', '\nExample:\n  dquery retry render-7 render-9    # or: dquery retry --failed')
  .action(async (names: string[], o: { failed?: boolean }) => {
    if ((o.failed === true) === names.length > 0) throw new UsageError('give task names or --failed');
    const r = await hub().retry(o.failed === true ? 'all-failed' : names);
    console.log(`retried ${r.retried} task${r.retried === 1 ? '' : 's'}`);
    if (!reportResults(r.results, 'retry')) process.exitCode = EXIT.error;
  });

program
  .command('cancel')
  .description('stop tasks for good: they become cancelled (a running one loses its lease, and its late result is refused) and what depends on them is blocked')
  .argument('<names...>')
  .option('--reason <text>', 'kept as the tasks\' last error', '')
  .addHelpText('after', '\nExample:\n  dquery cancel render-7 --reason "wrong input"    # undo: dquery retry render-7')
  .action(async (names: string[], o: { reason: string }) => {
    const r = await hub().cancel(names, o.reason);
    console.log(`cancelled ${r.cancelled} task${r.cancelled === 1 ? '' : 's'}`);
    if (!reportResults(r.results, 'cancel')) process.exitCode = EXIT.error;
  });

program
  .command('status')
  .description('counts per state and pool, workers, completion rate')
  .option('--json', 'print a JSON object (counts: waiting, ready, running, done, failed, blocked, cancelled)')
  .option('-w, --watch [seconds]', 'print it again every few seconds (default 2) until nothing is waiting, ready or running')
  .addHelpText('after', '\nExamples:\n  dquery status --watch           # follow a run to its end\n  dquery status --json | jq .counts')
  .action(async (o: { json?: boolean; watch?: string | boolean }) => {
    const every = o.watch === undefined ? 0 : o.watch === true ? 2 : Number(o.watch);
    if (!(every >= 0) || !Number.isFinite(every)) throw new UsageError(`--watch takes seconds, not "${String(o.watch)}"`);
    for (;;) {
      const status = await hub().status();
      const { waiting, ready, running } = status.counts;
      const finished = waiting + ready + running === 0;
      // On a terminal each round replaces the last; into a pipe or file they follow each other.
      if (every > 0 && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
      console.log(o.json === true ? JSON.stringify(status, null, 2) : formatStatus(status));
      if (every === 0 || finished) return;
      await new Promise((resolve) => setTimeout(resolve, every * 1000));
    }
  });

program
  .command('lookup')
  .description("a task's whole record: state, deps, payload, result, last error, state log")
  .addHelpText('after', '\nExample:\n  dquery lookup render-7 --json | jq -r .result')
  .argument('<name>')
  .option('--json', 'print a JSON object')
  .action(async (name: string, o: { json?: boolean }) => {
    const found = await hub().lookup(name);
    console.log(o.json === true ? JSON.stringify(lookupJson(found), null, 2) : formatLookup(found));
  });

program
  .command('keygen')
  .description('write a CURVE key pair: NAME.key (secret: keep it so) and NAME.pub (for the hub\'s authorized keys)')
  .argument('<name>', 'file name without extension')
  .addHelpText(
    'after',
    '\nExample:\n  dquery keygen node17 && echo "$(grep public-key node17.pub | cut -d\' \' -f3) worker node17" >> authorized-keys',
  )
  .action((name: string) => {
    const pair = curveKeyPair();
    writeFileSync(`${name}.key`, formatKeyFile(pair), { mode: 0o600, flag: 'wx' });
    writeFileSync(`${name}.pub`, formatPublicKeyFile(pair.publicKey), { flag: 'wx' });
    console.log(`wrote ${name}.key (keep it secret) and ${name}.pub\npublic key: ${pair.publicKey}`);
  });

program.exitOverride();
program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
for (const command of program.commands) command.exitOverride();

try {
  await program.parseAsync();
} catch (err) {
  process.exitCode = exitFor(err);
} finally {
  client?.close();
}

function exitFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version end through here too, with code 0.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof UsageError) {
    complain(err.message);
    return EXIT.usage;
  }
  if (err instanceof DagworkError) {
    complain(`${err.code}: ${err.message}`);
  } else if (err instanceof HubUnreachableError) {
    const o = globalOptions();
    // A CURVE hub never answers a plain client: its handshake fails, which looks like silence.
    const hint =
      o.curveServerKey === undefined && o.curveKey === undefined
        ? ' If it uses CURVE (dhub --curve-secret), give --curve-server-key and --curve-key (or DAGWORK_CURVE_SERVER_KEY and DAGWORK_CURVE_KEY).'
        : '';
    complain(`${err.message}${hint}`);
  } else {
    // Expected failures get their message; anything else is a bug, shown with its stack.
    const expected = (err as Error).name === 'TaskFileError' || ['ENOENT', 'EEXIST', 'EACCES', 'EISDIR'].includes((err as { code?: string }).code ?? '');
    complain(expected ? (err as Error).message : ((err as Error)?.stack ?? String(err)));
  }
  return EXIT.error;
}

