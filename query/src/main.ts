#!/usr/bin/env node
/** dquery: the dagwork command line. Every command is one or a few requests to the hub. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { hubArg, parseHubEndpoints, positiveArg } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { Client, curveOptions, defaultClientOptions, HubUnreachableError } from '../../worker-kit/src/client.js';
import { MODULE_OF, REGISTER } from './command-modules.js';
import { complain, EXIT, UsageError } from './io.js';

/** What the commands need of the program: the hub, and how it was named. */
export interface Context {
  /** The hub's client, made on first use. `interactive`: a command a person waits for (status, lookup), given a shorter wait. */
  hub(options?: { interactive?: boolean }): Client;
  /** The hub's endpoint, or its endpoints separated by commas, as checked. */
  endpoint(): string;
  /** Says what `err` is on stderr and returns the exit status for it. */
  fail(err: unknown): number;
}

/** Reply timeouts (ms) and resends, by kind of command, when --timeout is not given. */
const WAIT = {
  /** Scripts and workers: a hub that is busy writing a big batch still answers. */
  default: { timeoutMs: defaultClientOptions().timeoutMs, retries: 2 },
  /** status and lookup: a person is waiting; they can run it again. */
  interactive: { timeoutMs: 2000, retries: 1 },
} as const;

/** Shown in `dquery --help` and in README (test/readme.test.ts checks they are the same, and runs it under sh). */
export const SHELL_LOOP = `export DAGWORK_WORKER="$(hostname)-$$"   # one id per loop: two loops must not share one
tab=$(printf '\\t'); err=$(mktemp)
task=$(dquery steal -0 --wait 10000); rc=$?
while :; do
  if [ $rc -eq 3 ]; then            # nothing ready within 10 s: ask again
    task=$(dquery steal -0 --wait 10000); rc=$?; continue
  fi
  [ $rc -ne 0 ] && break            # 4: all work is finished (a pilot job ends); 1, 2: an error, said on stderr
  name=\${task%%"$tab"*}; cmd=\${task#*"$tab"}
  if out=$(sh -c "$cmd" 2>"$err"); then   # done, and the next task in the same request
    task=$(printf '%s' "$out" | dquery complete "$name" --result - --next -0 --wait 10000); rc=$?
  else
    rc=$?; dquery fail "$name" --reason "exit $rc: $(tail -c 1000 "$err")"
    task=$(dquery steal -0 --wait 10000); rc=$?
  fi
done
rm -f "$err"`;

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

/** The version in dagwork's package.json, found above this file (in the sources or in dist/). */
function version(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    const path = join(dir, 'package.json');
    if (!existsSync(path)) continue;
    const pkg = JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'dagwork' && pkg.version !== undefined) return pkg.version;
  }
  return 'unknown';
}

const env = defaultClientOptions();
const program = new Command('dquery')
  .description('Talk to a dagwork hub (dhub): add tasks, take and finish them from scripts, watch progress.')
  .version(version(), '-V, --version', 'print the version')
  .option(
    '--hub <endpoints>',
    'hub endpoint, tcp://HOST:PORT, or several separated by commas (a hub and its standbys: a request goes on to the next when one answers STANDBY, does not reply or refuses the connection) (env DAGWORK_HUB)',
    hubArg,
    env.hub,
  )
  .option('--worker <id>', 'worker identity for steal/complete/... (env DAGWORK_WORKER, else the host name)', env.worker)
  .option(
    '--timeout <ms>',
    `how long to wait for each reply before sending the request again (default ${WAIT.default.timeoutMs}, sent ${WAIT.default.retries + 1} times; ` +
      `status and lookup: ${WAIT.interactive.timeoutMs}, sent ${WAIT.interactive.retries + 1} times). A tcp:// endpoint where nothing listens is reported within about a second. ` +
      `With several --hub endpoints a request goes on to the next endpoint instead (also on an answer STANDBY), until the time of those tries (timeout × tries) has passed`,
    positiveArg,
  )
  .option('--curve-server-key <key|file>', "the hub's CURVE public key, or its .pub file (env DAGWORK_CURVE_SERVER_KEY)", process.env.DAGWORK_CURVE_SERVER_KEY)
  .option('--curve-key <file>', "this client's key pair file from dquery keygen (env DAGWORK_CURVE_KEY)", process.env.DAGWORK_CURVE_KEY)
  .showHelpAfterError('(add --help for usage)')
  .addHelpText(
    'after',
    `
Exit status: 0 ok; 1 error (message on stderr); 2 bad usage (a bad option or value);
  steal and complete --next: 3 nothing ready now (try again later), 4 all work is finished;
  status --watch: 3 finished, but not every task is done (failed, blocked, cancelled,
  or waiting on names that don't exist); addfile: 130 interrupted (Ctrl-C).

Example, a worker in plain sh (with DAGWORK_HUB set):
${SHELL_LOOP.replace(/^/gm, '  ')}`,
  );

/** The command word of `args`: the first that is neither a global option nor an option's value. */
function commandWord(program: Command, args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') return undefined;
    if (!arg.startsWith('-')) return arg;
    const option = program.options.find((o) => o.long === arg || o.short === arg);
    if (option?.required === true) i++; // --hub tcp://...: its value is not the command
  }
  return undefined;
}

/** The endpoints in `value`, joined by commas, or UsageError saying where it came from and what to write instead. */
export function hubEndpoint(value: string, fromEnv: boolean): string {
  try {
    return parseHubEndpoints(value).join(',');
  } catch (err) {
    throw new UsageError(`${fromEnv ? 'DAGWORK_HUB' : '--hub'}: ${(err as Error).message}`);
  }
}

let opened: Client | undefined;
const globalOptions = (): { hub: string; worker: string; timeout?: number; curveServerKey?: string; curveKey?: string } => program.opts();

const context: Context = {
  endpoint() {
    const o = globalOptions();
    const fromEnv = program.getOptionValueSource('hub') !== 'cli' && process.env.DAGWORK_HUB !== undefined && process.env.DAGWORK_HUB !== '';
    return hubEndpoint(o.hub, fromEnv);
  },
  hub(options = {}) {
    if (opened !== undefined) return opened;
    const o = globalOptions();
    const endpoint = context.endpoint();
    if ((o.curveServerKey === undefined) !== (o.curveKey === undefined)) throw new UsageError('--curve-server-key and --curve-key go together');
    const curve = o.curveServerKey === undefined || o.curveKey === undefined ? undefined : curveOptions(o.curveServerKey, o.curveKey);
    const wait = options.interactive === true ? WAIT.interactive : WAIT.default;
    opened = new Client({ hub: endpoint, worker: o.worker, timeoutMs: o.timeout ?? wait.timeoutMs, retries: wait.retries, curve });
    return opened;
  },
  fail: (err) => exitFor(err),
};

// Each command's module is loaded only when that command runs (all of them for --help, or a word
// that is no command): a shell loop starts dquery once a task, and loading every command's code
// (task files, sweeps, reports, launch) would be most of its start.
const word = commandWord(program, process.argv.slice(2));
const only = word !== undefined && Object.hasOwn(MODULE_OF, word) ? MODULE_OF[word] : undefined;
const wanted = only !== undefined ? [only] : (Object.keys(REGISTER) as (keyof typeof REGISTER)[]);
for (const register of await Promise.all(wanted.map((m) => REGISTER[m]()))) register(program, context);
// --help lists commands in this order: adding work, doing it, watching it, collecting it.
const ORDER = ['create', 'addfile', 'sweep', 'steal', 'complete', 'fail', 'heartbeat', 'release', 'exit', 'retry', 'cancel', 'rerun', 'replace', 'delete', 'status', 'workers', 'list', 'lookup', 'graph', 'collect', 'report', 'gc', 'pool', 'launch', 'keygen'];
(program.commands as Command[]).sort((a, b) => ORDER.indexOf(a.name()) - ORDER.indexOf(b.name()));

program.exitOverride();
program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
for (const command of program.commands) command.exitOverride();

try {
  await program.parseAsync();
} catch (err) {
  process.exitCode = exitFor(err);
} finally {
  opened?.close();
}

/** The exit status for `err`, said on stderr. */
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
    // (A refused connection is no such hub: nothing listens there.)
    const hint =
      !err.refused && !err.standby && o.curveServerKey === undefined && o.curveKey === undefined
        ? ' If it uses CURVE (dhub --curve-secret), give --curve-server-key and --curve-key (or DAGWORK_CURVE_SERVER_KEY and DAGWORK_CURVE_KEY).'
        : '';
    complain(`${err.message}${hint}`);
  } else {
    // Expected failures get their message; anything else is a bug, shown with its stack.
    const expected =
      ['TaskFileError', 'MissingDepsError', 'FileChangedError', 'TemplateError', 'SweepError'].includes((err as Error).name) || ['ENOENT', 'EEXIST', 'EACCES', 'EISDIR'].includes((err as { code?: string }).code ?? '');
    complain(expected ? (err as Error).message : ((err as Error)?.stack ?? String(err)));
  }
  return EXIT.error;
}
