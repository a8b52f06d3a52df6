/**
 * The benchmark's client processes. `node roles.js ROLE 'JSON args'` runs one role and prints its
 * figures as one JSON line on stdout. Each role is bounded in time or count and ends by itself.
 */
import { open } from 'node:fs/promises';
import { Reply, Request } from 'zeromq';
import { Client, runWorker } from '../../worker-kit/src/index.js';
import type { TaskSpecInput } from '../../proto/src/types.js';
import { stencilSpec } from '../../test/support/workloads.js';
import { DworkClient } from './dwork.js';

type Args = Record<string, unknown>;
const now = (): number => performance.timeOrigin + performance.now();
const print = (figures: object): void => {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
};

const roles: Record<string, (args: Args) => Promise<void>> = {
  /**
   * `count` dashboard pages on `url`, as a browser loads one: its files and first reads once, then
   * the /events stream held open, each snapshot parsed. Prints { connected } once all stream, and
   * { snapshots } (received in all) when killed with SIGTERM.
   */
  async browsers(args) {
    const url = String(args.url);
    const count = Number(args.count);
    const once = ['/', '/app.js', '/style.css', '/vendor/uPlot.iife.min.js', '/vendor/uPlot.min.css', '/vendor/dagre.min.js', '/api/session', '/api/throughput'];
    let snapshots = 0;
    const streams = await Promise.all(
      Array.from({ length: count }, async () => {
        for (const path of once) {
          const res = await fetch(`${url}${path}`);
          if (!res.ok) throw new Error(`${path}: ${res.status}`);
          await res.arrayBuffer();
        }
        const res = await fetch(`${url}/events`);
        if (!res.ok || res.body === null) throw new Error(`/events: ${res.status}`);
        return res.body.getReader();
      }),
    );
    print({ connected: streams.length });
    process.once('SIGTERM', () => {
      print({ snapshots });
      process.exit(0);
    });
    const decoder = new TextDecoder();
    await Promise.all(
      streams.map(async (reader) => {
        let text = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += decoder.decode(value, { stream: true });
          for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
            const event = text.slice(0, end);
            text = text.slice(end + 2);
            if (event.startsWith('data: ')) {
              JSON.parse(event.slice(6));
              snapshots++;
            }
          }
        }
      }),
    );
  },

  /** Answers every message with itself until killed. */
  async 'echo-server'() {
    const socket = new Reply();
    await socket.bind('tcp://127.0.0.1:*');
    print({ endpoint: socket.lastEndpoint });
    for await (const [msg] of socket) await socket.send(msg as Buffer);
  },

  /** Writes every message it gets to `file` at the offset it holds (the raw baseline of a file copy); answers each with its length. */
  async 'file-sink'(args) {
    const socket = new Reply();
    await socket.bind('tcp://127.0.0.1:*');
    const handle = await open(String(args.file), 'w');
    print({ endpoint: socket.lastEndpoint });
    let offset = 0;
    for await (const [msg] of socket) {
      const data = msg as Buffer;
      await handle.write(data, 0, data.length, offset);
      offset += data.length;
      await socket.send(String(offset));
    }
  },

  /** Sends `file` to a file-sink in `chunk`-byte messages, read from disk a chunk at a time: MiB/s. */
  async 'file-source'(args) {
    const socket = new Request({ receiveTimeout: 60_000 });
    socket.connect(String(args.endpoint));
    const handle = await open(String(args.file), 'r');
    const buffer = Buffer.allocUnsafe(Number(args.chunk));
    const start = now();
    let offset = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) break;
      await socket.send(buffer.subarray(0, bytesRead));
      await socket.receive();
      offset += bytesRead;
    }
    print({ mibPerSecond: offset / 2 ** 20 / ((now() - start) / 1000) });
    await handle.close();
    socket.close();
  },

  /** Uploads `file` through the hub, then downloads it to `out`: MiB/s each way. */
  async 'file-client'(args) {
    const client = new Client({ hub: String(args.hub), worker: 'bench-files', timeoutMs: 60_000 });
    let start = now();
    const ref = await client.uploadFile(String(args.file));
    const up = ref.size / 2 ** 20 / ((now() - start) / 1000);
    start = now();
    await client.downloadFile(ref.sha256, String(args.out));
    const down = ref.size / 2 ** 20 / ((now() - start) / 1000);
    print({ up, down, sent: ref.sent });
    client.close();
  },

  /** REQ/REP round trips of `size`-byte messages for `seconds`. */
  async 'echo-client'(args) {
    const socket = new Request({ receiveTimeout: 5000 });
    socket.connect(String(args.endpoint));
    const msg = Buffer.alloc(Number(args.size), 7);
    const end = now() + Number(args.seconds) * 1000;
    let count = 0;
    const start = now();
    while (now() < end) {
      for (let i = 0; i < 100; i++) {
        await socket.send(msg);
        await socket.receive();
      }
      count += 100;
    }
    print({ perSecond: count / ((now() - start) / 1000) });
    socket.close();
  },

  /**
   * Creates a stencil (`columns` x `rows`) or `count` independent tasks in batches through the client
   * API. Each batch is made while the one before travels, so that 10M tasks never sit in memory.
   */
  async create(args) {
    const client = new Client({ hub: String(args.hub), worker: 'bench-create', timeoutMs: 120_000 });
    const stencil = args.stencil !== undefined;
    const columns = Number(args.columns);
    const prefix = String(args.prefix ?? 't');
    const count = stencil ? columns * Number(args.rows) : Number(args.count);
    const batch = Number(args.batch ?? 5000);
    const make = (from: number): TaskSpecInput[] => {
      const specs: TaskSpecInput[] = [];
      for (let i = from; i < Math.min(count, from + batch); i++) specs.push(stencil ? stencilSpec(i, columns) : { name: `${prefix}${i}` });
      return specs;
    };
    let next = make(0);
    const start = now();
    for (let i = 0; i < count; i += batch) {
      const sent = client.create(next);
      next = make(i + batch);
      await sent;
    }
    const seconds = (now() - start) / 1000;
    print({ count, seconds, perSecond: count / seconds });
    client.close();
  },

  /**
   * Steal + complete with no work until the pools are finished, `n` tasks a round trip; with
   * `seconds`, stops stealing after that long (the tasks it holds then are completed, not counted).
   */
  async drain(args) {
    const client = new Client({ hub: String(args.hub), worker: String(args.worker ?? `drain-${process.pid}`), timeoutMs: 60_000 });
    const n = Number(args.n);
    let held: string[] = [];
    let count = 0;
    const start = now();
    const until = args.seconds === undefined ? Infinity : start + Number(args.seconds) * 1000;
    for (;;) {
      if (now() >= until) {
        if (held.length > 0) await client.complete(held.map((name) => ({ name })));
        break;
      }
      const { next } = await client.complete(
        held.map((name) => ({ name })),
        { n, waitMs: 1000 },
      );
      count += held.length;
      held = next?.tasks.map((t) => t.name) ?? [];
      if (held.length === 0 && next?.finished === true) break;
    }
    const end = now();
    print({ count, start, end, perSecond: count / ((end - start) / 1000) });
    client.close();
  },

  /** A stencil (`columns` x `rows`) or `count` independent tasks created on dwork's hub through its QueryMsg (see dwork.ts), in batches. */
  async 'dwork-create'(args) {
    const client = await DworkClient.open(String(args.proto), String(args.hub), 'bench-create');
    const stencil = args.count === undefined;
    const columns = Number(args.columns);
    const count = stencil ? columns * Number(args.rows) : Number(args.count);
    const batch = Number(args.batch ?? 5000);
    const start = now();
    for (let i = 0; i < count; i += batch) {
      const specs: TaskSpecInput[] = [];
      for (let j = i; j < Math.min(count, i + batch); j++) specs.push(stencil ? stencilSpec(j, columns) : { name: `t${j}` });
      await client.create(specs.map((s) => ({ name: s.name, deps: s.deps ?? [] })));
    }
    const seconds = (now() - start) / 1000;
    print({ count, seconds, perSecond: count / seconds });
    client.close();
  },

  /** Waits for dwork's hub to answer its status query (bounded: 15 s). */
  async 'dwork-status'(args) {
    const client = await DworkClient.open(String(args.proto), String(args.hub), 'bench-status', 15_000);
    print({ status: await client.status() });
    client.close();
  },

  /** Steal `n`, complete them, until dwork's hub answers Exit (no active task): two round trips a batch, as dwork has no complete-and-steal. */
  async 'dwork-drain'(args) {
    const client = await DworkClient.open(String(args.proto), String(args.hub), String(args.worker ?? `drain-${process.pid}`));
    const n = Number(args.n);
    let count = 0;
    const start = now();
    for (;;) {
      const { names, exit } = await client.steal(n);
      if (names.length > 0) {
        await client.complete(names);
        count += names.length;
      } else if (exit) break;
      else await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const end = now();
    print({ count, start, end, perSecond: count / ((end - start) / 1000) });
    client.close();
  },

  /** One worker-kit worker with a no-op handler, until the graph is finished. */
  async 'kit-worker'(args) {
    const start = now();
    const summary = await runWorker({
      hub: String(args.hub),
      worker: `kit-${process.pid}`,
      concurrency: Number(args.concurrency ?? 64),
      handleSignals: false,
      client: { timeoutMs: 60_000 },
      handler: () => undefined,
    }).done;
    print({ count: summary.done, start, end: now() });
  },

  /** Waits in a long poll; reports, per task, the time from its creation (in the payload) to its handler. */
  async 'latency-worker'(args) {
    const worker = runWorker({
      hub: String(args.hub),
      worker: 'latency',
      exitWhenFinished: false,
      handleSignals: false,
      handler: (task) => {
        const created = Number(Buffer.from(task.payload).toString());
        process.send?.({ latencyMs: now() - created });
      },
    });
    process.once('disconnect', () => void worker.stop());
    print(await worker.done);
  },

  /** Complete-and-steal round trips of one task, timed one by one, for `seconds`. */
  async 'steal-probe'(args) {
    const client = new Client({ hub: String(args.hub), worker: 'probe', timeoutMs: 60_000 });
    const times: number[] = [];
    const end = now() + Number(args.seconds) * 1000;
    let held: string[] = [];
    while (now() < end) {
      const t0 = now();
      const { next } = await client.complete(
        held.map((name) => ({ name })),
        { n: 1 },
      );
      times.push(now() - t0);
      held = next?.tasks.map((t) => t.name) ?? [];
      if (held.length === 0 && next?.finished === true) break;
    }
    print({ times });
    client.close();
  },

  /** The same independent-jobs drain through BullMQ on a local Redis. */
  async 'bullmq-drain'(args) {
    const { Queue, Worker } = await import('bullmq');
    const { Redis } = await import('ioredis');
    // BullMQ wants its own connection per queue and worker; under ESM it takes built clients.
    const connect = (): InstanceType<typeof Redis> => new Redis({ host: '127.0.0.1', port: Number(args.port), maxRetriesPerRequest: null });
    const name = `bench-${process.pid}`;
    const queue = new Queue(name, { connection: connect() });
    const count = Number(args.count);
    const jobs = Array.from({ length: count }, (_, i) => ({ name: 'job', data: { i } }));
    const loadStart = now();
    for (let i = 0; i < count; i += 5000) await queue.addBulk(jobs.slice(i, i + 5000));
    const loadSeconds = (now() - loadStart) / 1000;
    let done = 0;
    const start = now();
    const finished = new Promise<void>((resolve) => {
      const worker = new Worker(name, async () => undefined, { connection: connect(), concurrency: Number(args.concurrency) });
      worker.on('completed', () => {
        if (++done === count) void worker.close().then(resolve);
      });
    });
    await finished;
    const seconds = (now() - start) / 1000;
    await queue.obliterate({ force: true });
    await queue.close();
    print({ loadPerSecond: count / loadSeconds, perSecond: count / seconds });
  },
};

const [role, json] = process.argv.slice(2);
if (role !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  const run = roles[role];
  if (run === undefined) {
    process.stderr.write(`unknown role ${role}; known: ${Object.keys(roles).join(', ')}\n`);
    process.exit(2);
  }
  await run(JSON.parse(json ?? '{}') as Args);
  process.exit(0);
}
