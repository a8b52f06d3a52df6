/**
 * A handler that runs each task's payload as a shell command, as Wagon's proxy and Simple
 * Parallel Exec's client do: in a scratch directory of its own, in a session and process group of
 * its own, stdout kept as the result, the tails of stderr and stdout as the failure reason.
 *
 * A run ends when the command's shell exits. Whatever it left behind is killed then: its process
 * group, its session, and every process carrying its run mark in its environment (a child that
 * daemonized with setsid, GNU timeout's own group). Output still in the pipes is read for
 * `pipeGraceMs`, then the pipes are closed, so a child that kept them open cannot hold the run.
 * On a timeout, a lost lease or a stop the same set is sent SIGTERM, then SIGKILL after `killGraceMs`
 * or as soon as the shell has exited.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileRef, LeasedTask, LookupResult } from '../../proto/src/types.js';
import type { FileCache } from './cache.js';
import type { FileOps } from './files.js';
import { killGroup, RUN_MARK, sweep } from './procs.js';
import { fetchInputs, paramEnv, uploadOutputs, type InputReport, type PreparedInputs, type UploadedOutput } from './task-files.js';
import { PermanentError, WorkerFault, type TaskContext } from './worker.js';

/** Who cleans up after this process if it dies (dworker's reaper): told each run's group and directory. */
export interface RunTracker {
  /** A run's scratch directory exists. */
  dir(id: string, dir: string): void;
  /** A run's command started: its process group (= session) and its mark. */
  started(id: string, pgid: number, mark: string): void;
  /** A run is over and cleaned up. */
  ended(id: string): void;
}

export interface ShellOptions {
  /** Where each task's scratch directory is made. Default: the system's temporary directory. */
  scratchRoot?: string;
  /** Keep the scratch directory of a failed task, for a look afterwards. Default false. */
  keepFailed?: boolean;
  /** Per-task time limit (ms); everything the command started is killed when it is up. Default 0: none. */
  timeoutMs?: number;
  /** Most bytes of stdout kept as the result; the rest is cut, with a note. Default 1,048,000 (under the hub's default 1 MiB). */
  maxOutputBytes?: number;
  /** Bytes of the end of stderr, and of stdout, kept in the failure reason. Default 4,096 each. */
  stderrTailBytes?: number;
  /** Exit statuses that fail the task permanently (no more attempts), as DAGMan's RETRY ... UNLESS-EXIT. Default none. */
  permanentExitCodes?: readonly number[];
  /** More environment for every command (dworker: DAGWORK_HUB and the CURVE settings it was given). */
  env?: Readonly<Record<string, string>>;
  /**
   * Give each command its dependencies' results: before it starts, the task's dependencies are
   * looked up (`lookup(name)` gives the spec's deps, `lookup(dep)` each result) and written one
   * file per dependency into `deps-results/` of the scratch directory, named by
   * `depFileName`; DEPS_RESULTS_DIR names that directory. Default: not done.
   */
  depsResults?: DepsResults;
  /** After SIGTERM, how long the command and what it started have before SIGKILL (ms). Default 5,000. */
  killGraceMs?: number;
  /** After the command's shell exits, how long its pipes are read before they are closed (ms). Default 1,000. */
  pipeGraceMs?: number;
  /** Called with the scratch directory kept for a failed task. */
  onKept?: (task: LeasedTask, dir: string) => void;
  /** Told of each run, so that it can clean up if this process dies (dworker's reaper). */
  tracker?: RunTracker;
  /** Input and output files of tasks (TaskSpec.inputs, .outputs): needed only by tasks that have them. */
  files?: ShellFiles;
}

/**
 * How a shell handler moves a task's files: its inputs are put into the scratch directory before
 * the command runs (through `cache`, when given), its declared outputs uploaded after it succeeded.
 */
export interface ShellFiles {
  /** The hub's file operations (a Client: best one of its own, so that transfers do not hold up steals). */
  ops: FileOps;
  cache?: FileCache;
  /** Hard-link non-executable inputs from the cache (see FetchOptions.link). */
  link?: boolean;
  /** Told what each task's inputs were: fetched now or from the cache. */
  onInputs?: (task: LeasedTask, inputs: readonly InputReport[]) => void;
  /** Told of each task's outputs once uploaded. */
  onOutputs?: (task: LeasedTask, outputs: readonly UploadedOutput[]) => void;
  /** Told when the hub is away and a transfer waits to be tried again. */
  onRetry?: (task: LeasedTask, error: Error, waitMs: number) => void;
}

/** A shell handler: a runWorker Handler that needs only the signal and the worker's name of its context. */
export type ShellHandler = (task: LeasedTask, context: Pick<TaskContext, 'signal' | 'worker'>) => Promise<Uint8Array | { result: Uint8Array; outputs: FileRef[] }>;

export const DEFAULT_MAX_OUTPUT_BYTES = 1_048_000;

/** What fetching dependencies' results needs: the hub's lookup (a Client has it), and a cap. */
export interface DepsResults {
  lookup(name: string): Promise<LookupResult>;
  /** Most bytes of results written for one task, all dependencies together. Default 64 MiB. */
  maxBytes?: number;
}

export const DEFAULT_DEPS_MAX_BYTES = 64 << 20;
/** Bytes of stderr kept for the `dagwork.stderr` file of a kept scratch directory (its end). */
const KEPT_STDERR_BYTES = 1 << 20;

/**
 * The file name of a dependency's result in DEPS_RESULTS_DIR: letters, digits, `-`, `_` and `.`
 * are kept, every other byte of its UTF-8 is `%XX` (as in a URL), and so is a leading `.` (no
 * hidden files, no `.` or `..`). `fetch/7 b` is `fetch%2F7%20b`. A name of 512 bytes may
 * give a file name over 255 bytes, which the file system refuses: the task then fails, saying so.
 */
export function depFileName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.-]/.test(c) && !(c === '.' && out === '') ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Collects the first `limit` bytes of a stream and counts the rest. */
class Head {
  private readonly chunks: Buffer[] = [];
  kept = 0;
  total = 0;
  constructor(private readonly limit: number) {}
  add(chunk: Buffer): void {
    this.total += chunk.length;
    const room = this.limit - this.kept;
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.length;
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Keeps the last `limit` bytes of a stream, and counts them all. */
class Tail {
  private buffer: Buffer = Buffer.alloc(0);
  total = 0;
  constructor(private readonly limit: number) {}
  add(chunk: Buffer): void {
    this.total += chunk.length;
    this.buffer = chunk.length >= this.limit ? chunk.subarray(chunk.length - this.limit) : Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > this.limit) this.buffer = this.buffer.subarray(this.buffer.length - this.limit);
  }
  bytes(): Buffer {
    return this.buffer;
  }
  text(): string {
    return this.buffer.toString('utf8').trim();
  }
  /** The last non-empty line, cut to `max` characters ('' when nothing came). */
  lastLine(max: number): string {
    const lines = this.text().split('\n');
    const last = (lines[lines.length - 1] ?? '').trim();
    return last.length > max ? `${last.slice(0, max)}...` : last;
  }
  /** `--- NAME (B bytes) ---` and the text, or `--- NAME (last B of T bytes) ---`; empty when nothing came. */
  section(name: string): string {
    const text = this.text();
    if (text === '') return '';
    const size = this.total > this.buffer.length ? `last ${this.buffer.length} of ${this.total} bytes` : `${this.total} bytes`;
    return `\n--- ${name} (${size}) ---\n${text}`;
  }
}

/** Output of a failed run, for its kept scratch directory. */
interface Outputs {
  stdout: Buffer;
  stderr: Buffer;
}

type RunOptions = ShellOptions & {
  maxOutput: number;
  killGraceMs: number;
  pipeGraceMs: number;
  /** With keepFailed: what the command printed, for dagwork.stdout and dagwork.stderr. */
  keep: Outputs | undefined;
  /** After a run that exited 0: the labelled ends of its stderr and stdout, for a failure found afterwards (a missing output). */
  printed: string | undefined;
};

export function shellHandler(options: ShellOptions = {}): ShellHandler {
  const scratchRoot = options.scratchRoot ?? tmpdir();
  const base = { ...options, maxOutput: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES, killGraceMs: options.killGraceMs ?? 5_000, pipeGraceMs: options.pipeGraceMs ?? 1_000 };
  return async (task, { signal, worker }) => {
    const run: RunOptions = { ...base, keep: undefined, printed: undefined };
    const id = randomUUID();
    let dir: string;
    try {
      dir = await mkdtemp(join(scratchRoot, `dagwork-${task.name.replace(/[^\w.-]/g, '_').slice(0, 40)}-`));
    } catch (err) {
      // No room, no such directory...: the worker's fault, not the task's.
      throw new WorkerFault(`cannot make a scratch directory in ${scratchRoot}: ${(err as Error).message}`, { cause: err });
    }
    run.tracker?.dir(id, dir);
    let failed = true;
    let inputs: PreparedInputs | undefined;
    try {
      const env: Record<string, string> = { ...options.env, ...paramEnv(task.params) };
      if (options.depsResults !== undefined) env.DEPS_RESULTS_DIR = await writeDepsResults(task, join(dir, 'deps-results'), options.depsResults, signal);
      inputs = await prepareFiles(task, dir, options.files, signal);
      const output = await runIn(id, dir, task, worker, signal, env, run);
      if (task.outputs.length === 0) {
        failed = false;
        return output;
      }
      const files = needFiles(options.files, task);
      const onRetry = files.onRetry;
      const outputs = await uploadOutputs(files.ops, dir, task.outputs, { signal, ...(onRetry === undefined ? {} : { onRetry: (err, ms) => onRetry(task, err, ms) }) }).catch(
        (err: unknown) => {
          // The command's own failure to leave an output: its reason shows what it printed, as a failed exit's does.
          if (err instanceof Error && err.constructor === Error) throw new Error(`${err.message}${run.printed ?? ''}`, { cause: err });
          throw err;
        },
      );
      files.onOutputs?.(task, outputs);
      failed = false;
      return { result: output, outputs: outputs.map(({ name, sha256, size, executable }) => ({ name, sha256, size, executable })) };
    } finally {
      inputs?.release();
      if (failed && options.keepFailed === true) {
        // What the command printed, beside what it left: its stdout as kept, the end of its stderr.
        if (run.keep !== undefined) {
          await keepOutput(join(dir, 'dagwork.stdout'), run.keep.stdout);
          await keepOutput(join(dir, 'dagwork.stderr'), run.keep.stderr);
        }
        options.onKept?.(task, dir);
      } else await removeScratch(dir);
      run.tracker?.ended(id);
    }
  };
}

/** Writes what a failed command printed into its scratch directory, never through a link it left there. */
async function keepOutput(path: string, data: Uint8Array): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
  await writeFile(path, data, { flag: 'wx' }).catch(() => undefined);
}

/**
 * Removes a scratch directory, also when the command left read-only directories in it (as `go mod
 * download` does): then every directory is made writable and the removal tried again.
 */
export async function removeScratch(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    await makeWritable(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o700);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(join(dir, entry.name)).catch(() => undefined);
  }
}

function needFiles(files: ShellFiles | undefined, task: LeasedTask): ShellFiles {
  // The worker was set up without file operations: it cannot run this task, another may.
  if (files === undefined) throw new WorkerFault(`task ${task.name} has input or output files, and this shell handler was given no file operations (ShellOptions.files)`);
  return files;
}

/** Puts the task's inputs and param files into `dir`; undefined when it has none. */
async function prepareFiles(task: LeasedTask, dir: string, files: ShellFiles | undefined, signal: AbortSignal): Promise<PreparedInputs | undefined> {
  if (task.inputs.length === 0 && task.paramFiles.length === 0) return undefined;
  // Param files alone need nothing of the hub.
  const f: Partial<ShellFiles> = task.inputs.length === 0 ? (files ?? {}) : needFiles(files, task);
  const onRetry = f.onRetry;
  const prepared = await fetchInputs(f.ops ?? NO_FILE_OPS, task, dir, {
    signal,
    ...(f.cache === undefined ? {} : { cache: f.cache }),
    ...(f.link === undefined ? {} : { link: f.link }),
    ...(onRetry === undefined ? {} : { onRetry: (err: Error, ms: number) => onRetry(task, err, ms) }),
  });
  f.onInputs?.(task, prepared.inputs);
  return prepared;
}

const refuse = (): never => {
  throw new TypeError('no file operations');
};
/** For a task with param files and no inputs: nothing is fetched. */
const NO_FILE_OPS: FileOps = { fileStat: refuse, filePut: refuse, fileGet: refuse, hubLimits: refuse };

/**
 * Writes the result of each dependency of `task` into `dir`; returns `dir`. A dependency that is
 * not done (retried or cancelled since) fails the attempt, naming it: the command would read a
 * result that is not there. Past the cap, a permanent failure: the same results would be over
 * it at every attempt.
 */
async function writeDepsResults(task: LeasedTask, dir: string, deps: DepsResults, signal: AbortSignal): Promise<string> {
  const cap = deps.maxBytes ?? DEFAULT_DEPS_MAX_BYTES;
  await mkdir(dir);
  const names = (await deps.lookup(task.name)).task.spec.deps;
  let total = 0;
  for (const dep of names) {
    if (signal.aborted) throw new Error('aborted while fetching the results of its dependencies');
    const { task: record } = await deps.lookup(dep);
    if (record.state !== 'done') throw new Error(`dependency ${dep} is ${record.state}, not done: its result cannot be given in DEPS_RESULTS_DIR`);
    total += record.result.length;
    if (total > cap) {
      throw new PermanentError(`the results of its dependencies are over ${cap} bytes (reached at ${dep}, of ${names.length} dependencies): not run; DEPS_RESULTS_DIR holds at most that much`);
    }
    await writeFile(join(dir, depFileName(dep)), record.result);
  }
  return dir;
}

function runIn(id: string, dir: string, task: LeasedTask, worker: string, signal: AbortSignal, extraEnv: Record<string, string>, options: RunOptions): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const command = Buffer.from(task.payload).toString('utf8');
    const mark = id;
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: dir,
      detached: true, // a session and process group of its own: one kill reaches everything it started
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...extraEnv, TASK_NAME: task.name, TASK_ATTEMPT: String(task.attempt), DAGWORK_WORKER: worker, TASK_SCRATCH: dir, [RUN_MARK]: mark },
    });
    const pgid = child.pid;
    if (pgid !== undefined) options.tracker?.started(id, pgid, mark);
    const stdout = new Head(options.maxOutput);
    const tailBytes = options.stderrTailBytes ?? 4096;
    const stderr = new Tail(tailBytes);
    const stdoutTail = new Tail(tailBytes);
    const keptStderr = options.keepFailed === true ? new Tail(KEPT_STDERR_BYTES) : undefined;
    child.stdout.on('data', (c: Buffer) => {
      stdout.add(c);
      stdoutTail.add(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr.add(c);
      keptStderr?.add(c);
    });
    // Everything the command started: its group, its session, whatever carries its mark.
    const killAll = async (sig: NodeJS.Signals): Promise<void> => {
      if (pgid === undefined) return;
      killGroup(pgid, sig);
      await sweep(pgid, mark, sig);
    };
    let settled = false;
    let why: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (reason: string): void => {
      if (why !== undefined || settled) return;
      why = reason;
      void killAll('SIGTERM');
      killTimer = setTimeout(() => void killAll('SIGKILL'), options.killGraceMs);
    };
    const timeoutMs = options.timeoutMs ?? 0;
    const timer = timeoutMs > 0 ? setTimeout(() => terminate(`timed out after ${timeoutMs} ms`), timeoutMs) : undefined;
    const onAbort = (): void => terminate(`aborted: ${(signal.reason as Error | undefined)?.message ?? 'lease lost'}`);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });

    const cleanUp = (): void => {
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
    };
    child.once('error', (err) => {
      // /bin/sh could not be started (no such file, no processes left...): the worker's fault.
      if (settled) return;
      cleanUp();
      child.stdout.destroy();
      child.stderr.destroy();
      reject(new WorkerFault(`cannot start /bin/sh: ${err.message}`, { cause: err }));
    });
    child.once('exit', (code, sig) => {
      if (settled) return;
      cleanUp();
      void (async () => {
        // The run is over when its shell exits. What it left behind goes; then the pipes are read
        // for a short grace (a child that left the session may still hold them) and closed.
        await killAll('SIGKILL');
        await drained([child.stdout, child.stderr], options.pipeGraceMs);
        if (why !== undefined || code !== 0) {
          // The reason says what ended it, then the ends of stderr and stdout, each labelled.
          const permanent = why === undefined && code !== null && options.permanentExitCodes?.includes(code) === true;
          const status = why ?? (code === null ? `killed by ${sig}` : `exit ${code}${permanent ? ' (a permanent exit status: no more attempts)' : ''}`);
          // Its first line also carries stderr's last line: what `dquery list` shows of a failure.
          const said = stderr.lastLine(200);
          const reason = `${status}${said === '' ? '' : `: ${said}`}${stderr.section('stderr')}${stdoutTail.section('stdout')}`;
          if (keptStderr !== undefined) options.keep = { stdout: stdout.bytes(), stderr: keptStderr.bytes() };
          return reject(permanent ? new PermanentError(reason) : new Error(reason));
        }
        options.printed = `${stderr.section('stderr')}${stdoutTail.section('stdout')}`;
        if (keptStderr !== undefined) options.keep = { stdout: stdout.bytes(), stderr: keptStderr.bytes() };
        let result = stdout.bytes();
        if (stdout.total > stdout.kept) {
          result = Buffer.concat([result, Buffer.from(`\n[dagwork: output cut: first ${stdout.kept} of ${stdout.total} bytes kept]\n`)]);
        }
        resolve(result);
      })().catch(reject);
    });
  });
}

/** Resolves when every stream has ended, or after `ms`, destroying the ones still open. */
function drained(streams: NodeJS.ReadableStream[], ms: number): Promise<void> {
  const open = streams.filter((s) => !(s as { readableEnded?: boolean }).readableEnded && !(s as { destroyed?: boolean }).destroyed);
  if (open.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let left = open.length;
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      for (const s of open) (s as unknown as { destroy(): void }).destroy();
      resolve();
    }
    for (const s of open) {
      let ended = false;
      const done = (): void => {
        if (ended) return;
        ended = true;
        if (--left === 0) finish();
      };
      s.once('end', done);
      s.once('close', done);
      s.once('error', done);
    }
  });
}
