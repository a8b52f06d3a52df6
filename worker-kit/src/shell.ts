/**
 * A handler that runs each task's payload as a shell command, as Wagon's proxy and Simple
 * Parallel Exec's client do: in a scratch directory of its own, in a session and process group of
 * its own, stdout kept as the result, the tail of stderr as the failure reason.
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
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LeasedTask } from '../../proto/src/types.js';
import { killGroup, RUN_MARK, sweep } from './procs.js';
import { WorkerFault, type Handler, type TaskContext } from './worker.js';

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
  /** Bytes of the end of stderr kept as the failure reason. Default 4,096. */
  stderrTailBytes?: number;
  /** After SIGTERM, how long the command and what it started have before SIGKILL (ms). Default 5,000. */
  killGraceMs?: number;
  /** After the command's shell exits, how long its pipes are read before they are closed (ms). Default 1,000. */
  pipeGraceMs?: number;
  /** Called with the scratch directory kept for a failed task. */
  onKept?: (task: LeasedTask, dir: string) => void;
  /** Told of each run, so that it can clean up if this process dies (dworker's reaper). */
  tracker?: RunTracker;
}

export const DEFAULT_MAX_OUTPUT_BYTES = 1_048_000;

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

/** Keeps the last `limit` bytes of a stream. */
class Tail {
  private buffer = Buffer.alloc(0);
  constructor(private readonly limit: number) {}
  add(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > this.limit) this.buffer = this.buffer.subarray(this.buffer.length - this.limit);
  }
  text(): string {
    return this.buffer.toString('utf8').trim();
  }
}

type RunOptions = ShellOptions & { maxOutput: number; killGraceMs: number; pipeGraceMs: number };

export function shellHandler(options: ShellOptions = {}): Handler {
  const scratchRoot = options.scratchRoot ?? tmpdir();
  const run: RunOptions = { ...options, maxOutput: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES, killGraceMs: options.killGraceMs ?? 5_000, pipeGraceMs: options.pipeGraceMs ?? 1_000 };
  return async (task: LeasedTask, { signal, worker }: TaskContext): Promise<Uint8Array> => {
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
    try {
      const output = await runIn(id, dir, task, worker, signal, run);
      failed = false;
      return output;
    } finally {
      if (failed && options.keepFailed === true) options.onKept?.(task, dir);
      else await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      run.tracker?.ended(id);
    }
  };
}

function runIn(id: string, dir: string, task: LeasedTask, worker: string, signal: AbortSignal, options: RunOptions): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const command = Buffer.from(task.payload).toString('utf8');
    const mark = id;
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: dir,
      detached: true, // a session and process group of its own: one kill reaches everything it started
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TASK_NAME: task.name, TASK_ATTEMPT: String(task.attempt), DAGWORK_WORKER: worker, TASK_SCRATCH: dir, [RUN_MARK]: mark },
    });
    const pgid = child.pid;
    if (pgid !== undefined) options.tracker?.started(id, pgid, mark);
    const stdout = new Head(options.maxOutput);
    const stderr = new Tail(options.stderrTailBytes ?? 4096);
    child.stdout.on('data', (c: Buffer) => stdout.add(c));
    child.stderr.on('data', (c: Buffer) => stderr.add(c));
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
        const tail = stderr.text();
        if (why !== undefined) return reject(new Error(`${why}${tail === '' ? '' : `; stderr: ${tail}`}`));
        if (code !== 0) {
          const status = code === null ? `killed by ${sig}` : `exit ${code}`;
          return reject(new Error(`${status}${tail === '' ? '' : `: ${tail}`}`));
        }
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
