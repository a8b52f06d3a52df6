/**
 * What a new user trips over, against the real dhub: dependencies that exist nowhere, how a run
 * ends and with what exit status, a wrong or absent hub, output scripts can trust, a big file and
 * Ctrl-C, the basics every command shares.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, dquery, freePort, ROOT, runNode, startHub, tempDir, type Run, type RunningHub } from './helpers.js';

afterAll(cleanTempDirs);

const hubs: RunningHub[] = [];
afterEach(async () => {
  for (const h of hubs.splice(0)) await h.stop();
});

async function newHub(...args: string[]): Promise<RunningHub> {
  const hub = await startHub({ args });
  hubs.push(hub);
  return hub;
}

async function ok(hub: RunningHub, args: string[], options: { input?: string; worker?: string } = {}): Promise<Run> {
  const run = await dquery(hub, args, options);
  expect(run.code, `dquery ${args.join(' ')}: ${run.stderr}`).toBe(0);
  return run;
}

async function total(hub: RunningHub): Promise<number> {
  return (JSON.parse((await ok(hub, ['status', '--json'])).stdout) as { total: number }).total;
}

function file(content: string): string {
  const path = join(tempDir(), 'tasks.txt');
  writeFileSync(path, content);
  return path;
}

describe('dependencies that exist nowhere', () => {
  it('create names them on stderr and creates the task', async () => {
    const hub = await newHub();
    const run = await dquery(hub, ['create', 'render', 'fetch-1', 'fecth-2']);
    expect(run).toMatchObject({ code: 0, stdout: 'created render\n' });
    expect(run.stderr).toBe('dquery: warning: render depends on 2 tasks that do not exist: fetch-1, fecth-2; it waits until tasks of those names are created\n');
  });

  it('create --strict creates nothing and exits 1', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'fetch']);
    const run = await dquery(hub, ['create', 'render', 'fetch', 'fecth-2', '--strict']);
    expect(run).toMatchObject({ code: 1, stdout: '', stderr: 'dquery: render not created (--strict): 1 dependency does not exist: fecth-2\n' });
    expect(await total(hub)).toBe(1);
  });

  it('create --strict creates a task whose dependencies exist, quietly', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'fetch']);
    expect(await dquery(hub, ['create', 'render', 'fetch', '--strict'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('addfile names them with the line that needs them, not a name a later batch defines', async () => {
    const hub = await newHub();
    const run = await dquery(hub, ['addfile', '--batch', '1', '-'], { input: 'b,a\na\nc,b,tpyo\n' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe(
      'dquery: warning: 1 name the file depends on exists neither in it nor in the hub: tpyo (line 3); the tasks that need them wait until tasks of those names are created (dquery status counts them; --strict refuses such a file)\n',
    );
  });

  it('addfile says nothing of a dependency the hub has', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'old']);
    expect(await dquery(hub, ['addfile', '-'], { input: 'new,old\n' })).toMatchObject({ code: 0, stderr: '' });
  });

  it('addfile --strict adds nothing and exits 1, naming them', async () => {
    const hub = await newHub();
    const run = await dquery(hub, ['addfile', '--strict', '-'], { input: 'a\nb,a,tpyo\n' });
    expect(run).toMatchObject({ code: 1, stderr: 'dquery: 1 name the file depends on exists neither in it nor in the hub: tpyo (line 2); nothing was added (--strict)\n' });
    expect(await total(hub)).toBe(0);
  });

  it('lookup marks them', async () => {
    const hub = await newHub();
    await dquery(hub, ['create', 'render', 'fetch', 'tpyo']);
    await ok(hub, ['create', 'fetch']);
    expect((await ok(hub, ['lookup', 'render'])).stdout).toMatch(/^deps: +fetch, tpyo \(does not exist\)$/m);
  });

  it('lookup --json lists them as missingDeps', async () => {
    const hub = await newHub();
    await dquery(hub, ['create', 'render', 'fetch', 'tpyo']);
    await ok(hub, ['create', 'fetch']);
    expect(JSON.parse((await ok(hub, ['lookup', 'render', '--json'])).stdout)).toMatchObject({ missingDeps: ['tpyo'] });
  });

  it('status counts the tasks waiting on them', async () => {
    const hub = await newHub();
    await dquery(hub, ['addfile', '-'], { input: 'a,tpyo\nb,tpyo\nc\n' });
    expect((await ok(hub, ['status'])).stdout).toMatch(/^2 tasks wait on 1 name that doesn't exist \(e\.g\. tpyo\): a typo, or tasks still to be created$/m);
  });
});

describe('status --watch: when a run ends, and its exit status', () => {
  it('ends when only tasks waiting on names that do not exist are left, exit 3', async () => {
    const hub = await newHub();
    await dquery(hub, ['addfile', '-'], { input: 'a\nb,tpyo\n' });
    await ok(hub, ['steal']);
    await ok(hub, ['complete', 'a']);
    const run = await dquery(hub, ['status', '--watch', '0.05']);
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/^finished, not all done: 1 done, 1 still waiting \(on names that don't exist\) \(of 2 tasks\)$/m);
  });

  it('exits 3 when a task failed and its dependents are blocked', async () => {
    const hub = await newHub();
    await ok(hub, ['addfile', '-'], { input: '{"name": "a", "attempts": 1}\nb,a\n' });
    await ok(hub, ['steal']);
    await ok(hub, ['fail', 'a', '--reason', 'exit 1']);
    const run = await dquery(hub, ['status', '--watch', '0.05']);
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/^finished, not all done: 0 done, 1 failed, 1 blocked \(of 2 tasks\)$/m);
  });

  it('exits 0 when every task is done', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a']);
    await ok(hub, ['steal']);
    await ok(hub, ['complete', 'a']);
    expect(await dquery(hub, ['status', '--watch', '0.05'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^finished: all 1 task done$/m) as unknown });
  });

  it('prints one JSON object a line with --json', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a']);
    const watching = dquery(hub, ['status', '--watch', '0.05', '--json']);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await ok(hub, ['steal']);
    await ok(hub, ['complete', 'a']);
    const run = await watching;
    const rounds = run.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { counts: { done: number } });
    expect(rounds.length).toBeGreaterThan(1);
    expect(rounds[rounds.length - 1]?.counts.done).toBe(1);
  });

  it('ends quietly when its reader goes away (status --watch | head -1)', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'never-done']);
    const run = await new Promise<Run>((resolve) => {
      const child = spawn('sh', ['-c', `node ${DQUERY} status --watch 0.05 | head -1`], { env: { ...process.env, DAGWORK_HUB: hub.endpoint }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^hub tcp:/);
  });
});

describe('a wrong or absent hub', () => {
  it.each([['127.0.0.1:6125', 'tcp://127.0.0.1:6125'], ['localhost', 'tcp://localhost:6125']])('--hub %s is bad usage (exit 2) with the endpoint to write', async (value, hint) => {
    const run = await runNode([DQUERY, '--hub', value, 'status']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. ${hint}`);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('DAGWORK_HUB that is not an endpoint is bad usage, naming the variable', async () => {
    const run = await runNode([DQUERY, 'status'], { env: { DAGWORK_HUB: '127.0.0.1:6125' } });
    expect(run).toMatchObject({ code: 2, stderr: 'dquery: DAGWORK_HUB: "127.0.0.1:6125" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://127.0.0.1:6125\n' });
  });

  it('says within seconds that nothing listens at the endpoint', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const run = await runNode([DQUERY, 'steal'], { env: { DAGWORK_HUB: endpoint } });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(run).toMatchObject({ code: 1, stderr: `dquery: connection refused at ${endpoint}: is dhub running there?\n` });
  });

  it('gives up on a hub that does not answer status after 2 tries of 2 s', async () => {
    const silent = new Router({ linger: 0 });
    await silent.bind('tcp://127.0.0.1:*');
    void (async () => {
      for await (const _ of silent) {
        // read, never answer
      }
    })().catch(() => undefined);
    try {
      const started = Date.now();
      const run = await runNode([DQUERY, 'status'], { env: { DAGWORK_HUB: silent.lastEndpoint as string } });
      const took = Date.now() - started;
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/no reply from the hub at .* within 2000 ms, 2 times/);
      expect(took).toBeGreaterThan(3500);
      expect(took).toBeLessThan(8000);
    } finally {
      silent.close();
    }
  });
});

describe('steal output scripts can trust', () => {
  const PAYLOAD = 'echo a\necho b\tc';

  it('-0 prints the payload exactly, newlines and tabs included', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'two lines', '--cmd', PAYLOAD]);
    expect((await ok(hub, ['steal', '-0'])).stdout).toBe(`two lines\t${PAYLOAD}`);
  });

  it('-0 separates tasks with a NUL byte', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a', '--cmd', 'x\ny']);
    await ok(hub, ['create', 'b', '--cmd', 'z']);
    expect((await ok(hub, ['steal', '-0', '-n', '2'])).stdout).toBe('a\tx\ny\0b\tz');
  });

  it('--json keeps the payload exactly, one task a line', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a', '--cmd', PAYLOAD]);
    await ok(hub, ['create', 'b']);
    const lines = (await ok(hub, ['steal', '--json', '-n', '2'])).stdout.trimEnd().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { payload: string }).payload)).toEqual([PAYLOAD, '']);
  });
});

describe('a big file, and Ctrl-C', () => {
  const big = (n: number): string => Array.from({ length: n }, (_, i) => (i === 0 ? 't0' : `t${i},t${i - 1}`)).join('\n') + '\n';

  it('adds a file of several batches from standard input, and removes its temporary copy', async () => {
    const hub = await newHub();
    const tmp = tempDir();
    const run = await runNode([DQUERY, 'addfile', '--batch', '100', '-'], { input: big(1000), env: { DAGWORK_HUB: hub.endpoint, TMPDIR: tmp } });
    expect(run).toMatchObject({ code: 0, stdout: 'added 1000 tasks\n', stderr: '' });
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('on Ctrl-C says how many tasks were added, exactly, and that running it again adds the rest', async () => {
    const hub = await newHub();
    const path = file(big(40_000));
    const child = spawn(process.execPath, [DQUERY, 'addfile', '--batch', '200', path], { env: { ...process.env, DAGWORK_HUB: hub.endpoint }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const client = new Client({ hub: hub.endpoint });
    try {
      while ((await client.status()).total === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      client.close();
    }
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const m = /interrupted: batch(?:es 1 to \d+| 1) of 200 \(lines 1 to \d+, (\d+) tasks\) (?:was|were) added; nothing from line \d+ on was\. Run the same addfile again to add the rest: tasks added already are left alone\.\n$/.exec(stderr);
    expect(m, stderr).not.toBeNull();
    const added = Number(m?.[1]);
    expect(await total(hub)).toBe(added);
    expect(await dquery(hub, ['addfile', path])).toMatchObject({ code: 0, stdout: `added ${40_000 - added} tasks (${added} were there already)\n` });
  });

  it('shows its progress on a terminal', async () => {
    const hub = await newHub();
    const path = file(big(3000));
    // script(1) gives dquery a pseudo-terminal for stdout and stderr.
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', `${process.execPath} ${DQUERY} addfile --batch 10 ${path}`, '/dev/null'], {
        env: { ...process.env, DAGWORK_HUB: hub.endpoint },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (c: Buffer) => (text += c.toString()));
      child.once('error', reject);
      child.once('exit', () => resolve(text));
    });
    expect(out).toMatch(/adding: \d+ of 3000 tasks \(batch \d+ of 300\)/);
    expect(out).toMatch(/\r\x1b\[Kadded 3000 tasks\r\n$/);
  });
});

describe('what every command shares', () => {
  it('--version prints the version in package.json', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await runNode([DQUERY, '--version'])).toMatchObject({ code: 0, stdout: `${version}\n` });
  });

  it.each(['create t', 'addfile x', 'steal', 'complete t', 'fail t --reason r', 'heartbeat t', 'release t', 'exit', 'retry t', 'cancel t', 'status', 'lookup t', 'keygen k'])(
    'dquery %s with an unknown option exits 2',
    async (command) => {
      const run = await runNode([DQUERY, ...command.split(' '), '--no-such-option'], { env: { DAGWORK_HUB: 'tcp://127.0.0.1:1' } });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/unknown option '--no-such-option'/);
    },
  );

  it.each(['create', 'addfile', 'steal', 'complete', 'fail', 'heartbeat', 'release', 'exit', 'retry', 'cancel', 'status', 'lookup', 'keygen'])('dquery %s --help has an example', async (command) => {
    expect((await runNode([DQUERY, command, '--help'])).stdout).toMatch(/\nExamples?:\n {2}\S/);
  });

  it("steal --help's example reads names a line, so a name with spaces stays one", async () => {
    const help = (await runNode([DQUERY, 'steal', '--help'])).stdout;
    expect(help).not.toContain('for t in $(dquery steal');
    expect(help).toContain('dquery steal -n 8 -q | while IFS= read -r t; do');
  });

  it('says "1 task", not "1 tasks"', async () => {
    const hub = await newHub();
    expect((await ok(hub, ['addfile', '-'], { input: 'a\n' })).stdout).toBe('added 1 task\n');
  });

  it('create --json', async () => {
    const hub = await newHub();
    expect(JSON.parse((await ok(hub, ['create', 'a', 'x', '--json'])).stdout)).toEqual({ name: 'a', created: true, missingDeps: ['x'], missingDepsTotal: 1 });
  });

  it('addfile --json', async () => {
    const hub = await newHub();
    expect(JSON.parse((await ok(hub, ['addfile', '--json', '-'], { input: 'a\nb,x\n' })).stdout)).toEqual({
      created: 2,
      unchanged: 0,
      missingDeps: [{ name: 'x', line: 2 }],
      missingDepsTotal: 1,
      missingDepsAtLeast: false,
    });
  });

  it('complete --json', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a']);
    await ok(hub, ['steal']);
    expect(JSON.parse((await ok(hub, ['complete', 'a', '--json'])).stdout)).toEqual({ results: [{ name: 'a', outcome: 'ACCEPTED', message: '' }] });
  });

  it('retry, cancel and exit --json', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a']);
    expect(JSON.parse((await ok(hub, ['cancel', 'a', '--json'])).stdout)).toMatchObject({ cancelled: 1 });
    expect(JSON.parse((await ok(hub, ['retry', 'a', '--json'])).stdout)).toMatchObject({ retried: 1 });
    await ok(hub, ['steal']);
    expect(JSON.parse((await ok(hub, ['exit', '--json'])).stdout)).toEqual({ worker: 'test-worker', released: 1 });
  });
});

describe('status says which hub answered and marks exited workers', () => {
  it('names the endpoint, the store id and when the hub started', async () => {
    const hub = await newHub();
    expect((await ok(hub, ['status'])).stdout.split('\n')[0]).toMatch(new RegExp(`^hub ${hub.endpoint}, store [0-9a-f]{16}, up \\d+s \\(since \\d{4}-`));
  });

  it('marks a worker that exited', async () => {
    const hub = await newHub();
    await ok(hub, ['create', 'a']);
    await ok(hub, ['steal'], { worker: 'leaver' });
    await ok(hub, ['exit'], { worker: 'leaver' });
    expect((await ok(hub, ['status'])).stdout).toMatch(/^leaver +0 +0 +0 +exited, \d+s ago$/m);
  });
});
