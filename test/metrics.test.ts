/**
 * The hub's Prometheus metrics: a known workload run against a hub in this process, then its
 * metrics read back and compared with what the workload did; the pool label's bound; and the
 * README's table of metrics against what the hub exposes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Request as ReqSocket } from 'zeromq';
import { decodeReply } from '../proto/src/codec.js';
import { HubMetrics, MAX_POOL_LABELS, OTHER_POOL, type MetricsSource } from '../hub/src/metrics.js';
import { defaultHubOptions, Hub } from '../hub/src/server.js';
import { emptyCounts, TASK_STATES, type StateCounts, type TaskState } from '../proto/src/types.js';
import { Client } from '../worker-kit/src/index.js';
import { failingStore } from './support/failing-store.js';
import { cleanTempDirs, ROOT, tempDir } from './helpers.js';
import { parseMetrics, sample, type Scrape } from './support/prom.js';

afterAll(cleanTempDirs);

/** The README's table of metrics: name -> type. */
function readmeMetrics(): Map<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = /### Metrics: `GET \/metrics`\n([\s\S]*?)\n## /.exec(readme)?.[1];
  if (section === undefined) throw new Error('README has no section "### Metrics: `GET /metrics`"');
  const metrics = new Map<string, string>();
  for (const row of section.matchAll(/^\| `(dagwork_\w+)` \| (\w+) \|/gm)) metrics.set(row[1] as string, row[2] as string);
  return metrics;
}

/** Every histogram's series is well formed: buckets cumulative, +Inf equal to the count. */
function checkHistograms(scrape: Scrape): void {
  for (const [name, type] of scrape.types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, [number, number][]>();
    for (const [key, value] of scrape.samples) {
      const m = new RegExp(`^${name}_bucket\\{(.*?),?le="([^"]+)",?(.*)\\}$`).exec(key);
      if (m === null) continue;
      const labels = `${m[1]}${m[3]}`;
      const le = m[2] === '+Inf' ? Infinity : Number(m[2]);
      series.set(labels, [...(series.get(labels) ?? []), [le, value]]);
    }
    expect(series.size, `${name} has series`).toBeGreaterThan(0);
    for (const [labels, buckets] of series) {
      buckets.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < buckets.length; i++) expect((buckets[i] as [number, number])[1], `${name}{${labels}} is cumulative`).toBeGreaterThanOrEqual((buckets[i - 1] as [number, number])[1]);
      const count = scrape.samples.get(labels === '' ? `${name}_count` : `${name}_count{${labels}}`);
      expect(buckets[buckets.length - 1], `${name}{${labels}}: +Inf is the count`).toEqual([Infinity, count]);
    }
  }
}

function counts(partial: Partial<StateCounts>): StateCounts {
  return { ...emptyCounts(), ...partial };
}

describe('hub metrics', () => {
  it('count what a known workload did, scraped from GET /metrics of dhub --http', async () => {
    const http = { ...defaultHubOptions().http, listen: { host: '127.0.0.1', port: 0 } };
    const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db: join(tempDir(), 'db'), http });
    const client = new Client({ hub: hub.endpoint, worker: 'w1', timeoutMs: 10_000 });
    // Requests sent, by operation: what dagwork_request_seconds must have counted.
    const sent = new Map<string, number>();
    const count = (op: string): void => void sent.set(op, (sent.get(op) ?? 0) + 1);
    try {
      // 30 tasks in two pools: alpha a0..a19; beta b0..b9, where b0..b2 have one attempt and b3 a short lease.
      const alpha = Array.from({ length: 20 }, (_, i) => ({ name: `a${i}`, pool: 'alpha' }));
      const beta = Array.from({ length: 10 }, (_, i) => ({ name: `b${i}`, pool: 'beta', ...(i < 3 ? { maxAttempts: 1 } : {}), ...(i === 3 ? { leaseMs: 150, maxAttempts: 3 } : {}) }));
      await client.create(alpha);
      count('create');
      await client.create(beta);
      count('create');

      // Complete the 20 of alpha, stealing 5 at a time, the first batch by a complete's `next`.
      let stolen = (await client.steal({ n: 5, pools: ['alpha'] })).tasks;
      count('steal');
      let completed = 0;
      while (stolen.length > 0) {
        completed += stolen.length;
        const { next } = await client.complete(stolen.map((t) => ({ name: t.name, result: 'ok' })), { n: 5, pools: ['alpha'] });
        count('complete');
        stolen = next?.tasks ?? [];
      }
      expect(completed).toBe(20);

      // b0..b2 fail with their one attempt used up; b0 is retried.
      const failing = (await client.steal({ n: 3, pools: ['beta'] })).tasks.map((t) => t.name);
      count('steal');
      expect(failing).toEqual(['b0', 'b1', 'b2']);
      for (const name of failing) {
        expect((await client.fail(name, 'boom')).state).toBe('failed');
        count('fail');
      }
      expect((await client.retry(['b0'])).retried).toBe(1);
      count('retry');

      // b3's lease expires (nobody heartbeats it): the hub's timer puts it back to ready.
      // b0 comes first again (it was made ready by the retry, and is first in creation order).
      const leased = (await client.steal({ n: 2, pools: ['beta'] })).tasks.map((t) => t.name);
      count('steal');
      expect(leased).toEqual(['b0', 'b3']);
      await client.release(['b0']);
      count('release');
      for (let state = ''; state !== 'ready'; ) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        state = (await client.lookup('b3')).task.state;
        count('lookup');
      }

      // One file in the store.
      const data = Buffer.from('metrics test file\n');
      const sha256 = createHash('sha256').update(data).digest('hex');
      expect((await client.filePut(sha256, data.length, 0, data)).held).toBe(true);
      count('filePut');

      const response = await fetch(new URL('/metrics', hub.dashboardUrl));
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const body = await response.text();
      const scrape = parseMetrics(body);
      const at = (name: string, labels: Record<string, string> = {}): number => sample(scrape, name, labels);

      // Gauges: alpha all done; beta: b1, b2 failed, the other 8 ready.
      const expected: Record<string, StateCounts> = { alpha: counts({ done: 20 }), beta: counts({ failed: 2, ready: 8 }) };
      for (const [pool, c] of Object.entries(expected)) {
        for (const state of TASK_STATES) expect(at('dagwork_tasks', { pool, state }), `${pool} ${state}`).toBe(c[state]);
      }
      for (const state of TASK_STATES) expect(at('dagwork_graph_tasks', { state }), state).toBe((expected.alpha as StateCounts)[state] + (expected.beta as StateCounts)[state]);
      expect(scrape.samples.has(`dagwork_tasks{pool="${OTHER_POOL}",state="ready"}`)).toBe(false);
      expect(at('dagwork_workers')).toBe(1);
      expect(at('dagwork_files')).toBe(1);
      expect(at('dagwork_files_bytes')).toBe(data.length);

      // Counters.
      const pools = (name: string): Record<string, number> => ({ alpha: at(name, { pool: 'alpha' }), beta: at(name, { pool: 'beta' }) });
      expect(pools('dagwork_tasks_created_total')).toEqual({ alpha: 20, beta: 10 });
      expect(pools('dagwork_tasks_completed_total')).toEqual({ alpha: 20, beta: 0 });
      // b0, b1, b2 failed; b3's lease expired.
      expect(pools('dagwork_attempts_failed_total')).toEqual({ alpha: 0, beta: 4 });
      expect(pools('dagwork_tasks_failed_total')).toEqual({ alpha: 0, beta: 3 });
      expect(pools('dagwork_tasks_retried_total')).toEqual({ alpha: 0, beta: 1 });
      expect(pools('dagwork_lease_expired_total')).toEqual({ alpha: 0, beta: 1 });

      // Histograms: a wait per lease (alpha 20; beta b0..b2, then b0 and b3), a run per task done.
      expect(pools('dagwork_queue_wait_seconds_count')).toEqual({ alpha: 20, beta: 5 });
      expect(pools('dagwork_run_seconds_count')).toEqual({ alpha: 20, beta: 0 });
      // b3's run was cut at its lease's end: it is no completion. Runs took less than the test.
      expect(at('dagwork_run_seconds_sum', { pool: 'alpha' })).toBeGreaterThanOrEqual(0);
      expect(at('dagwork_run_seconds_sum', { pool: 'alpha' })).toBeLessThan(20 * 60);
      for (const [op, n] of sent) expect(at('dagwork_request_seconds_count', { op }), op).toBe(n);
      const requestOps = [...scrape.samples.keys()].filter((k) => k.startsWith('dagwork_request_seconds_count{')).map((k) => /op="(\w+)"/.exec(k)?.[1]);
      expect(requestOps.sort()).toEqual([...sent.keys()].sort());
      // Every request changing tasks was written by a group commit; each task record at least once.
      expect(at('dagwork_store_commit_records_count')).toBeGreaterThan(0);
      expect(at('dagwork_store_commit_seconds_count')).toBe(at('dagwork_store_commit_records_count'));
      expect(at('dagwork_store_commit_records_sum')).toBeGreaterThanOrEqual(30);
      checkHistograms(scrape);

      expect(at('dagwork_event_loop_delay_seconds', { stat: 'max' })).toBeGreaterThanOrEqual(0);
      expect(at('dagwork_process_resident_memory_bytes')).toBeGreaterThan(0);

      // What the README lists is exactly what the hub exposes, each with its type.
      const hubMetrics = new Map([...scrape.types].filter(([name]) => name.startsWith('dagwork_')));
      expect(hubMetrics).toEqual(readmeMetrics());
      expect(hubMetrics.size).toBe(scrape.types.size);
    } finally {
      client.close();
      await hub.stop();
    }
  }, 30_000);

  it('measures a request from its arrival to its reply, a long poll included; one it cannot read as "invalid"', async () => {
    const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db: join(tempDir(), 'db') });
    const client = new Client({ hub: hub.endpoint, worker: 'w1', timeoutMs: 10_000 });
    const raw = new ReqSocket({ receiveTimeout: 10_000, linger: 0 });
    try {
      raw.connect(hub.endpoint);
      await raw.send(Buffer.from([0xff, 0xff, 0xff]));
      const [frame] = await raw.receive();
      expect(decodeReply(frame as Buffer)).toMatchObject({ op: 'error', error: { code: 'MALFORMED' } });
      expect(sample(parseMetrics((await hub.metrics()).body), 'dagwork_request_seconds_count', { op: 'invalid' })).toBe(1);

      const started = Date.now();
      expect((await client.steal({ waitMs: 300, waitWhenFinished: true })).tasks).toEqual([]);
      const waited = (Date.now() - started) / 1000;
      const scrape = parseMetrics((await hub.metrics()).body);
      expect(sample(scrape, 'dagwork_request_seconds_count', { op: 'steal' })).toBe(1);
      const seconds = sample(scrape, 'dagwork_request_seconds_sum', { op: 'steal' });
      expect(seconds).toBeGreaterThanOrEqual(0.29);
      expect(seconds).toBeLessThanOrEqual(waited);
      expect(sample(scrape, 'dagwork_request_seconds_bucket', { op: 'steal', le: '0.25' })).toBe(0);
      expect(sample(scrape, 'dagwork_request_seconds_bucket', { op: 'steal', le: '0.5' })).toBe(1);
    } finally {
      raw.close();
      client.close();
      await hub.stop();
    }
  }, 30_000);
});

describe('hub metrics across a failed write', () => {
  it('go on counting on the graph reloaded after a failed write; what the write lost stays counted', async () => {
    let failWrites = false;
    const hub = await Hub.start({
      bind: 'tcp://127.0.0.1:*',
      db: join(tempDir(), 'db'),
      openStore: failingStore(() => failWrites),
    });
    const client = new Client({ hub: hub.endpoint, worker: 'w', timeoutMs: 10_000 });
    try {
      await client.create([{ name: 'kept', pool: 'p' }]);
      failWrites = true;
      await expect(client.create([{ name: 'lost', pool: 'p' }])).rejects.toMatchObject({ code: 'STORE_FAILED' });
      failWrites = false;
      await client.create([{ name: 'after', pool: 'p' }]);
      const scrape = parseMetrics((await hub.metrics()).body);
      expect(sample(scrape, 'dagwork_tasks_created_total', { pool: 'p' })).toBe(3);
      expect(sample(scrape, 'dagwork_tasks', { pool: 'p', state: 'ready' })).toBe(2);
      // Every request is timed, the one answered STORE_FAILED too; only the writes that succeeded are.
      expect(sample(scrape, 'dagwork_request_seconds_count', { op: 'create' })).toBe(3);
      expect(sample(scrape, 'dagwork_store_commit_records_sum')).toBe(2);
    } finally {
      client.close();
      await hub.stop();
    }
  }, 30_000);
});

describe('HubMetrics', () => {
  /** A source with the given pools' counts (the graph lists at most 1,000 pools; the total counts them all). */
  function source(pools: { pool: string; counts: StateCounts }[], total: StateCounts): MetricsSource {
    return { stateCounts: () => ({ counts: total, pools, workers: 0 }), files: () => ({ count: 0, bytes: 0 }), parkedSteals: () => 0 };
  }

  it(`gives the first ${MAX_POOL_LABELS} pools a label each and the rest "${OTHER_POOL}" together`, async () => {
    const metrics = new HubMetrics(source([], emptyCounts()));
    try {
      for (let i = 0; i < MAX_POOL_LABELS + 5; i++) metrics.observer.created(`p${i}`, 2);
      metrics.observer.created(`p${MAX_POOL_LABELS + 1}`, 1);
      metrics.observer.leased(`p${MAX_POOL_LABELS + 2}`, 1500);
      metrics.observer.completed('p0', 250);
      const scrape = parseMetrics((await metrics.text()).body);
      const created = [...scrape.samples].filter(([k]) => k.startsWith('dagwork_tasks_created_total{'));
      expect(created.length).toBe(MAX_POOL_LABELS + 1);
      expect(sample(scrape, 'dagwork_tasks_created_total', { pool: 'p0' })).toBe(2);
      expect(sample(scrape, 'dagwork_tasks_created_total', { pool: `p${MAX_POOL_LABELS - 1}` })).toBe(2);
      expect(scrape.samples.has(`dagwork_tasks_created_total{pool="p${MAX_POOL_LABELS}"}`)).toBe(false);
      expect(sample(scrape, 'dagwork_tasks_created_total', { pool: OTHER_POOL })).toBe(5 * 2 + 1);
      expect(sample(scrape, 'dagwork_queue_wait_seconds_count', { pool: OTHER_POOL })).toBe(1);
      expect(sample(scrape, 'dagwork_queue_wait_seconds_sum', { pool: OTHER_POOL })).toBe(1.5);
      expect(sample(scrape, 'dagwork_queue_wait_seconds_bucket', { pool: OTHER_POOL, le: '1' })).toBe(0);
      expect(sample(scrape, 'dagwork_queue_wait_seconds_bucket', { pool: OTHER_POOL, le: '5' })).toBe(1);
      expect(sample(scrape, 'dagwork_run_seconds_sum', { pool: 'p0' })).toBe(0.25);
      expect(sample(scrape, 'dagwork_tasks_completed_total', { pool: 'p0' })).toBe(1);
    } finally {
      metrics.close();
    }
  });

  it(`counts the tasks of pools without a label of their own, and of pools the graph does not list, as "${OTHER_POOL}"`, async () => {
    const listed = [
      { pool: 'x', counts: counts({ ready: 3 }) },
      { pool: 'y', counts: counts({ done: 4, failed: 1 }) },
    ];
    // The graph holds 2 running tasks more, in pools it does not list.
    const metrics = new HubMetrics(source(listed, counts({ ready: 3, done: 4, failed: 1, running: 2 })));
    try {
      const scrape = parseMetrics((await metrics.text()).body);
      const tasks = (pool: string, state: TaskState): number => sample(scrape, 'dagwork_tasks', { pool, state });
      expect([tasks('x', 'ready'), tasks('y', 'done'), tasks('y', 'failed'), tasks(OTHER_POOL, 'running'), tasks(OTHER_POOL, 'ready')]).toEqual([3, 4, 1, 2, 0]);
      expect(sample(scrape, 'dagwork_graph_tasks', { state: 'running' })).toBe(2);
    } finally {
      metrics.close();
    }
  });

  it('counts no "other" series while every pool has a label', async () => {
    const metrics = new HubMetrics(source([{ pool: 'x', counts: counts({ ready: 1 }) }], counts({ ready: 1 })));
    try {
      const scrape = parseMetrics((await metrics.text()).body);
      expect(sample(scrape, 'dagwork_tasks', { pool: 'x', state: 'ready' })).toBe(1);
      expect([...scrape.samples.keys()].filter((k) => k.includes(`pool="${OTHER_POOL}"`))).toEqual([]);
    } finally {
      metrics.close();
    }
  });
});
