/**
 * Client: a typed, promise-based API over every operation of the dagwork wire contract.
 *
 * One REQ socket, one request at a time (calls are queued). A reply that does not come within the
 * timeout is treated as lost: the socket is closed and rebuilt and the request sent again (the
 * "lazy pirate" pattern). Every operation is safe to repeat: re-creating a task is a no-op, a
 * repeated completion is answered ALREADY_DONE, and leases from a steal whose reply was lost
 * expire and go back to the pool.
 *
 * Size: a request whose frame is over `maxMessageBytes` is refused here with TOO_LARGE (the hub's
 * socket would drop it without a reply, and every resend with it). A big request also takes the
 * hub longer to read and write, so the time allowed for its reply grows with its size.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { Request as ReqSocket } from 'zeromq';
import { parseEndpoint } from '../../proto/src/args.js';
import { readKeyFile } from '../../proto/src/keys.js';
import { DagworkError } from '../../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../proto/src/spec.js';
import { downloadFile, uploadFile, type UploadResult } from './files.js';
import { checkSha256, defaultLimits } from '../../proto/src/spec.js';
import { TASK_STATES, type FileStat, type GcResult, type PoolDeleteResult, type PoolInfo, type PoolListResult, type PoolSetArgs, type Limits, type CreateResult, type FailResult, type ListQuery, type ListResult, type LookupResult, type Status, type StealResult, type TaskResult, type TaskSummary, type RerunResult, type ReplaceResult, type DeleteResult, type GraphView, type GraphViewQuery } from '../../proto/src/types.js';
import { decodeReply, encodeRequest, type Reply, type Request, type StealArgs } from '../../proto/src/codec.js';
import { checkCompletions, checkGraphViewQuery, checkNames, checkSteal, checkString, checkTasks, type CompletionInput, type StealOptions, type TaskInput } from './input.js';

export type { CompletionInput, StealOptions, TaskInput } from './input.js';

export interface ClientOptions {
  /** The hub's endpoint. Default: $DAGWORK_HUB, else tcp://127.0.0.1:6125. */
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
  /** How many times to resend a request whose reply did not come. Default 2. */
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
    retries: 2,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    curve: undefined,
  };
}

/**
 * The hub did not answer: after every retry, no reply came within the timeout; or (`refused`)
 * nothing listens at its endpoint: connection attempts were refused.
 */
export class HubUnreachableError extends Error {
  override name = 'HubUnreachableError';
  readonly code = 'UNREACHABLE';

  constructor(
    message: string,
    readonly refused = false,
  ) {
    super(message);
  }
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

type ReplyOf<Op extends Reply['op']> = Extract<Reply, { op: Op }>;

export class Client {
  readonly options: ClientOptions;
  private socket: ReqSocket | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: Partial<ClientOptions> = {}) {
    const merged = { ...defaultClientOptions(), ...options };
    try {
      merged.hub = parseEndpoint(checkString(merged.hub, 'hub'));
    } catch (err) {
      throw new TypeError(`hub: ${(err as Error).message}`);
    }
    checkString(merged.worker, 'worker');
    this.options = merged;
    const { timeoutMs, timeoutPerMiBMs, retries, maxMessageBytes } = this.options;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError('timeoutMs must be positive');
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

  /** Create tasks, all or nothing; says which dependencies exist neither in the batch nor in the hub. */
  async create(tasks: readonly TaskInput[]): Promise<CreateResult> {
    const { op: _op, ...result } = await this.call({ op: 'create', tasks: checkTasks(tasks) }, 'create');
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
    const { replaced, unchanged, created, results } = await this.call(request, 'replace');
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
    const { op: _op, ...view } = await this.call({ op: 'graphView', ...checkGraphViewQuery(query) }, 'graphView');
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
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new Error('client is closed');
      const socket = this.connect(timeout);
      const watch = this.watchRefusal(socket);
      try {
        await socket.send(frame);
        const [reply] = await socket.receive();
        if (reply === undefined) throw new DagworkError('MALFORMED', 'empty reply from the hub');
        this.unreachable = undefined;
        return decodeReply(reply);
      } catch (err) {
        if (this.interrupted === socket) throw new HubUnreachableError(`request to ${this.options.hub} interrupted: the client is stopping`);
        if (watch.refused) {
          this.unreachable ??= Date.now();
          throw new HubUnreachableError(`connection refused at ${this.options.hub}: is dhub running there?`, true);
        }
        if ((err as { code?: string }).code !== 'EAGAIN') throw err;
        // No reply in time: the socket may hold a lost request; only a new one can go on.
        this.drop(socket);
        if (attempt >= this.options.retries) {
          this.unreachable ??= Date.now();
          throw new HubUnreachableError(
            `no reply from the hub at ${this.options.hub} within ${timeout} ms, ${attempt + 1} times: is dhub running there${
              this.options.curve === undefined
                ? '? (A hub that uses CURVE never answers a client without CURVE keys: its handshake fails silently.)'
                : ', and is this key authorized for that endpoint?'
            }`,
          );
        }
      } finally {
        watch.stop();
      }
    }
  }

  /**
   * When the hub last stopped answering (ms since the epoch): set by a request that failed with
   * HubUnreachableError, cleared by any reply. Undefined while the hub answers.
   */
  unreachable: number | undefined;

  private drop(socket: ReqSocket): void {
    socket.close();
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
    if (this.socket === undefined) return;
    this.interrupted = this.socket;
    this.drop(this.socket);
  }

  private interrupted: ReqSocket | undefined;
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
      socket.connect(this.options.hub);
    }
    this.socket.receiveTimeout = receiveTimeout;
    return this.socket;
  }
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}
