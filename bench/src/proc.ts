/** Processes of the benchmark: the real dhub, role processes, timed commands. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '../../..');
export const DHUB = join(ROOT, 'dist/hub/src/main.js');
export const DQUERY = join(ROOT, 'dist/query/src/main.js');
const ROLES = join(HERE, 'roles.js');

export const now = (): number => performance.timeOrigin + performance.now();

const dirs: string[] = [];
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dagwork-bench-'));
  dirs.push(dir);
  return dir;
}
export function cleanTempDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export interface BenchHub {
  endpoint: string;
  db: string;
  pid: number;
  /** Resident memory of the hub process, in bytes. */
  rss(): number;
  stop(): Promise<void>;
}

/** Starts dhub on a free 127.0.0.1 port; resolves once it listens (bounded: 120 s for big stores). */
export async function startHub(options: { db?: string; sync?: boolean } = {}): Promise<BenchHub & { startedAt: number }> {
  const db = options.db ?? join(tempDir(), 'db');
  const startedAt = now();
  const proc = spawn(process.execPath, [DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db, '--log-level', 'info', ...(options.sync === true ? ['--sync'] : [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let log = '';
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dhub did not start:\n${log}`)), 120_000);
    proc.stderr?.on('data', (c: Buffer) => {
      log += c.toString();
      const match = /listening on (\S+)/.exec(log);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then(() => reject(new Error(`dhub exited:\n${log}`)));
  });
  const pid = proc.pid as number;
  return {
    endpoint,
    db,
    pid,
    startedAt,
    rss: () => {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return Number(match?.[1] ?? 0) * 1024;
    },
    stop: async () => {
      proc.kill('SIGTERM');
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

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
