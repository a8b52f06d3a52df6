/** The benchmark's scenarios. Each runs real processes on 127.0.0.1 and returns its figures. */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { Store } from '../../hub/src/store/store.js';
import type { TaskRecord } from '../../proto/src/types.js';
import { Client } from '../../worker-kit/src/index.js';
import { findDwork } from './dwork.js';
import { cpuMs, DQUERY, freePort, memory as memoryOf, now, resetPeak, role, sampleRss, spawnRole, startHub, tempDir, timed, type BenchHub } from './proc.js';
import { stencilFile } from '../../test/support/workloads.js';

export interface Figure {
  scenario: string;
  figure: string;
  value: number;
  unit: string;
  /** Runs the value is the median of. */
  runs: number;
  /** value / the raw echo's round trips per second, for throughputs. */
  ratio?: number;
  target?: string;
  note?: string;
}

/** The targets (dwork's figure beside, where it has one): one place for every row that has one. */
export const TARGETS = {
  drainOne: '>= 0.85x raw, ahead of BullMQ c=1',
  drainBatch: '>= 140k/s durable (dwork 138k)',
  postgresDrain: '>= 0.5x the LevelDB drain (n=64)',
  drainFour: '>= 280k/s (dwork 272k)',
  hubCpu: '<= 4 µs/task (dwork 3-4)',
  rss: '<= 300 B/task, flat (dwork 410/412)',
  rssAtScale: '<= 300 B/task; 10M on 24 GiB',
  loadFile: '100k lines < 0.5 s (dwork 1.05 s)',
  restart: '< 3 s at 1M',
  restartHuge: '< 30 s at 10M',
  syncBatch: 'fsync costs <= 10%',
  syncOne: 'fsync costs <= 25%',
  wakeP50: '0.5 ms',
  wakeP99: '<= 2 ms',
  probeP99: '<= 10 ms',
  drainCost: 'flat',
  loadApi: '200k tasks/s',
} as const;

export interface Sizes {
  rawSeconds: number;
  stencilColumns: number;
  stencilRows: number;
  drainOne: number;
  drainBatch: number;
  latencyTasks: number;
  scale: number[];
  cliRuns: number;
  cliLoop: number;
  peerJobs: number;
  /** The file sent through the hub, in MiB. */
  fileMiB: number;
  /** Lines of the sweep added. */
  sweepLines: number;
}

export const FULL: Sizes = {
  rawSeconds: 3,
  stencilColumns: 100,
  stencilRows: 1000,
  drainOne: 20_000,
  drainBatch: 100_000,
  latencyTasks: 1000,
  scale: [10_000, 100_000, 1_000_000],
  cliRuns: 10,
  cliLoop: 200,
  peerJobs: 20_000,
  fileMiB: 256,
  sweepLines: 10_000,
};

export const QUICK: Sizes = {
  rawSeconds: 0.5,
  stencilColumns: 50,
  stencilRows: 40,
  drainOne: 1000,
  drainBatch: 5000,
  latencyTasks: 100,
  scale: [2000, 10_000],
  cliRuns: 3,
  cliLoop: 10,
  peerJobs: 1000,
  fileMiB: 16,
  sweepLines: 500,
};

export interface Context {
  sizes: Sizes;
  runs: number;
  /** Round trips per second of the raw echo, once measured. */
  raw?: number;
  /** Tasks of each graph of the `huge` scenario (`--huge`; HUGE_TASKS unless `--huge-size`). */
  hugeTasks?: number;
  /** A part of a scenario that could not run, while the scenario goes on with the rest: the run then exits non-zero. */
  failed: (message: string) => void;
  log: (line: string) => void;
}

export const median = (xs: number[]): number => percentile(xs, 50);
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (rank - lo);
}

async function repeat(runs: number, once: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await once());
  return median(values);
}

function throughput(ctx: Context, scenario: string, figure: string, value: number, runs: number, target?: string): Figure {
  return { scenario, figure, value, unit: 'tasks/s', runs, ...(ctx.raw === undefined ? {} : { ratio: value / ctx.raw }), ...(target === undefined ? {} : { target }) };
}

/** Steal+complete by `clients` processes, `n` a round trip, over `count` independent tasks: tasks/s. */
async function drainOnce(
  count: number,
  n: number,
  clients: number,
  options: { sync?: boolean; poolLimit?: number; resultVerifier?: string; dashboard?: { port: number; browsers: number }; hubCpu?: { usPerTask: number }; store?: string } = {},
): Promise<number> {
  const args = [...(options.dashboard === undefined ? [] : ['--http', `127.0.0.1:${options.dashboard.port}`]), ...(options.store === undefined ? [] : ['--store', options.store])];
  const hub = await startHub({ ...(options.sync === undefined ? {} : { sync: options.sync }), args });
  let browsers: ReturnType<typeof spawnRole> | undefined;
  try {
    if (options.poolLimit !== undefined || options.resultVerifier !== undefined) {
      // The tasks' pool limited (dquery pool set default --max-running N): the throttled path of
      // every steal; or with a result verifier: a process run by the hub for each completion.
      const admin = new Client({ hub: hub.endpoint, worker: 'bench-admin' });
      await admin.poolSet({ pool: 'default', maxRunning: options.poolLimit, paused: undefined, resultVerifier: options.resultVerifier });
      admin.close();
    }
    await role('create', { hub: hub.endpoint, count, batch: 10_000 });
    if (options.dashboard !== undefined && options.dashboard.browsers > 0) {
      // The pages open and streaming before the drain starts.
      browsers = spawnRole('browsers', { url: `http://127.0.0.1:${options.dashboard.port}`, count: options.dashboard.browsers });
      await browsers.firstLine;
    }
    const cpuBefore = cpuMs(hub.pid);
    const results = await Promise.all(Array.from({ length: clients }, (_, i) => role('drain', { hub: hub.endpoint, n, worker: `d${i}` })));
    const total = results.reduce((s, r) => s + (r.count ?? 0), 0);
    if (options.hubCpu !== undefined) options.hubCpu.usPerTask = ((cpuMs(hub.pid) - cpuBefore) * 1000) / total;
    const start = Math.min(...results.map((r) => r.start ?? 0));
    const end = Math.max(...results.map((r) => r.end ?? 0));
    return total / ((end - start) / 1000);
  } finally {
    browsers?.child.kill('SIGTERM');
    await hub.stop();
  }
}

export async function raw(ctx: Context): Promise<Figure[]> {
  const value = await repeat(ctx.runs, async () => {
    const server = spawnRole('echo-server', {});
    try {
      const { endpoint } = await server.firstLine;
      const r = await role('echo-client', { endpoint, seconds: ctx.sizes.rawSeconds, size: 100 });
      return r.perSecond ?? NaN;
    } finally {
      server.child.kill('SIGTERM');
    }
  });
  ctx.raw = value;
  return [{ scenario: 'raw', figure: 'ZeroMQ REQ/REP echo, 100 B, 1 client', value, unit: 'round trips/s', runs: ctx.runs, ratio: 1, note: 'the limit for one client' }];
}

export async function load(ctx: Context): Promise<Figure[]> {
  const { stencilColumns: columns, stencilRows: rows } = ctx.sizes;
  const count = columns * rows;
  const api = await repeat(ctx.runs, async () => {
    const hub = await startHub();
    try {
      return (await role('create', { hub: hub.endpoint, stencil: true, columns, rows, batch: 5000 })).perSecond ?? NaN;
    } finally {
      await hub.stop();
    }
  });
  const file = join(tempDir(), 'stencil.txt');
  writeFileSync(file, stencilFile(columns, rows));
  const cli = await repeat(ctx.runs, async () => {
    const hub = await startHub();
    try {
      return count / ((await timed(process.execPath, [DQUERY, '--hub', hub.endpoint, 'addfile', file])) / 1000);
    } finally {
      await hub.stop();
    }
  });
  return [
    { scenario: 'load', figure: `${count}-task stencil, client API, batches of 5000`, value: api, unit: 'tasks/s', runs: ctx.runs, target: TARGETS.loadApi },
    { scenario: 'load', figure: `${count}-task stencil, dquery addfile end to end`, value: cli, unit: 'tasks/s', runs: ctx.runs, target: TARGETS.loadFile },
  ];
}

/** `runs` drains (see drainOnce): the median rate, and the median of the hub's CPU time a task. */
async function drainRuns(runs: number, count: number, n: number, clients: number): Promise<{ perSecond: number; usPerTask: number }> {
  const rates: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const hubCpu = { usPerTask: NaN };
    rates.push(await drainOnce(count, n, clients, { hubCpu }));
    cpu.push(hubCpu.usPerTask);
  }
  return { perSecond: median(rates), usPerTask: median(cpu) };
}

export async function drain(ctx: Context): Promise<Figure[]> {
  const { drainOne, drainBatch } = ctx.sizes;
  const one = await repeat(ctx.runs, () => drainOnce(drainOne, 1, 1));
  const batch = await drainRuns(ctx.runs, drainBatch, 64, 1);
  const four = await drainRuns(ctx.runs, drainBatch, 64, 4);
  const eight = await drainRuns(ctx.runs, drainBatch, 64, 8);
  // Beside the plain drain: the same with the pool limited to 256 leased at once (8 x 64 would be 512).
  const limited = await repeat(ctx.runs, () => drainOnce(drainBatch, 64, 8, { poolLimit: 256 }));
  // And with a trivial result verifier: the hub starts a process (sh, then true) per completion,
  // --verifier-jobs (the cores) at once; a drain ends when the last verification has passed.
  const verified = Math.min(drainOne, 5000);
  const verifying = await repeat(ctx.runs, () => drainOnce(verified, 64, 1, { resultVerifier: '/bin/true' }));
  const cpu = (clients: number, usPerTask: number): Figure => ({ scenario: 'drain', figure: `hub CPU a task, ${clients} client${clients === 1 ? '' : 's'}, n=64 (from /proc)`, value: usPerTask, unit: 'µs/task', runs: ctx.runs, target: TARGETS.hubCpu });
  return [
    throughput(ctx, 'drain', `1 client, n=1 (complete+steal in one round trip), ${drainOne} tasks`, one, ctx.runs, TARGETS.drainOne),
    throughput(ctx, 'drain', `1 client, n=64, ${drainBatch} tasks`, batch.perSecond, ctx.runs, TARGETS.drainBatch),
    throughput(ctx, 'drain', `4 clients, n=64, ${drainBatch} tasks`, four.perSecond, ctx.runs, TARGETS.drainFour),
    throughput(ctx, 'drain', `8 clients, n=64, ${drainBatch} tasks`, eight.perSecond, ctx.runs),
    cpu(1, batch.usPerTask),
    cpu(4, four.usPerTask),
    cpu(8, eight.usPerTask),
    throughput(ctx, 'drain', `8 clients, n=64, ${drainBatch} tasks, pool --max-running 256`, limited, ctx.runs),
    { ...throughput(ctx, 'drain', `1 client, n=64, ${verified} tasks, result verifier /bin/true`, verifying, ctx.runs), note: 'a verifier process per task' },
  ];
}

/**
 * The hub's memory over a stencil's life: RSS per task once loaded, and at its peak while 4 batch
 * clients drain it (VmHWM, restarted after the load; VmRSS sampled besides); the drain's rate and
 * the hub's CPU a task beside.
 */
export async function memory(ctx: Context): Promise<Figure[]> {
  const { stencilColumns: columns, stencilRows: rows } = ctx.sizes;
  const count = columns * rows;
  const runs: { empty: number; loaded: number; peak: number; perSecond: number; usPerTask: number }[] = [];
  let exact = true;
  for (let i = 0; i < ctx.runs; i++) {
    const hub = await startHub();
    try {
      const empty = hub.rss();
      await role('create', { hub: hub.endpoint, stencil: true, columns, rows, batch: 10_000 });
      const loaded = hub.rss();
      const drained = await drainWatched(hub, 4);
      exact &&= drained.exact;
      runs.push({ empty, loaded, ...drained });
    } finally {
      await hub.stop();
    }
  }
  const at = (key: keyof (typeof runs)[number]): number => median(runs.map((r) => r[key]));
  const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  const inAll = (bytes: number): string => `${mib(bytes)} in all, the hub at start ${mib(at('empty'))}`;
  return [
    { scenario: 'memory', figure: `hub RSS a task after loading the ${count}-task stencil`, value: at('loaded') / count, unit: 'B/task', runs: ctx.runs, target: TARGETS.rss, note: inAll(at('loaded')) },
    {
      scenario: 'memory',
      figure: `hub RSS a task at its peak during the drain (4 clients, n=64)`,
      value: at('peak') / count,
      unit: 'B/task',
      runs: ctx.runs,
      target: TARGETS.rss,
      note: `${inAll(at('peak'))}; ${exact ? 'VmHWM' : 'VmRSS sampled every 50 ms (VmHWM could not be reset)'}`,
    },
    throughput(ctx, 'memory', `drain of the ${count}-task stencil, 4 clients, n=64`, at('perSecond'), ctx.runs),
    { scenario: 'memory', figure: 'hub CPU a task in that drain (from /proc)', value: at('usPerTask'), unit: 'µs/task', runs: ctx.runs, target: TARGETS.hubCpu },
  ];
}

/**
 * Drains `hub` with `clients` batch clients (n=64; for `seconds` at most when given) and watches it:
 * its peak RSS during the drain (VmHWM after resetting it, `exact`; else the highest VmRSS sampled),
 * the drain's rate and the hub's CPU a task.
 */
async function drainWatched(hub: BenchHub, clients: number, seconds?: number): Promise<{ peak: number; perSecond: number; usPerTask: number; count: number; exact: boolean }> {
  const exact = resetPeak(hub.pid);
  const sampler = sampleRss(hub.pid);
  const cpuBefore = cpuMs(hub.pid);
  const results = await Promise.all(Array.from({ length: clients }, (_, i) => role('drain', { hub: hub.endpoint, n: 64, worker: `d${i}`, ...(seconds === undefined ? {} : { seconds }) })));
  const usedMs = cpuMs(hub.pid) - cpuBefore;
  const sampled = sampler.stop();
  const peak = exact ? Math.max(memoryOf(hub.pid).peak, sampled) : sampled;
  const count = results.reduce((s, r) => s + (r.count ?? 0), 0);
  const start = Math.min(...results.map((r) => r.start ?? 0));
  const end = Math.max(...results.map((r) => r.end ?? 0));
  return { peak, perSecond: count / ((end - start) / 1000), usPerTask: (usedMs * 1000) / count, count, exact };
}

/**
 * The 8-client n=64 drain on a hub serving the dashboard, with nobody watching and with 20 pages
 * open (each loads what the page loads, then holds /events: a snapshot a second).
 */
export async function dashboard(ctx: Context): Promise<Figure[]> {
  const { drainBatch } = ctx.sizes;
  const BROWSERS = 20;
  // Run in pairs, one right after the other (which goes first alternating), so that the load of
  // the machine drifting between runs weighs on both alike; the ratio is the median of the pairs'.
  const unwatched: number[] = [];
  const watched: number[] = [];
  const ratios: number[] = [];
  const cpu = { unwatched: [] as number[], watched: [] as number[] };
  for (let i = 0; i < ctx.runs; i++) {
    const a = { usPerTask: NaN };
    const b = { usPerTask: NaN };
    const none = async (): Promise<number> => drainOnce(drainBatch, 64, 8, { dashboard: { port: await freePort(), browsers: 0 }, hubCpu: a });
    const some = async (): Promise<number> => drainOnce(drainBatch, 64, 8, { dashboard: { port: await freePort(), browsers: BROWSERS }, hubCpu: b });
    if (i % 2 === 0) {
      unwatched.push(await none());
      watched.push(await some());
    } else {
      watched.push(await some());
      unwatched.push(await none());
    }
    ratios.push((watched[i] as number) / (unwatched[i] as number));
    cpu.unwatched.push(a.usPerTask);
    cpu.watched.push(b.usPerTask);
    ctx.log(`  pair ${i + 1}: ${Math.round(unwatched[i] as number)} tasks/s with no page (hub ${a.usPerTask.toFixed(1)} µs CPU a task), ${Math.round(watched[i] as number)} with ${BROWSERS} (${b.usPerTask.toFixed(1)} µs)`);
  }
  const ratio = median(ratios);
  return [
    throughput(ctx, 'dashboard', `8 clients, n=64, ${drainBatch} tasks, dhub --http, no page open`, median(unwatched), ctx.runs),
    { ...throughput(ctx, 'dashboard', `8 clients, n=64, ${drainBatch} tasks, dhub --http, ${BROWSERS} pages streaming /events`, median(watched), ctx.runs), note: `${ratio.toFixed(2)}x the drain with no page open` },
    { scenario: 'dashboard', figure: `drain with ${BROWSERS} pages open / with none, run in pairs`, value: ratio, unit: 'ratio', runs: ctx.runs, target: '>= 0.9' },
    { scenario: 'dashboard', figure: 'hub CPU a task, no page open', value: median(cpu.unwatched), unit: 'µs/task', runs: ctx.runs },
    { scenario: 'dashboard', figure: `hub CPU a task, ${BROWSERS} pages streaming /events`, value: median(cpu.watched), unit: 'µs/task', runs: ctx.runs },
  ];
}

/** Checks from the store that no task started before each of its deps was done. */
async function checkOrder(db: string): Promise<{ tasks: number; early: number }> {
  const store = await Store.open(db);
  const tasks = new Map<string, TaskRecord>();
  for (const r of await store.loadAll()) tasks.set(r.spec.name, r);
  await store.close();
  const at = (r: TaskRecord | undefined, state: string): number => r?.log.find((c) => c.state === state)?.at ?? NaN;
  let early = 0;
  for (const t of tasks.values()) {
    if (t.state !== 'done') early++;
    for (const dep of t.spec.deps) if (!(at(t, 'running') >= at(tasks.get(dep), 'done'))) early++;
  }
  return { tasks: tasks.size, early };
}

export async function stencil(ctx: Context): Promise<Figure[]> {
  const { stencilColumns: columns, stencilRows: rows } = ctx.sizes;
  let violations = 0;
  const value = await repeat(ctx.runs, async () => {
    const hub = await startHub();
    let perSecond = NaN;
    try {
      await role('create', { hub: hub.endpoint, stencil: true, columns, rows, batch: 10_000 });
      const results = await Promise.all([1, 2, 3, 4].map(() => role('kit-worker', { hub: hub.endpoint, concurrency: 64 })));
      const total = results.reduce((s, r) => s + (r.count ?? 0), 0);
      perSecond = total / ((Math.max(...results.map((r) => r.end ?? 0)) - Math.min(...results.map((r) => r.start ?? 0))) / 1000);
    } finally {
      await hub.stop();
    }
    const order = await checkOrder(hub.db);
    violations += order.early + (order.tasks === columns * rows ? 0 : 1);
    return perSecond;
  });
  return [
    {
      ...throughput(ctx, 'stencil', `${columns * rows}-task stencil, 4 worker-kit workers (concurrency 64), no-op`, value, ctx.runs),
      note: violations === 0 ? 'dependency order checked: every task started after its deps were done' : `ORDER VIOLATED ${violations} times`,
    },
  ];
}

export async function latency(ctx: Context): Promise<Figure[]> {
  const hub = await startHub();
  const wake: number[] = [];
  let probe: number[] = [];
  try {
    const worker = spawnRole('latency-worker', { hub: hub.endpoint }, true);
    const client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    // Let the worker reach its long poll first.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (let i = 0; i < ctx.sizes.latencyTasks; i++) {
      const got = new Promise<number>((resolve) => worker.child.once('message', (m: { latencyMs: number }) => resolve(m.latencyMs)));
      await client.create([{ name: `l${i}`, payload: Buffer.from(String(now())) }]);
      wake.push(await got);
    }
    client.close();
    worker.child.disconnect();
    await new Promise((resolve) => worker.child.once('exit', resolve));
    // A single steal round trip while 4 batch clients drain the hub.
    await role('create', { hub: hub.endpoint, count: ctx.sizes.drainBatch, prefix: 'p', batch: 10_000 });
    const [probeResult] = await Promise.all([
      role<{ times: number[] }>('steal-probe', { hub: hub.endpoint, seconds: Math.max(1, ctx.sizes.rawSeconds * 2) }),
      ...[1, 2, 3, 4].map((i) => role('drain', { hub: hub.endpoint, n: 64, worker: `load${i}` })),
    ]);
    probe = probeResult.times;
  } finally {
    await hub.stop();
  }
  const n = ctx.sizes.latencyTasks;
  return [
    { scenario: 'latency', figure: `wake: create -> handler start, p50 of ${n}`, value: percentile(wake, 50), unit: 'ms', runs: 1, target: TARGETS.wakeP50 },
    { scenario: 'latency', figure: `wake: create -> handler start, p99 of ${n}`, value: percentile(wake, 99), unit: 'ms', runs: 1, target: TARGETS.wakeP99 },
    { scenario: 'latency', figure: `steal round trip under load (4 clients n=64), p50 of ${probe.length}`, value: percentile(probe, 50), unit: 'ms', runs: 1 },
    { scenario: 'latency', figure: `steal round trip under load (4 clients n=64), p99 of ${probe.length}`, value: percentile(probe, 99), unit: 'ms', runs: 1, target: TARGETS.probeP99 },
  ];
}

async function firstAnswer(endpoint: string): Promise<void> {
  const client = new Client({ hub: endpoint, worker: 'probe', timeoutMs: 120_000 });
  await client.status();
  client.close();
}

export async function scale(ctx: Context): Promise<Figure[]> {
  const figures: Figure[] = [];
  const largest = ctx.sizes.scale[ctx.sizes.scale.length - 1] as number;
  for (const size of ctx.sizes.scale) {
    const hub = await startHub();
    try {
      const loaded = await role('create', { hub: hub.endpoint, count: size, batch: 10_000 });
      if (size === largest) {
        const rss = hub.rss();
        const status = await statusMs(hub.endpoint);
        const { restarted, figures: restartFigures } = await restarts(hub, `${size} tasks`);
        figures.push(
          { scenario: 'scale', figure: `load ${size} independent tasks, client API`, value: loaded.seconds ?? NaN, unit: 's', runs: 1 },
          { scenario: 'scale', figure: `hub RSS after loading ${size} tasks`, value: rss / size, unit: 'B/task', runs: 1, target: TARGETS.rssAtScale },
          { scenario: 'scale', figure: `status at ${size} tasks, median of 20`, value: status, unit: 'ms', runs: 20 },
          ...restartFigures,
        );
        const drained = await role('drain', { hub: restarted.endpoint, n: 64 });
        await restarted.stop();
        figures.push({ scenario: 'scale', figure: `drain cost per task at ${size} tasks (1 client, n=64)`, value: 1e6 / (drained.perSecond ?? NaN), unit: 'µs/task', runs: 1, target: TARGETS.drainCost });
      } else {
        const drained = await role('drain', { hub: hub.endpoint, n: 64 });
        figures.push({ scenario: 'scale', figure: `drain cost per task at ${size} tasks (1 client, n=64)`, value: 1e6 / (drained.perSecond ?? NaN), unit: 'µs/task', runs: 1, target: TARGETS.drainCost });
        await hub.stop();
      }
    } catch (err) {
      await hub.stop().catch(() => undefined);
      throw err;
    }
  }
  // The largest stencil: load time, memory, recovery.
  const columns = 1000;
  const rows = Math.max(1, Math.floor(largest / columns));
  const hub = await startHub();
  const loaded = await role('create', { hub: hub.endpoint, stencil: true, columns, rows, batch: 10_000 });
  const rss = hub.rss();
  const size = columns * rows;
  const { restarted, figures: restartFigures } = await restarts(hub, `the ${size}-task stencil`);
  await restarted.stop();
  figures.push(
    { scenario: 'scale', figure: `load ${size}-task stencil, client API`, value: loaded.seconds ?? NaN, unit: 's', runs: 1 },
    { scenario: 'scale', figure: `hub RSS after loading the ${size}-task stencil`, value: rss / size, unit: 'B/task', runs: 1, target: TARGETS.rssAtScale },
    ...restartFigures,
  );
  return figures;
}

/** How long the hub restarted from its snapshot is drained before it is killed: the changes a crash's restart reads from the log. */
const CRASH_DRAIN_SECONDS = 5;

/**
 * `hub` stopped cleanly (SIGTERM: it writes its snapshot) and started again (reading it), drained
 * for CRASH_DRAIN_SECONDS and killed (kill -9), started again (reading the snapshot and the log
 * kept since: the drain's changes), killed again and started with the snapshot set aside
 * (--drop-record meta:snapshot: reading LevelDB, as a store without a snapshot is read): the
 * stop's time and the three restarts' (dhub start to first answer). Returns the last hub, running.
 */
async function restarts(hub: BenchHub, what: string): Promise<{ restarted: BenchHub; figures: Figure[] }> {
  const stopping = now();
  await hub.stop();
  const stop = (now() - stopping) / 1000;
  /** A hub on the same store and the seconds from its start to its first answer; stopped if it gives none. */
  const restart = async (args: string[] = []): Promise<{ hub: BenchHub; seconds: number }> => {
    const started = await startHub({ db: hub.db, args });
    try {
      await firstAnswer(started.endpoint);
    } catch (err) {
      await started.stop();
      throw err;
    }
    return { hub: started, seconds: (now() - started.startedAt) / 1000 };
  };
  const clean = await restart();
  let drained;
  try {
    drained = await role('drain', { hub: clean.hub.endpoint, n: 64, seconds: CRASH_DRAIN_SECONDS });
  } finally {
    await clean.hub.kill();
  }
  const crashed = await restart();
  await crashed.hub.kill();
  const level = await restart(['--drop-record', 'meta:snapshot']);
  return {
    restarted: level.hub,
    figures: [
      { scenario: 'scale', figure: `clean stop (SIGTERM to exit, its snapshot written), ${what}`, value: stop, unit: 's', runs: 1 },
      { scenario: 'scale', figure: `restart after a clean stop (the snapshot read), ${what}`, value: clean.seconds, unit: 's', runs: 1, target: TARGETS.restart },
      {
        scenario: 'scale',
        figure: `restart after kill -9 (the snapshot and the log since read), ${what}`,
        value: crashed.seconds,
        unit: 's',
        runs: 1,
        target: TARGETS.restart,
        note: `killed after ${CRASH_DRAIN_SECONDS} s of drain (${drained.count ?? '?'} tasks done since the snapshot)`,
      },
      { scenario: 'scale', figure: `restart after kill -9 without a snapshot (LevelDB read), ${what}`, value: level.seconds, unit: 's', runs: 1, target: TARGETS.restart },
    ],
  };
}

export async function durability(ctx: Context): Promise<Figure[]> {
  const count = ctx.sizes.drainBatch;
  const plain = await repeat(ctx.runs, () => drainOnce(count, 64, 1));
  const synced = await repeat(ctx.runs, () => drainOnce(count, 64, 1, { sync: true }));
  const plainOne = await repeat(ctx.runs, () => drainOnce(ctx.sizes.drainOne, 1, 1));
  const syncedOne = await repeat(ctx.runs, () => drainOnce(ctx.sizes.drainOne, 1, 1, { sync: true }));
  const cost = (a: number, b: number): string => `fsync costs ${(100 * (1 - b / a)).toFixed(0)}%`;
  return [
    throughput(ctx, 'durability', 'drain n=64, default store (write before ack)', plain, ctx.runs),
    { ...throughput(ctx, 'durability', 'drain n=64, --sync (fsync every group commit)', synced, ctx.runs, TARGETS.syncBatch), note: cost(plain, synced) },
    throughput(ctx, 'durability', 'drain n=1, default store', plainOne, ctx.runs),
    { ...throughput(ctx, 'durability', 'drain n=1, --sync', syncedOne, ctx.runs, TARGETS.syncOne), note: cost(plainOne, syncedOne) },
  ];
}

export async function cli(ctx: Context): Promise<Figure[]> {
  const hub = await startHub();
  try {
    const env = { DAGWORK_HUB: hub.endpoint, DAGWORK_WORKER: 'shell' };
    const bare = await repeat(ctx.sizes.cliRuns, () => timed(process.execPath, ['-e', '']));
    const status = await repeat(ctx.sizes.cliRuns, () => timed(process.execPath, [DQUERY, 'status'], { env }));
    const n = ctx.sizes.cliLoop;
    await timed(process.execPath, [DQUERY, 'addfile', '-'], { env, input: Array.from({ length: n }, (_, i) => `s${i}`).join('\n') });
    const script = `while :; do name=$(node ${DQUERY} steal -q); rc=$?; [ $rc -eq 4 ] && exit 0; [ $rc -ne 0 ] && exit $rc; node ${DQUERY} complete "$name" || exit 1; done`;
    const loop = await timed('bash', ['-c', script], { env });
    // The same number of tasks again, each completed with the next steal in one dquery: one steal
    // to start, then one process a task (README's loop).
    await timed(process.execPath, [DQUERY, 'addfile', '-'], { env, input: Array.from({ length: n }, (_, i) => `n${i}`).join('\n') });
    const nextScript = `name=$(node ${DQUERY} steal -q) || exit 1; while :; do name=$(node ${DQUERY} complete "$name" --next -q); rc=$?; [ $rc -eq 4 ] && exit 0; [ $rc -ne 0 ] && exit $rc; done`;
    const nextLoop = await timed('bash', ['-c', nextScript], { env });
    return [
      { scenario: 'cli', figure: "bare node -e ''", value: bare, unit: 'ms', runs: ctx.sizes.cliRuns },
      { scenario: 'cli', figure: 'dquery status', value: status, unit: 'ms', runs: ctx.sizes.cliRuns, note: `${(status / bare).toFixed(2)}x bare node`, target: '<= 1.3x bare node' },
      { scenario: 'cli', figure: `shell loop of dquery steal/complete, ${n} tasks`, value: n / (loop / 1000), unit: 'tasks/s', runs: 1, note: `${(loop / n / 2).toFixed(0)} ms a call` },
      {
        scenario: 'cli',
        figure: `shell loop of dquery complete --next, ${n} tasks`,
        value: n / (nextLoop / 1000),
        unit: 'tasks/s',
        runs: 1,
        note: `${(nextLoop / n).toFixed(0)} ms a task, ${(nextLoop / (n + 1)).toFixed(0)} ms a call`,
        target: '>= 20 tasks/s (dwork: 20.5)',
      },
    ];
  } finally {
    await hub.stop();
  }
}

export async function peer(ctx: Context): Promise<Figure[]> {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
    ctx.log('peer: redis-server is not on the PATH; BullMQ comparison skipped (apt-get install redis-server to run it)');
    return [];
  }
  try {
    await import('bullmq');
  } catch {
    ctx.log('peer: the bullmq package is not installed (npm ci installs it); skipped');
    return [];
  }
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100; i++) {
      if (spawnSync('redis-cli', ['-p', String(port), 'ping']).stdout?.toString().includes('PONG')) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const count = ctx.sizes.peerJobs;
    const one = await role('bullmq-drain', { port, count, concurrency: 1 });
    const fifty = await role('bullmq-drain', { port, count, concurrency: 50 });
    const ours = await drainOnce(count, 1, 1);
    const oursBatch = await drainOnce(count, 64, 1);
    return [
      { scenario: 'peer', figure: `BullMQ addBulk, ${count} jobs`, value: one.loadPerSecond ?? NaN, unit: 'jobs/s', runs: 1 },
      { scenario: 'peer', figure: `BullMQ drain, concurrency 1, ${count} jobs`, value: one.perSecond ?? NaN, unit: 'jobs/s', runs: 1, note: `dagwork n=1: ${(ours / (one.perSecond ?? NaN)).toFixed(2)}x` },
      { scenario: 'peer', figure: `BullMQ drain, concurrency 50, ${count} jobs`, value: fifty.perSecond ?? NaN, unit: 'jobs/s', runs: 1, note: `dagwork n=64: ${(oursBatch / (fifty.perSecond ?? NaN)).toFixed(2)}x` },
    ];
  } finally {
    redis.kill('SIGTERM');
  }
}

/** A file of `mib` MiB of pseudo-random bytes (not compressible, not all equal). */
function randomFile(path: string, mib: number): void {
  const block = Buffer.alloc(1 << 20);
  let x = 0x2545f491;
  for (let i = 0; i < block.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeInt32LE(x | 0, i);
  }
  const fd = openSync(path, 'w');
  for (let i = 0; i < mib; i++) {
    block[0] = i & 0xff; // every MiB differs
    writeSync(fd, block);
  }
  closeSync(fd);
}

export async function files(ctx: Context): Promise<Figure[]> {
  const { fileMiB, sweepLines } = ctx.sizes;
  const dir = tempDir();
  const file = join(dir, 'big.bin');
  randomFile(file, fileMiB);
  const chunk = 4 << 20;
  const raw = await repeat(ctx.runs, async () => {
    const sink = spawnRole('file-sink', { file: join(dir, 'raw-copy.bin') });
    try {
      const { endpoint } = await sink.firstLine;
      return (await role<{ mibPerSecond: number }>('file-source', { endpoint, file, chunk })).mibPerSecond;
    } finally {
      sink.child.kill('SIGTERM');
    }
  });
  const ups: number[] = [];
  const downs: number[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const hub = await startHub();
    try {
      const r = await role<{ up: number; down: number }>('file-client', { hub: hub.endpoint, file, out: join(dir, `back-${i}.bin`) });
      ups.push(r.up);
      downs.push(r.down);
    } finally {
      await hub.stop();
    }
  }
  const params = join(dir, 'points.txt');
  writeFileSync(params, ['alpha|beta', ...Array.from({ length: sweepLines }, (_, i) => `${i}|${(i * 0.37).toFixed(2)}`)].join('\n') + '\n');
  const sweep = await repeat(ctx.runs, async () => {
    const hub = await startHub();
    try {
      return await timed(process.execPath, [DQUERY, '--hub', hub.endpoint, 'sweep', params, '--cmd', 'echo {alpha} {beta}']);
    } finally {
      await hub.stop();
    }
  });
  const up = median(ups);
  const down = median(downs);
  const note = 'x raw: ratio to the raw ZeroMQ copy';
  return [
    { scenario: 'files', figure: `raw ZeroMQ REQ/REP copy of ${fileMiB} MiB, 4 MiB chunks, to disk`, value: raw, unit: 'MiB/s', runs: ctx.runs, ratio: 1 },
    { scenario: 'files', figure: `upload ${fileMiB} MiB through the hub (hash, send, verify, keep)`, value: up, unit: 'MiB/s', runs: ctx.runs, ratio: up / raw, note },
    { scenario: 'files', figure: `download ${fileMiB} MiB from the hub (fetch, hash, rename)`, value: down, unit: 'MiB/s', runs: ctx.runs, ratio: down / raw, note },
    { scenario: 'files', figure: `dquery sweep of ${sweepLines} lines, end to end`, value: sweep, unit: 'ms', runs: ctx.runs },
  ];
}

/** The `huge` scenario's size, and the columns of its stencil (the 1M stencil of `scale` has as many: a row holds 8 x 64 leased tasks). */
export const HUGE_TASKS = 10_000_000;
export const HUGE_COLUMNS = 1000;
/** Each huge drain stops after this long: the whole of 10M would take longer than it is worth at today's rates. */
export const HUGE_DRAIN_SECONDS = 240;
/**
 * Node's heap for the huge hubs: three quarters of the machine's memory. Its default (about 4 GiB
 * on a 64-bit machine) holds a few million tasks, not 10M (README, Limits).
 */
const HUGE_NODE_ARGS = [`--max-old-space-size=${Math.floor((totalmem() * 0.75) / 2 ** 20)}`];
/** A huge hub's start bound: its restart reads 10M tasks, which may take minutes on a busy machine (the figure says how long). */
const HUGE_START_MS = 10 * 60_000;

/**
 * `--huge` only: 10M independent tasks and a 10M-task stencil (1000 columns), each on a fresh hub:
 * load, RSS, status, restart, and a drain bounded in time (8 clients, n=64) on the restarted hub.
 * Each store is deleted as soon as its graph is measured.
 */
export async function huge(ctx: Context): Promise<Figure[]> {
  const tasks = ctx.hugeTasks ?? HUGE_TASKS;
  const figures: Figure[] = [];
  const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  for (const kind of ['independent', 'stencil'] as const) {
    const rows = Math.max(1, Math.floor(tasks / HUGE_COLUMNS));
    const count = kind === 'stencil' ? HUGE_COLUMNS * rows : tasks;
    const what = kind === 'stencil' ? `${count}-task stencil (${HUGE_COLUMNS} columns x ${rows} rows)` : `${count} independent tasks`;
    const figure = (f: Omit<Figure, 'scenario' | 'runs'> & { runs?: number }): void => {
      figures.push({ scenario: 'huge', runs: 1, ...f });
    };
    const dir = tempDir();
    const db = join(dir, 'db');
    let hub: (BenchHub & { startedAt: number }) | undefined;
    try {
      hub = await startHub({ db, nodeArgs: HUGE_NODE_ARGS, startMs: HUGE_START_MS });
      const empty = hub.rss();
      ctx.log(`  huge: loading ${what}`);
      const loaded = await whileUp(hub, role('create', { hub: hub.endpoint, batch: 10_000, ...(kind === 'stencil' ? { stencil: true, columns: HUGE_COLUMNS, rows } : { count }) }));
      const afterLoad = hub.rss();
      figure({ figure: `load ${what}, client API, batches of 10000`, value: loaded.seconds ?? NaN, unit: 's', note: `${Math.round(loaded.perSecond ?? NaN)} tasks/s` });
      figure({ figure: `hub RSS a task after loading ${what}`, value: afterLoad / count, unit: 'B/task', target: TARGETS.rssAtScale, note: `${mib(afterLoad)} in all, the hub at start ${mib(empty)}` });
      figure({ figure: `status with ${what}, median of 20`, value: await whileUp(hub, statusMs(hub.endpoint)), unit: 'ms', runs: 20 });
      const stopping = now();
      await hub.stop();
      figure({ figure: `clean stop (SIGTERM to exit, its snapshot written), ${what}`, value: (now() - stopping) / 1000, unit: 's' });
      ctx.log('  huge: restarting');
      hub = await startHub({ db, nodeArgs: HUGE_NODE_ARGS, startMs: HUGE_START_MS });
      await whileUp(hub, firstAnswer(hub.endpoint));
      const restart = (now() - hub.startedAt) / 1000;
      const afterRestart = hub.rss();
      figure({ figure: `restart after a clean stop (the snapshot read), ${what}`, value: restart, unit: 's', target: TARGETS.restartHuge });
      figure({ figure: `hub RSS a task after the restart, ${what}`, value: afterRestart / count, unit: 'B/task', target: TARGETS.rssAtScale, note: `${mib(afterRestart)} in all` });
      ctx.log(`  huge: draining (8 clients, n=64, at most ${HUGE_DRAIN_SECONDS} s)`);
      const drained = await whileUp(hub, drainWatched(hub, 8, HUGE_DRAIN_SECONDS));
      const part = drained.count >= count ? 'the whole graph' : `the first ${drained.count} tasks, stopped after ${HUGE_DRAIN_SECONDS} s`;
      figure({ figure: `hub RSS a task at its peak during the drain, ${what}`, value: drained.peak / count, unit: 'B/task', target: TARGETS.rssAtScale, note: `${mib(drained.peak)} in all; ${drained.exact ? 'VmHWM' : 'VmRSS sampled every 50 ms'}` });
      figures.push({ ...throughput(ctx, 'huge', `drain of ${what}, 8 clients, n=64`, drained.perSecond, 1), note: part });
      figure({ figure: 'hub CPU a task in that drain (from /proc)', value: drained.usPerTask, unit: 'µs/task', target: TARGETS.hubCpu });
    } catch (err) {
      // The other graph is still measured; the run says which failed, and exits non-zero.
      ctx.failed(`huge, ${what}: ${(err as Error).message}`);
    } finally {
      await hub?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return figures;
}

/** `work`, unless the hub exits first (out of memory, say): then why, from its log (Node's FATAL ERROR line, or its last line). */
async function whileUp<T>(hub: BenchHub, work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  return Promise.race([
    work,
    hub.exited.then((code) => {
      const lines = hub.log().trim().split('\n');
      const why = lines.find((line) => line.includes('FATAL ERROR')) ?? lines[lines.length - 1] ?? '';
      throw new Error(`dhub exited (${code ?? 'killed by a signal'}): ${why.trim()}`);
    }),
  ]);
}

/** The median of 20 `status` round trips, in ms. */
async function statusMs(endpoint: string): Promise<number> {
  const client = new Client({ hub: endpoint, worker: 'status', timeoutMs: 60_000 });
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = now();
    await client.status();
    times.push(now() - t0);
  }
  client.close();
  return median(times);
}

/**
 * dwork's hub (see dwork.ts: when a build and its .proto are found) beside dagwork's on the same
 * work: the load stencil created in batches of 5000, drained by 1 and by 4 clients at n=64 (steal,
 * then complete: dwork has no complete-and-steal), its RSS and CPU read from /proc as dhub's are.
 */
export async function dwork(ctx: Context): Promise<Figure[]> {
  const found = findDwork();
  if ('skip' in found) {
    ctx.log(`dwork: ${found.skip}; skipped (bench/README.md says how to build dwork)`);
    return [];
  }
  const { stencilColumns: columns, stencilRows: rows, drainOne } = ctx.sizes;
  const count = columns * rows;
  const runs: { load: number; loaded: number; peak: number; single: number; one: number; four: number; usOne: number; usFour: number }[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const once = async (clients: number, n: number, graph: { columns: number; rows: number } | { count: number }): Promise<{ load: number; loaded: number; peak: number; perSecond: number; usPerTask: number }> => {
      const peer = await startDwork(found.dhub, found.proto);
      try {
        const created = await role('dwork-create', { hub: peer.endpoint, proto: found.proto, batch: 5000, ...graph });
        const loaded = memoryOf(peer.pid).rss;
        const exact = resetPeak(peer.pid);
        const sampler = sampleRss(peer.pid);
        const cpuBefore = cpuMs(peer.pid);
        const results = await Promise.all(Array.from({ length: clients }, (_, c) => role('dwork-drain', { hub: peer.endpoint, proto: found.proto, n, worker: `d${c}` })));
        const usedMs = cpuMs(peer.pid) - cpuBefore;
        const sampled = sampler.stop();
        const drainedCount = results.reduce((s, r) => s + (r.count ?? 0), 0);
        const seconds = (Math.max(...results.map((r) => r.end ?? 0)) - Math.min(...results.map((r) => r.start ?? 0))) / 1000;
        return { load: created.seconds ?? NaN, loaded, peak: exact ? Math.max(memoryOf(peer.pid).peak, sampled) : sampled, perSecond: drainedCount / seconds, usPerTask: (usedMs * 1000) / drainedCount };
      } finally {
        await peer.stop();
      }
    };
    const one = await once(1, 64, { columns, rows });
    const four = await once(4, 64, { columns, rows });
    const single = await once(1, 1, { count: drainOne });
    runs.push({ load: one.load, loaded: one.loaded, peak: one.peak, single: single.perSecond, one: one.perSecond, four: four.perSecond, usOne: one.usPerTask, usFour: four.usPerTask });
  }
  const at = (key: keyof (typeof runs)[number]): number => median(runs.map((r) => r[key]));
  const note = "dwork's hub; the client is bench/src/dwork.ts";
  return [
    { scenario: 'dwork', figure: `dwork: load the ${count}-task stencil, batches of 5000`, value: at('load'), unit: 's', runs: ctx.runs, note },
    { scenario: 'dwork', figure: `dwork: hub RSS a task after loading it`, value: at('loaded') / count, unit: 'B/task', runs: ctx.runs, note },
    { scenario: 'dwork', figure: `dwork: hub RSS a task at its peak during the drain (1 client, n=64)`, value: at('peak') / count, unit: 'B/task', runs: ctx.runs, note },
    { ...throughput(ctx, 'dwork', `dwork: drain of ${drainOne} independent tasks, 1 client, n=1 (steal, then complete)`, at('single'), ctx.runs), note },
    { ...throughput(ctx, 'dwork', `dwork: drain of the stencil, 1 client, n=64 (steal, then complete)`, at('one'), ctx.runs), note },
    { ...throughput(ctx, 'dwork', `dwork: drain of the stencil, 4 clients, n=64 (steal, then complete)`, at('four'), ctx.runs), note },
    { scenario: 'dwork', figure: 'dwork: hub CPU a task, 1 client, n=64', value: at('usOne'), unit: 'µs/task', runs: ctx.runs, note },
    { scenario: 'dwork', figure: 'dwork: hub CPU a task, 4 clients, n=64', value: at('usFour'), unit: 'µs/task', runs: ctx.runs, note },
  ];
}

/** Starts dwork's dhub on a free port (it binds every interface; it keeps its graph in memory, with no -f) and waits for its first answer. */
async function startDwork(dhub: string, proto: string): Promise<{ endpoint: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(dhub, ['-p', String(port)], { cwd: tempDir(), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `tcp://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await role('dwork-status', { hub: endpoint, proto });
  } catch (err) {
    await stop();
    throw new Error(`dwork's dhub did not answer: ${(err as Error).message}\n${stderr}`);
  }
  return { endpoint, pid: child.pid as number, stop };
}

/**
 * The drains and the load with the store on PostgreSQL (dhub --store), when PostgreSQL is
 * installed: a throwaway cluster of its own (test/support/postgres.ts) with fsync on, a new
 * database a run. Beside the drain and load scenarios' LevelDB figures.
 */
export async function postgres(ctx: Context): Promise<Figure[]> {
  const support = await import('../../test/support/postgres.js');
  if (support.postgresMissing !== undefined) {
    ctx.log(`postgres: skipped: ${support.postgresMissing}`);
    return [];
  }
  const { drainOne, drainBatch, stencilColumns: columns, stencilRows: rows } = ctx.sizes;
  const cluster = await support.startPostgres({ durable: true });
  try {
    const one = await repeat(ctx.runs, async () => drainOnce(drainOne, 1, 1, { store: await cluster.createDatabase() }));
    const batch = await repeat(ctx.runs, async () => drainOnce(drainBatch, 64, 1, { store: await cluster.createDatabase() }));
    const four = await repeat(ctx.runs, async () => drainOnce(drainBatch, 64, 4, { store: await cluster.createDatabase() }));
    const load = await repeat(ctx.runs, async () => {
      const hub = await startHub({ args: ['--store', await cluster.createDatabase()] });
      try {
        return (await role('create', { hub: hub.endpoint, stencil: true, columns, rows, batch: 5000 })).perSecond ?? NaN;
      } finally {
        await hub.stop();
      }
    });
    return [
      throughput(ctx, 'postgres', `drain, 1 client, n=1, ${drainOne} tasks, store on PostgreSQL`, one, ctx.runs),
      throughput(ctx, 'postgres', `drain, 1 client, n=64, ${drainBatch} tasks, store on PostgreSQL`, batch, ctx.runs, TARGETS.postgresDrain),
      throughput(ctx, 'postgres', `drain, 4 clients, n=64, ${drainBatch} tasks, store on PostgreSQL`, four, ctx.runs),
      { scenario: 'postgres', figure: `${columns * rows}-task stencil, client API, batches of 5000, store on PostgreSQL`, value: load, unit: 'tasks/s', runs: ctx.runs },
    ];
  } finally {
    await cluster.stop();
  }
}

/** Every scenario; `huge` runs only with --huge (see DEFAULT_SCENARIOS). */
export const SCENARIOS = { raw, load, drain, postgres, memory, stencil, latency, scale, durability, cli, peer, dwork, files, dashboard, huge } as const;
export type ScenarioName = keyof typeof SCENARIOS;
/** What a run without --only runs: every scenario but `huge`. */
export const DEFAULT_SCENARIOS = (Object.keys(SCENARIOS) as ScenarioName[]).filter((name) => name !== 'huge');
