#!/usr/bin/env node
/** dworker: the ready-made worker. Runs each task's payload as a shell command. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { durationArg, hubArg, parseHubEndpoints, positiveArg } from '../../proto/src/args.js';
import type { Status } from '../../proto/src/types.js';
import { DEFAULT_DEPS_MAX_BYTES, DEFAULT_MAX_OUTPUT_BYTES, shellHandler, type RunTracker } from './shell.js';
import { Client, curveOptions } from './client.js';
import { runWorker, type WorkerSummary } from './worker.js';
import { DEFAULT_CACHE_MAX_BYTES, defaultCacheDir, FileCache } from './cache.js';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** What dworker moved of tasks' files: fetched into the cache (and bytes), cache hits, outputs uploaded (and bytes sent). */
export interface FileCounts {
  fetched: number;
  fetchedBytes: number;
  hits: number;
  uploaded: number;
  uploadedBytes: number;
}

/** 1234567 -> "1.2 MiB"; under 1 KiB, "512 B". */
export function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The end-of-run line; files are said only when some were moved (a run without files reads as before). */
export function summaryLine(s: WorkerSummary, files?: FileCounts): string {
  const line = `dworker ${s.worker}: ${s.reason}: ${s.done} done, ${s.failed} failed, ${s.lost} lost, ${s.released} released in ${seconds(s.elapsedMs)} (busy ${seconds(s.busyMs)})`;
  if (files === undefined || files.fetched + files.hits + files.uploaded === 0) return line;
  return `${line}; files: ${files.fetched} fetched (${bytesText(files.fetchedBytes)}), ${files.hits} cache hits, ${files.uploaded} uploaded (${bytesText(files.uploadedBytes)} sent)`;
}

/** `10G`, `512MiB`, `1e9`, `1048576`: a size in bytes (K, M, G, T are powers of 1024). */
function sizeArg(value: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?$/i.exec(value.trim());
  const scale = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 } as const;
  const n = m === null ? NaN : Number(m[1]) * (m[2] === undefined ? 1 : scale[m[2].toUpperCase() as keyof typeof scale]);
  if (!Number.isFinite(n) || n < 1 || n > Number.MAX_SAFE_INTEGER) throw new InvalidArgumentError(`"${value}": expected a size in bytes, e.g. 10G, 500M, 1048576`);
  return Math.floor(n);
}

/**
 * Exit statuses, so that a batch script can tell how the run went:
 * 0  it stopped as asked (the pools finished, --max-time, --max-tasks, --idle-timeout, no task
 *    came, a signal), the hub heard from it to the end, and if the pools finished, none of
 *    their tasks is failed, blocked or cancelled;
 * 1  the hub did not answer its last requests (unreachable at the end: results, releases or the
 *    exit may not have reached it), or another error;
 * 2  bad usage: a bad option or value, a --scratch where scratch directories cannot be made;
 * 3  the pools finished, but some of their tasks are failed, blocked or cancelled.
 */
const EXIT = { ok: 0, error: 1, usage: 2, tasksFailed: 3 } as const;
const USAGE = EXIT.usage;
/** How long a stopping worker waits when no task has come yet, unless --idle-timeout says. */
const DEFAULT_WAIT_FOR_TASKS_MS = 60_000;

/** The version in dagwork's package.json (found above this module, in the sources or in dist). */
function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'dagwork' && pkg.version !== undefined) return pkg.version;
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

/** `42,43`: exit statuses (0 excluded) that fail a task permanently. */
function exitCodesArg(value: string): number[] {
  const codes = value.split(',').map((part) => part.trim());
  if (codes.some((c) => !/^\d+$/.test(c) || Number(c) < 1 || Number(c) > 255)) {
    throw new InvalidArgumentError(`"${value}": expected exit statuses from 1 to 255, separated by commas (e.g. 42,43)`);
  }
  return codes.map(Number);
}

/** Failed, blocked and cancelled tasks of `pools` (every pool when empty), from a status. */
function troubleIn(status: Status, pools: readonly string[]): { failed: number; blocked: number; cancelled: number } {
  const wanted = pools.map((p) => p || 'default');
  const out = { failed: 0, blocked: 0, cancelled: 0 };
  for (const p of status.pools) {
    if (wanted.length > 0 && !wanted.includes(p.pool)) continue;
    out.failed += p.counts.failed;
    out.blocked += p.counts.blocked;
    out.cancelled += p.counts.cancelled;
  }
  return out;
}

/** The first line of a failure reason: the exit status and the last line of stderr (see shellHandler). */
function failLine(message: string): string {
  return message.split('\n')[0] ?? '';
}

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
      'in a scratch directory of its own (removed afterwards) with TASK_NAME, TASK_ATTEMPT, TASK_SCRATCH, ' +
      'DAGWORK_WORKER, DAGWORK_HUB (and the CURVE settings given to dworker) set; stdout becomes the result, ' +
      'a non-zero exit fails the task with the ends of stderr and stdout as the reason.',
  )
  .version(version(), '-V, --version', 'print the version and exit')
  .option(
    '--hub <endpoints>',
    'hub endpoint, tcp://HOST:PORT, or several separated by commas: a hub and its standbys, the requests going to the one that answers (env DAGWORK_HUB; default tcp://127.0.0.1:6125)',
    hubArg,
  )
  .option('--worker <id>', 'worker identity (env DAGWORK_WORKER, else HOST-PID)', process.env.DAGWORK_WORKER || `${hostname()}-${process.pid}`)
  .option('--curve-server-key <key|file>', "the hub's CURVE public key, or its .pub file (env DAGWORK_CURVE_SERVER_KEY)", process.env.DAGWORK_CURVE_SERVER_KEY)
  .option('--curve-key <file>', "this worker's key pair file from dquery keygen (env DAGWORK_CURVE_KEY)", process.env.DAGWORK_CURVE_KEY)
  .option('--pool <pool...>', 'take tasks only from these pools (default: all)')
  .option('-c, --concurrency <n>', 'commands running at once', positiveArg, availableParallelism())
  .option('--task-timeout <duration>', 'kill a command (its whole process group) after this long: 90, 90s, 10m, 2h')
  .option('--permanent-exit-codes <list>', 'exit statuses that fail the task for good, no more attempts: 42,43', exitCodesArg)
  .option('--deps-results', "give each command its dependencies' results: one file per dependency in $DEPS_RESULTS_DIR")
  .option('--max-time <duration>', 'take no new task after this long (pilot jobs in a batch slot)')
  .option('--max-tasks <n>', 'take no more than this many tasks', positiveArg)
  .option('--idle-timeout <duration>', 'exit when there has been no work for this long (and wait this long for a first task; default 60 s for that)')
  .option('--no-exit-when-finished', 'keep waiting for work when the hub says everything is finished')
  .option('--grace <duration>', 'on SIGTERM/SIGINT, how long dworker may take to stop: commands finish, then are killed and released', '10s')
  .option('--keep-failed', "keep a failed command's scratch directory, with its output in dagwork.stdout and dagwork.stderr (the path is printed)")
  .option('--scratch <dir>', 'where scratch directories are made (default: the system temporary directory)')
  .option('--max-output-bytes <n>', 'stdout kept as the result; the rest is cut with a note', positiveArg, DEFAULT_MAX_OUTPUT_BYTES)
  .option('--cache <dir>', "where tasks' input files are kept by hash, shared by the dworkers that name it, over NFS too (default: $XDG_CACHE_HOME/dagwork, else ~/.cache/dagwork)")
  .option('--cache-max-bytes <size>', 'most bytes of files the cache keeps; the least recently used go first: 10G, 500M', sizeArg, DEFAULT_CACHE_MAX_BYTES)
  .option('-v, --verbose', 'print a line per task started, done or failed, and per input fetched')
  .addHelpText(
    'after',
    `
Exits by itself when the hub says all work in its pools is finished, or at --max-time / --max-tasks /
--idle-timeout, then prints a one-line summary. Started before any task exists (or with --pool naming
a pool that holds none), it waits for tasks up to --idle-timeout (default 60 s), saying which pools exist.

Files: before a command runs, its task's inputs are put into its scratch directory ($TASK_SCRATCH,
its working directory): fetched once into the cache (--cache) and copied from there (a reflink where
the file system has them; executables with mode 0755; a command may change its copy); param files
are written with their param's value; each param NAME is in the environment as PARAM_NAME. After
exit 0, each declared output must be a regular file in the scratch directory: it is uploaded and
named in the completion; a missing one fails the attempt: declared output "NAME" was not written.

Stopping: SIGTERM or Ctrl-C takes no new task and lets running commands finish; within --grace it
kills the rest (their whole process groups), releases their tasks (another worker takes them at
once) and tells the hub it left. A second Ctrl-C stops at once.

Exit status:
  0  stopped as asked, the hub heard from it to the end, and if its pools finished, none of their
     tasks is failed, blocked or cancelled
  1  the hub did not answer at the end (unreachable: results or releases may not have reached it),
     or another error
  2  bad usage: a bad option or value, or a --scratch where scratch directories cannot be made
  3  its pools finished, but some of their tasks are failed, blocked or cancelled (dquery status)

Examples:
  # where and what
  dworker --hub tcp://hub-node:6125 -c 16                       # one per node of the cluster
  dworker --hub tcp://hub-node:6125 --pool gpu -c 4             # only tasks of the pool gpu
  dworker --hub tcp://hub-a:6125,tcp://hub-b:6125               # a hub and its standby: requests go to
                                                                # the one that answers; tasks run on when it moves
  # pilot jobs in a batch slot
  sbatch --wrap "dworker --hub tcp://hub:6125 --max-time 3h50m --grace 20s"   # a 4-hour slot
  dworker --max-tasks 100 --idle-timeout 5m                     # leave after 100 tasks, or 5 idle minutes
  # commands
  dworker --task-timeout 30m --permanent-exit-codes 42          # exit 42: bad input, do not retry
  dworker --deps-results        # a command reads $DEPS_RESULTS_DIR/fetch-7 (names escaped: a/b -> a%2Fb)
  dworker --keep-failed --scratch /scratch/$USER                # look at failed runs afterwards
  # files and params (tasks with inputs, outputs, params, param files)
  dworker --cache /shared/nfs/dagwork-cache --cache-max-bytes 50G   # one cache for every node
    # a task { payload: './sim --t "$PARAM_temperature" < run.cfg > out.dat',
    #   params: { temperature: 300, config: 'steps = 1000' }, inputs: [sim, executable],
    #   paramFiles: [{ name: 'run.cfg', param: 'config' }], outputs: ['out.dat'] }
    # runs in $TASK_SCRATCH with ./sim (mode 0755), run.cfg holding "steps = 1000" and
    # PARAM_temperature=300, PARAM_config in its environment; out.dat is uploaded after it exits 0
    # (not there: the attempt fails) and named, with its hash, in the task's completion.
  # CURVE
  dworker --hub tcp://hub:6125 --curve-server-key hub.pub --curve-key node17.key`,
  )
  .action(async (o: Record<string, unknown>) => {
    const ms = (key: string): number | undefined => {
      try {
        return o[key] === undefined ? undefined : durationArg(String(o[key]));
      } catch (err) {
        return program.error(`dworker: --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${(err as Error).message}`, { exitCode: USAGE });
      }
    };
    let hub: string;
    try {
      hub = (o.hub as string | undefined) ?? parseHubEndpoints(process.env.DAGWORK_HUB || 'tcp://127.0.0.1:6125').join(',');
    } catch (err) {
      return program.error(`dworker: DAGWORK_HUB: ${(err as Error).message}`, { exitCode: USAGE });
    }
    const verbose = o.verbose === true;
    const say = (line: string): boolean => process.stderr.write(`${line}\n`);
    const maxTimeMs = ms('maxTime');
    const maxTasks = o.maxTasks as number | undefined;
    const idleTimeoutMs = ms('idleTimeout');
    const taskTimeoutMs = ms('taskTimeout');
    const graceMs = ms('grace') ?? 10_000;
    const pools = (o.pool as string[] | undefined) ?? [];
    if ((o.curveServerKey === undefined) !== (o.curveKey === undefined)) program.error('dworker: --curve-server-key and --curve-key go together', { exitCode: USAGE });
    const scratchRoot = o.scratch === undefined ? tmpdir() : String(o.scratch);
    await checkScratch(scratchRoot).catch((err: unknown) =>
      program.error(`dworker: cannot make scratch directories in ${scratchRoot}: ${(err as Error).message}`, { exitCode: USAGE }),
    );
    let curve: ReturnType<typeof curveOptions> | undefined;
    // Commands get the hub dworker talks to, and its CURVE settings (as absolute paths: they run elsewhere).
    const env: Record<string, string> = { DAGWORK_HUB: hub };
    if (o.curveServerKey !== undefined) {
      const serverKey = String(o.curveServerKey);
      const keyFile = String(o.curveKey);
      try {
        curve = curveOptions(serverKey, keyFile);
      } catch (err) {
        return program.error(`dworker: ${(err as Error).message}`, { exitCode: USAGE });
      }
      env.DAGWORK_CURVE_SERVER_KEY = existsSync(serverKey) ? resolve(serverKey) : serverKey;
      env.DAGWORK_CURVE_KEY = resolve(keyFile);
    }
    const cacheDir = o.cache === undefined ? defaultCacheDir() : resolve(String(o.cache));
    if (o.cache !== undefined) {
      await mkdir(cacheDir, { recursive: true }).catch((err: unknown) => program.error(`dworker: cannot use the cache directory ${cacheDir}: ${(err as Error).message}`, { exitCode: USAGE }));
    }
    const tracker = startReaper(say);
    const worker = String(o.worker);
    const lookups = o.depsResults === true ? new Client({ hub, worker, curve }) : undefined;
    // File transfers go on a socket of their own, so that they do not hold up steals and results.
    const fileOps = new Client({ hub, worker, curve });
    const cache = new FileCache(fileOps, { dir: cacheDir, maxBytes: o.cacheMaxBytes as number });
    const uploads = { files: 0, bytes: 0 };
    const run = runWorker({
      client: { curve },
      hub,
      worker,
      pools,
      concurrency: o.concurrency as number,
      graceMs,
      exitWhenFinished: o.exitWhenFinished !== false,
      waitForTasksMs: idleTimeoutMs ?? DEFAULT_WAIT_FOR_TASKS_MS,
      ...(maxTimeMs === undefined ? {} : { maxTimeMs }),
      ...(maxTasks === undefined ? {} : { maxTasks }),
      ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
      handler: shellHandler({
        keepFailed: o.keepFailed === true,
        maxOutputBytes: o.maxOutputBytes as number,
        ...(taskTimeoutMs === undefined ? {} : { timeoutMs: taskTimeoutMs }),
        permanentExitCodes: (o.permanentExitCodes as number[] | undefined) ?? [],
        env,
        ...(lookups === undefined ? {} : { depsResults: { lookup: (name: string) => lookups.lookup(name), maxBytes: DEFAULT_DEPS_MAX_BYTES } }),
        scratchRoot,
        tracker,
        onKept: (task, dir) => say(`dworker: kept the scratch directory of failed task ${task.name} (its output in dagwork.stdout, dagwork.stderr): ${dir}`),
        files: {
          ops: fileOps,
          cache,
          onInputs: (task, inputs) => {
            if (verbose) for (const i of inputs) say(`fetch ${task.name}: ${i.name} (${bytesText(i.size)}, ${i.sha256.slice(0, 12)}) ${i.fetched ? 'fetched from the hub' : 'from the cache'}`);
          },
          onOutputs: (task, outputs) => {
            uploads.files += outputs.length;
            for (const out of outputs) {
              uploads.bytes += out.sent;
              if (verbose) say(`put   ${task.name}: ${out.name} (${bytesText(out.size)}, ${out.sha256.slice(0, 12)}) ${out.sent > 0 ? `uploaded, ${bytesText(out.sent)} sent` : 'held by the hub already'}`);
            }
          },
          onRetry: (task, err, waitMs) => say(`dworker: files of ${task.name}: ${err.message}; trying again in ${seconds(waitMs)}`),
        },
      }),
    });
    let lastError = '';
    run.on('error', (err) => {
      if (err.message !== lastError) say(`dworker: ${err.message}`);
      lastError = err.message;
    });
    run.on('waiting', (message) => say(`dworker: ${message}${idleTimeoutMs === undefined ? ' (--idle-timeout)' : ''}`));
    run.on('lost', (task, outcome) => say(`dworker: lost the lease of ${task.name} (${outcome.outcome}); its command was stopped`));
    // The first signal says what happens; the second (runWorker stops at once on it) says so too.
    run.on('stopping', (reason, running, grace) => {
      if (reason !== 'signal') return;
      say(
        running === 0
          ? 'dworker: stopping (no command running)'
          : `dworker: stopping: waiting up to ${seconds(grace).replace('.0 s', ' s')} for ${running} running command${running === 1 ? '' : 's'}; Ctrl-C again to stop now`,
      );
    });
    let signals = 0;
    const again = (): void => {
      if (++signals === 2) say('dworker: stopping now: killing the running commands and releasing their tasks');
    };
    process.on('SIGINT', again);
    process.on('SIGTERM', again);
    if (verbose) {
      run.on('start', (task) => say(`start ${task.name} (attempt ${task.attempt})`));
      run.on('done', (task, took) => say(`done  ${task.name} in ${seconds(took)}`));
    }
    run.on('failed', (task, err) => say(`fail  ${task.name}: ${failLine(err.message)}`));
    const summary = await run.done;
    process.off('SIGINT', again);
    process.off('SIGTERM', again);
    lookups?.close();
    fileOps.close();
    const c = cache.stats;
    console.log(summaryLine(summary, { fetched: c.fetched, fetchedBytes: c.fetchedBytes, hits: c.hits, uploaded: uploads.files, uploadedBytes: uploads.bytes }));
    process.exitCode = await exitStatus(summary, { hub, worker, curve, pools, say });
  });

/** The exit status of a run that ended with `summary` (see EXIT); says why when it is not 0. */
async function exitStatus(
  summary: WorkerSummary,
  o: { hub: string; worker: string; curve: ReturnType<typeof curveOptions> | undefined; pools: readonly string[]; say: (line: string) => void },
): Promise<number> {
  if (summary.hubUnreachable) {
    o.say(`dworker: the hub at ${o.hub} did not answer at the end${summary.undelivered > 0 ? `: ${summary.undelivered} results undelivered (those tasks run again when their leases expire)` : ''}`);
    return EXIT.error;
  }
  if (summary.reason !== 'finished') return EXIT.ok;
  const client = new Client({ hub: o.hub, worker: o.worker, curve: o.curve, retries: 0 });
  try {
    const t = troubleIn(await client.status(), o.pools);
    if (t.failed + t.blocked + t.cancelled === 0) return EXIT.ok;
    const where = o.pools.length === 0 ? 'the pools' : `pool${o.pools.length > 1 ? 's' : ''} ${o.pools.join(', ')}`;
    o.say(`dworker: ${where} finished with ${t.failed} failed, ${t.blocked} blocked and ${t.cancelled} cancelled tasks (dquery list --state failed --state blocked --state cancelled names them)`);
    return EXIT.tasksFailed;
  } catch (err) {
    o.say(`dworker: could not ask the hub how the pools finished: ${(err as Error).message}`);
    return EXIT.error;
  } finally {
    client.close();
  }
}

program.exitOverride();
try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with 0; a bad option was printed by commander already.
    process.exit(err.exitCode === 0 ? EXIT.ok : USAGE);
  }
  process.stderr.write(`dworker: ${(err as Error).message}\n`);
  process.exitCode = EXIT.error;
}
