/**
 * runWorker: the loop of a long-running worker. It learns the hub's limits, steals tasks in
 * batches, keeps up to `concurrency` handlers running, heartbeats their leases, completes (in
 * batches that fit the hub's limits, with the next steal in the same round trip) or fails them,
 * aborts a handler whose lease was lost, and stops cleanly: no new task, running ones get a grace
 * period, the rest are released, and the hub is told.
 *
 * A task is known here by its name and the attempt of its current lease. When the hub hands out a
 * name that still runs here (its lease lapsed and it came back to this worker), the run goes on
 * under the new lease: one run, one result, reported once.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { DagworkError } from '../../proto/src/errors.js';
import type { FileRef, LeasedTask, ParamFile, StealResult, TaskResult } from '../../proto/src/types.js';
import { Client, type ClientOptions, type StealOptions } from './client.js';
import { chunks, effectiveLimits, FALLBACK_LIMITS, nextBatchSize, type HubLimits } from './limits.js';
import { paramsObject } from './task-files.js';

/** Throw (or reject with) this from a handler to fail the task at once, without retries. */
export class PermanentError extends Error {
  override name = 'PermanentError';
  readonly permanent = true;
}

/**
 * Throw (or reject with) this from a handler when the worker, not the task, is at fault (no room
 * for a scratch directory, a shell that cannot be started): the task is released without using an
 * attempt, and the worker pauses before it takes more work (1 s, doubling up to a minute).
 */
export class WorkerFault extends Error {
  override name = 'WorkerFault';
  readonly workerFault = true;
}

export interface TaskContext {
  /** Aborted when the lease is lost (another worker has the task now) or the worker shuts down. */
  signal: AbortSignal;
  worker: string;
  /** The task's params as an object ({ temperature: '300' }); `task.params` keeps their order. */
  params: Readonly<Record<string, string>>;
  /** Files to fetch into the scratch directory first (fetchInputs does it). */
  inputs: readonly FileRef[];
  /** Files the run must leave: upload them (uploadOutputs) and return their FileRefs as `outputs`. */
  outputs: readonly string[];
  /** Files to write from params' values (fetchInputs does it). */
  paramFiles: readonly ParamFile[];
}

/**
 * What a handler returns: the result (bytes, or text sent as UTF-8), or the result with the
 * task's declared output files, each uploaded first (uploadOutputs, Client.uploadFile).
 */
export type HandlerResult = Uint8Array | string | void | { result?: Uint8Array | string; outputs?: readonly FileRef[] };

/** Runs one task; its return value becomes the task's result (and its output files). */
export type Handler = (task: LeasedTask, context: TaskContext) => Promise<HandlerResult> | HandlerResult;

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
  /**
   * A worker started before its tasks (sbatch may run it before the submitter) or pointed at a
   * pool that holds none: when the hub says `finished` before this worker took any task and the
   * hub holds no task at all in its pools, it waits this long from its start for tasks to appear
   * (a `waiting` event says why), then stops with reason `no-tasks`. Pools holding tasks (all done,
   * say) are finished at once. Default 0: stop at once. dworker: --idle-timeout, else 60 s.
   */
  waitForTasksMs?: number;
  /** On stop, how long running handlers may take before they are aborted and released (ms). Default 10,000. */
  graceMs?: number;
  /** Longest long poll for work while nothing runs (ms); a stop waits for it to end. Default 2,000. */
  pollMs?: number;
  /** Stop on SIGTERM and SIGINT. Default true. */
  handleSignals?: boolean;
  /** Request timeouts and retries of the underlying clients. */
  client?: Partial<Pick<ClientOptions, 'timeoutMs' | 'timeoutPerMiBMs' | 'retries' | 'curve'>>;
}

export type StopReason = 'finished' | 'stopped' | 'max-time' | 'max-tasks' | 'idle' | 'no-tasks' | 'signal';

export interface WorkerSummary {
  worker: string;
  reason: StopReason;
  /** Tasks completed and accepted by the hub. */
  done: number;
  /** Tasks whose handler threw, or whose result the hub would not take (too large). */
  failed: number;
  /** Tasks whose lease was lost while the handler ran, or whose completion the hub refused (cancelled, taken by another...). */
  lost: number;
  /** Tasks given back: at shutdown, or because the worker was at fault (WorkerFault). */
  released: number;
  /** Time handlers ran, summed (ms). */
  busyMs: number;
  /** Wall-clock time of the whole run (ms). */
  elapsedMs: number;
  /** Results the hub never answered for (it was unreachable at the end): their leases expire and the tasks run again. */
  undelivered: number;
  /**
   * The hub did not answer this worker's last request (or the last ones were cut short by the
   * grace period at a stop): results, releases or the exit may not have reached it.
   */
  hubUnreachable: boolean;
}

export interface WorkerEvents {
  start: [task: LeasedTask];
  done: [task: LeasedTask, ms: number];
  /** The hub recorded the completion of this task (the result went with it). */
  completed: [name: string];
  failed: [task: LeasedTask, error: Error, permanent: boolean];
  /** The task is no longer this worker's: its handler was aborted, or its completion refused. */
  lost: [task: LeasedTask, outcome: TaskResult];
  /** The hub could not be reached or refused a request, or the worker was at fault; the worker goes on. */
  error: [error: Error];
  /** Why the worker keeps waiting though the hub said `finished` (see waitForTasksMs). */
  waiting: [message: string];
  /** A stop was asked (a signal, stop()): running handlers get `graceMs`. A second signal stops at once. */
  stopping: [reason: StopReason, running: number, graceMs: number];
  stop: [summary: WorkerSummary];
}

interface Running {
  /** The current lease: the hub may hand the same name to this worker again while it runs. */
  task: LeasedTask;
  controller: AbortController;
  started: number;
  lastBeat: number;
  /** The hub said LEASE_EXPIRED: the lease lapsed, nobody else has the task, a completion still counts. */
  expired: boolean;
  promise: Promise<void>;
}

/** A result waiting to be sent (and kept until the hub has answered for it). */
interface Finished {
  task: LeasedTask;
  result: Uint8Array;
  /** The declared output files, uploaded. */
  outputs: readonly FileRef[];
}

const encoder = new TextEncoder();
/** Waits for `promise`, at most `ms`; the timer does not outlive the wait (it would hold the process). */
async function atMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, Math.min(Math.max(0, ms), 2 ** 31 - 1))))]);
  } finally {
    clearTimeout(timer);
  }
}
/** setTimeout fires at once past this (and warns): every timer is clamped to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Heartbeats never come closer together than this, whatever lease the hub hands out. */
const MIN_BEAT_MS = 10;
/** After an abort at shutdown, how long a handler may take to return before the worker stops without it. */
const ABORTED_HANDLER_WAIT_MS = 10_000;
/** Longest wait a hub's retry_after_ms may impose. */
const MAX_RETRY_AFTER_MS = 60_000;
/** Pause after a WorkerFault: the first, and the longest (it doubles in between). */
const FAULT_PAUSE_MS = 1_000;
const MAX_FAULT_PAUSE_MS = 60_000;
/**
 * At a stop bounded by the grace period, the time kept for the last requests (results, releases,
 * the exit) out of it: at most this, and at most a quarter of the grace.
 */
const FINAL_CALLS_MS = 2_000;
/** Request-level errors after which a request may simply be sent again later. */
const TRANSIENT = new Set(['STORE_FAILED', 'SHUTTING_DOWN']);

/** True when the hub (or the client) refused the request as a whole, for good: resending it as is would not help. */
const isRefusal = (err: unknown): err is DagworkError => err instanceof DagworkError && !TRANSIENT.has(err.code);
const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export class Worker extends EventEmitter<WorkerEvents> {
  readonly id: string;
  /** Resolves with the summary when the worker has stopped. */
  readonly done: Promise<WorkerSummary>;
  private readonly options: Required<Omit<WorkerOptions, 'hub' | 'worker' | 'maxTimeMs' | 'maxTasks' | 'idleTimeoutMs' | 'client'>> &
    Pick<WorkerOptions, 'maxTimeMs' | 'maxTasks' | 'idleTimeoutMs'>;
  private readonly control: Client;
  private readonly beats: Client;
  private readonly running = new Map<string, Running>();
  /** Results not yet answered for by the hub, in the order they came; at most one per name. */
  private readonly finished = new Map<string, Finished>();
  private limits: HubLimits | undefined;
  private stopReason: StopReason | undefined;
  private wake: (() => void) | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private beating = false;
  private pauseUntil = 0;
  private faultPauseMs = FAULT_PAUSE_MS;
  private readonly startedAt = Date.now();
  private lastActive = Date.now();
  private taken = 0;
  private readonly counts = { done: 0, failed: 0, lost: 0, released: 0, busyMs: 0 };
  /** When the stop was asked: the grace period counts from then. */
  private stopAt: number | undefined;
  /** A second signal (or stop({ now: true })): abort everything, release, exit. */
  private immediate = false;
  /** The hub said `finished` before any task and holds none in this worker's pools: waiting for tasks. */
  private awaitingTasks: boolean | undefined;
  private cutShort = false;
  private undelivered = 0;
  private signals = 0;
  /** The first signal stops within the grace period; the second stops at once. */
  private readonly onSignal = (): void => {
    if (++this.signals === 1) return this.requestStop('signal');
    this.stopNow();
  };

  private stopNow(): void {
    this.immediate = true;
    this.interruptLoop();
    this.wake?.();
  }

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
      waitForTasksMs: options.waitForTasksMs ?? 0,
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

  /**
   * Take no new task; let running ones finish within the grace period; release the rest. With
   * `now`, abort running handlers at once (a stop in progress too), release their tasks and exit.
   */
  stop(options: { now?: boolean } = {}): Promise<WorkerSummary> {
    this.requestStop('stopped');
    if (options.now === true) this.stopNow();
    this.wake?.();
    return this.done;
  }

  private requestStop(reason: StopReason): void {
    if (this.stopReason === undefined) {
      this.stopReason = reason;
      this.stopAt = Date.now();
      this.tell('stopping', reason, this.running.size, this.options.graceMs);
      // A request the loop is waiting on (a hub gone silent) must not hold the stop past its
      // grace: when the handlers' share of it is over, it is interrupted.
      if (this.isBounded()) this.interruptTimer = setTimeout(() => this.interruptLoop(), Math.max(0, this.handlersBy() - Date.now()));
    }
    this.wake?.();
  }

  private interruptTimer: NodeJS.Timeout | undefined;
  private inShutdown = false;

  private interruptLoop(): void {
    if (!this.inShutdown) this.control.interrupt();
  }

  /** A stop by choice (signal, stop(), max-time, idle) is bounded by the grace period; finished work is not. */
  private isBounded(): boolean {
    return this.stopReason !== 'finished' && this.stopReason !== 'max-tasks' && this.stopReason !== 'no-tasks';
  }

  /** When a bounded stop must be over. */
  private stopDeadline(): number {
    return this.isBounded() ? (this.stopAt ?? Date.now()) + this.options.graceMs : Infinity;
  }

  /** When running handlers are aborted at a bounded stop: the grace less a reserve for the last requests. */
  private handlersBy(): number {
    return this.stopDeadline() - Math.min(FINAL_CALLS_MS, this.options.graceMs / 4);
  }

  /** Emits without letting a listener's exception escape into a timer or a handler's promise. */
  private tell<K extends keyof WorkerEvents>(event: K, ...args: WorkerEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: WorkerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      if (event !== 'error') this.tell('error', asError(err));
    }
  }

  private async run(): Promise<WorkerSummary> {
    try {
      await this.loop();
      await this.shutdown();
    } finally {
      clearTimeout(this.beatTimer);
      clearTimeout(this.interruptTimer);
      process.off('SIGTERM', this.onSignal);
      process.off('SIGINT', this.onSignal);
      this.control.close();
      this.beats.close();
    }
    const summary: WorkerSummary = {
      worker: this.id,
      reason: this.stopReason ?? 'stopped',
      ...this.counts,
      elapsedMs: Date.now() - this.startedAt,
      undelivered: this.undelivered,
      hubUnreachable: this.cutShort || this.control.unreachable !== undefined,
    };
    this.tell('stop', summary);
    return summary;
  }

  private get hubLimits(): HubLimits {
    return this.limits ?? FALLBACK_LIMITS;
  }

  /** Asks the hub its limits once. A hub that answers but will not say: the defaults. Unreachable: throws, asked again later. */
  private async learnLimits(): Promise<void> {
    let limits: HubLimits;
    try {
      limits = effectiveLimits((await this.control.status()).limits);
    } catch (err) {
      if (!(err instanceof DagworkError)) throw err;
      this.tell('error', new Error(`the hub would not tell its limits (${err.code}: ${err.message}); using the defaults`));
      limits = effectiveLimits(undefined);
    }
    this.limits = limits;
    this.control.maxMessageBytes = limits.maxMessageBytes;
    this.beats.maxMessageBytes = limits.maxMessageBytes;
  }

  private async loop(): Promise<void> {
    let retryDelay = 100;
    let lastStealEmpty = false;
    while (this.stopReason === undefined) {
      // Let handlers that just ended file their results first, so they go with this request.
      await new Promise((resolve) => setImmediate(resolve));
      this.checkLimits();
      if (this.stopReason !== undefined) break;
      try {
        if (this.limits === undefined) await this.learnLimits();
        const free = this.options.concurrency - this.running.size;
        const remaining = Math.min(this.hubLimits.maxSteal, this.options.maxTasks === undefined ? free : Math.min(free, this.options.maxTasks - this.taken));
        const paused = this.pauseUntil - Date.now();
        if (remaining <= 0 || paused > 0) {
          // Full, or pausing after a fault of this worker: send finished work (if any), else wait.
          if (this.finished.size > 0) await this.flushCompletions(undefined);
          else await this.waitForChange(paused > 0 ? Math.min(paused, this.options.pollMs) : this.options.pollMs);
          continue;
        }
        // While handlers run, never block the socket in a long poll (their results would wait
        // behind it): poll instead, at most every 100 ms unless a handler ends sooner.
        const busy = this.running.size > 0;
        if (busy && lastStealEmpty && this.finished.size === 0) await this.waitForChange(100);
        if (this.stopReason !== undefined) break;
        const waitMs = busy ? 0 : this.pollWait();
        const next = await this.flushCompletions({
          n: remaining,
          pools: this.options.pools,
          waitMs: this.awaitingTasks === true ? Math.max(0, Math.min(this.options.pollMs, this.waitForTasksLeft())) : waitMs,
          waitWhenFinished: !this.options.exitWhenFinished || this.awaitingTasks === true,
        });
        retryDelay = 100;
        if (next === undefined) continue;
        if (this.stopReason !== undefined) {
          // Stopped during the steal: hand back what it brought without running it.
          await this.releaseTasks(next.tasks.filter((t) => !this.running.has(t.name) && !this.finished.has(t.name)));
          break;
        }
        const started = this.accept(next.tasks, remaining);
        lastStealEmpty = started === 0;
        if (next.tasks.length > 0) this.lastActive = Date.now();
        else if (next.finished && this.running.size === 0 && this.finished.size === 0 && this.options.exitWhenFinished) {
          if (!(await this.waitForTasks())) this.stopReason ??= 'finished';
        } else if (this.awaitingTasks === true && this.waitForTasksLeft() <= 0) this.stopReason ??= 'no-tasks';
        else if (next.retryAfterMs > 0) await this.waitForChange(Math.min(next.retryAfterMs, MAX_RETRY_AFTER_MS));
      } catch (err) {
        // The hub is away (restarting?) or refused: keep the results and try again.
        this.tell('error', asError(err));
        await this.waitForChange(retryDelay);
        retryDelay = Math.min(retryDelay * 2, 5_000);
      }
    }
  }

  private waitForTasksLeft(): number {
    return this.startedAt + this.options.waitForTasksMs - Date.now();
  }

  /**
   * The hub said `finished`: true when this worker should wait for tasks instead (it took none
   * yet, the hub holds none in its pools, and waitForTasksMs is not over). Says why, once.
   */
  private async waitForTasks(): Promise<boolean> {
    if (this.taken > 0 || this.options.waitForTasksMs <= 0) return false;
    if (this.awaitingTasks === undefined) {
      const status = await this.control.status();
      const wanted = this.options.pools.map((p) => p || 'default');
      const mine = status.pools.filter((p) => wanted.length === 0 || wanted.includes(p.pool));
      const held = mine.reduce((n, p) => n + Object.values(p.counts).reduce((a, b) => a + b, 0), 0);
      this.awaitingTasks = held === 0;
      if (held > 0) return false;
      const others = status.pools.map((p) => `${p.pool} (${p.counts.ready} ready, ${p.counts.waiting} waiting, ${p.counts.running} running, ${p.counts.done} done)`);
      const where = wanted.length === 0 ? 'the hub holds no task yet' : `no tasks in pool${wanted.length > 1 ? 's' : ''} ${wanted.join(', ')} yet`;
      this.tell(
        'waiting',
        `${where}; pools that exist: ${others.length === 0 ? 'none' : others.join(', ')}; waiting up to ${Math.round(this.options.waitForTasksMs / 1000)} s from the start for tasks`,
      );
    }
    if (!this.awaitingTasks) return false;
    if (this.waitForTasksLeft() > 0) return true;
    this.stopReason ??= 'no-tasks';
    return true;
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

  /**
   * Starts the tasks a steal brought, at most `room` new ones. A name that still runs here, or whose
   * result waits to be sent, is not started again: the run (or result) goes on under the new lease.
   * Anything over `room` (a hub that sent more than asked) is released. Returns how many started.
   */
  private accept(tasks: readonly LeasedTask[], room: number): number {
    const extra: LeasedTask[] = [];
    let started = 0;
    for (const task of tasks) {
      const run = this.running.get(task.name);
      const result = this.finished.get(task.name);
      if (run !== undefined && !run.controller.signal.aborted) {
        run.task = task;
        run.lastBeat = Date.now();
        run.expired = false;
      } else if (result !== undefined) {
        result.task = task;
      } else if (run !== undefined || started >= room) {
        extra.push(task);
      } else {
        started++;
        this.startTask(task);
      }
    }
    if (extra.length > 0) void this.releaseTasks(extra).catch((err: unknown) => this.tell('error', asError(err)));
    return started;
  }

  /**
   * Sends the next batch of results (as many as fit the hub's limits), and steals in the same round
   * trip when `steal` is given. Results stay queued until the hub has answered for them.
   */
  private async flushCompletions(steal: StealOptions | undefined): Promise<StealResult | undefined> {
    const batch = [...this.finished.values()].slice(0, nextBatchSize(this.completionsOf(this.finished.values()), this.hubLimits));
    // More results wait behind this batch: no long poll, they go next.
    const next = steal !== undefined && batch.length < this.finished.size ? { ...steal, waitMs: 0 } : steal;
    let answer: Awaited<ReturnType<Client['complete']>>;
    try {
      answer = await this.control.complete(this.completionsOf(batch), next);
    } catch (err) {
      if (!isRefusal(err) || batch.length === 0) throw err;
      // Refused as a whole (too large for this hub, or the steal with it was refused): find out
      // without the steal, half by half, which results the hub refuses; none is dropped unsaid.
      this.tell('error', new Error(`the hub refused ${batch.length} completions as a whole (${err.code}: ${err.message}); sending them in smaller batches`));
      await this.sendRefused(batch);
      return undefined; // the loop steals again, alone: if the steal was at fault, that says so
    }
    await this.settle(batch, answer.results);
    return answer.next;
  }

  private completionsOf(items: Iterable<Finished>): { name: string; result: Uint8Array; outputs?: readonly FileRef[] }[] {
    const out: { name: string; result: Uint8Array; outputs?: readonly FileRef[] }[] = [];
    for (const f of items) out.push(f.outputs.length === 0 ? { name: f.task.name, result: f.result } : { name: f.task.name, result: f.result, outputs: f.outputs });
    return out;
  }

  /** Resends results of a refused request in halves; a lone one refused is failed with the hub's reason. */
  private async sendRefused(batch: Finished[]): Promise<void> {
    try {
      const { results } = await this.control.complete(this.completionsOf(batch));
      await this.settle(batch, results);
    } catch (err) {
      if (!isRefusal(err)) throw err;
      const [first] = batch;
      if (batch.length === 1 && first !== undefined) {
        this.finished.delete(first.task.name);
        await this.reportFailure(first.task, new Error(`the hub refused its completion: ${err.code}: ${err.message}`), false);
        return;
      }
      const half = Math.ceil(batch.length / 2);
      await this.sendRefused(batch.slice(0, half));
      await this.sendRefused(batch.slice(half));
    }
  }

  /** What the hub said of each result: recorded, too large (failed), or no longer this worker's (lost). */
  private async settle(batch: readonly Finished[], results: readonly TaskResult[]): Promise<void> {
    const byName = new Map(results.map((r) => [r.name, r]));
    for (const f of batch) {
      this.finished.delete(f.task.name);
      const r = byName.get(f.task.name);
      if (r === undefined) {
        this.counts.lost++;
        this.tell('lost', f.task, { name: f.task.name, outcome: 'NOT_FOUND', message: 'the hub did not answer for this completion' });
        continue;
      }
      switch (r.outcome) {
        case 'ACCEPTED':
          this.counts.done++;
          this.tell('completed', r.name);
          break;
        case 'ALREADY_DONE': // a resend whose first send was recorded
          this.counts.done++;
          break;
        case 'RESULT_TOO_LARGE':
          await this.reportFailure(f.task, new Error(`result of ${f.result.length} bytes is over the hub's limit: ${r.message}`), false);
          break;
        case 'MISSING_FILES': // an output the hub does not hold (gone since the upload?) or not declared: run again
          await this.reportFailure(f.task, new Error(`the hub refused its output files: ${r.message}`), false);
          break;
        default: // NOT_FOUND, LEASED_TO_OTHER, NOT_LEASED, TASK_CANCELLED, TASK_FAILED...: not this worker's any more
          this.counts.lost++;
          this.tell('lost', f.task, r);
      }
    }
  }

  /** Counts and reports a failed run to the hub; an unreachable hub lets the lease expire instead. */
  private async reportFailure(task: LeasedTask, error: Error, permanent: boolean): Promise<void> {
    this.counts.failed++;
    this.tell('failed', task, error, permanent);
    await this.control.fail(task.name, error.message || error.name, { permanent }).catch((err: unknown) => this.tell('error', asError(err)));
  }

  private async releaseTasks(tasks: readonly LeasedTask[]): Promise<void> {
    for (const names of chunks(tasks.map((t) => t.name), this.hubLimits.maxBatch)) {
      const results = await this.control.release(names);
      this.counts.released += results.filter((r) => r.outcome === 'ACCEPTED').length;
    }
  }

  private startTask(task: LeasedTask): void {
    this.taken++;
    const controller = new AbortController();
    const now = Date.now();
    const entry: Running = { task, controller, started: now, lastBeat: now, expired: false, promise: Promise.resolve() };
    this.running.set(task.name, entry);
    this.tell('start', task);
    entry.promise = this.runHandler(entry).catch((err: unknown) => this.tell('error', asError(err)));
    this.scheduleBeats();
  }

  private async runHandler(entry: Running): Promise<void> {
    const { controller } = entry;
    let result: Uint8Array | undefined;
    let outputs: readonly FileRef[] = [];
    let error: Error | undefined;
    try {
      const t = entry.task;
      const value = await this.options.handler(t, { signal: controller.signal, worker: this.id, params: paramsObject(t.params), inputs: t.inputs, outputs: t.outputs, paramFiles: t.paramFiles });
      ({ result, outputs } = resultOf(value));
      const missing = entry.task.outputs.find((name) => !outputs.some((o) => o.name === name));
      if (missing !== undefined) throw new Error(`declared output "${missing}" was not written (the handler returned no FileRef of that name in outputs)`);
    } catch (err) {
      error = asError(err);
    }
    const task = entry.task; // the current lease: the hub may have handed it out again meanwhile
    const ms = Date.now() - entry.started;
    this.counts.busyMs += ms;
    if (this.running.get(task.name) === entry) this.running.delete(task.name);
    this.lastActive = Date.now();
    try {
      if (controller.signal.aborted) {
        // The lease is gone (or the worker is shutting down and releases it): report nothing.
      } else if (error === undefined) {
        const bytes = result ?? new Uint8Array(0);
        this.faultPauseMs = FAULT_PAUSE_MS;
        this.tell('done', task, ms);
        const limit = this.hubLimits.maxResultBytes;
        if (bytes.length > limit) await this.reportFailure(task, new Error(`result of ${bytes.length} bytes is over the hub's limit of ${limit}`), false);
        else this.finished.set(task.name, { task, result: bytes, outputs });
      } else if ((error as { workerFault?: unknown }).workerFault === true) {
        await this.onFault(task, error);
      } else {
        await this.reportFailure(task, error, (error as { permanent?: unknown }).permanent === true);
      }
    } finally {
      this.wake?.();
    }
  }

  /** The worker could not run the task (its own fault): give it back, and pause before taking more. */
  private async onFault(task: LeasedTask, error: Error): Promise<void> {
    const pause = this.faultPauseMs;
    this.faultPauseMs = Math.min(pause * 2, MAX_FAULT_PAUSE_MS);
    this.pauseUntil = Math.max(this.pauseUntil, Date.now() + pause);
    this.tell('error', new Error(`could not run ${task.name}: ${error.message}; released it, taking no task for ${pause} ms`));
    await this.releaseTasks([task]).catch((err: unknown) => this.tell('error', asError(err)));
  }

  /** How often a lease is renewed: a third of it, within bounds whatever the hub says. */
  private static beatInterval(r: Running): number {
    return Math.min(Math.max(MIN_BEAT_MS, r.task.leaseMs / 3), MAX_TIMER_MS);
  }

  /** Heartbeats each lease at a third of its length, on the heartbeat socket; one beat at a time. */
  private scheduleBeats(): void {
    if (this.beating) return; // the beat in flight schedules the next one
    clearTimeout(this.beatTimer);
    if (this.running.size === 0) return;
    let at = Infinity;
    for (const r of this.running.values()) at = Math.min(at, r.lastBeat + Worker.beatInterval(r));
    this.beatTimer = setTimeout(() => void this.beat(), Math.min(Math.max(MIN_BEAT_MS, at - Date.now()), MAX_TIMER_MS));
  }

  private async beat(): Promise<void> {
    this.beating = true;
    const now = Date.now();
    const due = [...this.running.values()].filter((r) => now >= r.lastBeat + Worker.beatInterval(r) - MIN_BEAT_MS);
    // The attempt each name was renewed for: an answer about an older lease says nothing of a newer one.
    const sent = new Map(due.map((r) => [r.task.name, r.task.attempt]));
    try {
      for (const names of chunks([...sent.keys()], this.hubLimits.maxBatch)) {
        for (const outcome of await this.beats.heartbeat(names)) this.onLeaseNews(outcome, sent.get(outcome.name));
      }
    } catch (err) {
      this.tell('error', asError(err)); // tried again a third of a lease later
    } finally {
      for (const r of due) r.lastBeat = now;
      this.beating = false;
      this.scheduleBeats();
    }
  }

  private onLeaseNews(outcome: TaskResult, attempt: number | undefined): void {
    const entry = this.running.get(outcome.name);
    if (entry === undefined || entry.task.attempt !== attempt || entry.controller.signal.aborted) return;
    if (outcome.outcome === 'LEASE_EXPIRED') {
      // Nobody else holds it and a completion is still accepted: run on. Heartbeats go on too,
      // renewing nothing, to learn if another worker takes it.
      entry.expired = true;
      return;
    }
    this.counts.lost++;
    this.tell('lost', entry.task, outcome);
    entry.controller.abort(new Error(`lease lost: ${outcome.outcome}: ${outcome.message}`));
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_TIMER_MS));
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
    // A stop by choice (signal, stop(), max-time, idle) is bounded by the grace period, from the
    // moment it was asked: running handlers get it less a reserve for the last requests, and those
    // requests get what is left, so a hub that is gone cannot hold the worker past it (Slurm sends
    // SIGKILL 30 s after SIGTERM). Finished work (finished, max-tasks, no-tasks) lets handlers end.
    this.inShutdown = true;
    const deadline = this.stopDeadline();
    const handlersBy = this.handlersBy();
    while (this.running.size > 0 && Date.now() < handlersBy && !this.immediate) {
      await this.waitForChange(Math.min(handlersBy - Date.now(), 1000));
    }
    const left = [...this.running.values()];
    for (const r of left) r.controller.abort(new Error('worker shutting down'));
    // Stopping at once: the last requests get a moment, not the grace.
    const callsBy = this.immediate ? Math.min(deadline, Date.now() + FINAL_CALLS_MS) : deadline;
    const calls = this.finalCalls(left);
    if (callsBy === Infinity) await calls;
    else {
      let answered = false;
      await atMost(
        calls.then(() => (answered = true)),
        callsBy - Date.now(),
      );
      if (!answered) {
        this.cutShort = true;
        this.undelivered = this.finished.size;
        this.tell('error', new Error(`the hub did not answer before the grace period ended: ${this.finished.size} results undelivered, ${left.length} tasks not released (their leases will expire)`));
        this.control.close(); // the pending request fails; nothing more is sent
      }
    }
    // A handler that ignores its abort does not hold the worker for ever, nor past the grace.
    await atMost(Promise.allSettled(left.map((r) => r.promise)), Math.min(ABORTED_HANDLER_WAIT_MS, deadline - Date.now()));
  }

  /** Sends the results that wait, releases `left`, tells the hub this worker exits. Never throws. */
  private async finalCalls(left: readonly Running[]): Promise<void> {
    try {
      while (this.finished.size > 0) await this.flushCompletions(undefined);
    } catch (err) {
      if (this.cutShort) return; // said already, when the grace period ended
      const names = [...this.finished.keys()];
      this.undelivered = names.length;
      this.tell('error', new Error(`${names.length} results could not be delivered (${asError(err).message}): ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', ...' : ''}`));
    }
    try {
      await this.releaseTasks(left.map((r) => r.task));
      await this.control.exit();
    } catch (err) {
      if (!this.cutShort) this.tell('error', asError(err));
    }
  }
}

/** A handler's return value as the result's bytes and the output files. */
function resultOf(value: HandlerResult): { result: Uint8Array; outputs: readonly FileRef[] } {
  const bytes = (v: Uint8Array | string | undefined): Uint8Array => (typeof v === 'string' ? encoder.encode(v) : v instanceof Uint8Array ? v : new Uint8Array(0));
  if (typeof value === 'string' || value instanceof Uint8Array || value === undefined || value === null) return { result: bytes(value ?? undefined), outputs: [] };
  if (typeof value !== 'object') throw new TypeError(`the handler returned ${typeof value}: return a string, a Uint8Array or { result, outputs }`);
  const outputs = value.outputs ?? [];
  if (!Array.isArray(outputs)) throw new TypeError('the handler returned outputs that are not an array of FileRefs');
  // Only the FileRef of each (uploadOutputs and uploadFile also say how many bytes they sent).
  return { result: bytes(value.result), outputs: outputs.map(({ name, sha256, size, executable }: FileRef) => ({ name, sha256, size, executable: executable === true })) };
}

/** Starts a worker; `await worker.done` for its summary, `worker.stop()` to end it. */
export function runWorker(options: WorkerOptions): Worker {
  return new Worker(options);
}
