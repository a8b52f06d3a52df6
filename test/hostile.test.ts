/**
 * Hostile and unlucky peers against the real dhub: each shape answered fast with an error, the
 * hub's memory bounded, and the hub serving on. Scaled down from the shapes that once took a hub
 * down (the same shapes; fewer bytes), with bounds that the unfixed hub broke.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Dealer, Request } from 'zeromq';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeReply, encodeRequest, type Reply } from '../proto/src/codec.js';
import { Hub } from '../hub/src/server.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, startHub, tempDir, type RunningHub } from './helpers.js';
import { parseMetrics, sample } from './support/prom.js';

afterAll(cleanTempDirs);

const MiB = 2 ** 20;
const rss = (hub: RunningHub): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub.proc.pid as number}/status`, 'utf8'))?.[1] ?? 0) * 1024;

/** Sends one raw frame on a fresh REQ socket and returns the decoded reply. */
async function ask(endpoint: string, frame: Uint8Array): Promise<Reply> {
  const socket = new Request({ receiveTimeout: 20_000, linger: 0 });
  socket.connect(endpoint);
  try {
    await socket.send(frame);
    const [reply] = await socket.receive();
    return decodeReply(reply as Buffer);
  } finally {
    socket.close();
  }
}

/** A length-delimited Request{create{tasks}} holding `count` empty TaskSpecs (two bytes each), built without protobufjs. */
function emptySpecs(count: number): Buffer {
  const varint = (n: number): Buffer => {
    const bytes: number[] = [];
    while (n >= 0x80) {
      bytes.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    bytes.push(n);
    return Buffer.from(bytes);
  };
  const create = Buffer.alloc(count * 2);
  for (let i = 0; i < count; i++) create[i * 2] = 0x0a; // field 1, length-delimited, length 0
  const request = Buffer.concat([Buffer.from([0x0a]), varint(create.length), create]); // Request.create = field 1
  return Buffer.concat([varint(request.length), request]);
}

describe('hostile requests', () => {
  it('refuses millions of empty TaskSpecs with TOO_LARGE before decoding them, memory flat', async () => {
    const hub = await startHub();
    try {
      const before = rss(hub);
      const reply = await ask(hub.endpoint, emptySpecs(8_000_000)); // 16 MB: 8 million objects if decoded
      expect(reply).toMatchObject({ op: 'error', error: { code: 'TOO_LARGE', message: 'create holds more than 100000 tasks; that is the limit per request' } });
      expect(rss(hub) - before).toBeLessThan(200 * MiB);
      expect((await ask(hub.endpoint, encodeRequest({ op: 'status' }))).op).toBe('status');
    } finally {
      await hub.stop();
    }
  });

  it('refuses heartbeats naming millions of tasks, and steals naming too many pools', async () => {
    const hub = await startHub();
    try {
      const names = Array.from({ length: 300_000 }, () => 'x');
      expect(await ask(hub.endpoint, encodeRequest({ op: 'heartbeat', worker: 'w', names }))).toMatchObject({ error: { code: 'TOO_LARGE' } });
      const pools = Array.from({ length: 1001 }, (_, i) => `p${i}`);
      expect(await ask(hub.endpoint, encodeRequest({ op: 'steal', worker: 'w', n: 1, pools, waitMs: 0, waitWhenFinished: false }))).toMatchObject({
        error: { code: 'TOO_LARGE', message: 'steal holds more than 1000 pools; that is the limit per request' },
      });
    } finally {
      await hub.stop();
    }
  });

  it('answers MALFORMED to frames before the delimiter, keeping nothing of them', async () => {
    const hub = await startHub();
    const dealer = new Dealer({ receiveTimeout: 10_000, linger: 0 });
    dealer.connect(hub.endpoint);
    try {
      await dealer.send([Buffer.from('a'), Buffer.from('b'), Buffer.alloc(0), encodeRequest({ op: 'status' })]);
      const frames = await dealer.receive();
      expect(decodeReply(frames[frames.length - 1] as Buffer)).toMatchObject({ op: 'error', error: { code: 'MALFORMED' } });
    } finally {
      dealer.close();
      await hub.stop();
    }
  });

  it('drops the replies of a peer that pipelines big lookups and never reads, memory bounded', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    const dealer = new Dealer({ linger: 0, sendHighWaterMark: 10_000 });
    try {
      await client.create([{ name: 'big', payload: Buffer.alloc(MiB - 1024, 120) }]);
      dealer.receiveHighWaterMark = 1;
      dealer.connect(hub.endpoint);
      const lookup = encodeRequest({ op: 'lookup', name: 'big' });
      const flood = async (count: number): Promise<number> => {
        for (let i = 0; i < count; i++) await dealer.send([Buffer.alloc(0), lookup]);
        await client.status(); // the hub has read them all: it answers in order
        return rss(hub);
      };
      // The first flood settles the hub's memory (its outbox, the peer's queue, garbage not yet
      // collected); a flood three times as big must not add to it: 900 MB of replies asked for.
      const settled = await flood(300);
      expect((await flood(900)) - settled).toBeLessThan(100 * MiB);
      expect((await client.lookup('big')).task.state).toBe('ready');
    } finally {
      dealer.close();
      client.close();
      await hub.stop();
    }
  });
});

describe('many peers that do not read', () => {
  it('cost a bounded amount each: two queued replies', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    const dealers: Dealer[] = [];
    try {
      // A record of 2 MiB: a 1 MiB payload and a 1 MiB result.
      await client.create([{ name: 'big', payload: Buffer.alloc(MiB - 1024, 120) }]);
      await client.steal();
      await client.complete([{ name: 'big', result: Buffer.alloc(MiB - 1024, 121) }]);
      const lookup = encodeRequest({ op: 'lookup', name: 'big' });
      const flood = async (peers: number): Promise<number> => {
        for (let p = 0; p < peers; p++) {
          const dealer = new Dealer({ linger: 0, receiveHighWaterMark: 1 });
          dealer.connect(hub.endpoint);
          dealers.push(dealer);
          for (let i = 0; i < 16; i++) await dealer.send([Buffer.alloc(0), lookup]);
        }
        await client.status();
        // The least of 3 s of samples: replies dropped are garbage that the hub's collector frees
        // when it gets to it (sooner or later on a loaded machine); what is held stays.
        let least = Infinity;
        for (let i = 0; i < 12; i++) {
          await new Promise((resolve) => setTimeout(resolve, 250));
          await client.status();
          least = Math.min(least, rss(hub));
        }
        return least;
      };
      const settled = await flood(5);
      // 40 more peers asking 32 MB each: over 500 MB measured when each could hold 16 replies; two
      // replies each (and one in ZeroMQ's hands) is 240 MB at most, plus replies encoded and dropped and
      // not yet collected (measured: 60 to 190 MB in all, the least of each flood's samples; a
      // single sample after 500 ms gave 130 to 360 MB, and over 450 under a loaded CI).
      expect((await flood(40)) - settled).toBeLessThan(450 * MiB);
    } finally {
      for (const d of dealers) d.close();
      client.close();
      await hub.stop();
    }
  });
});

describe('leases and the peers that hold them', () => {
  it('renews running leases when the hub restarts slower than they last', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    await client.create([{ name: 'slow', leaseMs: 1000, maxAttempts: 1 }, { name: 'child', deps: ['slow'] }]);
    expect((await client.steal()).tasks.map((t) => t.name)).toEqual(['slow']);
    client.close();
    await hub.stop();
    await new Promise((resolve) => setTimeout(resolve, 1500)); // longer than the lease
    const again = await startHub({ db: hub.db });
    const worker = new Client({ hub: again.endpoint, worker: 'w' });
    try {
      expect(await worker.heartbeat(['slow'])).toEqual([]);
      expect((await worker.complete([{ name: 'slow' }])).results.map((r) => r.outcome)).toEqual(['ACCEPTED']);
      expect((await worker.lookup('child')).task.state).toBe('ready');
    } finally {
      worker.close();
      await again.stop();
    }
  });

  it('gives a parked steal’s tasks back when its client left before the reply', async () => {
    const hub = await startHub();
    const submitter = new Client({ hub: hub.endpoint, worker: 'submitter' });
    const gone = new Request({ linger: 0 });
    gone.connect(hub.endpoint);
    try {
      await gone.send(encodeRequest({ op: 'steal', worker: 'gone', n: 1, pools: [], waitMs: 20_000, waitWhenFinished: true }));
      await submitter.status(); // the steal is parked by now: the hub answers in order
      gone.close(); // Ctrl-C
      await new Promise((resolve) => setTimeout(resolve, 200)); // the hub sees the connection go
      await submitter.create([{ name: 't', maxAttempts: 1 }]);
      const live = new Client({ hub: hub.endpoint, worker: 'live' });
      try {
        const { tasks } = await live.steal({ waitMs: 5000 });
        expect(tasks.map((t) => [t.name, t.attempt])).toEqual([['t', 1]]);
      } finally {
        live.close();
      }
    } finally {
      submitter.close();
      await hub.stop();
    }
  });

  it('refuses a next steal for another worker', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'me' });
    try {
      await client.create([{ name: 'a' }, { name: 'b' }]);
      await client.steal();
      const reply = await ask(hub.endpoint, encodeRequest({ op: 'complete', worker: 'me', tasks: [{ name: 'a' }], next: { worker: 'other', n: 1, pools: [], waitMs: 0, waitWhenFinished: false } }));
      expect(reply).toMatchObject({ op: 'error', error: { code: 'INVALID_ARGUMENT' } });
      expect((await client.lookup('a')).task.state).toBe('running');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('lists at most 1,000 workers in status, and says how many it knows', async () => {
    const hub = await startHub();
    try {
      for (let i = 0; i < 1200; i += 200) {
        await Promise.all(
          Array.from({ length: 200 }, (_, j) => ask(hub.endpoint, encodeRequest({ op: 'heartbeat', worker: `made-up-${i + j}`, names: [] }))),
        );
      }
      const status = await ask(hub.endpoint, encodeRequest({ op: 'status' }));
      expect(status).toMatchObject({ op: 'status', workersTotal: 1200 });
      if (status.op === 'status') expect(status.workers).toHaveLength(1000);
    } finally {
      await hub.stop();
    }
  });
});

describe('the hub in process', () => {
  it('tells a steal it could not park when to ask again', async () => {
    const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db: join(tempDir(), 'db'), maxParked: 1 });
    const first = new Client({ hub: hub.endpoint, worker: 'a' });
    const second = new Client({ hub: hub.endpoint, worker: 'b' });
    try {
      const parkedSteals = async (): Promise<number> => sample(parseMetrics((await hub.metrics()).body), 'dagwork_parked_steals');
      const parked = first.steal({ waitMs: 2000, waitWhenFinished: true });
      // The two clients' requests may reach the hub in either order: the second asks once the first is parked.
      for (let i = 0; (await parkedSteals()) !== 1; i++) {
        expect(i, 'the first steal was never parked').toBeLessThan(100);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const refused = await second.steal({ waitMs: 1000, waitWhenFinished: true });
      expect(refused).toEqual({ tasks: [], finished: true, retryAfterMs: 1000 });
      expect(await parkedSteals()).toBe(1);
      expect((await parked).tasks).toEqual([]);
      expect(await parkedSteals()).toBe(0);
    } finally {
      first.close();
      second.close();
      await hub.stop();
    }
  });

  it('reloads its graph from the store when a transition throws, dropping what it half did', async () => {
    const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db: join(tempDir(), 'db') });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'a' }]);
      const graph = (hub as unknown as { graph: { steal: (...args: unknown[]) => unknown } }).graph;
      const steal = graph.steal.bind(graph);
      graph.steal = (...args: unknown[]) => {
        steal(...args); // leases a, then fails
        throw new Error('a bug in a transition');
      };
      await expect(client.steal()).rejects.toMatchObject({ code: 'INTERNAL' });
      const record = (await client.lookup('a')).task;
      expect(record).toMatchObject({ state: 'ready', attempts: 0 });
      expect((await client.steal()).tasks.map((t) => t.name)).toEqual(['a']); // the reloaded graph works
    } finally {
      client.close();
      await hub.stop();
    }
  });
});
