/**
 * runWorker: the loop of a long-running worker. It steals tasks in batches, keeps up to
 * `concurrency` handlers running, heartbeats their leases, completes (batched, with the next steal
 * in the same round trip) or fails them, aborts a handler whose lease was lost, and stops cleanly:
 * no new task, running ones get a grace period, the rest are released, and the hub is told.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { DagworkError } from '../../proto/src/errors.js';
import type { LeasedTask, StealResult, TaskResult } from '../../proto/src/types.js';
import { Client, HubUnreachableError, type ClientOptions, type StealOptions } from './client.js';

/** Throw (or reject with) this from a handler to fail the task at once, without retries. */
export class PermanentError extends Error {
  override name = 'PermanentError';
  readonly permanent = true;
}

export interface TaskContext {
  /** Aborted when the lease is lost (another worker has the task now) or the worker shuts down. */
  signal: AbortSignal;
  worker: string;
}

/** Runs one task; its return value becomes the task's result. */
export type Handler = (task: LeasedTask, context: TaskContext) => Promise<Uint8Array | string | void> | Uint8Array | string | void;

export interface WorkerOptions {
  /** The hub's endpoint. Default: $DAGWORK_HUB, else tcp://127.0.0.1:6125. */
  hub?: string;
  /** This worker's identity. Default: $DAGWORK_WORKER, else the host name and process id. */
  worker?: string;
  handler: Handler;
  /** Pools to take tasks from; empty means all. Default []. */
  pools?: string[];
  /** Handlers running at once. Default 1. */
  concurrency?: number;
  /** Stop taking tasks this long after the start (ms); running ones finish. Default: no limit. */
  maxTimeMs?: number;
  /** Stop after taking this many tasks. Default: no limit. */
  maxTasks?: number;
  /** Stop when no task has been held or handed out for this long (ms). Default: no limit. */
  idleTimeoutMs?: number;
  /** Exit when the hub says the pools are finished (pilot jobs). Default true. */
  exitWhenFinished?: boolean;
  /** On stop, how long running handlers may take before they are aborted and released (ms). Default 10,000. */
  graceMs?: number;
  /** Longest long poll for work while nothing runs (ms); a stop waits for it to end. Default 2,000. */
  pollMs?: number;
  /** Stop on SIGTERM and SIGINT. Default true. */
  handleSignals?: boolean;
  /** Request timeout and retries of the underlying clients. */
  client?: Partial<Pick<ClientOptions, 'timeoutMs' | 'retries' | 'curve'>>;
}

export type StopReason = 'finished' | 'stopped' | 'max-time' | 'max-tasks' | 'idle' | 'signal';

export interface WorkerSummary {
  worker: string;
  reason: StopReason;
  /** Tasks completed and accepted by the hub. */
  done: number;
  /** Tasks whose handler threw. */
  failed: number;
  /** Tasks whose lease was lost while the handler ran. */
  lost: number;
  /** Tasks given back at shutdown. */
  released: number;
  /** Time handlers ran, summed (ms). */
  busyMs: number;
  /** Wall-clock time of the whole run (ms). */
  elapsedMs: number;
}

export interface WorkerEvents {
  start: [task: LeasedTask];
  done: [task: LeasedTask, ms: number];
  /** The hub recorded the completion of this task (the result went with it). */
  completed: [name: string];
  failed: [task: LeasedTask, error: Error, permanent: boolean];
  lost: [task: LeasedTask, outcome: TaskResult];
  /** The hub could not be reached or refused a request; the worker retries. */
  error: [error: Error];
  stop: [summary: WorkerSummary];
}

interface Running {
  task: LeasedTask;
  controller: AbortController;
  started: number;
  lastBeat: number;
  promise: Promise<void>;
}

const encoder = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class Worker extends EventEmitter<WorkerEvents> {
  readonly id: string;
  /** Resolves with the summary when the worker has stopped. */
  readonly done: Promise<WorkerSummary>;
  private readonly options: Required<Omit<WorkerOptions, 'hub' | 'worker' | 'maxTimeMs' | 'maxTasks' | 'idleTimeoutMs' | 'client'>> &
    Pick<WorkerOptions, 'maxTimeMs' | 'maxTasks' | 'idleTimeoutMs'>;
  private readonly control: Client;
  private readonly beats: Client;
  private readonly running = new Map<string, Running>();
  private completions: { name: string; result: Uint8Array }[] = [];
  private stopReason: StopReason | undefined;
  private wake: (() => void) | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private lastActive = Date.now();
  private taken = 0;
  private readonly counts = { done: 0, failed: 0, lost: 0, released: 0, busyMs: 0 };
  private readonly onSignal = (): void => this.requestStop('signal');

  constructor(options: WorkerOptions) {
    super();
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError('concurrency must be a positive integer');
    if (typeof options.handler !== 'function') throw new TypeError('handler must be a function');
    this.options = {
      handler: options.handler,
      pools: options.pools ?? [],
      concurrency,
      exitWhenFinished: options.exitWhenFinished ?? true,
      graceMs: options.graceMs ?? 10_000,
      pollMs: options.pollMs ?? 2_000,
      handleSignals: options.handleSignals ?? true,
      ...(options.maxTimeMs === undefined ? {} : { maxTimeMs: options.maxTimeMs }),
      ...(options.maxTasks === undefined ? {} : { maxTasks: options.maxTasks }),
      ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    };
    const clientOptions: Partial<ClientOptions> = { ...options.client };
    if (options.hub !== undefined) clientOptions.hub = options.hub;
    // Several worker processes on one node each need their own identity.
    clientOptions.worker = options.worker ?? (process.env.DAGWORK_WORKER || `${hostname()}-${process.pid}`);
    this.control = new Client(clientOptions);
    // Heartbeats go on their own socket so that a long poll or a slow call never delays them.
    this.beats = new Client({ ...clientOptions, worker: this.control.worker });
    this.id = this.control.worker;
    if (this.options.handleSignals) {
      process.on('SIGTERM', this.onSignal);
      process.on('SIGINT', this.onSignal);
    }
    // A caller that only awaits `done` should not have unhandled 'error' events crash the process.
    this.on('error', () => undefined);
    this.done = this.run();
  }

  /** Take no new task; let running ones finish within the grace period; release the rest. */
  stop(): Promise<WorkerSummary> {
    this.requestStop('stopped');
    return this.done;
  }

  private requestStop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.wake?.();
  }

  private async run(): Promise<WorkerSummary> {
    try {
      await this.loop();
      await this.shutdown();
    } finally {
      clearTimeout(this.beatTimer);
      process.off('SIGTERM', this.onSignal);
      process.off('SIGINT', this.onSignal);
      this.control.close();
      this.beats.close();
    }
    const summary: WorkerSummary = { worker: this.id, reason: this.stopReason ?? 'stopped', ...this.counts, elapsedMs: Date.now() - this.startedAt };
    this.emit('stop', summary);
    return summary;
  }

  private async loop(): Promise<void> {
    let retryDelay = 100;
    let lastStealEmpty = false;
    while (this.stopReason === undefined) {
      // Let handlers that just ended file their results first, so they go with this request.
      await new Promise((resolve) => setImmediate(resolve));
      this.checkLimits();
      if (this.stopReason !== undefined) break;
      const free = this.options.concurrency - this.running.size;
      const remaining = this.options.maxTasks === undefined ? free : Math.min(free, this.options.maxTasks - this.taken);
      if (remaining <= 0) {
        // Full: send finished work (if any) now, then wait for a handler to end.
        if (this.completions.length > 0) await this.flushCompletions(undefined);
        else await this.waitForChange(this.options.pollMs);
        continue;
      }
      // While handlers run, never block the socket in a long poll (their results would wait
      // behind it): poll instead, at most every 100 ms unless a handler ends sooner.
      const busy = this.running.size > 0;
      if (busy && lastStealEmpty && this.completions.length === 0) await this.waitForChange(100);
      if (this.stopReason !== undefined) break;
      const waitMs = busy ? 0 : this.pollWait();
      try {
        const next = await this.flushCompletions({
          n: remaining,
          pools: this.options.pools,
          waitMs,
          waitWhenFinished: !this.options.exitWhenFinished,
        });
        retryDelay = 100;
        if (next === undefined) continue;
        if (this.stopReason !== undefined) {
          // Stopped during the steal: hand back what it brought without running it.
          await this.releaseUnstarted(next.tasks);
          break;
        }
        for (const task of next.tasks) this.startTask(task);
        lastStealEmpty = next.tasks.length === 0;
        if (next.tasks.length > 0) this.lastActive = Date.now();
        else if (next.finished && this.running.size === 0 && this.completions.length === 0 && this.options.exitWhenFinished) this.stopReason = 'finished';
      } catch (err) {
        // The hub is away (restarting?) or refused: keep the completions and try again.
        this.emit('error', err as Error);
        await this.waitForChange(retryDelay);
        retryDelay = Math.min(retryDelay * 2, 5_000);
      }
    }
  }

  private pollWait(): number {
    let wait = this.options.pollMs;
    const now = Date.now();
    if (this.options.idleTimeoutMs !== undefined) wait = Math.min(wait, this.lastActive + this.options.idleTimeoutMs - now);
    if (this.options.maxTimeMs !== undefined) wait = Math.min(wait, this.startedAt + this.options.maxTimeMs - now);
    return Math.max(0, wait);
  }

  private checkLimits(): void {
    const now = Date.now();
    if (this.options.maxTimeMs !== undefined && now - this.startedAt >= this.options.maxTimeMs) this.stopReason = 'max-time';
    else if (this.options.maxTasks !== undefined && this.taken >= this.options.maxTasks && this.running.size === 0) this.stopReason = 'max-tasks';
    else if (this.options.idleTimeoutMs !== undefined && this.running.size === 0 && now - this.lastActive >= this.options.idleTimeoutMs) this.stopReason = 'idle';
  }

  /** Sends the finished work, and steals in the same round trip when `steal` is given. */
  private async flushCompletions(steal: StealOptions | undefined): Promise<StealResult | undefined> {
    const batch = this.completions;
    this.completions = [];
    try {
      const { results, next } = await this.control.complete(batch, steal);
      for (const r of results) {
        // ALREADY_DONE after a resend: the first send was recorded.
        if (r.outcome === 'ACCEPTED') this.emit('completed', r.name);
        if (r.outcome === 'ACCEPTED' || r.outcome === 'ALREADY_DONE') this.counts.done++;
        else this.emit('error', new Error(`completion of ${r.name} refused: ${r.outcome}: ${r.message}`));
      }
      return next;
    } catch (err) {
      if (!(err instanceof DagworkError) || err.code === 'STORE_FAILED' || err.code === 'SHUTTING_DOWN') this.completions.unshift(...batch);
      throw err;
    }
  }

  private async releaseUnstarted(tasks: LeasedTask[]): Promise<void> {
    if (tasks.length === 0) return;
    const results = await this.control.release(tasks.map((t) => t.name));
    this.counts.released += results.filter((r) => r.outcome === 'ACCEPTED').length;
  }

  private startTask(task: LeasedTask): void {
    this.taken++;
    const controller = new AbortController();
    const now = Date.now();
    const entry: Running = { task, controller, started: now, lastBeat: now, promise: Promise.resolve() };
    this.running.set(task.name, entry);
    this.emit('start', task);
    entry.promise = this.runHandler(entry);
    this.scheduleBeats();
  }

  private async runHandler(entry: Running): Promise<void> {
    const { task, controller } = entry;
    let result: Uint8Array | undefined;
    let error: Error | undefined;
    try {
      const value = await this.options.handler(task, { signal: controller.signal, worker: this.id });
      result = typeof value === 'string' ? encoder.encode(value) : value instanceof Uint8Array ? value : new Uint8Array(0);
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
    }
    const ms = Date.now() - entry.started;
    this.counts.busyMs += ms;
    this.running.delete(task.name);
    this.lastActive = Date.now();
    if (controller.signal.aborted) {
      // The lease is gone (or the worker is shutting down and releases it): report nothing.
    } else if (error === undefined) {
      this.completions.push({ name: task.name, result: result ?? new Uint8Array(0) });
      this.emit('done', task, ms);
    } else {
      const permanent = (error as { permanent?: unknown }).permanent === true;
      this.counts.failed++;
      this.emit('failed', task, error, permanent);
      await this.control.fail(task.name, error.message || error.name, { permanent }).catch((err: unknown) => this.emit('error', err as Error));
    }
    this.wake?.();
  }

  /** Heartbeats each lease at a third of its length, on the heartbeat socket. */
  private scheduleBeats(): void {
    clearTimeout(this.beatTimer);
    if (this.running.size === 0) return;
    let at = Infinity;
    for (const r of this.running.values()) at = Math.min(at, r.lastBeat + r.task.leaseMs / 3);
    this.beatTimer = setTimeout(() => void this.beat(), Math.max(10, at - Date.now()));
  }

  private async beat(): Promise<void> {
    const now = Date.now();
    const due = [...this.running.values()].filter((r) => now >= r.lastBeat + r.task.leaseMs / 3 - 10);
    try {
      if (due.length > 0) {
        const lost = await this.beats.heartbeat(due.map((r) => r.task.name));
        for (const r of due) r.lastBeat = now;
        for (const outcome of lost) {
          const entry = this.running.get(outcome.name);
          if (entry === undefined) continue;
          this.counts.lost++;
          this.emit('lost', entry.task, outcome);
          entry.controller.abort(new Error(`lease lost: ${outcome.outcome}: ${outcome.message}`));
        }
      }
    } catch (err) {
      this.emit('error', err as Error);
      if (err instanceof HubUnreachableError) for (const r of due) r.lastBeat = now; // try again a third of a lease later
    }
    this.scheduleBeats();
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      const self = this; // eslint-disable-line @typescript-eslint/no-this-alias
      function done(): void {
        clearTimeout(timer);
        if (self.wake === done) self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  private async shutdown(): Promise<void> {
    // Running handlers get the grace period; the ones still running then are aborted and released.
    const deadline = Date.now() + (this.stopReason === 'finished' || this.stopReason === 'max-tasks' ? Infinity : this.options.graceMs);
    while (this.running.size > 0 && Date.now() < deadline) {
      await Promise.race([...[...this.running.values()].map((r) => r.promise), sleep(Math.min(deadline - Date.now(), 1000))]);
    }
    const left = [...this.running.values()];
    for (const r of left) r.controller.abort(new Error('worker shutting down'));
    try {
      if (this.completions.length > 0) await this.flushCompletions(undefined);
      if (left.length > 0) {
        const results = await this.control.release(left.map((r) => r.task.name));
        this.counts.released += results.filter((r) => r.outcome === 'ACCEPTED').length;
      }
      await this.control.exit();
    } catch (err) {
      this.emit('error', err as Error);
    }
    await Promise.allSettled(left.map((r) => r.promise));
  }
}

/** Starts a worker; `await worker.done` for its summary, `worker.stop()` to end it. */
export function runWorker(options: WorkerOptions): Worker {
  return new Worker(options);
}
