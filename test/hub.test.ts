/** The real dhub process, spoken to over ZeroMQ on 127.0.0.1. */
import { Dealer, Request } from 'zeromq';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeReply, encodeRequest } from '../proto/src/codec.js';
import type { TaskRecord } from '../proto/src/types.js';
import { Client, DagworkError } from '../worker-kit/src/index.js';
import { cleanTempDirs, DHUB, runNode, startHub as startAnyHub, type RunningHub } from './helpers.js';
import { newStore, openStore, stopPgCluster, storeKinds, type StoreKind } from './support/stores.js';

afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

async function records(kind: StoreKind, location: string): Promise<Map<string, TaskRecord>> {
  const store = await openStore(kind, location);
  const out = new Map<string, TaskRecord>();
  for (const r of await store.loadAll()) out.set(r.spec.name, r);
  await store.close();
  return out;
}

describe.each(storeKinds)('dhub (%s store)', (kind) => {
  /** A hub on a new store of this kind, or on `store` (from an earlier hub). */
  const startHub = async (options: { store?: string; args?: string[] } = {}): Promise<RunningHub> => {
    const store = options.store ?? (await newStore(kind));
    const args = options.args ?? [];
    return kind === 'leveldb' ? startAnyHub({ db: store, args }) : startAnyHub({ store, args });
  };

  /** Creates a -> b, runs a (result "A!") and steals b as w1, then stops the hub. */
  async function smallRun(check: (c: Client) => Promise<void> = async () => undefined): Promise<string> {
    const hub = await startHub();
    const c = new Client({ hub: hub.endpoint, worker: 'w1' });
    try {
      expect(await c.create([{ name: 'a', payload: bytes('echo a') }, { name: 'b', deps: ['a'] }])).toMatchObject({ created: 2, unchanged: 0 });
      const { tasks } = await c.steal({ n: 5 });
      expect(tasks.map((t) => [t.name, Buffer.from(t.payload).toString(), t.attempt])).toEqual([['a', 'echo a', 1]]);
      const { results, next } = await c.complete([{ name: 'a', result: bytes('A!') }], { n: 5 });
      expect(results[0]?.outcome).toBe('ACCEPTED');
      expect(next?.tasks.map((t) => t.name)).toEqual(['b']);
      await check(c);
    } finally {
      c.close();
    }
    expect(await hub.stop('SIGTERM')).toBe(0);
    return hub.store;
  }

  it('runs a small DAG end to end: steal, complete with the next steal, status', async () => {
    await smallRun(async (c) => {
      const status = await c.status();
      expect(status.counts).toMatchObject({ done: 1, running: 1 });
      expect(status.workers.map((w) => [w.worker, w.done, w.running])).toEqual([['w1', 1, 1]]);
    });
  });

  it('keeps results, dependents and leases across a restart', async () => {
    const again = await startHub({ store: await smallRun() });
    const d = new Client({ hub: again.endpoint, worker: 'w1' });
    try {
      const a = await d.lookup('a');
      expect(a.task.state).toBe('done');
      expect(Buffer.from(a.task.result).toString()).toBe('A!');
      expect(a.dependents).toEqual(['b']);
      // b's lease survived the restart: w1 can still complete it, another worker cannot steal it.
      const b = await d.lookup('b');
      expect(b.task).toMatchObject({ state: 'running', worker: 'w1', attempts: 1 });
      expect((await d.complete([{ name: 'b' }])).results[0]?.outcome).toBe('ACCEPTED');
      expect(await d.steal()).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
    } finally {
      d.close();
      expect(await again.stop('SIGINT')).toBe(0);
    }
  });

  it('answers bad input with an error naming the problem, changes nothing and keeps serving', async () => {
    const hub = await startHub({ args: ['--max-message-bytes', '100000', '--max-payload-bytes', '1000'] });
    const raw = new Request({ receiveTimeout: 5000, linger: 0 });
    raw.connect(hub.endpoint);
    const ask = async (frame: Uint8Array | Buffer): Promise<ReturnType<typeof decodeReply>> => {
      await raw.send(frame);
      const [reply] = await raw.receive();
      return decodeReply(reply as Buffer);
    };
    const c = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      const bad: [Buffer, string][] = [
        [Buffer.alloc(0), 'MALFORMED'],
        [Buffer.from([0xff, 0xff, 0xff]), 'MALFORMED'], // truncated varint
        [Buffer.from([0x50, 0x01, 0x02]), 'MALFORMED'], // length prefix larger than the frame
        [Buffer.from('garbage that is not protobuf at all'), 'MALFORMED'],
        [Buffer.from([0x03, 0xf8, 0x0f, 0x01]), 'UNKNOWN_OPERATION'], // valid framing, only an unknown field (255: no operation's number)
        [Buffer.from(encodeRequest({ op: 'create', tasks: [{ name: 'x' }] })).subarray(0, 5), 'MALFORMED'],
        [Buffer.alloc(150_000, 1), 'TOO_LARGE'] // over the limit, under the socket's cut-off,
      ];
      for (const [frame, code] of bad) {
        const reply = await ask(frame);
        expect(reply.op === 'error' && reply.error.code, `frame ${frame.subarray(0, 8).toString('hex')}`).toBe(code);
      }
      const checks: [() => Promise<unknown>, string, RegExp][] = [
        [() => c.create([{ name: 'p', deps: ['q'] }, { name: 'q', deps: ['p'] }]), 'CYCLE', /cycle: .*p.*q/],
        [() => c.create([{ name: '' }]), 'INVALID_NAME', /empty/],
        [() => c.create([{ name: 'big', payload: Buffer.alloc(5000) }]), 'TOO_LARGE', /task "big" has a payload of 5000 bytes; the limit is 1000/],
        [() => c.lookup('nope'), 'UNKNOWN_TASK', /no task named "nope"/],
        [() => new Client({ hub: hub.endpoint, worker: '' }).steal(), 'INVALID_ARGUMENT', /worker id is empty/],
      ];
      for (const [call, code, message] of checks) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(DagworkError);
        expect((err as DagworkError).code).toBe(code);
        expect((err as DagworkError).message).toMatch(message);
      }
      await c.create([{ name: 'a', payload: bytes('one') }]);
      const conflict = await c.create([{ name: 'a', payload: bytes('two') }]).catch((e: DagworkError) => e);
      expect(conflict).toMatchObject({ code: 'CONFLICT', task: 'a' });
      expect((await c.status()).total).toBe(1);

      // A DEALER that sends two frames after the envelope gets an error, not silence.
      const dealer = new Dealer({ receiveTimeout: 5000, linger: 0 });
      dealer.connect(hub.endpoint);
      await dealer.send([Buffer.alloc(0), Buffer.from('one'), Buffer.from('two')]);
      const [, frame] = await dealer.receive();
      const reply = decodeReply(frame as Buffer);
      expect(reply.op === 'error' && reply.error.code).toBe('MALFORMED');
      dealer.close();

      expect(await c.steal()).toMatchObject({ tasks: [{ name: 'a' }] });
    } finally {
      raw.close();
      c.close();
      expect(await hub.stop()).toBe(0);
    }
  });

  // On PostgreSQL a second hub is a standby instead (standby.test.ts).
  it.skipIf(kind !== 'leveldb')('refuses a second hub on the same store with a clear error', async () => {
    const hub = await startHub();
    try {
      const second = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', hub.db], { timeoutMs: 20_000 });
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/in use by another dhub/);
      expect(second.stderr).not.toMatch(/at .*\.js/); // a message, not a stack trace
    } finally {
      await hub.stop();
    }
  });

  it('wakes a waiting steal as soon as work is created, and ends the wait when it is due', async () => {
    const hub = await startHub();
    const waiter = new Client({ hub: hub.endpoint, worker: 'waiter' });
    const submitter = new Client({ hub: hub.endpoint, worker: 'submitter' });
    try {
      const empty = await waiter.steal({ waitMs: 200 });
      expect(empty).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
      // The hub is finished (empty): a pilot's wait ends at once; a waiter for new work stays.
      expect(await waiter.steal({ waitMs: 20_000 })).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
      const pending = waiter.steal({ waitMs: 20_000, waitWhenFinished: true });
      await submitter.create([{ name: 'late' }]);
      const got = await pending;
      expect(got.tasks.map((t) => t.name)).toEqual(['late']);
      // complete-and-steal may wait too.
      const next = waiter.complete([{ name: 'late' }], { waitMs: 20_000, waitWhenFinished: true });
      await submitter.create([{ name: 'later', deps: ['late'] }, { name: 'other' }]);
      const { results, next: stolen } = await next;
      expect(results[0]?.outcome).toBe('ACCEPTED');
      expect(stolen?.tasks.map((t) => t.name)).toEqual(['later']);
      // A waiting steal is answered as soon as its pool becomes finished.
      await waiter.steal({ n: 5 }); // takes 'other' too
      const finishing = submitter.steal({ waitMs: 20_000 });
      await waiter.complete([{ name: 'later' }, { name: 'other' }]);
      expect(await finishing).toEqual({ tasks: [], finished: true, retryAfterMs: 0 });
    } finally {
      waiter.close();
      submitter.close();
      await hub.stop();
    }
  });

  it('hands an expired lease to another worker, with the attempt counted', async () => {
    const hub = await startHub();
    const dead = new Client({ hub: hub.endpoint, worker: 'dead' });
    const live = new Client({ hub: hub.endpoint, worker: 'live' });
    try {
      await dead.create([{ name: 't', leaseMs: 300 }]);
      expect((await dead.steal()).tasks).toHaveLength(1);
      const again = await live.steal({ waitMs: 10_000 }); // parked until the lease expires
      expect(again.tasks.map((t) => [t.name, t.attempt])).toEqual([['t', 2]]);
      const record = (await live.lookup('t')).task;
      expect(record.lastError).toMatch(/lease expired \(worker dead/);
      expect((await dead.complete([{ name: 't' }])).results[0]?.outcome).toBe('LEASED_TO_OTHER');
    } finally {
      dead.close();
      live.close();
      await hub.stop();
    }
  });

  it('loses nothing it acknowledged when killed with SIGKILL under load', async () => {
    const hub = await startHub();
    const total = 3000;
    const setup = new Client({ hub: hub.endpoint, worker: 'setup' });
    await setup.create(Array.from({ length: total }, (_, i) => ({ name: `t${i}` })));
    setup.close();
    const acknowledged = new Set<string>();
    const workers = Array.from({ length: 4 }, (_, i) => new Client({ hub: hub.endpoint, worker: `w${i}`, timeoutMs: 1000, retries: 0 }));
    let stop = false;
    const loops = workers.map(async (w) => {
      let held: string[] = [];
      while (!stop) {
        try {
          const { results, next } = await w.complete(
            held.map((name) => ({ name })),
            { n: 8 },
          );
          results.forEach((r) => r.outcome === 'ACCEPTED' && acknowledged.add(r.name));
          held = next?.tasks.map((t) => t.name) ?? [];
          if (held.length === 0 && next?.finished === true) return;
        } catch {
          return; // the hub is gone
        }
      }
    });
    // Let the workers get going, then pull the plug.
    while (acknowledged.size < 500) await new Promise((r) => setTimeout(r, 5));
    await hub.stop('SIGKILL');
    stop = true;
    await Promise.all(loops);
    workers.forEach((w) => w.close());

    const stored = await records(kind, hub.store);
    expect(stored.size).toBe(total);
    const notDone = [...acknowledged].filter((name) => stored.get(name)?.state !== 'done');
    expect(notDone).toEqual([]);
    expect(acknowledged.size).toBeGreaterThanOrEqual(500);
  });
});
