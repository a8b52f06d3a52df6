/** dquery against the real dhub, as a shell script would use it: one behaviour per test, each on a hub of its own. */
import { spawn } from 'node:child_process';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Store } from '../hub/src/store/store.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, dquery, ROOT, startHub, stencil, tempDir, type Run, type RunningHub } from './helpers.js';

afterAll(cleanTempDirs);

let hub: RunningHub;
beforeEach(async () => {
  hub = await startHub();
});
afterEach(async () => {
  await hub.stop();
});

/** Runs dquery for a test's setup: it must succeed. */
async function ok(args: string[], options: { input?: string; worker?: string } = {}): Promise<Run> {
  const run = await dquery(hub, args, options);
  expect(run.code, `dquery ${args.join(' ')}: ${run.stderr}`).toBe(0);
  return run;
}

async function statusJson(): Promise<{ counts: Record<string, number>; total: number }> {
  return JSON.parse((await ok(['status', '--json'])).stdout) as { counts: Record<string, number>; total: number };
}

async function lookupJson(name: string): Promise<{ state: string; attempts: number; result: string; lastError: string; log: unknown[] }> {
  return JSON.parse((await ok(['lookup', name, '--json'])).stdout) as { state: string; attempts: number; result: string; lastError: string; log: unknown[] };
}

const THREE = 'a\nb,a\n{"name":"c","deps":["b"],"cmd":"echo c","priority":1}\n';

/** Adds a, b (after a), c (after b, payload "echo c"), and runs them to done as test-worker, b with result "the result". */
async function runThree(): Promise<void> {
  await ok(['addfile', '-'], { input: THREE });
  for (const name of ['a', 'b', 'c']) {
    await ok(['steal', '-q']);
    await ok(['complete', name, ...(name === 'b' ? ['--result', '-'] : [])], name === 'b' ? { input: 'the result' } : {});
  }
}

describe('dquery addfile', () => {
  it('adds every task of a file and says how many', async () => {
    const file = join(tempDir(), 'tasks.txt');
    writeFileSync(file, THREE);
    expect(await dquery(hub, ['addfile', file])).toMatchObject({ code: 0, stdout: 'added 3 tasks\n' });
    expect((await statusJson()).counts).toEqual({ waiting: 2, ready: 1, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0, verifying: 0 });
  });

  it('adds the same file again without changing anything', async () => {
    await ok(['addfile', '-'], { input: THREE });
    expect(await dquery(hub, ['addfile', '-'], { input: THREE })).toMatchObject({ code: 0, stdout: 'added 0 tasks (3 were there already)\n' });
    expect((await statusJson()).total).toBe(3);
  });

  it('refuses a file with a bad line, naming the line, and adds none of it', async () => {
    const bad = await dquery(hub, ['addfile', '-'], { input: 'x\ny,x\nz,,y\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('dquery: line 3: empty name in "z,,y" (expected name,dep1,dep2,...)\n');
    expect((await statusJson()).total).toBe(0);
  });

  it('refuses a cycle, naming a line of it, and adds none of it', async () => {
    const cycle = await dquery(hub, ['addfile', '-'], { input: 'x,y\ny,x\n' });
    expect(cycle.code).toBe(1);
    expect(cycle.stderr).toMatch(/line \d: task "[xy]" would close a cycle/);
    expect((await statusJson()).total).toBe(0);
  });

  it('refuses a task that exists with a different definition, and adds none of the file', async () => {
    await ok(['addfile', '-'], { input: THREE });
    const conflict = await dquery(hub, ['addfile', '-'], { input: 'new\na,new\n' });
    expect(conflict).toMatchObject({ code: 1, stderr: 'dquery: line 2: CONFLICT: task "a" already exists with a different definition\n' });
    expect((await statusJson()).total).toBe(3);
  });
});

describe('dquery steal', () => {
  it('prints the names only with -q', async () => {
    await ok(['addfile', '-'], { input: THREE });
    expect(await dquery(hub, ['steal', '-q'])).toMatchObject({ code: 0, stdout: 'a\n' });
  });

  it('exits 3, printing nothing, when nothing is ready now', async () => {
    await ok(['addfile', '-'], { input: THREE });
    await ok(['steal', '-q']);
    expect(await dquery(hub, ['steal', '-q'])).toMatchObject({ code: 3, stdout: '' });
  });

  it('prints NAME<TAB>PAYLOAD a line', async () => {
    await ok(['create', 'b']);
    await ok(['create', 'c', '--cmd', 'echo c']);
    expect(await dquery(hub, ['steal', '-n', '2'])).toMatchObject({ code: 0, stdout: 'b\t\nc\techo c\n' });
  });

  it('prints one JSON object a line with --json', async () => {
    await ok(['create', 'c', '--cmd', 'echo c']);
    const stolen = JSON.parse((await ok(['steal', '--json'])).stdout) as { name: string; payload: string; attempt: number };
    expect(stolen).toMatchObject({ name: 'c', payload: 'echo c', attempt: 1 });
  });

  it('exits 4 and says so when all work is finished', async () => {
    await ok(['create', 'only']);
    await ok(['steal']);
    await ok(['complete', 'only']);
    expect(await dquery(hub, ['steal'])).toMatchObject({ code: 4, stderr: 'all work is finished\n' });
  });
});

describe('dquery complete', () => {
  it('keeps the result read from stdin', async () => {
    await ok(['create', 'b']);
    await ok(['steal']);
    expect((await dquery(hub, ['complete', 'b', '--result', '-'], { input: 'the result' })).code).toBe(0);
    expect(await lookupJson('b')).toMatchObject({ state: 'done', result: 'the result' });
  });

  it('refuses a task leased to another worker with exit 1, naming the holder', async () => {
    await ok(['create', 'c']);
    await ok(['steal']);
    const foreign = await dquery(hub, ['complete', 'c'], { worker: 'someone-else' });
    expect(foreign).toMatchObject({ code: 1, stderr: 'dquery: complete c: LEASED_TO_OTHER: leased to worker test-worker\n' });
    expect((await dquery(hub, ['complete', 'c'])).code).toBe(0);
  });
});

describe('dquery lookup', () => {
  it('prints the whole record as JSON, with its state log', async () => {
    await runThree();
    const b = await lookupJson('b');
    expect(b).toMatchObject({ state: 'done', result: 'the result' });
    expect(b.log).toHaveLength(4); // waiting, ready, running, done
  });

  it('prints a readable record', async () => {
    await runThree();
    const human = await ok(['lookup', 'c']);
    expect(human.stdout).toMatch(/^name: +c$/m);
    expect(human.stdout).toMatch(/^state: +done \(attempt 1 of 3\)$/m);
  });

  it('exits 1 with UNKNOWN_TASK for a task that does not exist', async () => {
    const missing = await dquery(hub, ['lookup', 'nope']);
    expect(missing).toMatchObject({ code: 1, stderr: 'dquery: UNKNOWN_TASK: no task named "nope"\n' });
  });
});

describe('dquery status', () => {
  it('prints totals, the share done and each worker', async () => {
    await runThree();
    const table = await ok(['status']);
    expect(table.stdout).toMatch(/^3 tasks, 3 done \(100\.0%\)/m);
    expect(table.stdout).toMatch(/^test-worker +0 +3 +0 /m);
  });

  it('--watch on a finished graph prints once and ends', async () => {
    await runThree();
    const watched = await dquery(hub, ['status', '--watch', '0.05']);
    expect(watched.code).toBe(0);
    expect(watched.stdout.match(/^3 tasks, 3 done/gm)).toHaveLength(1);
  });

  it('--watch that is not a number of seconds is bad usage (exit 2)', async () => {
    expect((await dquery(hub, ['status', '--watch', 'often'])).code).toBe(2);
  });

  it('--watch follows a run until it is finished', async () => {
    await ok(['create', 'only']);
    const watching = dquery(hub, ['status', '--watch', '0.05']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await ok(['steal']);
    await ok(['complete', 'only']);
    const { code, stdout } = await watching;
    expect(code).toBe(0);
    const headers = stdout.match(/^\d+ tasks?, .*$/gm) ?? [];
    expect(headers[0]).toMatch(/^1 task, 0 done \(0\.0%\)/);
    expect(headers[headers.length - 1]).toMatch(/^1 task, 1 done \(100\.0%\)/);
  });
});

describe('dquery fail, heartbeat, retry, release, exit, cancel', () => {
  /** f (one attempt, "false"), after (depends on f), r (priority -1); f is stolen by test-worker. */
  async function holdF(): Promise<void> {
    await ok(['create', 'f', '--cmd', 'false', '--attempts', '1']);
    await ok(['create', 'after', 'f']);
    await ok(['create', 'r', '--priority', '-1']);
    expect((await ok(['steal', '-q'])).stdout).toBe('f\n');
  }

  it('heartbeat of a task this worker holds prints nothing and exits 0', async () => {
    await holdF();
    expect(await dquery(hub, ['heartbeat', 'f'])).toMatchObject({ code: 0, stdout: '' });
  });

  it('fail with the last attempt used fails the task for good and blocks its dependents', async () => {
    await holdF();
    const failed = await dquery(hub, ['fail', 'f', '--reason', 'exit 1']);
    expect(failed).toMatchObject({ code: 0, stdout: 'f failed for good\n' });
    expect((await ok(['lookup', 'after', '--json'])).stdout).toMatch(/"state": "blocked"/);
  });

  it('heartbeat of a task no longer held lists it as lost and exits 1', async () => {
    await holdF();
    await ok(['fail', 'f', '--reason', 'exit 1']);
    const lost = await dquery(hub, ['heartbeat', 'f']);
    expect(lost).toMatchObject({ code: 1, stdout: 'lost f: TASK_FAILED: exit 1\n' });
  });

  it('retry --failed brings failed tasks back and unblocks their dependents', async () => {
    await holdF();
    await ok(['fail', 'f', '--reason', 'exit 1']);
    expect(await dquery(hub, ['retry', '--failed'])).toMatchObject({ code: 0, stdout: 'retried 1 task\n' });
    expect((await ok(['lookup', 'after', '--json'])).stdout).toMatch(/"state": "waiting"/);
    expect((await ok(['steal', '-n', '5', '-q'])).stdout).toBe('f\nr\n');
  });

  it('release gives a task back, and exit gives back every other lease of the worker, using no attempt', async () => {
    await holdF();
    await ok(['steal', '-q']); // r
    expect(await dquery(hub, ['release', 'r'])).toMatchObject({ code: 0 });
    expect(await dquery(hub, ['exit'])).toMatchObject({ code: 0, stdout: 'released 1 task\n' });
    expect(await lookupJson('f')).toMatchObject({ state: 'ready', attempts: 0 });
    expect(await lookupJson('r')).toMatchObject({ state: 'ready', attempts: 0 });
  });

  it('retry with neither names nor --failed is bad usage (exit 2)', async () => {
    expect(await dquery(hub, ['retry'])).toMatchObject({ code: 2, stderr: 'dquery: give task names or --failed\n' });
  });

  it('cancel cancels the tasks it finds, keeps the reason, and exits 1 naming the ones it did not find', async () => {
    await holdF();
    expect(await dquery(hub, ['cancel', 'after', 'ghost', '--reason', 'not needed'])).toMatchObject({
      code: 1,
      stdout: 'cancelled 1 task\n',
      stderr: 'dquery: cancel ghost: NOT_FOUND: no task named "ghost"\n',
    });
    expect((await lookupJson('after')).lastError).toBe('cancelled: not needed');
  });

  it('create with a lease that is not a duration is bad usage (exit 2)', async () => {
    expect((await dquery(hub, ['create', 'bad', '--lease', 'soon'])).code).toBe(2);
    expect((await statusJson()).total).toBe(0);
  });
});

describe('dquery in scripts', () => {
  it('runs a DAG of real commands with the shell loop from --help, under bash', async () => {
    const out = tempDir();
    const lines = [
      { name: 'one', cmd: `echo 1 >> ${out}/order` },
      { name: 'two', deps: ['one'], cmd: `echo 2 >> ${out}/order; echo made-two` },
      { name: 'three', deps: ['two'], cmd: `echo 3 >> ${out}/order` },
    ];
    await ok(['addfile', '-'], { input: lines.map((l) => JSON.stringify(l)).join('\n') });
    const help = (await ok(['--help'])).stdout;
    const loop = help.slice(help.indexOf('\nExample, a worker in plain sh')).split('\n').slice(2).join('\n').replace(/^ {2}/gm, '');
    // `dquery` on the PATH, as `npm link` would put it.
    const bin = tempDir();
    symlinkSync(DQUERY, join(bin, 'dquery'));
    const code = await new Promise<number | null>((resolve) => {
      const bash = spawn('bash', ['-c', loop], { env: { ...process.env, DAGWORK_HUB: hub.endpoint, PATH: `${bin}:${process.env.PATH ?? ''}` }, stdio: 'ignore', cwd: ROOT });
      const timer = setTimeout(() => bash.kill('SIGKILL'), 60_000);
      bash.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
    expect(readFileSync(join(out, 'order'), 'utf8')).toBe('1\n2\n3\n');
    expect((await ok(['lookup', 'two', '--json'])).stdout).toMatch(/"result": "made-two"/);
  });

  it('runs a 100,000-task stencil from addfile with concurrent clients, never before its deps are done', async () => {
    const columns = 100;
    const rows = 1000;
    const file = join(tempDir(), 'stencil.txt');
    writeFileSync(file, stencil(columns, rows));
    const added = await dquery(hub, ['addfile', file]);
    expect(added).toMatchObject({ code: 0, stdout: `added ${columns * rows} tasks\n` });

    const clients = Array.from({ length: 4 }, (_, i) => new Client({ hub: hub.endpoint, worker: `w${i}`, timeoutMs: 30_000 }));
    await Promise.all(
      clients.map(async (c) => {
        let held: string[] = [];
        for (;;) {
          const { next } = await c.complete(
            held.map((name) => ({ name })),
            { n: 64, waitMs: 1000 },
          );
          held = next?.tasks.map((t) => t.name) ?? [];
          if (held.length === 0 && next?.finished === true) return;
        }
      }),
    );
    clients.forEach((c) => c.close());
    expect(await hub.stop()).toBe(0);

    const store = await Store.open(hub.db);
    const tasks = new Map<string, TaskRecord>();
    for (const r of await store.loadAll()) tasks.set(r.spec.name, r);
    await store.close();
    expect(tasks.size).toBe(columns * rows);
    const at = (r: TaskRecord, state: string): number => r.log.find((c) => c.state === state)?.at ?? NaN;
    const early: string[] = [];
    for (const task of tasks.values()) {
      expect(task.state).toBe('done');
      const started = at(task, 'running');
      for (const dep of task.spec.deps) {
        if (!(started >= at(tasks.get(dep) as TaskRecord, 'done'))) early.push(`${task.spec.name} before ${dep}`);
      }
    }
    expect(early).toEqual([]);
  }, 180_000);
});
