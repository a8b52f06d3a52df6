/**
 * dquery's edges: batches sized to the hub's limits, errors that name the file's line, what
 * `create` sends, output to a closed pipe or a terminal, numbers that would wrap on the wire,
 * text that is not UTF-8, and the hint a plain client gets from a CURVE hub. Against the real dhub,
 * except where what goes on the wire is the point: there a ZeroMQ socket in the test plays the hub.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import { decodeRequest, encodeReply, type Request } from '../proto/src/codec.js';
import type { TaskSpecInput } from '../proto/src/types.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, dquery, runNode, startHub, tempDir, type Run, type RunningHub } from './helpers.js';

afterAll(cleanTempDirs);

const hubs: RunningHub[] = [];
afterEach(async () => {
  for (const h of hubs.splice(0)) await h.stop();
});

async function hubWith(...args: string[]): Promise<RunningHub> {
  const hub = await startHub({ args });
  hubs.push(hub);
  return hub;
}

async function total(hub: RunningHub): Promise<number> {
  const run = await dquery(hub, ['status', '--json']);
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as { total: number }).total;
}

function file(content: string | Uint8Array): string {
  const path = join(tempDir(), 'tasks.txt');
  writeFileSync(path, content);
  return path;
}

const jsonLines = (tasks: object[]): string => tasks.map((t) => JSON.stringify(t)).join('\n') + '\n';

describe('addfile sizes its batches to the hub', () => {
  it('adds a file far over the hub\'s message limit, in batches under it', async () => {
    const hub = await hubWith('--max-message-bytes', '1000000');
    const tasks = Array.from({ length: 200 }, (_, i) => ({ name: `t${i}`, cmd: `echo ${i} ${'x'.repeat(14_000)}` })); // 2.8 MB
    const run = await dquery(hub, ['--timeout', '2000', 'addfile', file(jsonLines(tasks))]);
    expect(run).toMatchObject({ code: 0, stdout: 'added 200 tasks\n', stderr: '' });
    expect(await total(hub)).toBe(200);
  });

  it("sends no more tasks in one request than the hub's --max-batch", async () => {
    const hub = await hubWith('--max-batch', '2');
    const run = await dquery(hub, ['addfile', '-'], { input: 'a\nb,a\nc,b\nd\ne\n' });
    expect(run).toMatchObject({ code: 0, stdout: 'added 5 tasks\n', stderr: '' });
  });

  it("refuses a task that alone is over the hub's message limit, naming its line, before sending anything", async () => {
    const hub = await hubWith('--max-message-bytes', '20000');
    const run = await dquery(hub, ['addfile', '-'], { input: jsonLines([{ name: 'a' }, { name: 'b' }, { name: 'big', cmd: 'x'.repeat(30_000) }]) });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^dquery: line 3: task "big" takes 300\d\d bytes in a request; the hub takes requests of at most 20000 bytes \(dhub --max-message-bytes\)\n$/);
    expect(await total(hub)).toBe(0);
  });

  it("refuses a payload over the hub's payload limit, naming its line, before sending anything", async () => {
    const hub = await hubWith('--max-payload-bytes', '1000');
    const run = await dquery(hub, ['addfile', '--batch', '1', '-'], { input: jsonLines([{ name: 'a' }, { name: 'b', cmd: 'x'.repeat(2000) }]) });
    expect(run).toMatchObject({
      code: 1,
      stderr: 'dquery: line 2: TOO_LARGE: task "b" has a payload of 2000 bytes; the limit is 1000\n',
    });
    expect(await total(hub)).toBe(0);
  });
});

describe('addfile names the line of what the hub refuses', () => {
  it('reports a conflict with an existing task as "line N"', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 'x', '--cmd', 'one thing']);
    const run = await dquery(hub, ['addfile', '-'], { input: 'a\nx,a\n' });
    expect(run).toMatchObject({ code: 1, stderr: 'dquery: line 2: CONFLICT: task "x" already exists with a different definition\n' });
    expect(await total(hub)).toBe(1);
  });

  it('says which lines were added when a later batch is refused', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 'x', '--cmd', 'one thing']);
    const run = await dquery(hub, ['addfile', '--batch', '2', '-'], { input: '# three tasks, then a conflict\na\n\nb\nc\nx,a\n' });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      'dquery: line 6: CONFLICT: task "x" already exists with a different definition\n' +
        'dquery: batch 1 of 2 (lines 1 to 4, 2 tasks) was added; nothing from line 5 on was. Fix the file and run addfile again: tasks added already are left alone.\n',
    );
    expect(await total(hub)).toBe(3);
  });

  it('says in --help that a file split in batches is not all or nothing', async () => {
    const help = (await runNode([DQUERY, 'addfile', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('each batch is added all or nothing; a file of several batches is not.');
  });
});

/** A ZeroMQ socket in the test playing the hub: records each request, answers create and status. */
async function fakeHub(): Promise<{ endpoint: string; requests: Request[]; close(): void }> {
  const router = new Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  const requests: Request[] = [];
  void (async () => {
    for await (const [id, empty, body] of router) {
      const request = decodeRequest(body as Buffer);
      requests.push(request);
      const reply =
        request.op === 'create'
          ? encodeReply({ op: 'create', created: request.tasks.length, unchanged: 0, missingDeps: [], missingDepsTotal: 0 })
          : encodeReply({ op: 'error', error: { code: 'UNKNOWN_OPERATION', message: 'the fake hub only creates', task: '' } });
      await router.send([id as Buffer, empty as Buffer, reply]);
    }
  })().catch(() => undefined);
  return { endpoint: router.lastEndpoint as string, requests, close: () => router.close() };
}

describe('create sends only what the user gave', () => {
  async function sent(args: string[]): Promise<TaskSpecInput | undefined> {
    const hub = await fakeHub();
    try {
      const run = await runNode([DQUERY, '--hub', hub.endpoint, 'create', ...args]);
      expect(run.code, run.stderr).toBe(0);
      const request = hub.requests[0];
      return request?.op === 'create' ? request.tasks[0] : undefined;
    } finally {
      hub.close();
    }
  }

  it("leaves attempts, lease, pool and priority at zero, so the hub's defaults apply", async () => {
    expect(await sent(['t'])).toMatchObject({ name: 't', maxAttempts: 0, leaseMs: 0, pool: '', priority: 0 });
  });

  it('sends the values given', async () => {
    expect(await sent(['t', '--attempts', '7', '--lease', '3h50m', '--pool', 'gpu', '--priority', '-2'])).toMatchObject({
      maxAttempts: 7,
      leaseMs: 13_800_000,
      pool: 'gpu',
      priority: -2,
    });
  });

  it("names the hub's defaults in --help", async () => {
    const help = (await runNode([DQUERY, 'create', '--help'])).stdout.replace(/\s+/g, ' '); // as wrapped at any width
    expect(help).toContain("--attempts <n> runs before it counts as failed (default: the hub's, 3)");
    expect(help).toMatch(/--lease <duration> [^-]*\(default: the hub's, 60s\)/);
    expect(help).toContain('--pool <pool> pool of workers that may take it (default: the hub\'s, "default")');
  });
});

describe('numbers the wire cannot carry are refused, naming the option', () => {
  it.each([
    [['create', 't', '--lease', '1200h'], /option '--lease <duration>' argument '1200h' is invalid\. 1200h is 4320000000 ms, over the longest lease/],
    [['create', 't', '--attempts', '4294967297'], /option '--attempts <n>' argument '4294967297' is invalid\. 4294967297 is out of range: expected an integer from 1 to 4294967295/],
    [['create', 't', '--priority', '2147483648'], /option '--priority <n>' argument '2147483648' is invalid\. 2147483648 is out of range/],
    [['steal', '-n', '4294967297'], /option '-n, --n <n>' argument '4294967297' is invalid/],
    [['steal', '--wait', '-1'], /option '--wait <ms>' argument '-1' is invalid/],
  ])('dquery %j exits 2 and changes nothing', async (args, message) => {
    const hub = await hubWith();
    const run = await dquery(hub, args);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(await total(hub)).toBe(0);
  });

  it('takes compound durations for --lease', async () => {
    const hub = await hubWith();
    expect((await dquery(hub, ['create', 't', '--lease', '1d2h'])).code).toBe(0);
    const record = JSON.parse((await dquery(hub, ['lookup', 't', '--json'])).stdout) as { spec: { leaseMs: number } };
    expect(record.spec.leaseMs).toBe(93_600_000);
  });

  it('refuses a task file line whose lease would wrap, and adds nothing', async () => {
    const hub = await hubWith();
    const run = await dquery(hub, ['addfile', '-'], { input: 'a\n{"name": "b", "lease": "1200h"}\n' });
    expect(run).toMatchObject({ code: 1, stderr: expect.stringMatching(/^dquery: line 2: "lease" 1200h is 4320000000 ms/) as unknown });
    expect(await total(hub)).toBe(0);
  });
});

describe('task files that are not UTF-8, and # lines', () => {
  it('refuses a Latin-1 file naming the line, instead of merging two names into one task', async () => {
    const hub = await hubWith();
    const run = await dquery(hub, ['addfile', file(Buffer.from('café\ncafè\n', 'latin1'))]);
    expect(run).toMatchObject({ code: 1, stderr: expect.stringMatching(/^dquery: line 1: not valid UTF-8/) as unknown });
    expect(await total(hub)).toBe(0);
  });

  it('refuses an indented # line rather than dropping it', async () => {
    const hub = await hubWith();
    const run = await dquery(hub, ['addfile', '-'], { input: 'a\n  #b,a\n' });
    expect(run).toMatchObject({ code: 1, stderr: expect.stringMatching(/^dquery: line 2: a task name in dwork's form may not start with #/) as unknown });
    expect(await total(hub)).toBe(0);
  });
});

/** Runs dquery with its stdout closed before it writes anything. */
function withClosedStdout(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DQUERY, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: dquery ${args.join(' ')}\n${stderr}`));
    }, 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: '', stderr });
    });
  });
}

describe('output to a closed pipe', () => {
  it.each([[['--help']], [['addfile', '--help']], [['status', '--help']]])('dquery %j ends quietly with exit 0', async (args) => {
    expect(await withClosedStdout(args)).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('a data command ends quietly with its own exit status', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 't']);
    expect(await withClosedStdout(['lookup', 't'], { DAGWORK_HUB: hub.endpoint })).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('status --watch stops when its reader is gone', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 'never-done']);
    expect(await withClosedStdout(['status', '--watch', '0.05'], { DAGWORK_HUB: hub.endpoint })).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

describe('terminal escapes from workers', () => {
  const ESC = '\x1b]0;pwned\x07\x1b[2J';
  const SHOWN = '\\x1b]0;pwned\\x07\\x1b[2J';

  async function escapingTask(hub: RunningHub): Promise<void> {
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'e', payload: Buffer.from(`echo ${ESC}`) }, { name: 'f', payload: Buffer.from(`echo ${ESC}`) }]);
      await client.steal({ n: 1 });
      await client.complete([{ name: 'e', result: Buffer.from(`out ${ESC}\nsecond line`) }]);
      await client.steal({ n: 1 });
      await client.fail('f', `exit 1: ${ESC}`, { permanent: true });
    } finally {
      client.close();
    }
  }

  it('lookup shows them escaped, keeping the result\'s lines', async () => {
    const hub = await hubWith();
    await escapingTask(hub);
    const e = await dquery(hub, ['lookup', 'e']);
    expect(e.stdout).not.toMatch(/\x1b|\x07/);
    expect(e.stdout).toContain(`payload:     echo ${SHOWN}\n`);
    expect(e.stdout).toContain(`result:      out ${SHOWN}\nsecond line\n`);
    const f = await dquery(hub, ['lookup', 'f']);
    expect(f.stdout).toContain(`last error:  exit 1: ${SHOWN}\n`);
    expect(f.stdout).toMatch(/failed +w {2}failed permanently: exit 1: \\x1b\]0;pwned\\x07\\x1b\[2J$/m);
  });

  it('lookup --json keeps the exact text', async () => {
    const hub = await hubWith();
    await escapingTask(hub);
    const e = JSON.parse((await dquery(hub, ['lookup', 'e', '--json'])).stdout) as { result: string };
    expect(e.result).toBe(`out ${ESC}\nsecond line`);
  });

  it('error messages show them escaped', async () => {
    const hub = await hubWith();
    const run = await dquery(hub, ['addfile', '-'], { input: `a\nb${ESC},,a\n` });
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(/\x1b|\x07/);
    expect(run.stderr).toContain(`line 2: empty name in "b${SHOWN},,a"`);
  });

  it('steal into a pipe keeps the bytes as they are, for scripts', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 'e', '--cmd', `echo ${ESC}`]);
    expect((await dquery(hub, ['steal'])).stdout).toBe(`e\techo ${ESC}\n`);
  });

  it('steal onto a terminal shows them escaped', async () => {
    const hub = await hubWith();
    await dquery(hub, ['create', 'e', '--cmd', `echo ${ESC}`]);
    // script(1) gives dquery a pseudo-terminal for its stdout.
    const run = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', `${process.execPath} ${DQUERY} steal`, '/dev/null'], {
        env: { ...process.env, DAGWORK_HUB: hub.endpoint, DAGWORK_WORKER: 'tty' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.once('error', reject);
      child.once('exit', () => resolve(out));
    });
    expect(run).toBe(`e\techo ${SHOWN}\r\n`);
  });
});

describe('a plain client against a CURVE hub', () => {
  it('is told the hub may want --curve-server-key and --curve-key', async () => {
    const dir = tempDir();
    for (const name of ['hub', 'w1']) expect((await runNode([DQUERY, 'keygen', join(dir, name)])).code).toBe(0);
    const pub = (await import('../proto/src/keys.js')).readKeyFile(join(dir, 'w1.pub')).publicKey;
    writeFileSync(join(dir, 'authorized-keys'), `${pub} worker\n`);
    const hub = await hubWith('--curve-secret', join(dir, 'hub.key'), '--authorized-keys', join(dir, 'authorized-keys'));
    const run = await dquery(hub, ['--timeout', '300', 'status']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/is dhub running there\? \(A hub that uses CURVE never answers a client without CURVE keys: its handshake fails silently\.\) If it uses CURVE \(dhub --curve-secret\), give --curve-server-key and --curve-key \(or DAGWORK_CURVE_SERVER_KEY and DAGWORK_CURVE_KEY\)\.\n$/);
  });

  it('is not told so when it gave CURVE options', async () => {
    const dir = tempDir();
    for (const name of ['hub', 'w1']) expect((await runNode([DQUERY, 'keygen', join(dir, name)])).code).toBe(0);
    const hub = await hubWith();
    const run = await dquery(hub, ['--timeout', '300', '--curve-server-key', join(dir, 'hub.pub'), '--curve-key', join(dir, 'w1.key'), 'status']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/is this key authorized for that endpoint\?\n$/);
    expect(run.stderr).not.toMatch(/give --curve-server-key/);
  });
});
