/** dquery's commands on single tasks: create, retry, cancel, lookup, list, keygen (a worker's own are in worker-commands.ts). */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { curveKeyPair } from 'zeromq';
import { countArg, int32Arg, leaseArg } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { formatKeyFile, formatPublicKeyFile } from '../../proto/src/keys.js';
import { DEFAULT_POOL, defaultSpecLimits } from '../../proto/src/spec.js';
import { TASK_STATES, type TaskSpecInput, type TaskState } from '../../proto/src/types.js';
import { formatLookup, formatTaskList, lookupJson, summaryJson } from './format.js';
import { LocalFiles } from './files.js';
import { complain, EXIT, plural, reportResults, someNames, UsageError } from './io.js';
import { inputArg } from './sweep.js';
import type { Context } from './main.js';

/** The hub's defaults, for --help only: dquery sends zero and the hub fills them in. */
const SPEC_DEFAULTS = defaultSpecLimits();

const printJson = (value: unknown): void => console.log(JSON.stringify(value));

const JSON_HELP = 'print the outcome as one JSON object';

/** A repeatable option's values, each parsed. */
const collectArg = <T>(parse: (v: string) => T) => (value: string, previous: T[] = []): T[] => [...previous, parse(value)];

/** The options of one task's definition, shared by create and replace. */
export interface SpecOptions {
  cmd?: string;
  payload?: string;
  priority?: number;
  pool?: string;
  attempts?: number;
  lease?: number;
  after?: string[];
  afterEnded?: boolean;
  input?: { path: string; name: string | undefined }[];
  output?: string[];
}

/** Adds the options of a task's definition (create's, replace's) to `command`. */
export function specOptions(command: Command): Command {
  return command
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
    .option('--after <task...>', 'more dependencies, e.g. a sweep by its name (give them after NAME)')
    .option('--input <path[:name]>', "a local file for the task's scratch directory, as NAME (default: its base name; the run bit kept); uploaded first unless the hub holds it (repeatable)", collectArg(inputArg))
    .option('--output <name>', 'a file the task leaves in its scratch directory, uploaded when it is done (repeatable; dquery collect --dir fetches them)', collectArg((v) => v))
    .option('--after-ended', 'run once every dependency has ended, done or failed/cancelled/blocked, instead of being blocked by a failed one (lookup and list show which failed)');
}

/**
 * The definition the options give, its inputs found (not yet uploaded: `files` does that); throws
 * UsageError on options that do not go together.
 */
export function specFromOptions(name: string, deps: string[], o: SpecOptions, files: LocalFiles): TaskSpecInput {
  if (o.cmd !== undefined && o.payload !== undefined) throw new UsageError('give --cmd or --payload, not both');
  const text = o.cmd ?? o.payload;
  for (const i of o.input ?? []) files.ref(i.path, i.name ?? basename(i.path));
  return {
    name,
    deps: [...deps, ...(o.after ?? [])],
    ...(o.output === undefined ? {} : { outputs: o.output }),
    ...(o.priority === undefined ? {} : { priority: o.priority }),
    ...(o.pool === undefined ? {} : { pool: o.pool }),
    ...(o.attempts === undefined ? {} : { maxAttempts: o.attempts }),
    ...(o.lease === undefined ? {} : { leaseMs: o.lease }),
    ...(text === undefined ? {} : { payload: Buffer.from(text, 'utf8') }),
    ...(o.afterEnded === true ? { afterEnded: true } : {}),
  };
}

/** Uploads the spec's --input files (unless the hub holds them) and names them in the spec. */
export async function uploadInputs(spec: TaskSpecInput, o: SpecOptions, files: LocalFiles, ctx: Context): Promise<void> {
  if (o.input === undefined) return;
  await files.upload(ctx.hub());
  spec.inputs = o.input.map((i) => files.ref(i.path, i.name ?? basename(i.path)));
}

export function registerCommands(program: Command, ctx: Context): void {
  specOptions(
    program
      .command('create')
      .description('create one task (re-creating an identical task is a no-op); warns when a dependency exists nowhere')
      .argument('<name>', 'task name')
      .argument('[deps...]', 'tasks that must be done first (they may be created later)'),
  )
    .option('--strict', 'refuse to create it, exit 1, when a dependency does not exist yet (checked with one lookup each)')
    .option('--json', JSON_HELP)
    .addHelpText(
      'after',
      `
A dependency that does not exist yet is allowed (the task waits until a task of that name is
created), and named on stderr: a typo would otherwise wait for ever. A missing --input file is an
error, and nothing is created; the program a task runs is an input like any other.

Examples:
  dquery create render-7 fetch-7 --cmd "./render 7" --priority 5 --lease 10m
  dquery create report --after runs.txt --cmd './report > report.pdf' --input ./report --output report.pdf
  dquery create summary run-1 run-2 run-3 --after-ended --cmd ./summarize   # runs even if a run failed`,
    )
    .action(
      async (name: string, given: string[], o: SpecOptions & { strict?: boolean; json?: boolean }) => {
        // Every input found before anything is sent; uploaded just before the create.
        const files = new LocalFiles();
        const spec = specFromOptions(name, given, o, files);
        const deps = spec.deps ?? [];
        if (o.strict === true) {
          const missing: string[] = [];
          for (const dep of new Set(deps)) {
            if (dep === name) continue; // the hub refuses that as a cycle, naming it
            try {
              await ctx.hub().lookup(dep);
            } catch (err) {
              if (!(err instanceof DagworkError) || err.code !== 'UNKNOWN_TASK') throw err;
              missing.push(dep);
            }
          }
          if (missing.length > 0) {
            complain(`${name} not created (--strict): ${plural(missing.length, 'dependency does', 'dependencies do')} not exist: ${someNames(missing, missing.length)}`);
            process.exitCode = EXIT.error;
            return;
          }
        }
        await uploadInputs(spec, o, files, ctx);
        const r = await ctx.hub().create([spec]);
        if (o.json === true) printJson({ name, created: r.created === 1, missingDeps: r.missingDeps, missingDepsTotal: r.missingDepsTotal });
        else console.log(r.created === 1 ? `created ${name}` : `${name} exists already, unchanged`);
        if (r.missingDepsTotal > 0) {
          complain(
            `warning: ${name} depends on ${plural(r.missingDepsTotal, 'task that does', 'tasks that do')} not exist: ${someNames(r.missingDeps, r.missingDepsTotal)}; ` +
              `it waits until ${r.missingDepsTotal === 1 ? 'a task of that name is' : 'tasks of those names are'} created`,
          );
        }
      },
    );

  program
    .command('retry')
    .description('put failed or cancelled tasks back to work with fresh attempts, unblocking what depends on them')
    .argument('[names...]', 'failed or cancelled tasks')
    .option('--failed', 'retry every failed task (not the cancelled ones: name those)')
    .option('--json', 'print {"retried", "results"}')
    .addHelpText('after', '\nExample:\n  dquery retry render-7 render-9    # or: dquery retry --failed')
    .action(async (names: string[], o: { failed?: boolean; json?: boolean }) => {
      if ((o.failed === true) === names.length > 0) throw new UsageError('give task names or --failed');
      const r = await ctx.hub().retry(o.failed === true ? 'all-failed' : names);
      if (o.json === true) printJson(r);
      else console.log(`retried ${plural(r.retried, 'task')}`);
      if (!reportResults(r.results, 'retry')) process.exitCode = EXIT.error;
    });

  program
    .command('cancel')
    .description('stop tasks for good: they become cancelled (a running one loses its lease, and its late result is refused) and what depends on them is blocked')
    .argument('<names...>')
    .option('--reason <text>', "kept as the tasks' last error", '')
    .option('--json', 'print {"cancelled", "results"}')
    .addHelpText('after', '\nExample:\n  dquery cancel render-7 --reason "wrong input"    # undo: dquery retry render-7')
    .action(async (names: string[], o: { reason: string; json?: boolean }) => {
      const r = await ctx.hub().cancel(names, o.reason);
      if (o.json === true) printJson(r);
      else console.log(`cancelled ${plural(r.cancelled, 'task')}`);
      if (!reportResults(r.results, 'cancel')) process.exitCode = EXIT.error;
    });

  program
    .command('lookup')
    .description("a task's whole record: state, deps (those that do not exist marked), payload, params, input and output files (hashes, sizes), result, last error, state log")
    .argument('<name>')
    .option('--json', 'print a JSON object (missingDeps: its dependencies that do not exist)')
    .addHelpText('after', '\nExample:\n  dquery lookup render-7 --json | jq -r .result')
    .action(async (name: string, o: { json?: boolean }) => {
      const found = await ctx.hub({ interactive: true }).lookup(name);
      console.log(o.json === true ? JSON.stringify(lookupJson(found), null, 2) : formatLookup(found));
    });

  program
    .command('list')
    .description('tasks matching a filter, in creation order: state, attempts, worker, last error; any number of them, a page at a time')
    .option('--state <state...>', `only tasks in these states (${TASK_STATES.join(', ')})`)
    .option('--pool <pool>', 'only tasks of this pool')
    .option('--prefix <text>', 'only tasks whose name starts with this')
    .option('--limit <n>', 'print at most N tasks', countArg)
    .option('--params', "show each task's parameters (a sweep's set): a column name=value ..., or params in JSON")
    .option('--deps', "with --json: each task's dependencies, as its definition names them (deps)")
    .option('--json', 'one JSON object a line: name, state, pool, attempts, worker, lastError, seq, resultBytes, createdAt, startedAt (0: never), changedAt (ms), barrier, failedDeps (how many dependencies are failed, cancelled or blocked: lookup names them), params with --params, and deps with --deps')
    .addHelpText(
      'after',
      '\nExamples:\n  dquery list --state failed              # which tasks failed, and why\n  dquery list --prefix render- --json | jq -r .name\n' +
        '  dquery list --prefix runs.txt/ --state failed --params    # which parameter sets failed',
    )
    .action(async (o: { state?: string[]; pool?: string; prefix?: string; limit?: number; params?: boolean; deps?: boolean; json?: boolean }) => {
      const states = (o.state ?? []).map((s) => s.toLowerCase());
      for (const s of states) if (!(TASK_STATES as readonly string[]).includes(s)) throw new UsageError(`--state ${s}: not a state (${TASK_STATES.join(', ')})`);
      if (o.deps === true && o.json !== true) throw new UsageError('--deps goes with --json (lookup NAME shows one task\'s deps)');
      const query = { states: states as TaskState[], pool: o.pool ?? '', prefix: o.prefix ?? '', withParams: o.params === true, withDeps: o.deps === true };
      let printed = 0;
      let after = 0;
      const hub = ctx.hub({ interactive: true });
      do {
        const left = o.limit === undefined ? undefined : o.limit - printed;
        const page = await hub.list({ ...query, after, ...(left === undefined ? {} : { limit: Math.min(left, 1000) }) });
        const tasks = left === undefined ? page.tasks : page.tasks.slice(0, left);
        // A task without deps decodes without the field: --deps says [] for it.
        if (o.json === true) for (const t of tasks) printJson(o.deps === true ? { ...summaryJson(t, o.params === true), deps: t.deps ?? [] } : summaryJson(t, o.params === true));
        else if (tasks.length > 0) console.log(formatTaskList(tasks, printed === 0, o.params === true));
        printed += tasks.length;
        after = page.next;
      } while (after !== 0 && (o.limit === undefined || printed < o.limit));
      if (o.json !== true && printed === 0) console.log('no task matches');
    });

  program
    .command('keygen')
    .description("write a CURVE key pair: NAME.key (secret: keep it so) and NAME.pub (for the hub's authorized keys)")
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
}

