/**
 * Client: a typed, promise-based API over every operation of the dagwork wire contract.
 *
 * One REQ socket, one request at a time (calls are queued). A reply that does not come within the
 * timeout is treated as lost: the socket is closed and rebuilt and the request sent again (the
 * "lazy pirate" pattern). Every operation is safe to repeat: re-creating a task is a no-op, a
 * repeated completion is answered ALREADY_DONE, and leases from a steal whose reply was lost
 * expire and go back to the pool.
 *
 * Several endpoints (`tcp://a:6125,tcp://b:6125`: one hub active, the others standbys on the same
 * store): a request goes to the endpoint that answered last. An answer STANDBY (or, with several
 * endpoints, SHUTTING_DOWN: that hub is stopping and a standby takes over), no reply in time or
 * a refused connection moves it to the next endpoint, round robin, where it is sent again; after a
 * whole round without an answer it waits a little (ROUND_PAUSE_MS, doubling) before the next. It
 * gives up when its budget is spent (`retries + 1` reply timeouts, as with one endpoint), or at
 * once when every endpoint refused the connection, saying what each endpoint answered.
 *
 * Size: a request whose frame is over `maxMessageBytes` is refused here with TOO_LARGE (the hub's
 * socket would drop it without a reply, and every resend with it). A big request also takes the
 * hub longer to read and write, so the time allowed for its reply grows with its size.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { Request as ReqSocket } from 'zeromq';
import { parseHubEndpoints } from '../../proto/src/args.js';
import { readKeyFile } from '../../proto/src/keys.js';
import { DagworkError } from '../../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../proto/src/spec.js';
import { VIEW_DEFAULT_NODES } from '../../proto/src/graph-view.js';
import { downloadFile, uploadFile, type UploadResult } from './files.js';
import { checkSha256, defaultLimits } from '../../proto/src/spec.js';
import { TASK_STATES, type FileStat, type GcResult, type PoolDeleteResult, type PoolInfo, type PoolListResult, type PoolSetArgs, type Limits, type CreateResult, type FailResult, type ListQuery, type ListResult, type LookupResult, type Status, type StealResult, type TaskResult, type TaskSummary, type RerunResult, type ReplaceResult, type DeleteResult, type GraphView, type GraphViewQuery } from '../../proto/src/types.js';
import { decodeReply, encodeRequest, type Reply, type Request, type StealArgs } from '../../proto/src/codec.js';
import { checkCompletions, checkGraphViewQuery, checkNames, checkSteal, checkString, checkTasks, type CompletionInput, type StealOptions, type TaskInput } from './input.js';

export type { CompletionInput, StealOptions, TaskInput } from './input.js';

export interface ClientOptions {
  /**
   * The hub's endpoint, or several separated by commas (one hub active, standbys on the same store).
   * Default: $DAGWORK_HUB, else tcp://127.0.0.1:6125.
   */
  hub: string;
  /** This worker's identity. Default: $DAGWORK_WORKER, else the host name. */
  worker: string;
  /**
   * How long to wait for a reply, in ms, on top of a steal's own wait and of `timeoutPerMiBMs` for
   * each MiB of the request. Default 5,000.
   */
  timeoutMs: number;
  /**
   * More time for the reply of a large request, in ms per MiB of its frame (the hub reads, checks
   * and writes it to its log before it answers). Default 1,000: a 32 MiB batch of completions waits
   * 5 s + 32 s before it is deemed lost and sent again.
   */
  timeoutPerMiBMs: number;
  /**
   * More time for the reply of a create or replace, in ms: the hub answers once the job verifiers
   * of the tasks' pools (if any) have passed them. Default 120,000. A hub that is not there is
   * still found at once (connection refused); a resend of a request still being verified joins it.
   */
  verifyWaitMs: number;
  /**
   * How many times to resend a request whose reply did not come. Default 2. With several endpoints
   * a request is sent on (to the next endpoint) until `retries + 1` reply timeouts have passed.
   */
  retries: number;
  /**
   * The largest request frame sent, in bytes: the hub's `max_message_bytes` (dhub
   * --max-message-bytes). A larger request is refused here with TOO_LARGE. Default 64 MiB, the
   * hub's default.
   */
  maxMessageBytes: number;
  /** CURVE: the hub's public key and this client's key pair (see curveOptions). Default: none. */
  curve: CurveOptions | undefined;
}

export interface CurveOptions {
  serverKey: string;
  publicKey: string;
  secretKey: string;
}

/**
 * CURVE options from what a user passes: the hub's public key (40 Z85 characters, or a file
 * holding it) and the path of this client's key pair file (from `dquery keygen`).
 */
export function curveOptions(serverKey: string, keyFile: string): CurveOptions {
  const server = /^.{40}$/.test(serverKey) && !existsSync(serverKey) ? serverKey : readKeyFile(serverKey).publicKey;
  const pair = readKeyFile(keyFile);
  if (pair.secretKey === undefined) throw new DagworkError('INVALID_ARGUMENT', `${keyFile} holds no secret-key: give this client's key pair file, not its .pub`);
  return { serverKey: server, publicKey: pair.publicKey, secretKey: pair.secretKey };
}

export function defaultClientOptions(env: NodeJS.ProcessEnv = process.env): ClientOptions {
  return {
    hub: env.DAGWORK_HUB || 'tcp://127.0.0.1:6125',
    worker: env.DAGWORK_WORKER || hostname(),
    timeoutMs: 5_000,
    timeoutPerMiBMs: 1_000,
    verifyWaitMs: 120_000,
    retries: 2,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    curve: undefined,
  };
}

/**
 * The hub did not answer: after every retry, no reply came within the timeout; or (`refused`)
 * nothing listens at its endpoints: connection attempts were refused; or (`standby`) some endpoint
 * answered, but only STANDBY (no hub active) while the request's budget lasted.
 */
export class HubUnreachableError extends Error {
  override name = 'HubUnreachableError';
  readonly code = 'UNREACHABLE';

  constructor(
    message: string,
    readonly refused = false,
    readonly standby = false,
  ) {
    super(message);
  }
}

/**
 * After a round of the endpoints without an answer (STANDBY, no reply, refused), a request waits
 * this long before the next round, doubling each round up to `max` (ms): a standby takes over
 * within seconds, and a round of quick STANDBY answers must not become a busy loop.
 */
export const ROUND_PAUSE_MS = { first: 100, max: 2_000 } as const;

/** What an endpoint did with the requests of one call, for the message when the call gives up. */
interface EndpointNews {
  standby: number;
  /** SHUTTING_DOWN: the hub is stopping (its standby takes over); moved on from only with several endpoints. */
  stopping: number;
  silent: number;
  refused: number;
}

/** How long a client waits for the reply to a request of `frameBytes` that asked to wait `waitMs`. */
export function replyTimeout(options: Pick<ClientOptions, 'timeoutMs' | 'timeoutPerMiBMs'>, frameBytes: number, waitMs: number): number {
  return Math.round(options.timeoutMs + waitMs + (options.timeoutPerMiBMs * frameBytes) / (1 << 20));
}

/**
 * A socket that is not connected (never was, or the hub went away: ZeroMQ's `disconnect`) and whose
 * connection attempts are being refused (`connect:retry` events, one per ~100 ms) for this long
 * while a request waits is taken for "nothing listens there": the request fails with a message
 * saying so rather than after the whole timeout and its retries.
 * Long enough for a hub that is starting (or restarting) to bind; a host that drops packets
 * gives no such events and is left to the timeout.
 */
export const REFUSED_AFTER_MS = 1_000;

/** Added to a graph view's reply timeout per node it may hold (ms). */
const VIEW_REPLY_MS_PER_NODE = 0.1;

type ReplyOf<Op extends Reply['op']> = Extract<Reply, { op: Op }>;

export class Client {
  readonly options: ClientOptions;
  /** The hub's endpoints, in the order given. */
  readonly endpoints: readonly string[];
  /** Index in `endpoints` of the one requests go to: the one that answered last. */
  private current = 0;
  private socket: ReqSocket | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: Partial<ClientOptions> = {}) {
    const merged = { ...defaultClientOptions(), ...options };
    try {
      this.endpoints = parseHubEndpoints(checkString(merged.hub, 'hub'));
    } catch (err) {
      throw new TypeError(`hub: ${(err as Error).message}`);
    }
    merged.hub = this.endpoints.join(',');
    checkString(merged.worker, 'worker');
    this.options = merged;
    const { timeoutMs, timeoutPerMiBMs, retries, maxMessageBytes, verifyWaitMs } = this.options;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError('timeoutMs must be positive');
    if (!Number.isFinite(verifyWaitMs) || verifyWaitMs < 0) throw new TypeError('verifyWaitMs must be zero or positive');
    if (!Number.isFinite(timeoutPerMiBMs) || timeoutPerMiBMs < 0) throw new TypeError('timeoutPerMiBMs must be zero or positive');
    if (!Number.isInteger(retries) || retries < 0) throw new TypeError('retries must be a non-negative integer');
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes <= 0) throw new TypeError('maxMessageBytes must be a positive integer');
    this.maxMessageBytes = maxMessageBytes;
  }

  /** The largest request frame this client sends (bytes); runWorker sets it to the hub's limit. */
  maxMessageBytes: number;

  get worker(): string {
    return this.options.worker;
  }

  /** The endpoint requests go to now: the one that answered last (the first given, before any answer). */
  get endpoint(): string {
    return this.endpoints[this.current] as string;
  }

  /** Create tasks, all or nothing; says which dependencies exist neither in the batch nor in the hub. */
  async create(tasks: readonly TaskInput[]): Promise<CreateResult> {
    const { op: _op, ...result } = await this.call({ op: 'create', tasks: checkTasks(tasks) }, 'create', this.options.verifyWaitMs);
    return result;
  }

  /** Lease ready tasks; `finished` says no more work can come to those pools. */
  async steal(options: StealOptions = {}): Promise<StealResult> {
    const args = this.stealArgs(options);
    const { tasks, finished, retryAfterMs } = await this.call({ op: 'steal', ...args }, 'steal', args.waitMs);
    return { tasks, finished, retryAfterMs };
  }

  /** Mark tasks done; with `next`, steal in the same round trip. */
  async complete(completions: readonly CompletionInput[], next?: StealOptions): Promise<{ results: TaskResult[]; next: StealResult | undefined }> {
    const steal = next === undefined ? undefined : this.stealArgs(next);
    const request: Request = { op: 'complete', worker: this.worker, tasks: checkCompletions(completions), next: steal };
    const { results, next: stolen } = await this.call(request, 'complete', steal?.waitMs);
    return { results, next: stolen };
  }

  /** Report a failed run; `permanent` uses up the task's attempts at once. */
  async fail(name: string, reason: string, options: { permanent?: boolean } = {}): Promise<FailResult> {
    const permanent = options.permanent ?? false;
    if (typeof permanent !== 'boolean') throw new TypeError(`fail of "${name}": permanent must be a boolean`);
    const { result, state, notBefore } = await this.call(
      { op: 'fail', worker: this.worker, name: checkString(name, 'fail: name'), reason: checkString(reason, `fail of "${name}": reason`), permanent },
      'fail',
    );
    return { result, state, notBefore };
  }

  /** Extend leases; returns the ones this worker lost. */
  async heartbeat(names: string[]): Promise<TaskResult[]> {
    return (await this.call({ op: 'heartbeat', worker: this.worker, names: checkNames(names, 'heartbeat: names') }, 'heartbeat')).lost;
  }

  /** Give tasks back without using an attempt. */
  async release(names: string[]): Promise<TaskResult[]> {
    return (await this.call({ op: 'release', worker: this.worker, names: checkNames(names, 'release: names') }, 'release')).results;
  }

  /** Tell the hub a worker (this one by default) leaves: its leases go back to ready. */
  async exit(worker: string = this.worker): Promise<number> {
    return (await this.call({ op: 'workerExit', worker: checkString(worker, 'exit: worker') }, 'workerExit')).released;
  }

  /** Retry failed tasks: the named ones, or every failed task with 'all-failed'. */
  async retry(names: string[] | 'all-failed'): Promise<{ retried: number; results: TaskResult[] }> {
    const request: Request = names === 'all-failed' ? { op: 'retry', names: [], allFailed: true } : { op: 'retry', names: checkNames(names, 'retry: names'), allFailed: false };
    const { retried, results } = await this.call(request, 'retry');
    return { retried, results };
  }

  /** Stop tasks for good (failed, descendants blocked); retry undoes it. */
  async cancel(names: string[], reason = ''): Promise<{ cancelled: number; results: TaskResult[] }> {
    const { cancelled, results } = await this.call({ op: 'cancel', names: checkNames(names, 'cancel: names'), reason: checkString(reason, 'cancel: reason') }, 'cancel');
    return { cancelled, results };
  }

  /**
   * Put done tasks back to work with fresh attempts (admin): the named ones, and every done task
   * matching `prefix` / `pool`; with `descendants`, everything downstream of them too.
   */
  async rerun(names: string[], options: { descendants?: boolean; prefix?: string; pool?: string } = {}): Promise<RerunResult> {
    const request: Request = {
      op: 'rerun',
      names: checkNames(names, 'rerun: names'),
      descendants: options.descendants === true,
      prefix: checkString(options.prefix ?? '', 'rerun: prefix'),
      pool: checkString(options.pool ?? '', 'rerun: pool'),
    };
    const { rerun, results } = await this.call(request, 'rerun');
    return { rerun, results };
  }

  /**
   * Give tasks new definitions (admin); with `rerun`, done or running ones too (rerun with their
   * descendants); with `createMissing`, tasks that do not exist are created.
   */
  async replace(tasks: readonly TaskInput[], options: { rerun?: boolean; createMissing?: boolean } = {}): Promise<ReplaceResult> {
    const request: Request = { op: 'replace', tasks: checkTasks(tasks), rerun: options.rerun === true, createMissing: options.createMissing === true };
    const { replaced, unchanged, created, results } = await this.call(request, 'replace', this.options.verifyWaitMs);
    return { replaced, unchanged, created, results };
  }

  /**
   * Remove tasks from the graph, whatever their state (admin). A task another task depends on is
   * refused (HAS_DEPENDENTS) unless that dependent is named too or, with `descendants`, the whole
   * downstream cone goes with it. A running task's worker hears NOT_FOUND at its next heartbeat.
   */
  async deleteTasks(names: string[], options: { descendants?: boolean } = {}): Promise<DeleteResult> {
    const request: Request = { op: 'delete', names: checkNames(names, 'delete: names'), descendants: options.descendants === true };
    const { deleted, results } = await this.call(request, 'delete');
    return { deleted, results };
  }

  async status(): Promise<Status> {
    const { op: _op, ...status } = await this.call({ op: 'status' }, 'status');
    return status;
  }

  /** A task's whole record; throws DagworkError UNKNOWN_TASK if there is none. */
  async lookup(name: string): Promise<LookupResult> {
    const { op: _op, ...result } = await this.call({ op: 'lookup', name: checkString(name, 'lookup: name') }, 'lookup');
    return result;
  }

  /**
   * One page of the tasks matching `query`, in creation order: pass `next` as `after` for the
   * next page (0: no more). A page may hold fewer than `limit` tasks while more follow.
   */
  async list(query: Partial<ListQuery> = {}): Promise<ListResult> {
    for (const state of query.states ?? []) {
      if (!(TASK_STATES as readonly unknown[]).includes(state)) throw new TypeError(`list: states: ${JSON.stringify(state)} is not a state (${TASK_STATES.join(', ')})`);
    }
    const { op: _op, ...result } = await this.call(
      {
        op: 'list',
        states: query.states ?? [],
        pool: query.pool ?? '',
        prefix: query.prefix ?? '',
        limit: query.limit ?? 0,
        after: query.after ?? 0,
        withParams: query.withParams === true,
        withResults: query.withResults === true,
        withDeps: query.withDeps === true,
      },
      'list',
    );
    return result;
  }

  /**
   * The graph as a picture: tasks (or groups of them) and their dependency edges (see
   * GraphViewRequest in the .proto). Throws DagworkError TOO_LARGE when the view would have more
   * nodes than `maxNodes` (0: the hub's default, 2,000), UNKNOWN_TASK when `around` names no task.
   */
  async graphView(query: Partial<GraphViewQuery> = {}): Promise<GraphView> {
    const request = checkGraphViewQuery(query);
    // A big view takes the hub a while to build and encode, and this client to receive: the reply
    // timeout grows with the nodes it may hold (100,000: ten seconds more).
    const extraMs = Math.ceil((request.maxNodes === 0 ? VIEW_DEFAULT_NODES : request.maxNodes) * VIEW_REPLY_MS_PER_NODE);
    const { op: _op, ...view } = await this.call({ op: 'graphView', ...request }, 'graphView', extraMs);
    return view;
  }

  /** Every task matching `query`, page after page (each page one request). */
  async *listAll(query: Partial<Omit<ListQuery, 'after'>> = {}): AsyncGenerator<TaskSummary> {
    let after = 0;
    do {
      const page = await this.list({ ...query, after });
      yield* page.tasks;
      after = page.next;
    } while (after !== 0);
  }

  /** What the hub holds of these files (one entry per hash, in order). */
  async fileStat(sha256: string[]): Promise<FileStat[]> {
    for (const sha of checkNames(sha256, 'fileStat: hashes')) checkSha256(sha);
    return (await this.call({ op: 'fileStat', sha256 }, 'fileStat')).files;
  }

  /** Sends one chunk of a file at `offset`; the reply says how far the hub is and whether it holds the file. */
  async filePut(sha256: string, size: number, offset: number, data: Uint8Array): Promise<{ received: number; held: boolean }> {
    checkSha256(sha256);
    const { received, held } = await this.call({ op: 'filePut', sha256, size, offset, data }, 'filePut');
    return { received, held };
  }

  /** One chunk of a held file, from `offset`, at most `length` bytes (0: the hub's max_chunk_bytes). */
  async fileGet(sha256: string, offset: number, length = 0): Promise<{ data: Uint8Array; size: number }> {
    checkSha256(sha256);
    const { data, size } = await this.call({ op: 'fileGet', sha256, offset, length }, 'fileGet');
    return { data, size };
  }

  /** Removes files no task names (admin); `dryRun` only counts them. */
  async gc(options: { dryRun?: boolean } = {}): Promise<GcResult> {
    const { op: _op, ...result } = await this.call({ op: 'gc', dryRun: options.dryRun === true }, 'gc');
    return result;
  }

  // --- pools ---

  /** The pools holding a task or with settings (`pool` empty), or that one pool (UNKNOWN_POOL if unknown). */
  async poolList(pool = ''): Promise<PoolListResult> {
    const { pools, poolsTotal } = await this.call({ op: 'poolList', pool }, 'poolList');
    return { pools, poolsTotal };
  }

  /** Changes a pool's settings (admin): those given; the others are kept. Returns the pool afterwards. */
  async poolSet(args: PoolSetArgs): Promise<PoolInfo> {
    return (await this.call({ op: 'poolSet', ...args }, 'poolSet')).pool;
  }

  /** Removes a pool's tasks and settings (admin); `force` blocks tasks of other pools that depend on them. */
  async poolDelete(pool: string, options: { force?: boolean } = {}): Promise<PoolDeleteResult> {
    const { deleted, blocked } = await this.call({ op: 'poolDelete', pool, force: options.force === true }, 'poolDelete');
    return { deleted, blocked };
  }

  /**
   * Uploads a local file unless the hub holds it already (resuming an interrupted upload), a chunk
   * at a time; returns the FileRef to put in a task's inputs or a completion's outputs (named
   * `name`, default the file's base name; its run bit kept) and how many bytes were sent.
   */
  uploadFile(path: string, options: { name?: string; onProgress?: (sent: number, size: number) => void } = {}): Promise<UploadResult> {
    return uploadFile(this, path, options);
  }

  /** Downloads a held file to `dest`, its hash checked before it appears there. Returns its size. */
  downloadFile(sha256: string, dest: string, options: { mode?: number } = {}): Promise<number> {
    checkSha256(sha256);
    return downloadFile(this, sha256, dest, options);
  }

  private limitsOfHub: Limits | undefined;

  /** The hub's limits (from status, asked once). */
  async hubLimits(): Promise<Limits> {
    if (this.limitsOfHub === undefined) {
      const limits = (await this.status()).limits;
      // A hub that does not say (older, or another implementation) is taken to have the defaults.
      this.limitsOfHub = limits.maxChunkBytes > 0 ? limits : { ...limits, ...pick(defaultLimits(), ['maxChunkBytes', 'maxFileBytes', 'maxFilesBytes']) };
    }
    return this.limitsOfHub;
  }

  /** Close the socket; pending calls fail. */
  close(): void {
    this.closed = true;
    this.endPause?.();
    if (this.socket !== undefined) this.drop(this.socket);
  }

  private stealArgs(options: StealOptions): StealArgs {
    return { worker: this.worker, ...checkSteal(options) };
  }

  /** Sends `request` (after any call in progress) and returns its reply, checked to be of kind `op`. */
  private call<Op extends Reply['op']>(request: Request, op: Op, waitMs = 0): Promise<ReplyOf<Op>> {
    const run = this.queue.then(() => this.roundTrip(request, waitMs));
    this.queue = run.catch(() => undefined);
    return run.then((reply) => {
      if (reply.op === 'error') throw new DagworkError(reply.error.code, reply.error.message, { task: reply.error.task });
      if (reply.op !== op) throw new DagworkError('MALFORMED', `asked for ${request.op}, the hub answered ${reply.op}`);
      return reply as ReplyOf<Op>;
    });
  }

  private async roundTrip(request: Request, waitMs: number): Promise<Reply> {
    const frame = encodeRequest(request);
    if (frame.length > this.maxMessageBytes) {
      // The hub's socket would drop it without a word, and so every resend: refuse it here.
      throw new DagworkError(
        'TOO_LARGE',
        `${request.op} request of ${frame.length} bytes is over the hub's limit of ${this.maxMessageBytes} bytes per message: send it in smaller batches`,
      );
    }
    const timeout = replyTimeout(this.options, frame.length, waitMs);
    const tries = this.options.retries + 1;
    const started = Date.now();
    // The budget: `tries` reply timeouts, whichever endpoints the time goes to.
    const deadline = started + timeout * tries;
    const interrupts = this.interrupts;
    const count = this.endpoints.length;
    const news = new Map<string, EndpointNews>();
    let silent = 0;
    let refusedInRow = 0;
    let unansweredInRound = 0;
    let roundWaited = false;
    let pauseMs: number = ROUND_PAUSE_MS.first;
    for (;;) {
      if (this.closed) throw new Error('client is closed');
      if (this.interrupts !== interrupts) throw new HubUnreachableError(`request to ${this.options.hub} interrupted: the client is stopping`);
      const endpoint = this.endpoint;
      const waitMs = Math.max(1, Math.min(timeout, deadline - Date.now()));
      const socket = this.connect(waitMs);
      const watch = this.watchRefusal(socket);
      let outcome: keyof EndpointNews;
      try {
        await socket.send(frame);
        const [data] = await socket.receive();
        if (data === undefined) throw new DagworkError('MALFORMED', 'empty reply from the hub');
        const reply = decodeReply(data);
        const code = reply.op === 'error' ? reply.error.code : undefined;
        if (code === 'STANDBY') outcome = 'standby';
        else if (code === 'SHUTTING_DOWN' && count > 1) outcome = 'stopping';
        else {
          this.unreachable = undefined;
          return reply;
        }
      } catch (err) {
        if (this.interrupts !== interrupts) throw new HubUnreachableError(`request to ${this.options.hub} interrupted: the client is stopping`);
        if (watch.refused) outcome = 'refused';
        else if ((err as { code?: string }).code === 'EAGAIN') outcome = 'silent';
        else throw err;
      } finally {
        watch.stop();
      }
      // No answer here. A REQ socket whose reply did not come is stuck, and the next endpoint
      // needs a socket of its own: only a new one can go on.
      this.drop(socket);
      const got = news.get(endpoint) ?? { standby: 0, stopping: 0, silent: 0, refused: 0 };
      // A wait the budget cut short says nothing new of an endpoint that answered STANDBY or
      // SHUTTING_DOWN in this call (a slow standby is not a silent one): the budget is spent.
      const cutShort = outcome === 'silent' && waitMs < timeout && got.standby + got.stopping > 0;
      if (!cutShort) got[outcome]++;
      news.set(endpoint, got);
      refusedInRow = outcome === 'refused' ? refusedInRow + 1 : 0;
      if (outcome === 'silent') {
        silent++;
        roundWaited = true;
      }
      if (refusedInRow >= count || silent >= tries || Date.now() >= deadline) throw this.unreachableError(news, timeout, Date.now() - started, refusedInRow >= count);
      this.current = (this.current + 1) % count;
      if (++unansweredInRound < count) continue;
      // A whole round without an answer: wait before the next, unless a reply timeout just did.
      if (!roundWaited) {
        await this.pause(Math.min(pauseMs, deadline - Date.now()));
        pauseMs = Math.min(pauseMs * 2, ROUND_PAUSE_MS.max);
        if (Date.now() >= deadline) throw this.unreachableError(news, timeout, Date.now() - started, false);
      }
      unansweredInRound = 0;
      roundWaited = false;
    }
  }

  /** The error of a request that found no active hub, saying what each endpoint did. */
  private unreachableError(news: ReadonlyMap<string, EndpointNews>, timeout: number, elapsedMs: number, refused: boolean): HubUnreachableError {
    this.unreachable ??= Date.now();
    const total = { standby: 0, stopping: 0, silent: 0, refused: 0 };
    for (const n of news.values()) for (const key of ['standby', 'stopping', 'silent', 'refused'] as const) total[key] += n[key];
    const curveHint =
      this.options.curve === undefined
        ? '? (A hub that uses CURVE never answers a client without CURVE keys: its handshake fails silently.)'
        : ', and is this key authorized for that endpoint?';
    const only = this.endpoints.length === 1 ? this.endpoints[0] : undefined;
    // One endpoint that never answered: said as it always was.
    if (only !== undefined && total.standby === 0) {
      return refused
        ? new HubUnreachableError(`connection refused at ${only}: is dhub running there?`, true)
        : new HubUnreachableError(`no reply from the hub at ${only} within ${timeout} ms, ${total.silent} times: is dhub running there${curveHint}`);
    }
    if (refused) return new HubUnreachableError(`connection refused at every endpoint of the hub (${this.endpoints.join(', ')}): is dhub running there?`, true);
    const times = (n: number): string => (n === 1 ? 'once' : `${n} times`);
    const said = this.endpoints.map((endpoint) => {
      const n = news.get(endpoint);
      if (n === undefined) return `${endpoint}: not tried`;
      const parts: string[] = [];
      if (n.standby > 0) parts.push(`STANDBY ${times(n.standby)}`);
      if (n.stopping > 0) parts.push(`SHUTTING_DOWN ${times(n.stopping)}`);
      if (n.silent > 0) parts.push(`no reply within ${timeout} ms ${times(n.silent)}`);
      if (n.refused > 0) parts.push(`connection refused ${times(n.refused)}`);
      return `${endpoint}: ${parts.length > 0 ? parts.join(', ') : 'no reply before the time ran out'}`;
    });
    const standbyOnly = total.standby + total.stopping > 0 && total.silent === 0;
    const why = standbyOnly
      ? ': no hub was active (is the active hub down, and its standby not yet in charge, or is its endpoint missing from the list?)'
      : `: is dhub running there${curveHint}`;
    return new HubUnreachableError(`no active hub answered within ${elapsedMs} ms (${said.join('; ')})${why}`, false, standbyOnly);
  }

  /** Waits `ms`; interrupt() and close() end the wait at once. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const end = (): void => {
        clearTimeout(timer);
        this.endPause = undefined;
        resolve();
      };
      const timer = setTimeout(end, Math.max(0, ms));
      this.endPause = end;
    });
  }

  private endPause: (() => void) | undefined;

  /**
   * When the hub last stopped answering (ms since the epoch): set by a request that failed with
   * HubUnreachableError, cleared by any reply. Undefined while the hub answers.
   */
  unreachable: number | undefined;

  private drop(socket: ReqSocket): void {
    if (!socket.closed) socket.close();
    if (this.socket === socket) {
      this.socket = undefined;
      this.connected = false;
      this.refusals = 0;
    }
  }

  /**
   * Fails the request in flight at once (HubUnreachableError), dropping its socket; later calls
   * use a new one. For a worker whose stop must end within its grace period.
   */
  interrupt(): void {
    this.interrupts++;
    this.endPause?.();
    if (this.socket !== undefined) this.drop(this.socket);
  }

  /** How many times interrupt() was called: a request that sees it change was interrupted. */
  private interrupts = 0;
  /** The current socket is connected to the hub; connection attempts refused since it was made or lost its connection. */
  private connected = false;
  private refusals = 0;
  private disconnectedAt = 0;

  /**
   * Fails the request in progress on `socket` (closing the socket) when it has never connected
   * and its attempts have been refused for REFUSED_AFTER_MS.
   */
  private watchRefusal(socket: ReqSocket): { refused: boolean; stop(): void } {
    const started = Date.now();
    const watch = {
      refused: false,
      stop: () => clearInterval(timer),
    };
    const timer = setInterval(() => {
      if (this.socket !== socket) return clearInterval(timer);
      if (this.connected) return;
      if (this.refusals > 0 && Date.now() - Math.max(started, this.disconnectedAt) >= REFUSED_AFTER_MS) {
        watch.refused = true;
        clearInterval(timer);
        this.drop(socket); // the pending receive fails at once
      }
    }, 100);
    timer.unref();
    return watch;
  }

  private connect(receiveTimeout: number): ReqSocket {
    if (this.socket === undefined) {
      this.socket = new ReqSocket({ linger: 0, sendTimeout: this.options.timeoutMs });
      const curve = this.options.curve;
      if (curve !== undefined) {
        this.socket.curveServerKey = curve.serverKey;
        this.socket.curvePublicKey = curve.publicKey;
        this.socket.curveSecretKey = curve.secretKey;
      }
      const socket = this.socket;
      this.connected = false;
      this.refusals = 0;
      socket.events.on('connect', () => {
        if (this.socket !== socket) return;
        this.connected = true;
        this.refusals = 0;
      });
      socket.events.on('disconnect', () => {
        if (this.socket !== socket) return;
        this.connected = false;
        this.disconnectedAt = Date.now();
      });
      socket.events.on('connect:retry', () => {
        if (this.socket === socket) this.refusals++;
      });
      socket.connect(this.endpoint);
    }
    this.socket.receiveTimeout = receiveTimeout;
    return this.socket;
  }
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}
