/** dworker against the real dhub: commands that outlive their shell, scratch directories, its own death. */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, type TaskRecord } from '../worker-kit/src/index.js';
import { cleanTempDirs, startHub, tempDir, type RunningHub, withHub } from './helpers.js';
import { eventually, killDworkers, pause, spawnDworker, stateWithin, type Dworker } from './support/dworker.js';

afterAll(() => {
  killDworkers();
  cleanTempDirs();
});

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

/** dworker on `hub` with `args`; `env` adds to its environment (and so to its commands'). */
function startDworker(hub: RunningHub, args: string[], env: NodeJS.ProcessEnv = {}): Dworker {
  return spawnDworker(['--hub', hub.endpoint, ...args], { env });
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
