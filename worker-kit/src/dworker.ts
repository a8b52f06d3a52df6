#!/usr/bin/env node
/** dworker: the ready-made worker. Runs each task's payload as a shell command. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { durationArg, positiveArg } from '../../proto/src/args.js';
import { DEFAULT_MAX_OUTPUT_BYTES, shellHandler, type RunTracker } from './shell.js';
import { curveOptions } from './client.js';
import { runWorker, type WorkerSummary } from './worker.js';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export function summaryLine(s: WorkerSummary): string {
  return `dworker ${s.worker}: ${s.reason}: ${s.done} done, ${s.failed} failed, ${s.lost} lost, ${s.released} released in ${seconds(s.elapsedMs)} (busy ${seconds(s.busyMs)})`;
}

/** Exit status of a bad option or a scratch directory that cannot be used (as dquery's bad usage). */
const USAGE = 2;

/**
 * Starts the reaper (reaper.ts): it kills the commands still running and removes their scratch
 * directories if this process dies without doing it. Returns the tracker that keeps it informed.
 */
function startReaper(say: (line: string) => void): RunTracker {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./reaper.js', import.meta.url))], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  const pipe = child.stdin as Socket;
  let broken = false;
  const lost = (why: string): void => {
    if (!broken) say(`dworker: the reaper is gone (${why}); commands of a killed dworker may outlive it`);
    broken = true;
  };
  child.once('error', (err) => lost(err.message));
  pipe.on('error', (err) => lost(err.message));
  child.once('exit', (code, sig) => lost(`exit ${code ?? sig}`));
  child.unref();
  pipe.unref(); // the pipe must not keep dworker alive; its end is what tells the reaper to act
  const send = (m: object): void => {
    if (!broken) pipe.write(`${JSON.stringify(m)}\n`);
  };
  return {
    dir: (id, dir) => send({ op: 'dir', id, dir }),
    started: (id, pgid, mark) => send({ op: 'started', id, pgid, mark }),
    ended: (id) => send({ op: 'ended', id }),
  };
}

/** Throws unless scratch directories can be made (and removed) in `root`. */
async function checkScratch(root: string): Promise<void> {
  const dir = await mkdtemp(join(root, 'dagwork-check-'));
  await rm(dir, { recursive: true, force: true });
}

const program = new Command('dworker')
  .description(
    "Run tasks' payloads as shell commands: steal, run, heartbeat, complete, in a loop. Each command runs " +
      'in a scratch directory of its own (removed afterwards) with TASK_NAME, TASK_ATTEMPT, TASK_SCRATCH and ' +
      'DAGWORK_WORKER set; stdout becomes the result, a non-zero exit fails the task with the end of stderr.',
  )
  .option('--hub <endpoint>', 'hub endpoint (env DAGWORK_HUB)', process.env.DAGWORK_HUB || 'tcp://127.0.0.1:6125')
  .option('--worker <id>', 'worker identity (env DAGWORK_WORKER, else HOST-PID)', process.env.DAGWORK_WORKER || `${hostname()}-${process.pid}`)
  .option('--curve-server-key <key|file>', "the hub's CURVE public key, or its .pub file (env DAGWORK_CURVE_SERVER_KEY)", process.env.DAGWORK_CURVE_SERVER_KEY)
  .option('--curve-key <file>', "this worker's key pair file from dquery keygen (env DAGWORK_CURVE_KEY)", process.env.DAGWORK_CURVE_KEY)
  .option('--pool <pool...>', 'take tasks only from these pools (default: all)')
  .option('-c, --concurrency <n>', 'commands running at once', positiveArg, availableParallelism())
  .option('--task-timeout <duration>', 'kill a command (its whole process group) after this long: 90, 90s, 10m, 2h')
  .option('--max-time <duration>', 'take no new task after this long (pilot jobs in a batch slot)')
  .option('--max-tasks <n>', 'take no more than this many tasks', positiveArg)
  .option('--idle-timeout <duration>', 'exit when there has been no work for this long')
  .option('--no-exit-when-finished', 'keep waiting for work when the hub says everything is finished')
  .option('--grace <duration>', 'on SIGTERM/SIGINT, how long running commands may finish before they are killed and released', '10s')
  .option('--keep-failed', "keep a failed command's scratch directory (its path is printed)")
  .option('--scratch <dir>', 'where scratch directories are made (default: the system temporary directory)')
  .option('--max-output-bytes <n>', 'stdout kept as the result; the rest is cut with a note', positiveArg, DEFAULT_MAX_OUTPUT_BYTES)
  .option('-v, --verbose', 'print a line per task started, done or failed')
  .addHelpText(
    'after',
    `
Exits by itself when the hub says all work is finished, or at --max-time / --max-tasks / --idle-timeout,
then prints a one-line summary. Exit status 0; 2 on a bad option or a --scratch directory where
scratch directories cannot be made; 1 on any other error.

Examples:
  dworker --hub tcp://hub-node:6125 -c 16                 # one per node of the cluster
  sbatch --wrap "dworker --hub tcp://hub:6125 --max-time 3h50m"   # a pilot job in a 4-hour slot`,
  )
  .action(async (o: Record<string, unknown>) => {
    const ms = (key: string): number | undefined => {
      try {
        return o[key] === undefined ? undefined : durationArg(String(o[key]));
      } catch (err) {
        return program.error(`dworker: --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${(err as Error).message}`, { exitCode: USAGE });
      }
    };
    const verbose = o.verbose === true;
    const say = (line: string): boolean => process.stderr.write(`${line}\n`);
    const maxTimeMs = ms('maxTime');
    const maxTasks = o.maxTasks as number | undefined;
    const idleTimeoutMs = ms('idleTimeout');
    const taskTimeoutMs = ms('taskTimeout');
    if ((o.curveServerKey === undefined) !== (o.curveKey === undefined)) program.error('--curve-server-key and --curve-key go together', { exitCode: USAGE });
    const scratchRoot = o.scratch === undefined ? tmpdir() : String(o.scratch);
    await checkScratch(scratchRoot).catch((err: unknown) =>
      program.error(`dworker: cannot make scratch directories in ${scratchRoot}: ${(err as Error).message}`, { exitCode: USAGE }),
    );
    const tracker = startReaper(say);
    const curve = o.curveServerKey === undefined ? undefined : curveOptions(String(o.curveServerKey), String(o.curveKey));
    const worker = runWorker({
      client: { curve },
      hub: String(o.hub),
      worker: String(o.worker),
      pools: (o.pool as string[] | undefined) ?? [],
      concurrency: o.concurrency as number,
      graceMs: ms('grace') ?? 10_000,
      exitWhenFinished: o.exitWhenFinished !== false,
      ...(maxTimeMs === undefined ? {} : { maxTimeMs }),
      ...(maxTasks === undefined ? {} : { maxTasks }),
      ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
      handler: shellHandler({
        keepFailed: o.keepFailed === true,
        maxOutputBytes: o.maxOutputBytes as number,
        ...(taskTimeoutMs === undefined ? {} : { timeoutMs: taskTimeoutMs }),
        scratchRoot,
        tracker,
        onKept: (task, dir) => say(`dworker: kept the scratch directory of failed task ${task.name}: ${dir}`),
      }),
    });
    let lastError = '';
    worker.on('error', (err) => {
      if (err.message !== lastError) say(`dworker: ${err.message}`);
      lastError = err.message;
    });
    worker.on('lost', (task, outcome) => say(`dworker: lost the lease of ${task.name} (${outcome.outcome}); its command was stopped`));
    if (verbose) {
      worker.on('start', (task) => say(`start ${task.name} (attempt ${task.attempt})`));
      worker.on('done', (task, took) => say(`done  ${task.name} in ${seconds(took)}`));
    }
    worker.on('failed', (task, err) => say(`fail  ${task.name}: ${err.message.split('\n')[0] ?? ''}`));
    const summary = await worker.done;
    console.log(summaryLine(summary));
  });

program.exitOverride();
try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with 0; a bad option was printed by commander already.
    process.exit(err.exitCode === 0 ? 0 : USAGE);
  }
  process.stderr.write(`dworker: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
