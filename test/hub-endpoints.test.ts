/**
 * A hub given as several endpoints (one active, standbys answering STANDBY): clients go on to the
 * endpoint that answers, within their usual budget, and dworker keeps its running tasks when the
 * hub moves.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import { decodeRequest, encodeReply, type Request } from '../proto/src/codec.js';
import { Client, HubUnreachableError, runWorker } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, freePort, runNode, startHub, tempDir } from './helpers.js';
import { eventually, killDworkers, spawnDworker } from './support/dworker.js';

afterAll(cleanTempDirs);
afterEach(killDworkers);

/** A ZeroMQ socket in the test playing a standby hub: answers every request STANDBY (after `delayMs`), and keeps them. */
async function fakeStandby(delayMs = 0, code: 'STANDBY' | 'SHUTTING_DOWN' = 'STANDBY'): Promise<{ endpoint: string; requests: Request[]; close(): void }> {
  const router = new Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  const requests: Request[] = [];
  void (async () => {
    for await (const [id, empty, body] of router) {
      requests.push(decodeRequest(body as Buffer));
      const reply = encodeReply({ op: 'error', error: { code, message: code === 'STANDBY' ? 'this hub is a standby' : 'the hub is stopping', task: '' } });
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      await router.send([id as Buffer, empty as Buffer, reply]);
    }
  })().catch(() => undefined);
  return { endpoint: router.lastEndpoint as string, requests, close: () => router.close() };
}

/** An endpoint where nothing listens (a port that was free a moment ago). */
async function deadEndpoint(): Promise<string> {
  return `tcp://127.0.0.1:${await freePort()}`;
}

describe('a standby first in the list', () => {
  it('dquery and Client get their answers from the active hub second in the list; the standby saw the request', async () => {
    const standby = await fakeStandby();
    const hub = await startHub();
    const list = `${standby.endpoint},${hub.endpoint}`;
    try {
      const created = await runNode([DQUERY, '--hub', list, 'create', 'a', '--payload', 'true']);
      expect(created.code, created.stderr).toBe(0);
      expect(standby.requests.map((r) => r.op)).toEqual(['create']);
      const status = await runNode([DQUERY, 'status'], { env: { DAGWORK_HUB: list } });
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toContain(`hub ${hub.endpoint}`); // the endpoint that answered
      expect(standby.requests.map((r) => r.op)).toEqual(['create', 'status']);

      const client = new Client({ hub: list, worker: 't' });
      try {
        expect(client.endpoints).toEqual([standby.endpoint, hub.endpoint]);
        expect((await client.lookup('a')).task.state).toBe('ready');
        expect(client.endpoint).toBe(hub.endpoint);
        // The endpoint that answered is kept: the standby hears no more from this client.
        await client.status();
        await client.create([{ name: 'b', payload: 'true' }]);
        expect(standby.requests.map((r) => r.op)).toEqual(['create', 'status', 'lookup']);
      } finally {
        client.close();
      }
    } finally {
      standby.close();
      await hub.stop();
    }
  });
});

describe('a stopping hub first in the list', () => {
  it('SHUTTING_DOWN moves a request on to the next endpoint; with one endpoint it is an error, as before', async () => {
    const stopping = await fakeStandby(0, 'SHUTTING_DOWN');
    const hub = await startHub();
    const client = new Client({ hub: `${stopping.endpoint},${hub.endpoint}`, worker: 't' });
    const alone = new Client({ hub: stopping.endpoint, worker: 't' });
    try {
      expect((await client.create([{ name: 'a' }])).created).toBe(1);
      expect(client.endpoint).toBe(hub.endpoint);
      expect(stopping.requests.map((r) => r.op)).toEqual(['create']);
      await expect(alone.status()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    } finally {
      client.close();
      alone.close();
      stopping.close();
      await hub.stop();
    }
  });
});

describe('a dead endpoint first in the list', () => {
  it('is passed over within about a second: dquery and Client get their answers from the hub after it', async () => {
    const dead = await deadEndpoint();
    const hub = await startHub();
    const list = `${dead},${hub.endpoint}`;
    try {
      let started = Date.now();
      const run = await runNode([DQUERY, '--hub', list, 'status']);
      expect(run.code, run.stderr).toBe(0);
      expect(Date.now() - started).toBeLessThan(4_000);

      const client = new Client({ hub: list, worker: 't' });
      try {
        started = Date.now();
        await client.status();
        expect(Date.now() - started).toBeLessThan(3_000);
        expect(client.endpoint).toBe(hub.endpoint);
      } finally {
        client.close();
      }
    } finally {
      await hub.stop();
    }
  });

  it('every endpoint refusing: fails at once, naming each', async () => {
    const list = `${await deadEndpoint()},${await deadEndpoint()}`;
    const started = Date.now();
    const run = await runNode([DQUERY, '--hub', list, 'status']);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(run).toMatchObject({ code: 1, stderr: `dquery: connection refused at every endpoint of the hub (${list.replace(',', ', ')}): is dhub running there?\n` });
  });
});

describe('every endpoint a standby', () => {
  it('a request gives up after its budget, naming each endpoint and STANDBY, pausing between rounds', async () => {
    const standbys = [await fakeStandby(), await fakeStandby()];
    const list = standbys.map((s) => s.endpoint).join(',');
    const client = new Client({ hub: list, worker: 't', timeoutMs: 1_000, retries: 1 });
    try {
      const started = Date.now();
      const err = await client.status().catch((e: unknown) => e);
      const took = Date.now() - started;
      expect(err).toBeInstanceOf(HubUnreachableError);
      expect(err).toMatchObject({ standby: true, refused: false });
      const message = (err as Error).message;
      for (const s of standbys) expect(message).toMatch(new RegExp(`${s.endpoint}: STANDBY (once|\\d+ times)`));
      expect(message).toContain('no hub was active');
      // The budget: 2 reply timeouts of 1 s.
      expect(took).toBeGreaterThanOrEqual(1_900);
      expect(took).toBeLessThan(3_500);
      // Not a busy loop: rounds 100, 200, 400, 800 ms apart fit about 5 rounds into 2 s.
      const sent = standbys.reduce((n, s) => n + s.requests.length, 0);
      expect(sent).toBeGreaterThanOrEqual(4);
      expect(sent).toBeLessThanOrEqual(14);
      expect(client.unreachable).toBeDefined();
    } finally {
      client.close();
      for (const s of standbys) s.close();
    }
  });

  it('a slow standby is still said to be a standby when the budget ends during a wait for it', async () => {
    // Answers at 300 and 700 ms; the third wait is cut to the 100 ms left of the 1 s budget.
    const standby = await fakeStandby(300);
    const client = new Client({ hub: standby.endpoint, worker: 't', timeoutMs: 1_000, retries: 0 });
    try {
      const err = await client.status().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubUnreachableError);
      expect(err).toMatchObject({ standby: true });
      expect((err as Error).message).not.toMatch(/no reply within/);
      expect(standby.requests.length).toBeGreaterThanOrEqual(2);
    } finally {
      client.close();
      standby.close();
    }
  });

  it('dquery exits 1 saying what each endpoint answered', async () => {
    const standbys = [await fakeStandby(), await fakeStandby()];
    try {
      const run = await runNode([DQUERY, '--hub', standbys.map((s) => s.endpoint).join(','), 'status']);
      expect(run.code).toBe(1);
      for (const s of standbys) expect(run.stderr).toContain(`${s.endpoint}: STANDBY`);
      expect(run.stderr).not.toContain('If it uses CURVE'); // the hubs answered: no handshake problem
    } finally {
      for (const s of standbys) s.close();
    }
  });
});

describe('a worker while every endpoint is a standby', () => {
  it('stops within its grace: the pause between rounds of STANDBY answers is cut short', async () => {
    const standbys = [await fakeStandby(), await fakeStandby()];
    // A long budget: only the stop can end its requests in time.
    const worker = runWorker({ hub: standbys.map((s) => s.endpoint).join(','), worker: 'w', handler: () => 'x', graceMs: 1_000, handleSignals: false, client: { timeoutMs: 60_000 } });
    try {
      expect(await eventually(() => standbys.every((s) => s.requests.length >= 2), 5_000)).toBe(true);
      const asked = Date.now();
      const summary = await worker.stop();
      expect(Date.now() - asked).toBeLessThan(2_000);
      expect(summary).toMatchObject({ reason: 'stopped', done: 0, hubUnreachable: true });
    } finally {
      await worker.stop({ now: true });
      for (const s of standbys) s.close();
    }
  });
});

describe('a bad endpoint in the list', () => {
  it('dquery and dworker: exit 2 naming it, from --hub and from DAGWORK_HUB; Client: TypeError naming it', async () => {
    const good = 'tcp://127.0.0.1:6125';
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [['--hub', `${good},localhost`, 'status'], {}, /endpoint 2 of 2: "localhost" is not a ZeroMQ endpoint: write tcp:\/\/HOST:PORT, e\.g\. tcp:\/\/localhost:6125/],
      [['status'], { DAGWORK_HUB: `${good},,tcp://127.0.0.1:6126` }, /DAGWORK_HUB: endpoint 2 of 3: empty/],
      [['--hub', `${good},${good}`, 'status'], {}, /endpoint 2 of 2: "tcp:\/\/127\.0\.0\.1:6125" is listed twice/],
    ];
    for (const [args, env, message] of cases) {
      const run = await runNode([DQUERY, ...args], { env: { DAGWORK_HUB: '', ...env } });
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
      const worker = await spawnDworker(args.slice(0, -1), { env: { DAGWORK_HUB: '', ...env } }).exit;
      expect(worker.code, worker.stderr).toBe(2);
      expect(worker.stderr).toMatch(message);
    }
    expect(() => new Client({ hub: `${good},tcp://h:70000` })).toThrow('hub: endpoint 2 of 2: "tcp://h:70000": the port must be a number from 1 to 65535');
  });
});

describe('dworker --hub A,B when the hub moves', () => {
  it('A killed while tasks run, B started on the same store at another port: every task completes exactly once, dworker never stops', async () => {
    const dir = tempDir();
    const db = join(dir, 'db');
    const runs = join(dir, 'runs');
    const a = await startHub({ db });
    const portB = await freePort();
    const endpointB = `tcp://127.0.0.1:${portB}`;
    const setup = new Client({ hub: a.endpoint, worker: 'setup' });
    // Leases of 3 s, renewed every second: renewals go out while the hub is away and after it moved.
    const tasks = Array.from({ length: 6 }, (_, i) => ({ name: `t${i}`, leaseMs: 3_000, payload: `mkdir -p ${runs} && echo "$TASK_ATTEMPT" >> ${runs}/$TASK_NAME && sleep 3` }));
    await setup.create(tasks);
    setup.close();
    const worker = spawnDworker(['--hub', `${a.endpoint},${endpointB}`, '-c', '3', '--worker', 'w1'], { killAfterMs: 60_000 });
    let b: Awaited<ReturnType<typeof startHub>> | undefined;
    try {
      // The first three run: kill A under them, and start B on its store a moment later.
      expect(await eventually(() => existsSync(runs) && readdirSync(runs).length === 3, 15_000)).toBe(true);
      await a.stop('SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      b = await startHub({ db, bind: endpointB });
      const exit = await worker.exit;
      expect(exit.code, exit.stderr).toBe(0);
      expect(exit.stdout + exit.stderr).toMatch(/finished: 6 done, 0 failed, 0 lost, 0 released/);
      for (const t of tasks) expect(readFileSync(join(runs, t.name), 'utf8').trim().split('\n'), t.name).toHaveLength(1);
      const check = new Client({ hub: `${a.endpoint},${endpointB}`, worker: 'check' });
      try {
        for (const t of tasks) {
          const { task } = await check.lookup(t.name);
          expect(task.state, t.name).toBe('done');
          expect(task.log.filter((s) => s.state === 'running'), t.name).toHaveLength(1);
        }
      } finally {
        check.close();
      }
    } finally {
      await a.stop('SIGKILL');
      await b?.stop();
    }
  }, 60_000);
});
