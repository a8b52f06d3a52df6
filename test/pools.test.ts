/** Pools an operator manages (dquery pool ...), against the real dhub. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readKeyFile } from '../proto/src/keys.js';
import type { StateChange } from '../proto/src/types.js';
import { Client, curveOptions } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, dquery, roleEndpointsOf, runNode, startHub, tempDir, withHub, type RunningHub } from './helpers.js';

afterAll(() => cleanTempDirs());

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The most tasks running at one moment, from their state logs (a lease ends before one starts at the same ms). */
function mostRunning(logs: readonly (readonly StateChange[])[]): number {
  const events: [number, number][] = [];
  for (const log of logs) {
    let started: number | undefined;
    for (const change of log) {
      if (change.state === 'running') started = change.at;
      else if (started !== undefined) {
        events.push([started, 1], [change.at, -1]);
        started = undefined;
      }
    }
    if (started !== undefined) events.push([started, 1]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, delta] of events) most = Math.max(most, (now += delta));
  return most;
}

async function ok(hub: RunningHub, args: string[]): Promise<string> {
  const run = await dquery(hub, args);
  expect(run.code, run.stderr).toBe(0);
  return run.stdout;
}

describe('pool max_running', () => {
  it('never has more than 3 of the pool leased at once under 8 concurrent workers', async () => {
    await withHub([], async (hub, admin) => {
      await ok(hub, ['pool', 'set', 'lic', '--max-running', '3']);
      const names = Array.from({ length: 40 }, (_, i) => `lic-${i}`);
      await admin.create(names.map((name) => ({ name, pool: 'lic' })));
      // Half of the workers ask for the pool, half for every pool; each runs a task for 20 ms.
      const workers = Array.from({ length: 8 }, (_, i) => new Client({ hub: hub.endpoint, worker: `w${i}` }));
      try {
        await Promise.all(
          workers.map(async (client, i) => {
            const asked = { pools: i % 2 === 0 ? ['lic'] : [], waitMs: 2000 };
            let stolen = await client.steal(asked);
            while (!stolen.finished) {
              await pause(20);
              const done = stolen.tasks.map((t) => ({ name: t.name }));
              stolen = done.length === 0 ? await client.steal(asked) : ((await client.complete(done, asked)).next ?? stolen);
            }
          }),
        );
      } finally {
        for (const client of workers) client.close();
      }
      const logs = await Promise.all(names.map(async (name) => (await admin.lookup(name)).task.log));
      expect(logs.every((log) => log.at(-1)?.state === 'done')).toBe(true);
      expect(mostRunning(logs)).toBe(3);
    });
  });
});

describe('pool paused', () => {
  it('hands nothing out while paused, lets running tasks complete, and serves waiting steals when unpaused', async () => {
    await withHub([], async (hub, admin) => {
      await admin.create(['gpu-0', 'gpu-1'].map((name) => ({ name, pool: 'gpu' })));
      const [running] = (await admin.steal({ pools: ['gpu'] })).tasks;
      expect(running?.name).toBe('gpu-0');
      expect(await ok(hub, ['pool', 'set', 'gpu', '--paused'])).toBe('pool gpu: paused\n');
      const none = await dquery(hub, ['steal', '--pool', 'gpu', '--wait', '300']);
      expect(none.code, none.stderr).toBe(3); // nothing ready now, and not finished (4)
      const waiter = new Client({ hub: hub.endpoint, worker: 'waiter' });
      try {
        let answered = false;
        const waiting = waiter.steal({ waitMs: 20_000 }).finally(() => (answered = true));
        expect((await admin.complete([{ name: 'gpu-0' }])).results[0]?.outcome).toBe('ACCEPTED');
        await pause(300);
        expect(answered).toBe(false);
        await ok(hub, ['pool', 'set', 'gpu', '--unpaused']);
        expect((await waiting).tasks.map((t) => t.name)).toEqual(['gpu-1']);
      } finally {
        waiter.close();
      }
    });
  });
});

describe('pool settings and deletions in the store', () => {
  it('survive the hub being killed (kill -9) and started again', async () => {
    const db = join(tempDir(), 'db');
    let hub = await startHub({ db });
    await ok(hub, ['pool', 'set', 'lic', '--max-running', '2']);
    await ok(hub, ['pool', 'set', 'gpu', '--paused']);
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    await client.create([...[0, 1, 2, 3].map((i) => ({ name: `lic-${i}`, pool: 'lic' })), { name: 'gpu-0', pool: 'gpu' }, { name: 'tmp-0', pool: 'tmp' }]);
    client.close();
    await ok(hub, ['pool', 'delete', 'tmp']);
    expect(await hub.stop('SIGKILL')).toBe(null);
    hub = await startHub({ db });
    const again = new Client({ hub: hub.endpoint, worker: 'w2' });
    try {
      expect(JSON.parse(await ok(hub, ['pool', 'show', 'lic', '--json']))).toMatchObject({ pool: 'lic', maxRunning: 2, paused: false, counts: { ready: 4 } });
      expect(JSON.parse(await ok(hub, ['pool', 'show', 'gpu', '--json']))).toMatchObject({ maxRunning: 0, paused: true });
      expect((await again.steal({ n: 10 })).tasks.map((t) => t.name)).toEqual(['lic-0', 'lic-1']);
      const gone = await dquery(hub, ['lookup', 'tmp-0']);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/UNKNOWN_TASK/);
    } finally {
      again.close();
      await hub.stop();
    }
  });
});

describe('pool delete', () => {
  it('is refused while another pool depends on it, and with --force blocks the dependents with the reason', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'fetch', pool: 'stage1' }, { name: 'fetch2', pool: 'stage1', deps: ['fetch'] }, { name: 'render', deps: ['fetch2'] }]);
      const refused = await dquery(hub, ['pool', 'delete', 'stage1']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toBe('dquery: CONFLICT: task "render" of pool "default" depends on "fetch2" of pool "stage1": delete with force to block them\n');
      expect((await client.lookup('fetch')).task.state).toBe('ready');
      expect(await ok(hub, ['pool', 'delete', 'stage1', '--force'])).toBe('deleted pool stage1: 2 tasks removed, 1 task of other pools blocked\n');
      const render = (await client.lookup('render')).task;
      expect(render.state).toBe('blocked');
      expect(render.log.at(-1)?.note).toBe('dependency deleted with pool stage1');
      expect((await client.poolList()).pools.map((p) => p.pool)).toEqual(['default']);
    });
  });

  it('deletes a pool nothing outside depends on, its running tasks included', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'a', pool: 'tmp' }, { name: 'b', pool: 'tmp', deps: ['a'] }, { name: 'other' }]);
      await client.steal({ pools: ['tmp'] });
      expect(JSON.parse(await ok(hub, ['pool', 'delete', 'tmp', '--json']))).toEqual({ deleted: 2, blocked: 0 });
      expect((await client.heartbeat(['a']))[0]?.outcome).toBe('NOT_FOUND');
      expect((await client.status()).total).toBe(1);
    });
  });
});

describe('pool commands: bad input', () => {
  it('refuses a negative or non-integer limit as bad usage and changes nothing; an unknown pool is a clear error', async () => {
    await withHub([], async (hub) => {
      for (const bad of ['-1', '1.5', 'lots']) {
        const run = await dquery(hub, ['pool', 'set', 'p', '--max-running', bad]);
        expect(run.code, bad).toBe(2);
        expect(run.stderr).toMatch(/--max-running/);
      }
      expect((await dquery(hub, ['pool', 'set', 'p'])).code).toBe(2);
      expect((await dquery(hub, ['pool', 'set', 'p', '--paused', '--unpaused'])).code).toBe(2);
      for (const args of [['pool', 'show', 'p'], ['pool', 'delete', 'p']]) {
        const run = await dquery(hub, args);
        expect(run.code).toBe(1);
        expect(run.stderr).toBe('dquery: UNKNOWN_POOL: no pool named "p" (it holds no task and has no settings)\n');
      }
      expect(await ok(hub, ['pool', 'list'])).toBe('no pools\n');
    });
  });

  it('lets a pool be limited before it holds tasks, and lists it', async () => {
    await withHub([], async (hub) => {
      await ok(hub, ['pool', 'set', 'later', '--max-running', '5']);
      expect(await ok(hub, ['pool', 'list'])).toMatch(/^POOL +MAX-RUNNING +PAUSED +VERIFIERS +WAITING .*\nlater +5 +no +- +0 +0 +0 +0 +0 +0 +0 +0\.00\/s\n$/);
    });
  });
});

describe('pool commands under CURVE', () => {
  it('lets a worker key list pools and refuses it set and delete (FORBIDDEN), which the admin key may do', async () => {
    const dir = tempDir();
    for (const name of ['hub', 'w1', 'root']) expect((await runNode([DQUERY, 'keygen', join(dir, name)])).code).toBe(0);
    const pub = (name: string): string => readKeyFile(join(dir, `${name}.pub`)).publicKey;
    writeFileSync(join(dir, 'authorized-keys'), `${pub('w1')} worker\n${pub('root')} admin\n`);
    const hub = await startHub({ args: ['--curve-secret', join(dir, 'hub.key'), '--authorized-keys', join(dir, 'authorized-keys')] });
    const endpoints = await roleEndpointsOf(hub);
    const curve = (name: string): ReturnType<typeof curveOptions> => curveOptions(join(dir, 'hub.pub'), join(dir, `${name}.key`));
    const worker = new Client({ hub: endpoints.worker as string, worker: 'w1', timeoutMs: 2000, retries: 0, curve: curve('w1') });
    const admin = new Client({ hub: endpoints.admin as string, worker: 'root', timeoutMs: 2000, retries: 0, curve: curve('root') });
    try {
      await expect(worker.poolSet({ pool: 'p', maxRunning: 1, paused: undefined })).rejects.toMatchObject({ code: 'FORBIDDEN' });
      await expect(worker.poolDelete('p')).rejects.toMatchObject({ code: 'FORBIDDEN' });
      expect((await worker.poolList()).pools).toEqual([]);
      expect(await admin.poolSet({ pool: 'p', maxRunning: 1, paused: undefined })).toMatchObject({ pool: 'p', maxRunning: 1 });
      expect((await worker.poolList()).pools.map((p) => p.pool)).toEqual(['p']);
      expect(await admin.poolDelete('p')).toEqual({ deleted: 0, blocked: 0 });
    } finally {
      worker.close();
      admin.close();
      await hub.stop();
    }
  });
});

describe('pool operations on the wire', () => {
  it('round-trip through the codec, a setting left out staying unset', async () => {
    const { decodeReply, decodeRequest, encodeReply, encodeRequest } = await import('../proto/src/codec.js');
    const set = { op: 'poolSet' as const, pool: 'gpu', maxRunning: undefined, paused: true };
    expect(decodeRequest(encodeRequest(set))).toEqual(set);
    expect(decodeRequest(encodeRequest({ op: 'poolSet', pool: 'lic', maxRunning: 0, paused: undefined }))).toEqual({ op: 'poolSet', pool: 'lic', maxRunning: 0, paused: undefined });
    expect(decodeRequest(encodeRequest({ op: 'poolDelete', pool: 'p', force: true }))).toEqual({ op: 'poolDelete', pool: 'p', force: true });
    const info = { pool: 'p', counts: { waiting: 1, ready: 2, running: 3, done: 4, failed: 0, blocked: 0, cancelled: 0, verifying: 5 }, maxRunning: 3, paused: false, donePerSecond: 1.5, jobVerifier: '/bin/true', resultVerifier: 'test -s "$1"' };
    expect(decodeReply(encodeReply({ op: 'poolList', pools: [info], poolsTotal: 1 }))).toEqual({ op: 'poolList', pools: [info], poolsTotal: 1 });
    expect(decodeReply(encodeReply({ op: 'poolDelete', deleted: 2, blocked: 1 }))).toEqual({ op: 'poolDelete', deleted: 2, blocked: 1 });
  });

  it('has --help with examples', async () => {
    const help = (await runNode([DQUERY, 'pool', 'set', '--help'])).stdout;
    expect(help).toContain('dquery pool set db-load --max-running 20');
    expect((await runNode([DQUERY, 'pool', '--help'])).stdout).toContain('dquery pool delete scratch --force');
  });
});
