/**
 * The hub's Prometheus metrics, in a registry of its own. The hot path only adds to plain numbers
 * (a counter, a histogram bucket, found through one map lookup); prom-client reads them, and the
 * graph's counts, when the metrics are scraped.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { GraphObserver } from './graph/graph.js';
import { TASK_STATES, type StateCounts } from '../../proto/src/types.js';

/** Distinct pool labels at most; further pools share OTHER_POOL (Prometheus keeps a series per label value). */
export const MAX_POOL_LABELS = 1_000;
export const OTHER_POOL = 'other';

/** Seconds: a request's round trip in the hub (a group commit is about a millisecond). */
const REQUEST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Seconds: a task's wait in its queue, or its run (from a millisecond to a day). */
const TASK_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400];
/** Records one group commit writes. */
const COMMIT_RECORD_BUCKETS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 50_000, 100_000];
/** Seconds one group commit takes. */
const COMMIT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Resolution of the event-loop delay monitor, ms. */
const LOOP_RESOLUTION_MS = 10;

/** The graph's counts by state (see Graph.stateCounts). */
type GraphCounts = { counts: StateCounts; pools: { pool: string; counts: StateCounts }[]; workers: number };

/** What the metrics read at a scrape: the graph's counts, and the file store's. */
export interface MetricsSource {
  stateCounts(): GraphCounts;
  files(): { count: number; bytes: number };
  /** Steals waiting in a long poll now. */
  parkedSteals(): number;
}

/** Observations of one histogram series: a count per bucket (not cumulative; the last is +Inf), their sum and count. */
class Buckets {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

type HistogramData = Awaited<ReturnType<Histogram['get']>>;

/**
 * A prom-client histogram whose series are Buckets filled by the hub (an observation costs a
 * bucket search and three additions, no allocation), read into the registry's text at a scrape.
 */
class BucketHistogram extends Histogram {
  private readonly series = new Map<string, Buckets>();

  constructor(
    name: string,
    help: string,
    /** The label the series differ by, or '' for one unlabelled series. */
    private readonly label: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    super({ name, help, labelNames: label === '' ? [] : [label], buckets: [...bounds], registers: [registry] });
    if (label === '') this.series.set('', new Buckets(bounds));
  }

  /** The series of this label value (created on first use; callers bound the values). */
  of(value: string): Buckets {
    let buckets = this.series.get(value);
    if (buckets === undefined) {
      buckets = new Buckets(this.bounds);
      this.series.set(value, buckets);
    }
    return buckets;
  }

  override async get(): Promise<HistogramData> {
    const data = this.collectValues();
    for (const v of data.values) Object.assign(v.labels, (v as unknown as SharedLabels).sharedLabels);
    return data;
  }

  /**
   * What the registry formats. Each series' label (pool or op) goes in `sharedLabels`, one object
   * per series, as prom-client's own histograms do: the registry formats it once per series.
   */
  getForPromString(): Promise<HistogramData> {
    return Promise.resolve(this.collectValues());
  }

  private collectValues(): HistogramData {
    const { name, help, aggregator } = this as unknown as { name: string; help: string; aggregator: HistogramData['aggregator'] };
    const values: (HistogramData['values'][number] & SharedLabels)[] = [];
    const bucket = `${name}_bucket`;
    for (const [value, b] of this.series) {
      const sharedLabels: Record<string, string> = this.label === '' ? {} : { [this.label]: value };
      let below = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        below += b.counts[i] as number;
        values.push({ metricName: bucket, labels: { le: this.bounds[i] as number }, sharedLabels, value: below });
      }
      values.push({ metricName: bucket, labels: { le: '+Inf' }, sharedLabels, value: b.count });
      values.push({ metricName: `${name}_sum`, labels: {}, sharedLabels, value: b.sum });
      values.push({ metricName: `${name}_count`, labels: {}, sharedLabels, value: b.count });
    }
    return { name, help, type: 'histogram' as unknown as HistogramData['type'], values, aggregator, collect: () => undefined };
  }
}

/** A value's labels common to its series (prom-client's registry reads them; its types leave them out). */
interface SharedLabels {
  sharedLabels: Record<string, string>;
}

/** One pool label's counters and histograms. */
class PoolStats {
  created = 0;
  completed = 0;
  attemptsFailed = 0;
  failed = 0;
  retried = 0;
  leaseExpired = 0;

  constructor(
    /** The pool's name, or OTHER_POOL for pools past MAX_POOL_LABELS. */
    readonly label: string,
    readonly wait: Buckets,
    readonly run: Buckets,
  ) {}
}

/** The hub's metrics: see README, "Metrics". */
export class HubMetrics {
  readonly registry = new Registry();
  /** Set on the graph (and on each graph reloaded after a failure). */
  readonly observer: GraphObserver;
  /** By pool name: the first MAX_POOL_LABELS pools seen, each its own; OTHER_POOL for the rest together. */
  private readonly pools = new Map<string, PoolStats>();
  private readonly wait: BucketHistogram;
  private readonly run: BucketHistogram;
  private readonly requests: BucketHistogram;
  private readonly commitRecords: Buckets;
  private readonly commitSeconds: Buckets;
  private readonly loop: IntervalHistogram;
  /** The graph's counts, read once at the start of a scrape (`text`): its gauges agree with each other. */
  private scraped: GraphCounts | undefined;

  constructor(private readonly source: MetricsSource) {
    const registry = this.registry;
    const graphCounts = (): GraphCounts => this.scraped ?? source.stateCounts();
    this.wait = new BucketHistogram('dagwork_queue_wait_seconds', 'Time from a task becoming ready (a backoff after a failure included) to its lease, per lease.', 'pool', TASK_BUCKETS, registry);
    this.run = new BucketHistogram('dagwork_run_seconds', 'Time from a lease to the completion that made the task done, per task done by a worker.', 'pool', TASK_BUCKETS, registry);
    this.requests = new BucketHistogram('dagwork_request_seconds', 'Time from a request\'s arrival to its reply being sent (after the group commit; a steal\'s long poll included), per request.', 'op', REQUEST_BUCKETS, registry);
    this.commitRecords = new BucketHistogram('dagwork_store_commit_records', 'Task records one group commit writes or removes.', '', COMMIT_RECORD_BUCKETS, registry).of('');
    this.commitSeconds = new BucketHistogram('dagwork_store_commit_seconds', 'Time one group commit takes to write.', '', COMMIT_BUCKETS, registry).of('');

    const counter = (name: string, help: string, read: (s: PoolStats) => number): void => {
      const pools = this.pools;
      new Counter({
        name,
        help,
        labelNames: ['pool'],
        registers: [registry],
        collect(this: Counter) {
          this.reset();
          for (const [pool, stats] of pools) this.inc({ pool }, read(stats));
        },
      });
    };
    counter('dagwork_tasks_created_total', 'Tasks created (by create, or replace creating missing tasks).', (s) => s.created);
    counter('dagwork_tasks_completed_total', 'Tasks done by a worker\'s completion (verified, when the pool has a result verifier).', (s) => s.completed);
    counter('dagwork_attempts_failed_total', 'Attempts that failed: a worker\'s fail, a result its verifier rejected, an expired lease.', (s) => s.attemptsFailed);
    counter('dagwork_tasks_failed_total', 'Tasks that became FAILED (failed permanently, or attempts used up).', (s) => s.failed);
    counter('dagwork_tasks_retried_total', 'Tasks put back to work afresh by retry or rerun (each of a rerun\'s descendants too).', (s) => s.retried);
    counter('dagwork_lease_expired_total', 'Leases that expired (each also counts as an attempt failed).', (s) => s.leaseExpired);

    const labelOf = (pool: string): string => this.poolStats(pool).label;
    new Gauge({
      name: 'dagwork_tasks',
      help: `Tasks in the graph by pool and state (the first ${MAX_POOL_LABELS} pools; the rest together as pool "${OTHER_POOL}").`,
      labelNames: ['pool', 'state'],
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        const { counts, pools } = graphCounts();
        const rest: StateCounts = { ...counts };
        for (const { pool, counts: c } of pools) {
          const label = labelOf(pool);
          if (label === OTHER_POOL) continue;
          for (const state of TASK_STATES) {
            this.set({ pool: label, state }, c[state]);
            rest[state] -= c[state];
          }
        }
        if (TASK_STATES.some((state) => rest[state] > 0)) for (const state of TASK_STATES) this.set({ pool: OTHER_POOL, state }, rest[state]);
      },
    });
    new Gauge({
      name: 'dagwork_graph_tasks',
      help: 'Tasks in the graph by state, every pool together.',
      labelNames: ['state'],
      registers: [registry],
      collect(this: Gauge) {
        const { counts } = graphCounts();
        for (const state of TASK_STATES) this.set({ state }, counts[state]);
      },
    });
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect(this: Gauge) {
          this.set(read());
        },
      });
    };
    gauge('dagwork_workers', 'Workers the hub knows, as a status counts them (one without leases is forgotten once unseen for an hour).', () => graphCounts().workers);
    gauge('dagwork_parked_steals', 'Steals waiting in a long poll for work now (at most --max-parked).', () => source.parkedSteals());
    gauge('dagwork_files', 'Files in the hub\'s file store.', () => source.files().count);
    gauge('dagwork_files_bytes', 'Bytes of the files in the hub\'s file store.', () => source.files().bytes);

    this.loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.loop.enable();
    const loop = this.loop;
    new Gauge({
      name: 'dagwork_event_loop_delay_seconds',
      help: `Delay of the hub's event loop since the previous scrape (sampled every ${LOOP_RESOLUTION_MS} ms): its mean, 99th percentile and maximum.`,
      labelNames: ['stat'],
      registers: [registry],
      collect(this: Gauge) {
        // Nothing sampled yet: the histogram's mean is NaN and its extremes are placeholders.
        const sampled = loop.count > 0;
        this.set({ stat: 'mean' }, sampled ? loop.mean / 1e9 : 0);
        this.set({ stat: 'p99' }, sampled ? loop.percentile(99) / 1e9 : 0);
        this.set({ stat: 'max' }, sampled ? loop.max / 1e9 : 0);
        loop.reset();
      },
    });
    gauge('dagwork_process_resident_memory_bytes', 'Resident memory of the hub\'s process.', () => process.memoryUsage.rss());
    gauge('dagwork_process_heap_used_bytes', 'V8 heap the hub\'s process uses.', () => process.memoryUsage().heapUsed);

    const stats = (pool: string): PoolStats => this.poolStats(pool);
    // Each call is guarded: a metric must never break a transition of the graph.
    this.observer = {
      created(pool, n) {
        try {
          stats(pool).created += n;
        } catch {
          // never thrown into the graph
        }
      },
      leased(pool, waitedMs) {
        try {
          stats(pool).wait.observe(waitedMs / 1000);
        } catch {
          // never thrown into the graph
        }
      },
      completed(pool, ranMs) {
        try {
          const s = stats(pool);
          s.completed++;
          s.run.observe(ranMs / 1000);
        } catch {
          // never thrown into the graph
        }
      },
      attemptFailed(pool) {
        try {
          stats(pool).attemptsFailed++;
        } catch {
          // never thrown into the graph
        }
      },
      failed(pool) {
        try {
          stats(pool).failed++;
        } catch {
          // never thrown into the graph
        }
      },
      retried(pool) {
        try {
          stats(pool).retried++;
        } catch {
          // never thrown into the graph
        }
      },
      leaseExpired(pool) {
        try {
          stats(pool).leaseExpired++;
        } catch {
          // never thrown into the graph
        }
      },
    };
  }

  /** The counters of `pool`'s label: its own among the first MAX_POOL_LABELS pools, OTHER_POOL's past them. */
  private poolStats(pool: string): PoolStats {
    const stats = this.pools.get(pool);
    if (stats !== undefined) return stats;
    // Pools past the cap are not kept by name (that would grow without bound): each of their
    // calls looks up its name, then OTHER_POOL.
    const label = this.pools.size < MAX_POOL_LABELS ? pool : OTHER_POOL;
    let shared = this.pools.get(label);
    if (shared === undefined) {
      shared = new PoolStats(label, this.wait.of(label), this.run.of(label));
      this.pools.set(label, shared);
    }
    return shared;
  }

  /** A reply was sent, `ms` after its request arrived. `op`: the request's operation ('invalid' if it could not be read). */
  requestDone(op: string, ms: number): void {
    this.requests.of(op).observe(ms / 1000);
  }

  /** A group commit wrote (or removed) `records` task records in `ms`. */
  committed(records: number, ms: number): void {
    this.commitRecords.observe(records);
    this.commitSeconds.observe(ms / 1000);
  }

  /** The metrics in Prometheus's text format. */
  async text(): Promise<{ contentType: string; body: string }> {
    const registry = this.registry;
    const scraped = (this.scraped = this.source.stateCounts());
    try {
      const parts: string[] = [];
      for (const { name } of registry.getMetricsAsArray()) {
        parts.push(await registry.getSingleMetricAsString(name));
        // With a thousand pools a metric takes a while to format: the hub serves requests between metrics.
        await new Promise((resolve) => setImmediate(resolve));
      }
      // As Registry.metrics() joins them.
      return { contentType: registry.contentType, body: `${parts.join('\n\n')}\n` };
    } finally {
      if (this.scraped === scraped) this.scraped = undefined;
    }
  }

  /** Stops the event-loop delay monitor. */
  close(): void {
    this.loop.disable();
  }
}
