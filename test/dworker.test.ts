/** dworker against the real dhub: commands that outlive their shell, scratch directories, its own death. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, type TaskRecord } from '../worker-kit/src/index.js';
import { cleanTempDirs, ROOT, startHub, tempDir, type RunningHub } from './helpers.js';

const started: ChildProcess[] = [];
afterAll(() => {
  // A dworker a failed test left behind (it would retry an absent hub for ever).
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  cleanTempDirs();
});

const DWORKER = join(ROOT, 'dist/worker-kit/src/dworker.js');
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** True while `pid` runs (a zombie waiting for its parent does not count). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it holds; false if it still does not after `ms`. */
async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await pause(50);
  }
  return check();
}

async function stateWithin(client: Client, name: string, check: (t: TaskRecord) => boolean, ms: number): Promise<TaskRecord> {
  await eventually(async () => check((await client.lookup(name)).task), ms);
  return (await client.lookup(name)).task;
}

interface Dworker {
  proc: ChildProcess;
  stderr(): string;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** dworker with `args`; `env` adds to its environment (and so to its commands'). Killed after 60 s at most. */
function startDworker(hub: RunningHub, args: string[], env: NodeJS.ProcessEnv = {}): Dworker {
  const proc = spawn(process.execPath, [DWORKER, '--hub', hub.endpoint, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  started.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    proc.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { proc, exit, stderr: () => stderr };
}

async function withHub(args: string[], body: (hub: RunningHub, client: Client) => Promise<void>): Promise<void> {
  const hub = await startHub({ args });
  const client = new Client({ hub: hub.endpoint, worker: 'test' });
  try {
    await body(hub, client);
  } finally {
    client.close();
    await hub.stop();
  }
}

describe('dworker and commands whose children outlive them', () => {
  it('ends a run when its shell exits though a child that left the session holds the pipes, and kills that child', async () => {
    const pids = tempDir();
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'daemon', payload: Buffer.from(`setsid sh -c 'echo $$ > "$PIDS/daemon"; exec sleep 30' & while [ ! -s "$PIDS/daemon" ]; do sleep 0.05; done; echo started`) }]);
      const run = startDworker(hub, ['--worker', 'dw'], { PIDS: pids });
      const task = await stateWithin(client, 'daemon', (t) => t.state === 'done', 8_000);
      expect(task).toMatchObject({ state: 'done', attempts: 1 });
      expect(text(task.result)).toBe('started\n');
      const daemon = Number(readFileSync(join(pids, 'daemon'), 'utf8'));
      expect(await eventually(() => !alive(daemon), 3_000)).toBe(true);
      expect((await run.exit).code).toBe(0);
    });
  });

  it('kills a command run under GNU timeout (a process group of its own) at --task-timeout', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'wrapped', payload: Buffer.from('timeout 60 sleep 60'), maxAttempts: 1 }]);
      const started = Date.now();
      const run = startDworker(hub, ['--worker', 'dw', '--task-timeout', '500ms']);
      const task = await stateWithin(client, 'wrapped', (t) => t.state === 'failed', 8_000);
      expect(task).toMatchObject({ state: 'failed', lastError: 'timed out after 500 ms' });
      expect((await run.exit).code).toBe(3); // the pool finished with a failed task
      expect(Date.now() - started).toBeLessThan(10_000);
    });
  });
});

describe('dworker and its scratch directories', () => {
  it('exits at once with status 2 and a clear message when --scratch cannot hold scratch directories, taking no task', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'innocent' }]);
      const { code, stderr } = await startDworker(hub, ['--scratch', '/nonexistent/dagwork']).exit;
      expect(code).toBe(2);
      expect(stderr).toMatch(/^dworker: cannot make scratch directories in \/nonexistent\/dagwork: ENOENT/);
      expect((await client.lookup('innocent')).task).toMatchObject({ state: 'ready', attempts: 0 });
    });
  });

  it('releases a task whose scratch directory cannot be made, pauses, and runs it once it can', async () => {
    const scratch = join(tempDir(), 'scratch');
    mkdirSync(scratch);
    await withHub(['--retry-backoff-ms', '50'], async (hub, client) => {
      const run = startDworker(hub, ['--worker', 'dw', '--scratch', scratch, '--no-exit-when-finished']);
      expect(await eventually(async () => (await client.status()).workers.some((w) => w.worker === 'dw'), 8_000)).toBe(true);
      rmSync(scratch, { recursive: true }); // the disk went away under a running worker
      await client.create([{ name: 'job', payload: Buffer.from('echo ran') }]);
      expect(await eventually(() => /released it, taking no task for \d+ ms/.test(run.stderr()), 8_000)).toBe(true);
      expect((await client.lookup('job')).task).toMatchObject({ attempts: 0, lastError: '' });
      mkdirSync(scratch);
      const job = await stateWithin(client, 'job', (t) => t.state === 'done', 10_000);
      expect(job).toMatchObject({ state: 'done', attempts: 1 });
      expect(text(job.result)).toBe('ran\n');
      run.proc.kill('SIGTERM');
      expect((await run.exit).code).toBe(0);
    });
  });
});

describe('dworker killed with SIGKILL', () => {
  it('leaves neither its command running nor its scratch directory behind', async () => {
    const pids = tempDir();
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'long', payload: Buffer.from('echo "$TASK_SCRATCH" > "$PIDS/dir"; sleep 30 & echo $! > "$PIDS/sleep"; wait') }]);
      const run = startDworker(hub, ['--worker', 'doomed'], { PIDS: pids });
      expect(await eventually(() => existsSync(join(pids, 'sleep')) && readFileSync(join(pids, 'sleep'), 'utf8').endsWith('\n'), 8_000)).toBe(true);
      const sleep = Number(readFileSync(join(pids, 'sleep'), 'utf8'));
      const scratch = readFileSync(join(pids, 'dir'), 'utf8').trim();
      expect(alive(sleep)).toBe(true);
      run.proc.kill('SIGKILL');
      await run.exit;
      expect(await eventually(() => !alive(sleep), 5_000)).toBe(true);
      expect(await eventually(() => !existsSync(scratch), 5_000)).toBe(true);
    });
  });
});
