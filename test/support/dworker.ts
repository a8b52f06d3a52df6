/** dworker as the tests run it: the real bin, its output kept, killed if it outlives its test. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Client, TaskRecord } from '../../worker-kit/src/index.js';
import { ROOT } from './proc.js';

export const DWORKER = join(ROOT, 'dist/worker-kit/src/dworker.js');

export interface DworkerExit {
  code: number | null;
  stdout: string;
  stderr: string;
  /** ms from its start to its exit. */
  took: number;
}

export interface Dworker {
  proc: ChildProcess;
  stderr(): string;
  exit: Promise<DworkerExit>;
}

const started: ChildProcess[] = [];

/** dworker with `args`; `env` adds to its environment (and so to its commands'). Killed after `killAfterMs`. */
export function spawnDworker(args: string[], options: { env?: NodeJS.ProcessEnv; killAfterMs?: number } = {}): Dworker {
  const t0 = Date.now();
  const proc = spawn(process.execPath, [DWORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  started.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), options.killAfterMs ?? 60_000);
  const exit = new Promise<DworkerExit>((resolve) =>
    proc.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, took: Date.now() - t0 });
    }),
  );
  return { proc, exit, stderr: () => stderr };
}

/** Kills, by PID, every dworker a failed test left running (it would retry an absent hub for ever). */
export function killDworkers(): void {
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

export const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 50 ms until it holds; false if it still does not after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await pause(50);
  }
  return check();
}

/** The task's record once `check` holds of it, or as it is after `ms`. */
export async function stateWithin(client: Client, name: string, check: (t: TaskRecord) => boolean, ms: number): Promise<TaskRecord> {
  await eventually(async () => check((await client.lookup(name)).task), ms);
  return (await client.lookup(name)).task;
}
