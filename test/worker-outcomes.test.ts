/**
 * runWorker against a scripted hub: a real ZeroMQ ROUTER speaking the real codec, whose answers the
 * test chooses, so that every outcome of the contract (and a hostile or unlucky hub) can be played.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import { decodeRequest, encodeReply, type Reply, type Request } from '../proto/src/codec.js';
import { emptyCounts, type LeasedTask, type Limits, type TaskOutcome } from '../proto/src/types.js';
import { runWorker, type WorkerOptions, type WorkerSummary } from '../worker-kit/src/index.js';
import { leasedTask } from './support/records.js';

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function leased(name: string, options: Partial<LeasedTask> = {}): LeasedTask {
  return leasedTask(name, { leaseDeadline: Date.now() + 60_000, ...options });
}

interface Script {
  /** Tasks handed out, in order, as steals ask. */
  ready: LeasedTask[];
  /** The outcome of each completion (default ACCEPTED). */
  complete?: (name: string, result: Uint8Array) => TaskOutcome;
  /** Refuse a complete request as a whole. */
  refuseComplete?: (request: Extract<Request, { op: 'complete' }>) => string | undefined;
  /** What a heartbeat says of a name (default: nothing, renewed). */
  heartbeat?: (name: string) => TaskOutcome | undefined;
  /** A steal answered with this many more tasks than asked (a hostile hub). */
  stealExtra?: number;
  /** With nothing to hand out, answer retry_after_ms this long. */
  retryAfterMs?: number;
  limits?: Partial<Limits>;
}

/** A hub that answers as the script says, and records every request and the size of its frame. */
class ScriptedHub {
  readonly requests: Request[] = [];
  readonly frameBytes: number[] = [];
  endpoint = '';
  /** Handed out and not yet completed, failed or released. */
  private readonly outstanding = new Set<string>();
  private readonly router = new Router({ linger: 0 });

  constructor(private readonly script: Script) {}

  async start(): Promise<this> {
    await this.router.bind('tcp://127.0.0.1:*');
    this.endpoint = this.router.lastEndpoint ?? '';
    void this.serve();
    return this;
  }

  close(): void {
    this.router.close();
  }

  of<Op extends Request['op']>(op: Op): Extract<Request, { op: Op }>[] {
    return this.requests.filter((r): r is Extract<Request, { op: Op }> => r.op === op);
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.router) {
        const body = frames[frames.length - 1] as Buffer;
        const request = decodeRequest(body);
        this.requests.push(request);
        this.frameBytes.push(body.length);
        await this.router.send([...frames.slice(0, -1), encodeReply(this.answer(request))]);
      }
    } catch {
      // closed
    }
  }

  private steal(n: number): Extract<Reply, { op: 'steal' }> {
    const tasks = this.script.ready.splice(0, n + (this.script.stealExtra ?? 0));
    for (const t of tasks) this.outstanding.add(t.name);
    const finished = tasks.length === 0 && this.script.ready.length === 0 && this.outstanding.size === 0;
    const retryAfterMs = tasks.length === 0 && !finished ? (this.script.retryAfterMs ?? 0) : 0;
    return { op: 'steal', tasks, finished, retryAfterMs };
  }

  private answer(request: Request): Reply {
    const s = this.script;
    switch (request.op) {
      case 'status':
        return {
          op: 'status',
          counts: emptyCounts(),
          pools: [],
          workers: [],
          workersTotal: 0,
          poolsTotal: 0,
          waitingOnMissing: 0,
          missingNames: 0,
          missingExamples: [],
          storeId: 'scripted',
          startedMs: 0,
          donePerSecond: 0,
          now: Date.now(),
          total: 0,
          limits: { maxMessageBytes: 0, maxBatch: 0, maxSteal: 0, maxPayloadBytes: 0, maxResultBytes: 0, maxNameBytes: 0, maxWaitMs: 0, maxFileBytes: 0, maxFilesBytes: 0, maxChunkBytes: 0, ...s.limits },
          files: 0,
          filesBytes: 0,
        };
      case 'steal':
        return this.steal(request.n);
      case 'complete': {
        const refusal = s.refuseComplete?.(request);
        if (refusal !== undefined) return { op: 'error', error: { code: 'TOO_LARGE', message: refusal, task: '' } };
        const results = request.tasks.map(({ name, result }) => {
          const outcome = s.complete?.(name, result ?? new Uint8Array(0)) ?? 'ACCEPTED';
          this.outstanding.delete(name);
          return { name, outcome, message: `scripted ${outcome}` };
        });
        return { op: 'complete', results, next: request.next === undefined ? undefined : this.steal(request.next.n) };
      }
      case 'heartbeat': {
        const lost = request.names.flatMap((name) => {
          const outcome = s.heartbeat?.(name);
          if (outcome !== undefined && outcome !== 'LEASE_EXPIRED') this.outstanding.delete(name); // final: no longer work to come
          return outcome === undefined ? [] : [{ name, outcome, message: `scripted ${outcome}` }];
        });
        return { op: 'heartbeat', lost };
      }
      case 'fail':
        this.outstanding.delete(request.name);
        return { op: 'fail', result: { name: request.name, outcome: 'ACCEPTED', message: '' }, state: 'ready', notBefore: 0 };
      case 'release':
        for (const name of request.names) this.outstanding.delete(name);
        return { op: 'release', results: request.names.map((name) => ({ name, outcome: 'ACCEPTED' as const, message: '' })) };
      case 'workerExit':
        return { op: 'workerExit', released: 0 };
      default:
        return { op: 'error', error: { code: 'UNKNOWN_OPERATION', message: `not scripted: ${request.op}`, task: '' } };
    }
  }
}

const hubs: ScriptedHub[] = [];
afterEach(() => {
  for (const h of hubs.splice(0)) h.close();
});

async function scripted(script: Script): Promise<ScriptedHub> {
  const hub = await new ScriptedHub(script).start();
  hubs.push(hub);
  return hub;
}

/** The worker's summary, or a failure naming the wait if it does not stop within `ms`. */
async function within(done: Promise<WorkerSummary>, ms = 15_000): Promise<WorkerSummary> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the worker did not stop within ${ms} ms`)), ms)));
  try {
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}

function worker(hub: ScriptedHub, options: Omit<WorkerOptions, 'hub'>): ReturnType<typeof runWorker> {
  return runWorker({ hub: hub.endpoint, worker: 'w', handleSignals: false, client: { timeoutMs: 1_000, retries: 1 }, ...options });
}

describe('runWorker and what the hub says of each task', () => {
  it('maps each outcome of a completion: recorded, lost (not this worker’s any more), or failed (result too large)', async () => {
    const outcomes: Record<string, TaskOutcome> = {
      ok: 'ACCEPTED',
      again: 'ALREADY_DONE',
      taken: 'LEASED_TO_OTHER',
      cancelled: 'TASK_CANCELLED',
      dead: 'TASK_FAILED',
      huge: 'RESULT_TOO_LARGE',
    };
    const hub = await scripted({ ready: Object.keys(outcomes).map((n) => leased(n)), complete: (name) => outcomes[name] ?? 'NOT_FOUND' });
    const w = worker(hub, { concurrency: 6, handler: (t) => t.name });
    const completed: string[] = [];
    const lost: string[] = [];
    const failed: string[] = [];
    w.on('completed', (name) => completed.push(name));
    w.on('lost', (t, o) => lost.push(`${t.name}:${o.outcome}`));
    w.on('failed', (t, e) => failed.push(`${t.name}:${e.message}`));
    const summary = await within(w.done);
    expect(summary).toMatchObject({ done: 2, lost: 3, failed: 1 });
    expect(completed).toEqual(['ok']);
    expect(lost.sort()).toEqual(['cancelled:TASK_CANCELLED', 'dead:TASK_FAILED', 'taken:LEASED_TO_OTHER']);
    expect(failed).toEqual(["huge:result of 4 bytes is over the hub's limit: scripted RESULT_TOO_LARGE"]);
    expect(hub.of('fail').map((f) => f.name)).toEqual(['huge']);
  });

  it('runs on and completes when a heartbeat says LEASE_EXPIRED', async () => {
    const hub = await scripted({ ready: [leased('slow', { leaseMs: 30 })], heartbeat: () => 'LEASE_EXPIRED' });
    const w = worker(hub, {
      handler: async (_t, { signal }) => {
        await pause(300);
        return signal.aborted ? 'aborted' : 'finished';
      },
    });
    const summary = await within(w.done);
    expect(hub.of('heartbeat').length).toBeGreaterThan(0);
    expect(summary).toMatchObject({ done: 1, lost: 0 });
    expect(hub.of('complete').flatMap((c) => c.tasks.map((t) => Buffer.from(t.result ?? []).toString()))).toEqual(['finished']);
  });

  it('aborts a handler whose heartbeat says the task was cancelled, and reports nothing for it', async () => {
    const hub = await scripted({ ready: [leased('doomed', { leaseMs: 30 })], heartbeat: () => 'TASK_CANCELLED' });
    const w = worker(hub, {
      handler: (_t, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error))),
    });
    const summary = await within(w.done);
    expect(summary).toMatchObject({ done: 0, lost: 1, failed: 0 });
    expect(hub.of('complete').flatMap((c) => c.tasks)).toEqual([]);
    expect(hub.of('fail')).toEqual([]);
  });

  it('sends the results refused as a whole (an older hub: TOO_LARGE) again in halves, and fails only the one refused alone', async () => {
    const hub = await scripted({
      ready: ['a', 'b', 'c', 'd'].map((n) => leased(n)),
      refuseComplete: (r) => (r.tasks.some((t) => (t.result?.length ?? 0) > 1000) ? 'result of task "c" is 5000 bytes; the limit is 1000' : undefined),
    });
    let started = 0;
    let go: () => void = () => undefined;
    const together = new Promise<void>((resolve) => (go = resolve));
    const w = worker(hub, {
      concurrency: 4,
      handler: async (t) => {
        if (++started === 4) go();
        await together; // all four results in one request
        return t.name === 'c' ? 'x'.repeat(5000) : t.name;
      },
    });
    const completed: string[] = [];
    w.on('completed', (name) => completed.push(name));
    const summary = await within(w.done);
    expect(summary).toMatchObject({ done: 3, failed: 1, lost: 0 });
    expect(completed.sort()).toEqual(['a', 'b', 'd']);
    expect(hub.of('fail')).toMatchObject([{ name: 'c', reason: 'the hub refused its completion: TOO_LARGE: result of task "c" is 5000 bytes; the limit is 1000' }]);
  });

  it("splits completions by the hub's maxBatch and by bytes under its maxMessageBytes", async () => {
    const hub = await scripted({ ready: Array.from({ length: 6 }, (_, i) => leased(`t${i}`)), limits: { maxMessageBytes: 100_000, maxBatch: 2 } });
    let started = 0;
    let go: () => void = () => undefined;
    const together = new Promise<void>((resolve) => (go = resolve));
    const w = worker(hub, {
      concurrency: 6,
      handler: async () => {
        if (++started === 6) go();
        await together;
        return 'r'.repeat(30_000);
      },
    });
    const summary = await within(w.done);
    expect(summary).toMatchObject({ done: 6 });
    const sizes = hub.of('complete').map((c) => c.tasks.length).filter((n) => n > 0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(6);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(2);
    expect(Math.max(...hub.frameBytes)).toBeLessThanOrEqual(100_000 / 2 + 1_000);
  });
});

describe('runWorker and a hub that hands out a task again', () => {
  it('keeps one run of a task the hub re-leases to it while it runs, and reports its result once', async () => {
    // A lease far shorter than the run: the hub hands the same name out again, attempt after attempt.
    const hub = await scripted({ ready: [leased('job', { attempt: 1, leaseMs: 1 })] });
    let runs = 0;
    const w = worker(hub, {
      concurrency: 4,
      handler: async () => {
        runs++;
        if (runs === 1) {
          hub['script'].ready.push(leased('job', { attempt: 2, leaseMs: 1 }), leased('job', { attempt: 3, leaseMs: 1 }));
          await pause(500);
        }
        return `run ${runs}`;
      },
    });
    const summary = await within(w.done);
    expect(runs).toBe(1);
    expect(hub.of('complete').flatMap((c) => c.tasks.map((t) => `${t.name}=${Buffer.from(t.result ?? []).toString()}`))).toEqual(['job=run 1']);
    expect(summary).toMatchObject({ done: 1, lost: 0, released: 0 });
  });
});

describe('runWorker and a hostile or unlucky hub', () => {
  it('runs no more tasks than it asked for, and releases the rest', async () => {
    const hub = await scripted({ ready: ['a', 'b', 'c', 'd'].map((n) => leased(n)), stealExtra: 2 });
    let running = 0;
    let most = 0;
    const w = worker(hub, {
      concurrency: 1,
      handler: async () => {
        most = Math.max(most, ++running);
        await pause(20);
        running--;
        return 'ok';
      },
    });
    const summary = await within(w.done);
    expect(most).toBe(1);
    expect(hub.of('release').flatMap((r) => r.names).length).toBeGreaterThan(0);
    expect(summary.done + summary.released).toBe(4);
  });

  it('waits retry_after_ms before asking again when the hub cannot park its steal', async () => {
    const hub = await scripted({ ready: [], retryAfterMs: 400 });
    // The hub never says finished: something is outstanding.
    hub['outstanding'].add('elsewhere');
    const w = worker(hub, { maxTimeMs: 1_000, handler: () => 'ok' });
    await within(w.done);
    expect(hub.of('steal').length + hub.of('complete').length).toBeLessThanOrEqual(4);
  });

  it('survives a listener that throws, and reports the exception as an error', async () => {
    const hub = await scripted({ ready: [leased('a')] });
    const w = worker(hub, { handler: () => 'ok' });
    const errors: string[] = [];
    w.on('done', () => {
      throw new Error('listener bug');
    });
    w.on('error', (e) => errors.push(e.message));
    const summary = await within(w.done);
    expect(summary).toMatchObject({ done: 1 });
    expect(errors).toContain('listener bug');
  });
});
