/** dquery against the real dhub, as a shell script would use it: one behaviour per test, each on a hub of its own. */
import { spawn } from 'node:child_process';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { Store } from '../hub/src/store/store.js';
import { Client } from '../worker-kit/src/index.js';
import { MODULE_OF } from '../query/src/command-modules.js';
import { cleanTempDirs, DQUERY, dquery, ROOT, runCommand, startHub, stencil, tempDir, type Run, type RunningHub } from './helpers.js';

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

describe('dquery complete --next', () => {
  it('completes with the result and takes the next task in the same request, its payload intact with -0', async () => {
    await ok(['create', 'a', '--priority', '1']);
    await ok(['create', 'b', '--cmd', 'echo one\necho two\n']);
    await ok(['steal', '-q']);
    const run = await dquery(hub, ['complete', 'a', '--result', '-', '--next', '-0'], { input: 'out of a' });
    expect(run).toMatchObject({ code: 0, stdout: 'b\techo one\necho two\n', stderr: '' });
    expect(await lookupJson('a')).toMatchObject({ state: 'done', result: 'out of a' });
    expect(JSON.parse((await ok(['lookup', 'b', '--json'])).stdout)).toMatchObject({ state: 'running', worker: 'test-worker' });
  });

  it('takes up to -n tasks, separated by a NUL byte with -0, and their names only with -q', async () => {
    for (const name of ['a', 'b', 'c', 'd', 'e']) await ok(['create', name, '--cmd', `run ${name}`, '--priority', String(-name.charCodeAt(0))]);
    await ok(['steal', '-q']);
    expect(await dquery(hub, ['complete', 'a', '--next', '-n', '2', '-0'])).toMatchObject({ code: 0, stdout: 'b\trun b\0c\trun c' });
    expect(await dquery(hub, ['complete', 'b', 'c', '--next', '-n', '5', '-q'])).toMatchObject({ code: 0, stdout: 'd\ne\n' });
  });

  it('exits 4, saying all work is finished, when the completion was the last task', async () => {
    await ok(['create', 'only']);
    await ok(['steal']);
    expect(await dquery(hub, ['complete', 'only', '--next'])).toMatchObject({ code: 4, stdout: '', stderr: 'all work is finished\n' });
    expect(await lookupJson('only')).toMatchObject({ state: 'done' });
  });

  it('exits 3 when nothing is ready, the completion recorded and what it released not yet there', async () => {
    await ok(['create', 'a']);
    await ok(['create', 'held', '--priority', '-1']);
    await ok(['steal', '-q']);
    await ok(['steal', '-q'], { worker: 'other' }); // held
    expect(await dquery(hub, ['complete', 'a', '--next'])).toMatchObject({ code: 3, stdout: '', stderr: 'nothing ready now\n' });
    expect(await lookupJson('a')).toMatchObject({ state: 'done' });
  });

  it('says a refused completion as complete does, yet prints and keeps the task it took, with the steal\'s status', async () => {
    await ok(['create', 'theirs', '--priority', '1']);
    await ok(['create', 'next']);
    await ok(['steal', '-q'], { worker: 'other' }); // theirs
    const run = await dquery(hub, ['complete', 'theirs', '--next', '-q']);
    expect(run).toMatchObject({ code: 0, stdout: 'next\n', stderr: 'dquery: complete theirs: LEASED_TO_OTHER: leased to worker other\n' });
    expect(JSON.parse((await ok(['lookup', 'next', '--json'])).stdout)).toMatchObject({ state: 'running', worker: 'test-worker' });
    expect(JSON.parse((await ok(['lookup', 'theirs', '--json'])).stdout)).toMatchObject({ state: 'running', worker: 'other' });
    // Refused with nothing left to take: steal's 3 (the other worker's task may still come back).
    expect(await dquery(hub, ['complete', 'theirs', '--next'])).toMatchObject({
      code: 3,
      stdout: '',
      stderr: 'dquery: complete theirs: LEASED_TO_OTHER: leased to worker other\nnothing ready now\n',
    });
  });

  it("prints the completion's answer and then each task taken as steal --json prints them", async () => {
    await ok(['create', 'a', '--priority', '1']);
    await ok(['create', 'b', '--cmd', 'echo "b"\nexit 0']);
    await ok(['steal', '-q']);
    const run = await ok(['complete', 'a', 'ghost', '--next', '--json']);
    const [answer, task, ...rest] = run.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(rest).toEqual([]);
    expect(answer).toEqual({
      results: [
        { name: 'a', outcome: 'ACCEPTED', message: '' },
        { name: 'ghost', outcome: 'NOT_FOUND', message: 'no task named "ghost"' },
      ],
    });
    expect(task).toMatchObject({ name: 'b', payload: 'echo "b"\nexit 0', attempt: 1, pool: 'default' });
    expect(run.stderr).toBe('dquery: complete ghost: NOT_FOUND: no task named "ghost"\n');
  });

  it('waits with --wait for a task created meanwhile', async () => {
    await ok(['create', 'a']);
    await ok(['create', 'held', '--priority', '-1']);
    await ok(['steal', '-q']);
    await ok(['steal', '-q'], { worker: 'other' }); // held: the run is not finished while it runs
    const waiting = dquery(hub, ['complete', 'a', '--next', '-q', '--wait', '20000']);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await ok(['create', 'late']);
    expect(await waiting).toMatchObject({ code: 0, stdout: 'late\n' });
  });

  it('exits 1 when the hub refuses the request as a whole, completing nothing', async () => {
    await ok(['create', 'a']);
    await ok(['steal', '-q']);
    expect(await dquery(hub, ['complete', 'a', '--next', '-n', '20000'])).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'dquery: TOO_LARGE: steal asks for 20000 tasks; the limit is 10000 per request\n',
    });
    expect(await lookupJson('a')).toMatchObject({ state: 'running' });
  });

  it("refuses steal's options without --next, and -0 with --json, as bad usage (exit 2), completing nothing", async () => {
    await ok(['create', 'a']);
    await ok(['steal', '-q']);
    expect(await dquery(hub, ['complete', 'a', '-n', '2', '--wait', '10'])).toMatchObject({ code: 2, stderr: 'dquery: -n, --wait: only with --next\n' });
    expect(await dquery(hub, ['complete', 'a', '--next', '-0', '--json'])).toMatchObject({ code: 2, stderr: 'dquery: give -0 or --json, not both\n' });
    expect(await lookupJson('a')).toMatchObject({ state: 'running' });
  });
});

describe('dquery loads a command\'s module only when it runs', () => {
  it('finds every command of --help alone, by its own word, after global options and their values', async () => {
    const help = (await ok(['--help'])).stdout;
    const section = help.slice(help.indexOf('\nCommands:\n'));
    const commands = [...section.slice(0, section.indexOf('\n\n')).matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1] as string).filter((c) => c !== 'help');
    expect(commands.length).toBeGreaterThan(20);
    expect(Object.keys(MODULE_OF).sort()).toEqual([...commands].sort());
    const runs = await Promise.all(commands.map((c) => dquery(hub, ['--worker', 'status', '--timeout', '3000', c, '--help'])));
    runs.forEach((run, i) => expect(run, commands[i]).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^Usage: dquery ${commands[i]} `)) as string }));
  });

  it('runs a command whose word follows a global option that takes a value named like a command', async () => {
    await ok(['create', 'a']);
    expect(await dquery(hub, ['--worker', 'status', 'steal', '-q'])).toMatchObject({ code: 0, stdout: 'a\n' });
    expect(JSON.parse((await ok(['lookup', 'a', '--json'])).stdout)).toMatchObject({ worker: 'status' });
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

  it('runs the shell loop from --help with one dquery a task while commands succeed', async () => {
    const names = Array.from({ length: 6 }, (_, i) => `t${i}`);
    await ok(['addfile', '-'], { input: names.map((n, i) => JSON.stringify({ name: n, deps: i === 0 ? [] : [`t${i - 1}`], cmd: `echo ${n}` })).join('\n') });
    const help = (await ok(['--help'])).stdout;
    const loop = help.slice(help.indexOf('\nExample, a worker in plain sh')).split('\n').slice(2).join('\n').replace(/^ {2}/gm, '');
    // `dquery` on the PATH, noting each start's arguments in a file.
    const bin = tempDir();
    const starts = join(bin, 'starts');
    writeFileSync(join(bin, 'dquery'), `#!/bin/sh\necho "$1" >> ${starts}\nexec ${process.execPath} ${DQUERY} "$@"\n`, { mode: 0o755 });
    const run = await runCommand('sh', ['-c', loop], { env: { DAGWORK_HUB: hub.endpoint, PATH: `${bin}:${process.env.PATH ?? ''}` }, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    // The first steal, then a complete --next per task; the last one's says all work is finished.
    expect(readFileSync(starts, 'utf8')).toBe(`steal\n${'complete\n'.repeat(names.length)}`);
    for (const n of names) expect(await lookupJson(n)).toMatchObject({ state: 'done', result: n });
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
