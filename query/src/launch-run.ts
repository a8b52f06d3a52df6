/**
 * `dquery launch`, the processes: one ssh command per worker, a bounded number starting at once;
 * each one's exit status and the end of its stderr kept; every child killed on an abort, so none
 * outlives dquery.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Unit } from './launch.js';

/** How units are run. */
export interface RunOptions {
  /** Background starts: at most this many ssh commands at once. In the foreground all run at once. */
  parallel: number;
  /** Background starts: an ssh command still running after this long (ms) is killed and counts as failed. */
  startTimeoutMs: number;
  /** true (--wait): each session runs until its dworker exits; no time limit but the caller's abort. */
  foreground: boolean;
  /** Aborting kills every running ssh command (SIGTERM, then SIGKILL after KILL_AFTER_MS); units not begun are not begun. */
  signal: AbortSignal;
  /** Foreground: each line a session writes (stdout or stderr), for the caller to show. */
  onLine?: (unit: Unit, line: string) => void;
}

/** What became of one unit. */
export interface Outcome {
  host: string;
  worker: string;
  line: number;
  /** Background: started (the ssh command exited 0). Foreground: the session exited 0 or 3 (dworker's "tasks failed"). */
  ok: boolean;
  /** The ssh command's exit status; null when it was killed, or never ran. */
  code: number | null;
  signal: string | null;
  /** Why it is not ok (empty when ok): `exit 255: <end of stderr>`, `timed out after 60 s`, `not started: ...`. */
  reason: string;
}

/** The end of stderr kept for a reason: enough for ssh's message and dworker's last lines. */
export const STDERR_TAIL_BYTES = 2_000;
/** After SIGTERM, how long a child gets before SIGKILL (ms). */
export const KILL_AFTER_MS = 3_000;
/** A line longer than this (characters) is shown in pieces: a session's output is never held without bound. */
export const MAX_LINE_CHARS = 64 * 1024;
/** Foreground sessions at most: each holds an ssh process and its pipes. */
export const MAX_SESSIONS = 1_000;

/** Runs every unit to its end and returns their outcomes, in the units' order. */
export async function runUnits(units: readonly Unit[], o: RunOptions): Promise<Outcome[]> {
  if (o.foreground && units.length > MAX_SESSIONS) throw new RangeError(`--wait: ${units.length} sessions, over the limit of ${MAX_SESSIONS}`);
  const outcomes: Outcome[] = new Array<Outcome>(units.length);
  const width = o.foreground ? units.length : Math.max(1, Math.min(o.parallel, units.length));
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < units.length) {
      const i = next++;
      outcomes[i] = await runOne(units[i] as Unit, o);
    }
  };
  const lanes: Promise<void>[] = [];
  for (let k = 0; k < width; k++) lanes.push(lane());
  await Promise.all(lanes);
  return outcomes;
}

function runOne(unit: Unit, o: RunOptions): Promise<Outcome> {
  const base = { host: unit.host.target, worker: unit.worker, line: unit.host.line };
  if (o.signal.aborted) return Promise.resolve({ ...base, ok: false, code: null, signal: null, reason: 'not started: interrupted' });
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(unit.argv[0] as string, unit.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ ...base, ok: false, code: null, signal: null, reason: `cannot run ${unit.argv[0] as string}: ${(err as Error).message}` });
      return;
    }
    let tail = Buffer.alloc(0);
    const keep = (chunk: Buffer): void => {
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
    };
    const lines = (stream: NodeJS.ReadableStream | null, isStderr: boolean): void => {
      let partial = '';
      stream?.on('data', (chunk: Buffer) => {
        if (isStderr) keep(chunk);
        if (o.onLine === undefined) return;
        const parts = (partial + chunk.toString('utf8')).split('\n');
        partial = parts.pop() as string;
        if (partial.length > MAX_LINE_CHARS) {
          parts.push(partial.slice(0, MAX_LINE_CHARS));
          partial = partial.slice(MAX_LINE_CHARS);
        }
        for (const line of parts) o.onLine(unit, line);
      });
      stream?.on('end', () => {
        if (partial !== '' && o.onLine !== undefined) o.onLine(unit, partial);
      });
    };
    lines(child.stdout, false);
    lines(child.stderr, true);

    let why = '';
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: string): void => {
      if (why === '') why = reason;
      child.kill('SIGTERM');
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    };
    const onAbort = (): void => stop('interrupted');
    o.signal.addEventListener('abort', onAbort, { once: true });
    const startTimer = o.foreground ? undefined : setTimeout(() => stop(`timed out after ${o.startTimeoutMs / 1000} s`), o.startTimeoutMs);

    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    child.once('close', (code, signal) => {
      clearTimeout(startTimer);
      clearTimeout(killTimer);
      o.signal.removeEventListener('abort', onAbort);
      const end = tail.toString('utf8').trim();
      const ok = why === '' && spawnError === undefined && (code === 0 || (o.foreground && code === 3));
      let reason = '';
      if (spawnError !== undefined) reason = `cannot run ${unit.argv[0] as string}: ${spawnError.message}`;
      else if (!ok) reason = `${why !== '' ? `${why}: ` : ''}${signal !== null ? `killed by ${signal}` : `exit ${code ?? '?'}`}${end === '' ? '' : `: ${end}`}`;
      resolve({ ...base, ok, code, signal, reason });
    });
  });
}
