/** dquery against the real dhub, as a shell script would use it. */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Store } from '../hub/src/store/store.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, dquery, ROOT, startHub, stencil, tempDir } from './helpers.js';

afterAll(cleanTempDirs);

describe('dquery', () => {
  it('adds files, steals with documented exit codes, completes with results and shows status', async () => {
    const hub = await startHub();
    try {
      const file = join(tempDir(), 'tasks.txt');
      writeFileSync(file, 'a\nb,a\n{"name":"c","deps":["b"],"cmd":"echo c","priority":1}\n');
      expect(await dquery(hub, ['addfile', file])).toMatchObject({ code: 0, stdout: 'added 3 tasks\n' });
      expect(await dquery(hub, ['addfile', file])).toMatchObject({ code: 0, stdout: 'added 0 tasks (3 were there already)\n' });

      const bad = await dquery(hub, ['addfile', '-'], { input: 'x\ny,x\nz,,y\n' });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toBe('dquery: line 3: empty name in "z,,y" (expected name,dep1,dep2,...)\n');
      const cycle = await dquery(hub, ['addfile', '-'], { input: 'x,y\ny,x\n' });
      expect(cycle.stderr).toMatch(/line \d: task "[xy]" would close a cycle/);
      const conflict = await dquery(hub, ['addfile', '-'], { input: 'new\na,new\n' });
      expect(conflict).toMatchObject({ code: 1, stderr: 'dquery: CONFLICT: task "a" already exists with a different definition\n' });
      const status = JSON.parse((await dquery(hub, ['status', '--json'])).stdout) as { counts: Record<string, number>; total: number };
      expect(status.total).toBe(3); // none of the bad files' tasks were added
      expect(status.counts).toEqual({ waiting: 2, ready: 1, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0 });

      expect(await dquery(hub, ['steal', '-q'])).toMatchObject({ code: 0, stdout: 'a\n' });
      expect(await dquery(hub, ['steal', '-q'])).toMatchObject({ code: 3, stdout: '' });
      expect(await dquery(hub, ['complete', 'a'])).toMatchObject({ code: 0 });
      expect(await dquery(hub, ['steal'])).toMatchObject({ code: 0, stdout: 'b\t\n' });
      const done = await dquery(hub, ['complete', 'b', '--result', '-'], { input: 'the result' });
      expect(done.code).toBe(0);
      const stolen = JSON.parse((await dquery(hub, ['steal', '--json'])).stdout) as { name: string; payload: string; attempt: number };
      expect(stolen).toMatchObject({ name: 'c', payload: 'echo c', attempt: 1 });
      const foreign = await dquery(hub, ['complete', 'c'], { worker: 'someone-else' });
      expect(foreign).toMatchObject({ code: 1, stderr: 'dquery: complete c: LEASED_TO_OTHER: leased to worker test-worker\n' });
      expect((await dquery(hub, ['complete', 'c'])).code).toBe(0);
      expect(await dquery(hub, ['steal'])).toMatchObject({ code: 4, stderr: 'all work is finished\n' });

      const b = JSON.parse((await dquery(hub, ['lookup', 'b', '--json'])).stdout) as { result: string; state: string; log: unknown[] };
      expect(b).toMatchObject({ state: 'done', result: 'the result' });
      expect(b.log).toHaveLength(4); // waiting, ready, running, done
      const human = await dquery(hub, ['lookup', 'c']);
      expect(human.stdout).toMatch(/^name: +c$/m);
      expect(human.stdout).toMatch(/^state: +done \(attempt 1 of 3\)$/m);
      const table = await dquery(hub, ['status']);
      expect(table.stdout).toMatch(/^3 tasks, 3 done \(100\.0%\)/);
      expect(table.stdout).toMatch(/^test-worker +0 +3 +0 /m);
      // Watching a finished graph prints once and ends.
      const watched = await dquery(hub, ['status', '--watch', '0.05']);
      expect(watched.code).toBe(0);
      expect(watched.stdout.match(/^3 tasks, 3 done/gm)).toHaveLength(1);
      expect((await dquery(hub, ['status', '--watch', 'often'])).code).toBe(2);
      const missing = await dquery(hub, ['lookup', 'nope']);
      expect(missing).toMatchObject({ code: 1, stderr: 'dquery: UNKNOWN_TASK: no task named "nope"\n' });
    } finally {
      await hub.stop();
    }
  });

  it('fails, retries, heartbeats, releases and exits', async () => {
    const hub = await startHub();
    try {
      await dquery(hub, ['create', 'f', '--cmd', 'false', '--attempts', '1']);
      await dquery(hub, ['create', 'after', 'f']);
      await dquery(hub, ['create', 'r', '--priority', '-1']);
      expect((await dquery(hub, ['steal', '-q'])).stdout).toBe('f\n');
      expect(await dquery(hub, ['heartbeat', 'f'])).toMatchObject({ code: 0, stdout: '' });
      const failed = await dquery(hub, ['fail', 'f', '--reason', 'exit 1']);
      expect(failed).toMatchObject({ code: 0, stdout: 'f failed for good\n' });
      expect((await dquery(hub, ['lookup', 'after', '--json'])).stdout).toMatch(/"state": "blocked"/);
      const lost = await dquery(hub, ['heartbeat', 'f']);
      expect(lost).toMatchObject({ code: 1, stdout: 'lost f: TASK_FAILED: exit 1\n' });
      expect(await dquery(hub, ['retry', '--failed'])).toMatchObject({ code: 0, stdout: 'retried 1 task\n' });
      expect((await dquery(hub, ['lookup', 'after', '--json'])).stdout).toMatch(/"state": "waiting"/);
      expect((await dquery(hub, ['steal', '-n', '5', '-q'])).stdout).toBe('f\nr\n');
      expect(await dquery(hub, ['release', 'r'])).toMatchObject({ code: 0 });
      expect(await dquery(hub, ['exit'])).toMatchObject({ code: 0, stdout: 'released 1 task\n' });
      const lookup = JSON.parse((await dquery(hub, ['lookup', 'f', '--json'])).stdout) as { state: string; attempts: number };
      expect(lookup).toMatchObject({ state: 'ready', attempts: 0 });
      expect(await dquery(hub, ['retry'])).toMatchObject({ code: 2, stderr: 'dquery: give task names or --failed\n' });
      expect(await dquery(hub, ['cancel', 'after', 'ghost', '--reason', 'not needed'])).toMatchObject({
        code: 1,
        stdout: 'cancelled 1 task\n',
        stderr: 'dquery: cancel ghost: NOT_FOUND: no task named "ghost"\n',
      });
      expect((await dquery(hub, ['lookup', 'after', '--json'])).stdout).toMatch(/"lastError": "cancelled: not needed"/);
      expect((await dquery(hub, ['create', 'bad', '--lease', 'soon'])).code).toBe(2);
    } finally {
      await hub.stop();
    }
  });

  it('follows a run with status --watch until it is finished', async () => {
    const hub = await startHub();
    try {
      await dquery(hub, ['create', 'only']);
      const watching = dquery(hub, ['status', '--watch', '0.05']);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await dquery(hub, ['steal']);
      await dquery(hub, ['complete', 'only']);
      const { code, stdout } = await watching;
      expect(code).toBe(0);
      const headers = stdout.match(/^\d+ tasks, .*$/gm) ?? [];
      expect(headers[0]).toMatch(/^1 tasks, 0 done \(0\.0%\)/);
      expect(headers[headers.length - 1]).toMatch(/^1 tasks, 1 done \(100\.0%\)/);
    } finally {
      await hub.stop();
    }
  });

  it('runs a DAG of real commands with the shell loop from --help', async () => {
    const hub = await startHub();
    try {
      const out = tempDir();
      const lines = [
        { name: 'one', cmd: `echo 1 >> ${out}/order` },
        { name: 'two', deps: ['one'], cmd: `echo 2 >> ${out}/order; echo made-two` },
        { name: 'three', deps: ['two'], cmd: `echo 3 >> ${out}/order` },
      ];
      await dquery(hub, ['addfile', '-'], { input: lines.map((l) => JSON.stringify(l)).join('\n') });
      const script = `
        while :; do
          line=$(node ${DQUERY} steal --wait 2000); rc=$?
          [ $rc -eq 4 ] && break; [ $rc -ne 0 ] && continue
          name=\${line%%$'\\t'*}; cmd=\${line#*$'\\t'}
          if out=$(sh -c "$cmd"); then printf '%s' "$out" | node ${DQUERY} complete "$name" --result -
          else node ${DQUERY} fail "$name" --reason "exit $?"; fi
        done`;
      const code = await new Promise<number | null>((resolve) => {
        const bash = spawn('bash', ['-c', script], { env: { ...process.env, DAGWORK_HUB: hub.endpoint }, stdio: 'ignore', cwd: ROOT });
        const timer = setTimeout(() => bash.kill('SIGKILL'), 60_000);
        bash.once('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(code).toBe(0);
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(join(out, 'order'), 'utf8')).toBe('1\n2\n3\n');
      expect((await dquery(hub, ['lookup', 'two', '--json'])).stdout).toMatch(/"result": "made-two"/);
    } finally {
      await hub.stop();
    }
  });

  it('runs a 100,000-task stencil from addfile with concurrent clients, never before its deps are done', async () => {
    const hub = await startHub();
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
