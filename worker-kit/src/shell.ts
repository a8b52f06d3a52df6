/**
 * A handler that runs each task's payload as a shell command, as Wagon's proxy and Simple
 * Parallel Exec's client do: in a scratch directory of its own, in its own process group (so a
 * timeout or a lost lease kills everything it started), stdout kept as the result, the tail of
 * stderr as the failure reason.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LeasedTask } from '../../proto/src/types.js';
import type { Handler, TaskContext } from './worker.js';

export interface ShellOptions {
  /** Where each task's scratch directory is made. Default: the system's temporary directory. */
  scratchRoot?: string;
  /** Keep the scratch directory of a failed task, for a look afterwards. Default false. */
  keepFailed?: boolean;
  /** Per-task time limit (ms); the whole process group is killed when it is up. Default 0: none. */
  timeoutMs?: number;
  /** Most bytes of stdout kept as the result; the rest is cut, with a note. Default 1,048,000 (under the hub's default 1 MiB). */
  maxOutputBytes?: number;
  /** Bytes of the end of stderr kept as the failure reason. Default 4,096. */
  stderrTailBytes?: number;
  /** After SIGTERM, how long the process group has before SIGKILL (ms). Default 5,000. */
  killGraceMs?: number;
  /** Called with the scratch directory kept for a failed task. */
  onKept?: (task: LeasedTask, dir: string) => void;
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

export function shellHandler(options: ShellOptions = {}): Handler {
  const scratchRoot = options.scratchRoot ?? tmpdir();
  const maxOutput = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const killGraceMs = options.killGraceMs ?? 5_000;
  return async (task: LeasedTask, { signal, worker }: TaskContext): Promise<Uint8Array> => {
    const dir = await mkdtemp(join(scratchRoot, `dagwork-${task.name.replace(/[^\w.-]/g, '_').slice(0, 40)}-`));
    let failed = true;
    try {
      const output = await runIn(dir, task, worker, signal, { ...options, maxOutput, killGraceMs });
      failed = false;
      return output;
    } finally {
      if (failed && options.keepFailed === true) options.onKept?.(task, dir);
      else await rm(dir, { recursive: true, force: true });
    }
  };
}

function runIn(
  dir: string,
  task: LeasedTask,
  worker: string,
  signal: AbortSignal,
  options: ShellOptions & { maxOutput: number; killGraceMs: number },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const command = Buffer.from(task.payload).toString('utf8');
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: dir,
      detached: true, // its own process group: one kill reaches everything it started
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TASK_NAME: task.name, TASK_ATTEMPT: String(task.attempt), DAGWORK_WORKER: worker, TASK_SCRATCH: dir },
    });
    const stdout = new Head(options.maxOutput);
    const stderr = new Tail(options.stderrTailBytes ?? 4096);
    child.stdout.on('data', (c: Buffer) => stdout.add(c));
    child.stderr.on('data', (c: Buffer) => stderr.add(c));
    const killGroup = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // the group is gone already
      }
    };
    let why: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (reason: string): void => {
      if (why !== undefined) return;
      why = reason;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), options.killGraceMs);
    };
    const timeoutMs = options.timeoutMs ?? 0;
    const timer = timeoutMs > 0 ? setTimeout(() => terminate(`timed out after ${timeoutMs} ms`), timeoutMs) : undefined;
    const onAbort = (): void => terminate(`aborted: ${(signal.reason as Error | undefined)?.message ?? 'lease lost'}`);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    let exit: { code: number | null; sig: NodeJS.Signals | null } = { code: null, sig: null };
    child.once('exit', (code, sig) => {
      exit = { code, sig };
      // Whatever it left running in the background goes too.
      killGroup('SIGKILL');
    });
    child.once('error', (err) => reject(err));
    child.once('close', () => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      const tail = stderr.text();
      if (why !== undefined) return reject(new Error(`${why}${tail === '' ? '' : `; stderr: ${tail}`}`));
      if (exit.code !== 0) {
        const status = exit.code === null ? `killed by ${exit.sig}` : `exit ${exit.code}`;
        return reject(new Error(`${status}${tail === '' ? '' : `: ${tail}`}`));
      }
      let result = stdout.bytes();
      if (stdout.total > stdout.kept) {
        result = Buffer.concat([result, Buffer.from(`\n[dagwork: output cut: first ${stdout.kept} of ${stdout.total} bytes kept]\n`)]);
      }
      resolve(result);
    });
  });
}
