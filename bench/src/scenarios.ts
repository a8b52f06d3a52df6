/** The benchmark's scenarios. Each runs real processes on 127.0.0.1 and returns its figures. */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../hub/src/store/store.js';
import type { TaskRecord } from '../../proto/src/types.js';
import { Client } from '../../worker-kit/src/index.js';
import { DQUERY, freePort, now, role, spawnRole, startHub, tempDir, timed } from './proc.js';
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

/** CPU time (user and system) process `pid` has used, in ms (/proc, in clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Steal+complete by `clients` processes, `n` a round trip, over `count` independent tasks: tasks/s. */
async function drainOnce(
  count: number,
  n: number,
  clients: number,
  options: { sync?: boolean; poolLimit?: number; resultVerifier?: string; dashboard?: { port: number; browsers: number }; hubCpu?: { usPerTask: number } } = {},
): Promise<number> {
  const hub = await startHub({ ...(options.sync === undefined ? {} : { sync: options.sync }), args: options.dashboard === undefined ? [] : ['--http', `127.0.0.1:${options.dashboard.port}`] });
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
    { scenario: 'load', figure: `${count}-task stencil, client API, batches of 5000`, value: api, unit: 'tasks/s', runs: ctx.runs, target: '200k tasks/s' },
    { scenario: 'load', figure: `${count}-task stencil, dquery addfile end to end`, value: cli, unit: 'tasks/s', runs: ctx.runs, target: '100k lines < 1 s' },
  ];
}

export async function drain(ctx: Context): Promise<Figure[]> {
  const { drainOne, drainBatch } = ctx.sizes;
  const one = await repeat(ctx.runs, () => drainOnce(drainOne, 1, 1));
  const batch = await repeat(ctx.runs, () => drainOnce(drainBatch, 64, 1));
  const eight = await repeat(ctx.runs, () => drainOnce(drainBatch, 64, 8));
  // Beside the plain drain: the same with the pool limited to 256 leased at once (8 x 64 would be 512).
  const limited = await repeat(ctx.runs, () => drainOnce(drainBatch, 64, 8, { poolLimit: 256 }));
  // And with a trivial result verifier: the hub starts a process (sh, then true) per completion,
  // --verifier-jobs (the cores) at once; a drain ends when the last verification has passed.
  const verified = Math.min(drainOne, 5000);
  const verifying = await repeat(ctx.runs, () => drainOnce(verified, 64, 1, { resultVerifier: '/bin/true' }));
  return [
    throughput(ctx, 'drain', `1 client, n=1 (complete+steal in one round trip), ${drainOne} tasks`, one, ctx.runs, '6k/s, >= 85% of raw'),
    throughput(ctx, 'drain', `1 client, n=64, ${drainBatch} tasks`, batch, ctx.runs, '100k/s'),
    throughput(ctx, 'drain', `8 clients, n=64, ${drainBatch} tasks`, eight, ctx.runs, '150k/s (4 clients)'),
    throughput(ctx, 'drain', `8 clients, n=64, ${drainBatch} tasks, pool --max-running 256`, limited, ctx.runs),
    { ...throughput(ctx, 'drain', `1 client, n=64, ${verified} tasks, result verifier /bin/true`, verifying, ctx.runs), note: 'a verifier process per task' },
  ];
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
    { scenario: 'latency', figure: `wake: create -> handler start, p50 of ${n}`, value: percentile(wake, 50), unit: 'ms', runs: 1, target: '0.5 ms' },
    { scenario: 'latency', figure: `wake: create -> handler start, p99 of ${n}`, value: percentile(wake, 99), unit: 'ms', runs: 1, target: '2 ms' },
    { scenario: 'latency', figure: `steal round trip under load (4 clients n=64), p50 of ${probe.length}`, value: percentile(probe, 50), unit: 'ms', runs: 1 },
    { scenario: 'latency', figure: `steal round trip under load (4 clients n=64), p99 of ${probe.length}`, value: percentile(probe, 99), unit: 'ms', runs: 1 },
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
        const client = new Client({ hub: hub.endpoint, worker: 'status', timeoutMs: 60_000 });
        const times: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = now();
          await client.status();
          times.push(now() - t0);
        }
        client.close();
        await hub.stop();
        const restarted = await startHub({ db: hub.db });
        await firstAnswer(restarted.endpoint);
        const recovery = now() - restarted.startedAt;
        figures.push(
          { scenario: 'scale', figure: `load ${size} independent tasks, client API`, value: loaded.seconds ?? NaN, unit: 's', runs: 1 },
          { scenario: 'scale', figure: `hub RSS after loading ${size} tasks`, value: rss / size, unit: 'B/task', runs: 1, target: '300 B/task at 1M' },
          { scenario: 'scale', figure: `status at ${size} tasks, median of 20`, value: median(times), unit: 'ms', runs: 20 },
          { scenario: 'scale', figure: `restart: dhub start to first answer, ${size} tasks`, value: recovery / 1000, unit: 's', runs: 1, target: '< 3 s at 1M' },
        );
        const drained = await role('drain', { hub: restarted.endpoint, n: 64 });
        await restarted.stop();
        figures.push({ scenario: 'scale', figure: `drain cost per task at ${size} tasks (1 client, n=64)`, value: 1e6 / (drained.perSecond ?? NaN), unit: 'µs/task', runs: 1, target: 'flat' });
      } else {
        const drained = await role('drain', { hub: hub.endpoint, n: 64 });
        figures.push({ scenario: 'scale', figure: `drain cost per task at ${size} tasks (1 client, n=64)`, value: 1e6 / (drained.perSecond ?? NaN), unit: 'µs/task', runs: 1, target: 'flat' });
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
  await hub.stop();
  const restarted = await startHub({ db: hub.db });
  await firstAnswer(restarted.endpoint);
  const recovery = (now() - restarted.startedAt) / 1000;
  await restarted.stop();
  const size = columns * rows;
  figures.push(
    { scenario: 'scale', figure: `load ${size}-task stencil, client API`, value: loaded.seconds ?? NaN, unit: 's', runs: 1 },
    { scenario: 'scale', figure: `hub RSS after loading the ${size}-task stencil`, value: rss / size, unit: 'B/task', runs: 1 },
    { scenario: 'scale', figure: `restart with the ${size}-task stencil`, value: recovery, unit: 's', runs: 1 },
  );
  return figures;
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
    { ...throughput(ctx, 'durability', 'drain n=64, --sync (fsync every group commit)', synced, ctx.runs), note: cost(plain, synced) },
    throughput(ctx, 'durability', 'drain n=1, default store', plainOne, ctx.runs),
    { ...throughput(ctx, 'durability', 'drain n=1, --sync', syncedOne, ctx.runs), note: cost(plainOne, syncedOne) },
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
  const { spawn } = await import('node:child_process');
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

export const SCENARIOS = { raw, load, drain, stencil, latency, scale, durability, cli, peer, files, dashboard } as const;
export type ScenarioName = keyof typeof SCENARIOS;
