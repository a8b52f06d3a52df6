/** Job and result verifiers (dquery pool set --job-verifier / --result-verifier), run by the real dhub. */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { verifiersAllowed } from '../hub/src/server.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DHUB, dquery, runNode, startHub, tempDir, withHub, type RunningHub } from './helpers.js';
import { mkdirSync, rmSync } from 'node:fs';
import { RawClient } from './support/raw.js';
import { eventually, killDworkers, spawnDworker, stateWithin } from './support/dworker.js';

afterAll(() => cleanTempDirs());
afterEach(() => killDworkers());

async function ok(hub: RunningHub, args: string[], input?: string): Promise<string> {
  const run = await dquery(hub, args, input === undefined ? {} : { input });
  expect(run.code, run.stderr).toBe(0);
  return run.stdout;
}

/** An executable shell script in a fresh directory; its path. */
function script(body: string): string {
  const path = join(tempDir(), 'verify.sh');
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('job verifier', () => {
  it('refuses a whole batch naming the task it rejects, with its stderr; creates a batch it passes; reads the task on stdin and in $1', async () => {
    // Passes when stdin and $1 hold the same JSON and the param n is one digit.
    const check = script(`cmp -s - "$1" || { echo "stdin and \\$1 differ" >&2; exit 2; }
grep -q '"n":"[0-9]"' "$1" || { echo "param n must be one digit in $DAGWORK_TASK of $DAGWORK_POOL ($DAGWORK_VERIFY)" >&2; exit 1; }`);
    await withHub([], async (hub, client) => {
      await ok(hub, ['pool', 'set', 'sims', '--job-verifier', check]);
      expect(JSON.parse(await ok(hub, ['pool', 'show', 'sims', '--json']))).toMatchObject({ jobVerifier: check, resultVerifier: '' });
      const sweep = (name: string): string[] => ['sweep', '-', '--sweep-name', name, '--name', `${name}-{n}`, '--pool', 'sims', '--cmd', 'echo {n}'];
      const bad = await dquery(hub, sweep('sw'), { input: 'n\n1\n22\n3\n' });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('REJECTED');
      expect(bad.stderr).toContain('param n must be one digit in sw-22 of sims (job)');
      expect((await client.status()).total).toBe(0); // nothing of the batch
      await ok(hub, sweep('sw'), 'n\n1\n2\n3\n');
      expect((await client.list({ prefix: 'sw-' })).tasks.map((t) => t.name)).toEqual(['sw-1', 'sw-2', 'sw-3']);
      // Tasks of other pools are not verified; re-adding identical tasks runs nothing.
      await client.create([{ name: 'elsewhere', payload: new TextEncoder().encode('x') }]);
      await ok(hub, sweep('sw'), 'n\n1\n2\n3\n');
      // Removed: anything goes.
      await ok(hub, ['pool', 'set', 'sims', '--job-verifier', '']);
      await ok(hub, sweep('free'), 'n\n77\n');
    });
  });

  it('refuses a command sh cannot parse, whose program does not exist, or given by a relative path; the pool keeps what it had', async () => {
    await withHub([], async (hub) => {
      await ok(hub, ['pool', 'set', 'p', '--max-running', '2']);
      for (const [command, says] of [
        ['if then fi (', 'sh cannot parse it'],
        ['no-such-program-dagwork --check', 'neither a shell builtin nor a program'],
        ['./check.sh', 'relative path'],
        ['/no/such/check.sh', 'does not exist'],
      ] as const) {
        const run = await dquery(hub, ['pool', 'set', 'p', '--result-verifier', command]);
        expect(run.code, command).not.toBe(0);
        expect(run.stderr, command).toContain('INVALID_ARGUMENT');
        expect(run.stderr, command).toContain(says);
      }
      expect(JSON.parse(await ok(hub, ['pool', 'show', 'p', '--json']))).toMatchObject({ maxRunning: 2, resultVerifier: '' });
    });
  });
});

describe('result verifier', () => {
  it('keeps a task verifying until its verifier passes it; a rejection fails the attempt with its stderr, retried as any failure', async () => {
    // The result is the command's stdout; "bad" is rejected. Output files are read from their paths.
    const check = script(`node -e '
const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
for (const f of t.outputs) if (require("fs").readFileSync(f.path, "utf8") !== "made by " + t.name + "\\n") { console.error("output " + f.name + " is wrong"); process.exit(1); }
if (t.result.includes("bad")) { console.error("the result says bad (attempt " + t.attempt + " by " + t.worker + ")"); process.exit(1); }
' "$1"`);
    await withHub(['--retry-backoff-ms', '50'], async (hub, client) => {
      await ok(hub, ['pool', 'set', 'sims', '--result-verifier', check]);
      const tasks = [
        { name: 'good', pool: 'sims', payload: 'echo "made by good" > out.txt; echo fine', outputs: ['out.txt'] },
        { name: 'bad', pool: 'sims', payload: 'echo bad', attempts: 2 },
        { name: 'after-good', deps: ['good'], payload: 'echo next' },
        { name: 'after-bad', deps: ['bad'], payload: 'echo never' },
      ];
      await ok(hub, ['addfile', '-'], tasks.map((t) => JSON.stringify(t)).join('\n'));
      const worker = spawnDworker(['--hub', hub.endpoint, '--worker', 'dw']);
      const exit = await worker.exit;
      expect([0, 3], exit.stderr).toContain(exit.code);
      const good = (await client.lookup('good')).task;
      expect(good.state).toBe('done');
      expect(good.log.map((c) => c.state)).toEqual(['ready', 'running', 'verifying', 'done']);
      expect((await client.lookup('after-good')).task.state).toBe('done');
      const bad = (await client.lookup('bad')).task;
      expect(bad.state).toBe('failed');
      expect(bad.attempts).toBe(2);
      expect(bad.lastError).toContain('result rejected: the result says bad (attempt 2 by dw)');
      expect((await client.lookup('after-bad')).task.state).toBe('blocked');
      // dquery shows the verifier and the rejection.
      expect(await ok(hub, ['pool', 'show', 'sims'])).toContain(`result verifier: ${check}`);
      expect(await ok(hub, ['list', '--state', 'failed'])).toContain('result rejected');
    });
  }, 60_000);

  it('kills a verifier that runs past --verifier-timeout-ms, and with it what it started; the attempt fails', async () => {
    const dir = tempDir();
    const check = script(`sleep 30 & echo $! > ${dir}/child.pid; echo $$ > ${dir}/sh.pid; wait`);
    await withHub(['--verifier-timeout-ms', '400'], async (hub, client) => {
      await ok(hub, ['pool', 'set', 'slow', '--result-verifier', check]);
      await client.create([{ name: 't', pool: 'slow', maxAttempts: 1 }]);
      const [task] = (await client.steal({})).tasks;
      expect(task?.name).toBe('t');
      await client.complete([{ name: 't' }]);
      const record = await stateWithin(client, 't', (t) => t.state === 'failed', 10_000);
      expect(record.lastError).toContain('ran past 400 ms and was killed');
      const pids = ['child.pid', 'sh.pid'].map((f) => Number(readFileSync(join(dir, f), 'utf8')));
      expect(await eventually(() => pids.every((pid) => !alive(pid)), 2000)).toBe(true);
    });
  });

  it('verifies again after the hub is killed what it was verifying; nothing is lost', async () => {
    const dir = tempDir();
    const go = join(dir, 'go');
    // Counts its runs; passes once the test says go.
    const check = script(`echo run >> ${dir}/runs; while [ ! -e ${go} ]; do sleep 0.05; done`);
    const db = join(tempDir(), 'db');
    let hub = await startHub({ db });
    let client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await ok(hub, ['pool', 'set', 'p', '--result-verifier', check]);
      await client.create([{ name: 'a', pool: 'p' }, { name: 'b', deps: ['a'] }]);
      await client.steal({});
      await client.complete([{ name: 'a', result: new TextEncoder().encode('42') }]);
      expect(await eventually(() => existsSync(join(dir, 'runs')), 5000)).toBe(true);
      expect((await client.lookup('a')).task.state).toBe('verifying');
      expect(JSON.parse(await ok(hub, ['status', '--json'])).counts).toMatchObject({ verifying: 1, waiting: 1 });
      client.close();
      await hub.stop('SIGKILL');
      hub = await startHub({ db });
      client = new Client({ hub: hub.endpoint, worker: 'w' });
      expect(await eventually(() => readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length === 2, 5000)).toBe(true);
      expect((await client.lookup('a')).task.state).toBe('verifying');
      writeFileSync(go, '');
      const a = await stateWithin(client, 'a', (t) => t.state === 'done', 5000);
      expect(new TextDecoder().decode(a.result)).toBe('42');
      expect((await client.lookup('b')).task.state).toBe('ready');
    } finally {
      writeFileSync(go, '');
      client.close();
      await hub.stop();
    }
  }, 30_000);

  it('a hub being stopped kills its verifiers and leaves the task verifying in the store', async () => {
    const dir = tempDir();
    const check = script(`echo $$ >> ${dir}/pids; exec sleep 30`);
    const db = join(tempDir(), 'db');
    let hub = await startHub({ db });
    let client = new Client({ hub: hub.endpoint, worker: 'w' });
    const pids = (): number[] => (existsSync(join(dir, 'pids')) ? readFileSync(join(dir, 'pids'), 'utf8').split('\n').filter(Boolean).map(Number) : []);
    try {
      await ok(hub, ['pool', 'set', 'p', '--result-verifier', check]);
      await client.create([{ name: 'a', pool: 'p' }]);
      await client.steal({});
      await client.complete([{ name: 'a' }]);
      expect(await eventually(() => pids().length === 1, 5000)).toBe(true);
      client.close();
      const started = Date.now();
      expect(await hub.stop('SIGTERM')).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await eventually(() => !alive(pids()[0] as number), 2000)).toBe(true);
      hub = await startHub({ db });
      client = new Client({ hub: hub.endpoint, worker: 'w' });
      expect((await client.lookup('a')).task.state).toBe('verifying');
      expect(await eventually(() => pids().length === 2, 5000)).toBe(true); // verified again
    } finally {
      client.close();
      await hub.stop();
    }
    expect(await eventually(() => pids().every((pid) => !alive(pid)), 2000)).toBe(true);
  });

  it('passes a task whose pool lost its result verifier while it waited its turn', async () => {
    const dir = tempDir();
    const go = join(dir, 'go');
    const check = script(`while [ ! -e ${go} ]; do sleep 0.05; done`);
    await withHub(['--verifier-jobs', '1'], async (hub, client) => {
      try {
        await ok(hub, ['pool', 'set', 'p', '--result-verifier', check]);
        await client.create([{ name: 'a', pool: 'p' }, { name: 'b', pool: 'p' }]);
        await client.steal({ n: 2 });
        await client.complete([{ name: 'a' }, { name: 'b' }]); // a's verifier runs; b's waits for the one slot
        await ok(hub, ['pool', 'set', 'p', '--result-verifier', '']);
        expect((await client.lookup('b')).task.state).toBe('verifying');
        writeFileSync(go, '');
        const b = await stateWithin(client, 'b', (t) => t.state === 'done', 5000);
        expect(b.log.at(-1)?.note).toContain('no result verifier any more');
        expect((await stateWithin(client, 'a', (t) => t.state === 'done', 5000)).log.at(-1)?.note).toBe('result verified');
      } finally {
        writeFileSync(go, '');
      }
    });
  });
});

describe('verifiers that misbehave, and a hub in trouble', () => {
  it('judges a verifier when it exits, though something it left (outside its group) holds its stderr; the timeout holds for one that does not exit', async () => {
    const dir = tempDir();
    const leaves = script(`setsid sleep 60 & echo $! > ${dir}/left.pid; exit 0`);
    const hangs = script(`setsid sleep 60 & echo $! >> ${dir}/left.pid; sleep 60`);
    await withHub(['--verifier-timeout-ms', '1500'], async (hub, client) => {
      try {
        await ok(hub, ['pool', 'set', 'a', '--result-verifier', leaves]);
        await ok(hub, ['pool', 'set', 'b', '--result-verifier', hangs]);
        await client.create([{ name: 'x', pool: 'a' }, { name: 'y', pool: 'b', maxAttempts: 1 }]);
        await client.steal({ n: 2 });
        const started = Date.now();
        await client.complete([{ name: 'x' }, { name: 'y' }]);
        expect((await stateWithin(client, 'x', (t) => t.state === 'done', 5000)).state).toBe('done');
        expect(Date.now() - started).toBeLessThan(1500); // not held until the sleep it left ends
        const y = await stateWithin(client, 'y', (t) => t.state === 'failed', 8000);
        expect(y.lastError).toContain('ran past 1500 ms and was killed');
        expect(Date.now() - started).toBeLessThan(6000);
      } finally {
        // The sleeps it moved out of its group: started by this test, ended by their PIDs.
        for (const pid of readFileSync(join(dir, 'left.pid'), 'utf8').split('\n').filter(Boolean).map(Number)) if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    });
  }, 30_000);

  it('refuses a --verifier-timeout-ms Node cannot time', async () => {
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', join(tempDir(), 'db'), '--verifier-timeout-ms', '3000000000']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('out of range');
  });

  it("charges no task with the hub's own trouble: a create is refused as INTERNAL, a result waits and is verified once the hub can", async () => {
    await withHub([], async (hub, client) => {
      await ok(hub, ['pool', 'set', 'p', '--job-verifier', '/bin/true', '--result-verifier', '/bin/true']);
      await client.create([{ name: 'a', pool: 'p' }]);
      await client.steal({});
      rmSync(join(hub.db, 'verify'), { recursive: true, force: true }); // where verifiers run: gone
      const refused = await dquery(hub, ['create', '--pool', 'p', '--cmd', 'true', 'b']);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('INTERNAL');
      expect(refused.stderr).toContain('nothing of the batch was created');
      await client.complete([{ name: 'a' }]);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const a = (await client.lookup('a')).task;
      expect(a.state).toBe('verifying');
      expect(a.attempts).toBe(1);
      mkdirSync(join(hub.db, 'verify'));
      expect((await stateWithin(client, 'a', (t) => t.state === 'done', 10_000)).state).toBe('done');
      expect((await client.status()).total).toBe(1);
      expect(hub.log()).toContain('trying again');
    });
  }, 30_000);

  it('verifies a create sent again while its first copy waits for the job verifier once, and answers both', async () => {
    const dir = tempDir();
    const slow = script(`echo run >> ${dir}/runs; sleep 1`);
    await withHub([], async (hub) => {
      await ok(hub, ['pool', 'set', 'p', '--job-verifier', slow]);
      const [one, two] = [new RawClient(hub.endpoint), new RawClient(hub.endpoint)];
      try {
        const request = { op: 'create' as const, tasks: [{ name: 'only', pool: 'p' }] };
        const first = one.call(request);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const [a, b] = await Promise.all([first, two.call(request)]);
        expect(a).toMatchObject({ op: 'create', created: 1 });
        expect(b).toMatchObject({ op: 'create', created: 1 });
        expect(readFileSync(join(dir, 'runs'), 'utf8')).toBe('run\n');
      } finally {
        one.close();
        two.close();
      }
    });
  });
});

describe('where verifiers may be set', () => {
  it('a store with verifiers is refused by a hub started on a non-local address without CURVE, before it binds', async () => {
    const db = join(tempDir(), 'db');
    const hub = await startHub({ db });
    try {
      await ok(hub, ['pool', 'set', 'p', '--result-verifier', '/bin/true']);
    } finally {
      await hub.stop();
    }
    const run = await runNode([DHUB, '--bind', 'tcp://0.0.0.0:*', '--db', db], { timeoutMs: 20_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('pool "p" has a verifier');
    expect(run.stderr).not.toContain('listening on');
  });

  it('only with CURVE, or on a hub reachable from its own machine only', () => {
    expect(verifiersAllowed('tcp://127.0.0.1:6125', false)).toBe(true);
    expect(verifiersAllowed('ipc:///tmp/hub', false)).toBe(true);
    expect(verifiersAllowed('tcp://0.0.0.0:6125', false)).toBe(false);
    expect(verifiersAllowed('tcp://10.1.2.3:6125', false)).toBe(false);
    expect(verifiersAllowed('tcp://0.0.0.0:6125', true)).toBe(true);
  });
});
