/** Processes of the benchmark: the real dhub, role processes, timed commands. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnHub, tempDir as sharedTempDir } from '../../test/support/proc.js';

export { cleanTempDirs, DQUERY, freePort } from '../../test/support/proc.js';

const ROLES = join(dirname(fileURLToPath(import.meta.url)), 'roles.js');

export const now = (): number => performance.timeOrigin + performance.now();

export function tempDir(): string {
  return sharedTempDir('dagwork-bench-');
}

/** Resident memory of a process now (VmRSS) and at its peak (VmHWM), in bytes, from /proc/PID/status. */
export interface Memory {
  rss: number;
  peak: number;
}

export function parseStatus(status: string): Memory {
  const kB = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (match === null) throw new Error(`no ${field} in /proc status`);
    return Number(match[1]) * 1024;
  };
  return { rss: kB('VmRSS'), peak: kB('VmHWM') };
}

export function memory(pid: number): Memory {
  return parseStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/**
 * Starts a new peak for `pid` (VmHWM back to VmRSS: `5` to /proc/PID/clear_refs, Linux 4.0+), so
 * that a later VmHWM is the peak since now; false where the kernel does not allow it.
 */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The clock ticks a second of /proc/PID/stat's times (USER_HZ: 100 on every Linux Node runs on). */
const TICKS_PER_SECOND = 100;

/** CPU time (user and system) of the process whose /proc/PID/stat this is, in ms. */
export function parseStatCpuMs(stat: string): number {
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('no utime/stime in /proc stat');
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

export function cpuMs(pid: number): number {
  return parseStatCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** The highest VmRSS of `pid`, read every `everyMs` until stopped (beside VmHWM, which the kernel keeps exactly). */
export function sampleRss(pid: number, everyMs = 50): { stop(): number } {
  let highest = 0;
  const read = (): void => {
    try {
      highest = Math.max(highest, memory(pid).rss);
    } catch {
      // The process ended: its highest reading stands.
    }
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      read();
      return highest;
    },
  };
}

export interface BenchHub {
  endpoint: string;
  db: string;
  pid: number;
  /** Resident memory of the hub process, in bytes. */
  rss(): number;
  /** Resolves with the hub's exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  /** Everything the hub wrote to stderr so far. */
  log(): string;
  /** SIGTERM, and its end (a clean stop: the hub writes its snapshot). */
  stop(): Promise<void>;
  /** SIGKILL, and its end: a crash. */
  kill(): Promise<void>;
}

/** Starts dhub on a free 127.0.0.1 port; resolves once it listens (bounded: `startMs`, 120 s unless given, for big stores). */
export async function startHub(options: { db?: string; sync?: boolean; args?: string[]; nodeArgs?: string[]; startMs?: number } = {}): Promise<BenchHub & { startedAt: number }> {
  const db = options.db ?? join(tempDir(), 'db');
  const startedAt = now();
  const args = ['--bind', 'tcp://127.0.0.1:*', '--db', db, '--log-level', 'info', ...(options.sync === true ? ['--sync'] : []), ...(options.args ?? [])];
  const { endpoint, proc, exited, log } = await spawnHub(args, options.startMs ?? 120_000, options.nodeArgs);
  const pid = proc.pid as number;
  return {
    endpoint,
    db,
    pid,
    startedAt,
    rss: () => memory(pid).rss,
    exited,
    log,
    stop: async () => {
      proc.kill('SIGTERM');
      // Bounded: a hub that has not ended its shutdown in 2 minutes is killed.
      const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
      await exited;
      clearTimeout(timer);
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs a role process (see roles.ts) to its end and returns the JSON it printed. */
export function role<T = Record<string, number>>(name: string, args: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ROLES, name, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`role ${name} exited with ${code}: ${err.trim()}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`role ${name} printed no figures: ${out}${err}`));
      }
    });
  });
}

/** Starts a role process that keeps running (echo server, latency worker); the caller ends it. */
export function spawnRole(name: string, args: object, ipc = false): { child: ChildProcess; firstLine: Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, [ROLES, name, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit', ...(ipc ? (['ipc'] as const) : [])] });
  const firstLine = new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const newline = out.indexOf('\n');
      if (newline >= 0) resolve(JSON.parse(out.slice(0, newline)) as Record<string, unknown>);
    });
    child.once('exit', (code) => reject(new Error(`role ${name} exited with ${code}`)));
  });
  firstLine.catch(() => undefined);
  return { child, firstLine };
}

/** Wall time of a command, in ms (bounded: 10 min). */
export function timed(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = now();
    const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${err.trim()}`));
      else resolve(now() - start);
    });
    child.stdin.end(options.input ?? '');
  });
}
