#!/usr/bin/env node
/** dworker: the ready-made worker. Runs each task's payload as a shell command. */
import { availableParallelism, hostname } from 'node:os';
import { Command } from 'commander';
import { durationArg, positiveArg } from '../../proto/src/args.js';
import { DEFAULT_MAX_OUTPUT_BYTES, shellHandler } from './shell.js';
import { curveOptions } from './client.js';
import { runWorker, type WorkerSummary } from './worker.js';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export function summaryLine(s: WorkerSummary): string {
  return `dworker ${s.worker}: ${s.reason}: ${s.done} done, ${s.failed} failed, ${s.lost} lost, ${s.released} released in ${seconds(s.elapsedMs)} (busy ${seconds(s.busyMs)})`;
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
then prints a one-line summary. Exit status 0, or 1 on a bad option or an unreachable hub at the end.

Examples:
  dworker --hub tcp://hub-node:6125 -c 16                 # one per node of the cluster
  sbatch --wrap "dworker --hub tcp://hub:6125 --max-time 3h50m"   # a pilot job in a 4-hour slot`,
  )
  .action(async (o: Record<string, unknown>) => {
    const ms = (key: string): number | undefined => (o[key] === undefined ? undefined : durationArg(String(o[key])));
    const verbose = o.verbose === true;
    const say = (line: string): boolean => process.stderr.write(`${line}\n`);
    const maxTimeMs = ms('maxTime');
    const maxTasks = o.maxTasks as number | undefined;
    const idleTimeoutMs = ms('idleTimeout');
    const taskTimeoutMs = ms('taskTimeout');
    if ((o.curveServerKey === undefined) !== (o.curveKey === undefined)) program.error('--curve-server-key and --curve-key go together');
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
        ...(o.scratch === undefined ? {} : { scratchRoot: String(o.scratch) }),
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

try {
  await program.parseAsync();
} catch (err) {
  process.stderr.write(`dworker: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
