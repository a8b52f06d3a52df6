/**
 * The hub daemon's shell around the graph: a ZeroMQ ROUTER socket in front, the LevelDB store
 * behind. Requests are applied to the graph as they arrive; their replies wait in an outbox until
 * the changes they acknowledge are written (one batch for everything that arrived meanwhile: group
 * commit). Steals that ask to wait are parked and answered when work appears or their time is up.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Router } from 'zeromq';
import { ZapHandler } from './auth.js';
import type { KeyPair } from '../../proto/src/keys.js';
import { allows, leastRole, ROLES, type Role } from '../../proto/src/roles.js';
import { DagworkError } from '../../proto/src/errors.js';
import { FileStore, type FileStoreOptions } from './files/store.js';
import { HubMetrics } from './metrics.js';
import { Graph, verifierCommands, type JobCheck, type VerifyTicket } from './graph/graph.js';
import { checkVerifierCommand } from './verify/check.js';
import { jobInput, resultInput } from './verify/input.js';
import { VerifierRunner, type VerifierRun } from './verify/runner.js';
import { ParkedSteals } from './graph/parked.js';
import type { GraphOptions } from './graph/options.js';
import { defaultLimits } from '../../proto/src/spec.js';
import type { GraphView, GraphViewQuery, Limits, ListQuery, ListResult, LookupResult, Status, StealResult, TaskResult, WorkerStatus } from '../../proto/src/types.js';
import { DashboardServer, type DashboardSource, type MetricsSource } from './http/server.js';
import { ThroughputHistory, type ThroughputSeries } from './http/history.js';
import { httpBindProblem, type HttpAddress, type Tokens } from './http/access.js';
import { rateLimited, silentLogger, type Logger } from './log.js';
import { Store, type Checkpoint, type StoreOptions, type TaskStore } from './store/store.js';
import { decodeRequest, encodeReply, inspectRequest, type Reply, type Request, type StealArgs, type WireError } from '../../proto/src/codec.js';

export interface HubOptions {
  /** ZeroMQ endpoint to bind; `tcp://127.0.0.1:*` picks a free port. Default tcp://127.0.0.1:6125. */
  bind: string;
  /** Store directory. Default ./dagwork-db. */
  db: string;
  /** fsync every group commit. Default false (a crash of the hub loses nothing; power loss may). */
  sync: boolean;
  /** Largest request accepted, in bytes; larger ones get TOO_LARGE. Default 64 MiB. */
  maxMessageBytes: number;
  /** Longest long poll a steal may ask for, in ms; longer waits are cut to it. Default 300,000. */
  maxWaitMs: number;
  /** Most steals parked in a long poll at once; past it a steal is answered at once. Default 10,000. */
  maxParked: number;
  /** Limits and policies of the graph. */
  graph: Partial<GraphOptions>;
  /**
   * The file store: its directory (default <db>/files) and limits (see FileStoreOptions; the
   * defaults are the contract's, proto/src/spec.ts defaultLimits).
   */
  files: Partial<Omit<FileStoreOptions, 'clock' | 'log'>>;
  log: Logger;
  /** ms since the epoch. Default Date.now. */
  clock: () => number;
  /** Opens the store. Default: LevelDB (Store.open). */
  openStore: (location: string, options: StoreOptions) => Promise<TaskStore>;
  /**
   * CURVE encryption and authentication: the hub's key pair and the clients' public keys with
   * their roles. With it the hub binds one endpoint per role (see roleEndpoints). Default: none
   * (one endpoint, every operation allowed).
   */
  curve: (KeyPair & { authorizedKeys: Map<string, Role> }) | undefined;
  /** Pools' verifiers (pool_set): how many run at once, and how long one may run before it is killed (ms). */
  verifierJobs: number;
  verifierTimeoutMs: number;
  /** The dashboard (dhub --http). */
  http: HttpOptions;
}

export interface HttpOptions {
  /** Where it listens; undefined: no dashboard. Default undefined. */
  listen: HttpAddress | undefined;
  /** Needed to read the pages (--http-token), and to press their buttons (--http-admin-token). Default: none. */
  tokens: Tokens;
  /** Open connections at most; past it 503. Default 200. */
  maxConnections: number;
  /** Pages streaming /events at once; past it 503. Default 100. */
  maxSubscribers: number;
  /** Largest request body, in bytes. Default 64 KiB. */
  maxBodyBytes: number;
  /** How often /events sends a snapshot, in ms. Default 1,000. */
  tickMs: number;
}

/** Loopback and local transports: reachable from this machine only. */
export function isLocal(bind: string): boolean {
  return /^(tcp:\/\/(127\.[\d.]+|localhost|\[::1\]):|ipc:|inproc:)/.test(bind);
}

/**
 * Whether pool_set may set verifiers (commands run on the hub's machine): only where whoever can
 * ask is known, under CURVE (its admin role), or can reach a local endpoint only.
 */
export function verifiersAllowed(bind: string, curve: boolean): boolean {
  return curve || isLocal(bind);
}

/**
 * With CURVE, the endpoint of each role: the worker endpoint is `bind` itself, submit and admin
 * the next two ports (tcp://h:6125 -> :6126, :6127; a `*` port stays `*`; ipc paths get a suffix).
 */
export function roleEndpoints(bind: string): Record<Role, string> {
  const tcp = /^(tcp:\/\/.+):(\d+|\*)$/.exec(bind);
  const at = (offset: number, role: Role): string => {
    if (offset === 0) return bind;
    if (tcp === null) return `${bind}-${role}`;
    return tcp[2] === '*' ? bind : `${tcp[1]}:${Number(tcp[2]) + offset}`;
  };
  return { worker: at(0, 'worker'), submit: at(1, 'submit'), admin: at(2, 'admin') };
}

export function defaultHubOptions(): HubOptions {
  return {
    bind: 'tcp://127.0.0.1:6125',
    db: './dagwork-db',
    sync: false,
    maxMessageBytes: defaultLimits().maxMessageBytes,
    maxWaitMs: defaultLimits().maxWaitMs,
    maxParked: 10_000,
    graph: {},
    files: {},
    log: silentLogger,
    clock: Date.now,
    openStore: (location, options) => Store.open(location, options),
    curve: undefined,
    verifierJobs: availableParallelism(),
    verifierTimeoutMs: 60_000,
    http: {
      listen: undefined,
      tokens: { read: undefined, admin: undefined },
      maxConnections: 200,
      maxSubscribers: 100,
      maxBodyBytes: 64 << 10,
      tickMs: 1_000,
    },
  };
}

/** A bound socket and the role its clients have. */
interface Listener {
  router: Router;
  role: Role;
  endpoint: string;
}

/**
 * Where a request came from: the socket, and the frames to put before the reply (the routing id,
 * and the empty delimiter when the client sent one). Nothing else of the client's is kept.
 */
interface Envelope {
  listener: Listener;
  frames: Buffer[];
  /** When the request arrived (performance.now(), ms) and its operation ('invalid' until read): for dagwork_request_seconds. */
  arrived: number;
  op: Request['op'] | 'invalid';
}

/** Leases a reply hands out: given back if the reply cannot be delivered. */
interface Handed {
  worker: string;
  names: string[];
}

/** A caller in this process (the dashboard's buttons) waiting for its change to be written. */
interface InProcess {
  written: () => void;
  failed: (err: DagworkError) => void;
}

interface Outgoing {
  envelope: Envelope;
  /** The encoded reply. */
  frame: Uint8Array;
  handed: Handed | undefined;
}

/** A steal waiting in a long poll: whom to answer, and how (a steal, or a complete's `next`). */
interface Waiting {
  envelope: Envelope;
  worker: string;
  respond: (result: StealResult) => Reply;
}

const EMPTY_FRAME = Buffer.alloc(0);
/** What a steal that could not be parked is told to wait before asking again (ms). */
const PARKED_FULL_RETRY_MS = 1_000;
/**
 * Replies queued for one peer at most (ZeroMQ's send high-water mark, in messages). A REQ client
 * has one request out at a time; a DEALER that pipelines requests and never reads has its
 * further replies dropped instead of held. Replies are bounded in bytes (16 MiB of payloads a
 * steal, 2 MiB a record), so a peer holds at most twice that; the number of peers is bounded by
 * the process's file descriptors (`ulimit -n`), and under CURVE only authorized keys get that far.
 */
const PEER_QUEUE_MESSAGES = 2;
/** Bytes of requests held while the graph reloads after a failed write; past it they are refused. */
const HELD_BYTES = 256 << 20;
/**
 * Bytes of encoded replies waiting for the group commit; past it the hub stops reading requests
 * until they are sent. A burst of big lookups then costs this much memory, not a reply each.
 */
const OUTBOX_BYTES = 64 << 20;
/**
 * File operations (file_put, file_get, gc) in flight at once; past it the hub reads no request
 * until one ends. Each holds a chunk (max_chunk_bytes) in memory, so this bounds that memory.
 */
const FILE_OPS_IN_FLIGHT = 64;
/**
 * Tasks of creates waiting for their job verifiers, and those requests' bytes; past either a
 * create that needs verifying is refused with BUSY (the requests are held in memory meanwhile).
 */
const JOB_CHECKS_WAITING = 100_000;
const JOB_BYTES_WAITING = 256 << 20;
/** A result verification the hub could not run (no temporary directory, no sh) is tried again after this (ms). */
const VERIFY_FAULT_RETRY_MS = 5_000;
/** Room in a request for the file_put fields around its data, in bytes. */
const PUT_OVERHEAD_BYTES = 1024;
/**
 * Longest slice of a snapshot written while serving (ms), between requests: what it adds to the
 * replies of a group commit it follows. Between slices the hub serves.
 */
const CHECKPOINT_SLICE_MS = 2;
/** While a group commit is under way, the next slice waits this long (ms), unless the commit writes it. */
const CHECKPOINT_BUSY_WAIT_MS = 5;

export class Hub {
  private outbox: Outgoing[] = [];
  private outboxBytes = 0;
  private flushing: Promise<void> | undefined;
  private readonly parked: ParkedSteals<Waiting>;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopping = false;
  private recovering = false;
  /** A snapshot the store writes while the hub serves (TaskStore.checkpoint): the seq its next slice starts at. */
  private checkpoint: { writer: Checkpoint; nextSeq: number; beforeSeq: number } | undefined;
  /** Cancels the wake-up of its next slice, when one is set. */
  private checkpointWake: (() => void) | undefined;
  /** Messages that arrived while the graph was being reloaded after a failed write. */
  private held: [Listener, Buffer[]][] = [];
  private heldBytes = 0;
  /** File operations under way: each queues its reply when it ends; stop() waits for them. */
  private readonly fileOps = new Set<Promise<void>>();
  /** Verifications under way (creates waiting for job verifiers, results being verified): stop() waits for them. */
  private readonly verifyOps = new Set<Promise<void>>();
  private readonly verifier: VerifierRunner;
  private jobChecksWaiting = 0;
  private jobBytesWaiting = 0;
  /** Creates and replaces waiting for their job verifiers, by request bytes: a client's resend joins its first copy. */
  private readonly pendingJobs = new Map<string, Envelope[]>();
  /** Result verifications the hub could not run, waiting to be tried again. */
  private readonly faultRetries = new Set<NodeJS.Timeout>();
  private readonly startedMs = Date.now();
  private readonly hubMetrics: HubMetrics;
  /** Changes made for callers in this process, waiting for the group commit. */
  private awaitingWrite: InProcess[] = [];
  private readonly history = new ThroughputHistory(this.startedMs);
  private dashboard: DashboardServer | undefined;
  /** Warnings a peer causes, at most 10 lines a second. */
  private readonly peerWarning: (message: string) => void;
  private readonly receiving: Promise<void>;
  /** Settles when the hub has stopped, or rejects when it cannot go on (its store broke). */
  readonly done: Promise<void>;
  private settle!: (error?: unknown) => void;

  private constructor(
    private readonly options: HubOptions,
    private graph: Graph,
    private readonly store: TaskStore,
    private readonly files: FileStore,
    private readonly listeners: Listener[],
    private readonly zap: ZapHandler | undefined,
  ) {
    this.parked = new ParkedSteals(options.maxParked);
    this.peerWarning = rateLimited(options.log, 10);
    this.done = new Promise((resolve, reject) => {
      this.settle = (error) => (error === undefined ? resolve() : reject(error));
    });
    // An embedding program that never looks at `done` must not die of an unhandled rejection.
    this.done.catch(() => undefined);
    this.verifier = new VerifierRunner({ jobs: options.verifierJobs, timeoutMs: options.verifierTimeoutMs, tmpDir: verifierTmpDir(options), log: options.log });
    this.hubMetrics = new HubMetrics({ stateCounts: () => this.graph.stateCounts(), files: () => ({ count: this.files.count, bytes: this.files.bytes }), parkedSteals: () => this.parked.size });
    graph.observer = this.hubMetrics.observer;
    this.receiving = Promise.all(listeners.map((l) => this.receiveLoop(l))).then(() => undefined);
    // Tasks stored VERIFYING: their verification was cut off; it runs again.
    this.startVerifications();
    this.scheduleTimer();
  }

  /** The first endpoint: the only one without CURVE, the worker role's with it. */
  get endpoint(): string {
    return (this.listeners[0] as Listener).endpoint;
  }

  /** Every bound endpoint with its role. */
  get endpoints(): { role: Role; endpoint: string }[] {
    return this.listeners.map(({ role, endpoint }) => ({ role, endpoint }));
  }

  /** Opens the store, recovers the graph and binds the endpoint(s). */
  static async start(overrides: Partial<HubOptions> = {}): Promise<Hub> {
    const options = { ...defaultHubOptions(), ...overrides };
    const log = options.log;
    const http = options.http.listen;
    if (http !== undefined) {
      const problem = httpBindProblem(http.host, options.http.tokens.read !== undefined);
      if (problem !== undefined) throw new DagworkError('INVALID_ARGUMENT', problem);
    }
    const store = await options.openStore(options.db, { sync: options.sync, log: options.log });
    const listeners: Listener[] = [];
    let zap: ZapHandler | undefined;
    let hub: Hub;
    try {
      const started = Date.now();
      // A chunk must fit in a request: unless told, it is the contract's default or less.
      const roomForChunk = Math.max(1, options.maxMessageBytes - PUT_OVERHEAD_BYTES);
      const maxChunkBytes = options.files.maxChunkBytes ?? Math.min(defaultLimits().maxChunkBytes, roomForChunk);
      if (maxChunkBytes > roomForChunk) {
        throw new DagworkError(
          'INVALID_ARGUMENT',
          `a chunk of max chunk bytes ${maxChunkBytes} does not fit in a request of max message bytes ${options.maxMessageBytes} (with ${PUT_OVERHEAD_BYTES} bytes to spare): give at most ${roomForChunk}`,
        );
      }
      if (!Number.isInteger(options.verifierTimeoutMs) || options.verifierTimeoutMs < 1 || options.verifierTimeoutMs > 2 ** 31 - 1) {
        throw new DagworkError('INVALID_ARGUMENT', `verifier timeout ${options.verifierTimeoutMs} ms is not an integer from 1 to ${2 ** 31 - 1}`);
      }
      if (!Number.isInteger(options.verifierJobs) || options.verifierJobs < 1) throw new DagworkError('INVALID_ARGUMENT', `verifier jobs ${options.verifierJobs} is not a positive integer`);
      // What verifiers of a hub killed with kill -9 left behind (the store's lock makes it ours).
      const verifyDir = verifierTmpDir(options);
      await rm(verifyDir, { recursive: true, force: true });
      await mkdir(verifyDir, { recursive: true });
      const files = await FileStore.open({ dir: join(options.db, 'files'), ...options.files, maxChunkBytes, clock: options.clock, log });
      const graph = await loadGraph(store, files, options);
      if (!verifiersAllowed(options.bind, options.curve !== undefined)) {
        const verified = graph.poolList('', options.clock()).pools.find((p) => p.jobVerifier !== '' || p.resultVerifier !== '');
        if (verified !== undefined) {
          throw new DagworkError(
            'FORBIDDEN',
            `pool "${verified.pool}" has a verifier (commands run on this machine), and ${options.bind} is not local while CURVE is off: start with --curve-secret, or on a local address to remove the verifiers (dquery pool set ${verified.pool} --job-verifier '' --result-verifier '')`,
          );
        }
      }
      log.info(`recovered ${graph.size} tasks from ${store.location ?? options.db} in ${Date.now() - started} ms`);
      log.info(`file store ${files.options.dir}: ${files.count} files, ${files.bytes} bytes`);
      const curve = options.curve;
      if (curve !== undefined) zap = await ZapHandler.start(curve.authorizedKeys, log);
      const binds: [Role, string][] = curve === undefined ? [['admin', options.bind]] : ROLES.map((role) => [role, roleEndpoints(options.bind)[role]]);
      for (const [role, bind] of binds) {
        const router = new Router({
          // The socket drops anything far over the limit without buffering it (and closes that
          // connection); up to the limit plus slack, the hub reads the message and answers TOO_LARGE.
          maxMessageSize: options.maxMessageBytes + 65_536,
          linger: 1000,
          // A reply to a peer that is gone fails (EHOSTUNREACH) instead of vanishing, so that the
          // leases it carried go back at once; a peer that does not read gets no more replies.
          mandatory: true,
          sendHighWaterMark: PEER_QUEUE_MESSAGES,
          sendTimeout: 0,
          // Connections that never finish their handshake (no CURVE key, say) are dropped after this.
          handshakeInterval: 10_000,
        });
        if (curve !== undefined) {
          router.curveServer = true;
          router.curveSecretKey = curve.secretKey;
          router.curvePublicKey = curve.publicKey;
          router.zapDomain = role;
        }
        listeners.push({ router, role, endpoint: bind });
        try {
          await router.bind(bind);
        } catch (err) {
          throw new DagworkError('INVALID_ARGUMENT', `cannot bind ${bind}: ${(err as Error).message}`, { cause: err });
        }
        (listeners[listeners.length - 1] as Listener).endpoint = router.lastEndpoint ?? bind;
      }
      hub = new Hub(options, graph, store, files, listeners, zap);
    } catch (err) {
      for (const l of listeners) l.router.close();
      await zap?.close();
      await store.close();
      throw err;
    }
    if (http !== undefined) {
      try {
        hub.dashboard = await DashboardServer.start(hub.dashboardSource(), { ...options.http, ...http, log, metrics: hub.metricsSource() });
      } catch (err) {
        await hub.stop();
        throw err;
      }
    }
    return hub;
  }

  /** The dashboard's address (http://HOST:PORT), when it has one. */
  get dashboardUrl(): string | undefined {
    return this.dashboard?.url;
  }

  // --- what the dashboard reads and does (hub/src/http) -----------------------------------

  /** What a status request answers, now. */
  status(): Status {
    return {
      ...this.graph.status(this.options.clock()),
      limits: this.limits(),
      storeId: this.store.id,
      startedMs: this.startedMs,
      files: this.files.count,
      filesBytes: this.files.bytes,
    };
  }

  /** The workers a status lists. */
  workers(): WorkerStatus[] {
    return this.graph.status(this.options.clock()).workers;
  }

  list(query: ListQuery): ListResult {
    return this.graph.list(query, this.options.clock());
  }

  lookup(name: string): LookupResult {
    return this.graph.lookup(name, this.options.clock());
  }

  /** Completions and failed attempts per minute since the hub started (the last `lastMinutes`). */
  throughput(lastMinutes?: number): ThroughputSeries {
    const now = this.options.clock();
    this.history.observe(this.graph.ended, now);
    return this.history.series(now, lastMinutes);
  }

  graphView(query: GraphViewQuery): GraphView {
    return this.graph.view(query, this.options.clock());
  }

  /** Retries failed tasks as a retry request would; resolves once the change is written. */
  retry(names: string[]): Promise<{ retried: number; results: TaskResult[] }> {
    return this.act((now) => this.graph.retry(names, now));
  }

  /** Cancels tasks as a cancel request would; resolves once the change is written. */
  cancel(names: string[], reason: string): Promise<{ cancelled: number; results: TaskResult[] }> {
    return this.act((now) => this.graph.cancel(names, reason, now));
  }

  private dashboardSource(): DashboardSource {
    return {
      status: () => this.status(),
      workers: () => this.workers(),
      list: (query) => this.list(query),
      lookup: (name) => this.lookup(name),
      throughput: (lastMinutes) => this.throughput(lastMinutes),
      graphView: (query) => this.graphView(query),
      retry: (names) => this.retry(names),
      cancel: (names, reason) => this.cancel(names, reason),
    };
  }

  /** What /metrics serves: Hub.metrics(). */
  private metricsSource(): MetricsSource {
    return () => this.metrics();
  }

  /** Applies a change as a request's dispatch would; resolves with its value once it is written. */
  private act<T>(apply: (now: number) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let value: T;
      this.applyNow(
        {
          written: () => resolve(value),
          failed: reject,
        },
        (now) => {
          value = apply(now);
          return undefined;
        },
      );
    });
  }

  /** The hub's Prometheus metrics (see README, "Metrics"), in the registry's text format. */
  async metrics(): Promise<{ contentType: string; body: string }> {
    return this.hubMetrics.text();
  }

  /** Answers parked steals, writes what is pending, closes the socket and the store. */
  async stop(): Promise<void> {
    if (this.stopping) return this.done;
    this.stopping = true;
    clearTimeout(this.timer);
    await this.dashboard?.close();
    for (const p of this.parked.takeAll()) this.queueError(p.envelope, { code: 'SHUTTING_DOWN', message: 'the hub is stopping', task: '' });
    // Verifiers are killed: a create waiting for one is refused, a task VERIFYING stays so in the
    // store and is verified again at the next start.
    this.verifier.stop();
    for (const timer of this.faultRetries) clearTimeout(timer);
    this.faultRetries.clear();
    while (this.verifyOps.size > 0) await Promise.allSettled([...this.verifyOps]);
    // File operations under way end (each queues its reply) before the last replies are sent.
    while (this.fileOps.size > 0) await Promise.allSettled([...this.fileOps]);
    await this.drain();
    for (const l of this.listeners) l.router.close();
    await this.receiving;
    await this.drain();
    await this.zap?.close();
    // Every change written (or the graph reloaded from the store after a failed write): the
    // store may keep the graph's tasks as a snapshot for a faster start.
    const clean = !this.recovering && !this.graph.unwritten;
    // A snapshot being written while serving is given up: a clean stop writes a whole one.
    this.dropCheckpoint();
    await this.store.close(clean ? () => this.graph.records() : undefined);
    this.hubMetrics.close();
    this.options.log.info('stopped');
    this.settle();
  }

  // --- receiving -------------------------------------------------------------------------

  private async receiveLoop(listener: Listener): Promise<void> {
    try {
      for await (const frames of listener.router) {
        this.onMessage(listener, frames);
        if (this.outboxBytes > OUTBOX_BYTES) await this.drain();
        while (this.fileOps.size >= FILE_OPS_IN_FLIGHT) await Promise.race(this.fileOps);
      }
    } catch (err) {
      if (!this.stopping) this.options.log.error(`receive loop ended: ${(err as Error).message}`);
    }
  }

  private onMessage(listener: Listener, frames: Buffer[]): void {
    if (this.recovering) {
      const bytes = frames.reduce((sum, f) => sum + f.length, 0);
      if (this.heldBytes + bytes <= HELD_BYTES && this.held.length < this.options.maxParked) {
        // The graph is being rebuilt from the store: answer these once it is back.
        this.held.push([listener, frames]);
        this.heldBytes += bytes;
        return;
      }
    }
    try {
      this.dispatch(listener, frames);
    } catch (err) {
      // A transition threw what it should not: the graph may be half-changed. Start again from the store.
      this.options.log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`);
      void this.recover(err, 'INTERNAL');
      return;
    }
    this.afterChange();
  }

  /** What follows any change to the graph: verifications it started, the group commit, the timer. */
  private afterChange(): void {
    this.history.observe(this.graph.ended, this.options.clock());
    this.startVerifications();
    this.scheduleFlush();
    this.scheduleTimer();
  }

  private dispatch(listener: Listener, frames: Buffer[]): void {
    // A REQ client's message reaches the ROUTER as [routing id, empty delimiter, body]; a DEALER
    // may leave the delimiter out. Nothing else may stand before the body.
    const id = frames[0] as Buffer;
    const delimited = frames.length === 3 && (frames[1] as Buffer).length === 0;
    const envelope: Envelope = { listener, frames: delimited || frames[1]?.length === 0 ? [id, EMPTY_FRAME] : [id], arrived: performance.now(), op: 'invalid' };
    if (frames.length !== 2 && !delimited) {
      this.peerWarning(`malformed message: ${frames.length - 1} frames after the routing id`);
      return this.reject(envelope, 'MALFORMED', `expected one frame holding one length-delimited Request (after one empty delimiter frame at most), got ${frames.length - 1} frames`);
    }
    const data = frames[frames.length - 1] as Buffer;
    if (data.length > this.options.maxMessageBytes) {
      this.peerWarning(`refused a request of ${data.length} bytes (limit ${this.options.maxMessageBytes})`);
      return this.reject(envelope, 'TOO_LARGE', `request of ${data.length} bytes is over the limit of ${this.options.maxMessageBytes}`);
    }
    if (this.stopping) return this.reject(envelope, 'SHUTTING_DOWN', 'the hub is stopping; try again when it is back');
    if (this.recovering) return this.reject(envelope, 'STORE_FAILED', 'the hub is recovering from a store failure and holds too many requests; try again');
    let request: Request;
    try {
      // The operation (checked against the role), then the counts of its repeated fields, read
      // before anything is decoded.
      const { maxBatch, maxDeps, maxPools } = this.graph.options;
      inspectRequest(data, { maxBatch, maxDeps, maxPools }, (op) => {
        if (!allows(listener.role, op)) {
          const needed = leastRole(op);
          const where = this.listeners.find((l) => l.role === needed)?.endpoint ?? '';
          throw new DagworkError('FORBIDDEN', `${op} is not allowed on the ${listener.role} endpoint; it needs the ${needed} role, on ${where}`);
        }
      });
      request = decodeRequest(data);
      envelope.op = request.op;
    } catch (err) {
      const error = toWireError(err);
      this.peerWarning(`rejected a request: ${error.code}: ${error.message}`);
      return this.queueError(envelope, error);
    }
    const now = this.options.clock();
    try {
      this.handle(envelope, request, now, data);
    } catch (err) {
      this.queueError(envelope, toWireError(err));
      // Refusals are DagworkErrors thrown before anything changed; anything else may have left the
      // graph half-changed: the caller reloads it (and answers every waiting reply with the error).
      if (!(err instanceof DagworkError)) throw err;
    }
    if (!READ_ONLY.has(request.op)) this.serveParked(now);
  }

  private handle(envelope: Envelope, request: Request, now: number, data: Buffer): void {
    const graph = this.graph;
    const bytes = data.length;
    // A request waiting for job verifiers is known by its bytes: a resend is the same request.
    const key = (): string => createHash('sha256').update(data).digest('hex');
    switch (request.op) {
      case 'create': {
        const checks = graph.jobChecks(request.tasks);
        if (checks.length > 0) return this.verifyJobs(envelope, checks, key(), bytes, (at) => ({ op: 'create', ...this.graph.create(request.tasks, at) }));
        return this.queue(envelope, { op: 'create', ...graph.create(request.tasks, now) });
      }
      case 'steal':
        return this.steal(envelope, request, now, (result) => ({ op: 'steal', ...result }));
      case 'complete': {
        const asked = request.next;
        if (asked !== undefined && asked.worker !== '' && asked.worker !== request.worker) {
          throw new DagworkError('INVALID_ARGUMENT', `next.worker "${asked.worker}" is not the completing worker "${request.worker}": a worker takes leases for itself only`);
        }
        const next = asked === undefined ? undefined : { ...asked, worker: request.worker };
        // A bad `next` refuses the whole request, before any completion is applied.
        if (next !== undefined) graph.checkSteal(next.worker, next.n, next.pools);
        const results = graph.complete(request.worker, request.tasks, now);
        if (next === undefined) return this.queue(envelope, { op: 'complete', results, next: undefined });
        return this.steal(envelope, next, now, (result) => ({ op: 'complete', results, next: result }));
      }
      case 'fail':
        return this.queue(envelope, { op: 'fail', ...graph.fail(request.worker, request.name, request.reason, request.permanent, now) });
      case 'heartbeat':
        return this.queue(envelope, { op: 'heartbeat', lost: graph.heartbeat(request.worker, request.names, now) });
      case 'release':
        return this.queue(envelope, { op: 'release', results: graph.release(request.worker, request.names, now) });
      case 'workerExit':
        return this.queue(envelope, { op: 'workerExit', released: graph.workerExit(request.worker, now) });
      case 'retry':
        return this.queue(envelope, { op: 'retry', ...graph.retry(request.allFailed ? undefined : request.names, now) });
      case 'status':
        return this.queue(envelope, {
          op: 'status',
          ...graph.status(now),
          limits: this.limits(),
          storeId: this.store.id,
          startedMs: this.startedMs,
          files: this.files.count,
          filesBytes: this.files.bytes,
        });
      case 'lookup':
        return this.queue(envelope, { op: 'lookup', ...graph.lookup(request.name, now) });
      case 'cancel':
        return this.queue(envelope, { op: 'cancel', ...graph.cancel(request.names, request.reason, now) });
      case 'list':
        return this.queue(envelope, { op: 'list', ...graph.list(request, now) });
      case 'graphView':
        return this.queue(envelope, { op: 'graphView', ...graph.view(request, now) });
      case 'fileStat':
        checkBatchOf(request.sha256.length, graph.options.maxBatch);
        return this.queue(envelope, { op: 'fileStat', files: this.files.stat(request.sha256) });
      case 'filePut':
        return this.fileOp(envelope, async () => ({ op: 'filePut', ...(await this.files.put(request.sha256, request.size, request.offset, request.data)) }));
      case 'fileGet':
        return this.fileOp(envelope, async () => ({ op: 'fileGet', ...(await this.files.get(request.sha256, request.offset, request.length)) }));
      case 'gc': {
        // The files tasks name now: from here on the graph asks the file store, which gc changes at once.
        const referenced = graph.referencedFiles();
        return this.fileOp(envelope, async () => ({ op: 'gc', ...(await this.files.gc(referenced, request.dryRun)) }));
      }
      // Pools.
      case 'poolList':
        return this.queue(envelope, { op: 'poolList', ...graph.poolList(request.pool, now) });
      case 'poolSet': {
        const commands = verifierCommands(request);
        if (commands.length === 0) return this.queue(envelope, { op: 'poolSet', pool: graph.poolSet(request, now) });
        if (!verifiersAllowed(this.options.bind, this.options.curve !== undefined)) {
          throw new DagworkError(
            'FORBIDDEN',
            `verifiers run commands on the hub's machine, and this hub serves ${this.options.bind} without CURVE (anyone reaching it could): set them on a hub with --curve-secret (admin endpoint), or bound to a local address`,
          );
        }
        // What the graph refuses is refused before sh runs.
        graph.checkPoolSet(request);
        // Checked apart from the graph (sh parses each; its program must exist), then applied.
        const checked = Promise.all(commands.map(([what, command]) => checkVerifierCommand(what, command))).then(() => undefined);
        void this.applyAfter([envelope], checked, (at) => ({ op: 'poolSet', pool: this.graph.poolSet(request, at) }));
        return;
      }
      case 'poolDelete':
        return this.queue(envelope, { op: 'poolDelete', ...graph.poolDelete(request.pool, request.force, now) });
      // Changing the graph after the fact (issue 13): admin operations, one graph step each.
      case 'rerun':
        return this.queue(envelope, { op: 'rerun', ...graph.rerun(request, now) });
      case 'replace': {
        const apply = (at: number): Reply => ({ op: 'replace', ...this.graph.replace(request.tasks, request.rerun, request.createMissing, at) });
        const checks = graph.jobChecks(request.tasks);
        if (checks.length > 0) return this.verifyJobs(envelope, checks, key(), bytes, apply);
        return this.queue(envelope, apply(now));
      }
      case 'delete':
        return this.queue(envelope, { op: 'delete', ...graph.deleteTasks(request.names, request.descendants, now) });
      default: {
        const missing: never = request;
        throw new Error(`no handler for ${JSON.stringify(missing)}`);
      }
    }
  }

  /**
   * Runs a file operation, its I/O apart from the graph: its reply (or its error) is queued when it
   * ends, for the next group commit; other requests are answered meanwhile.
   */
  private fileOp(envelope: Envelope, run: () => Promise<Reply>): void {
    const op = run()
      .then(
        (reply) => this.queue(envelope, reply),
        (err: unknown) => {
          if (!(err instanceof DagworkError)) this.options.log.error(`file operation failed: ${(err as Error)?.stack ?? String(err)}`);
          this.queueError(envelope, toWireError(err));
        },
      )
      .catch((err: unknown) => this.options.log.error(`could not queue a file reply: ${(err as Error)?.stack ?? String(err)}`))
      .finally(() => {
        this.fileOps.delete(op);
        if (!this.recovering) this.scheduleFlush();
      });
    this.fileOps.add(op);
  }

  // --- verifiers ---------------------------------------------------------------------------

  /**
   * Applies `apply` to the graph (as a request arriving then would be) once `work`, done apart
   * from the graph, has succeeded; its error is the reply otherwise. The request's reply waits
   * for it; other requests are answered meanwhile.
   */
  private applyAfter(envelopes: readonly Envelope[], work: Promise<void>, apply: (now: number) => Reply): Promise<void> {
    const op = work
      .then(
        () => this.applyNow(envelopes, apply),
        (err: unknown) => {
          if (!(err instanceof DagworkError)) this.options.log.error(`verification failed: ${(err as Error)?.stack ?? String(err)}`);
          for (const envelope of envelopes) this.queueError(envelope, toWireError(err));
          if (!this.recovering) this.scheduleFlush();
        },
      )
      .catch((err: unknown) => this.options.log.error(`could not queue a reply: ${(err as Error)?.stack ?? String(err)}`))
      .finally(() => this.verifyOps.delete(op));
    this.verifyOps.add(op);
    return op;
  }

  /**
   * A change to the graph made outside a request's dispatch: its reply (if any) queued, to each of
   * `to`'s envelopes, as dispatch would; or, for a caller in this process, told once written.
   */
  private applyNow(to: readonly Envelope[] | InProcess, apply: (now: number) => Reply | undefined): void {
    const envelopes = Array.isArray(to) ? (to as readonly Envelope[]) : [];
    const caller = Array.isArray(to) ? undefined : (to as InProcess);
    if (this.stopping || this.recovering) {
      const code = this.stopping ? 'SHUTTING_DOWN' : 'STORE_FAILED';
      const message = this.stopping ? 'the hub is stopping; nothing was changed: try again when it is back' : 'the hub is recovering from a store failure; nothing was changed: try again';
      for (const envelope of envelopes) this.reject(envelope, code, message);
      caller?.failed(new DagworkError(code, message));
      if (!this.recovering) this.scheduleFlush();
      return;
    }
    const now = this.options.clock();
    try {
      const reply = apply(now);
      if (reply !== undefined) for (const envelope of envelopes) this.queue(envelope, reply);
      if (caller !== undefined) this.awaitingWrite.push(caller);
    } catch (err) {
      for (const envelope of envelopes) this.queueError(envelope, toWireError(err));
      if (caller !== undefined) {
        const wire = toWireError(err);
        caller.failed(new DagworkError(wire.code, wire.message, { task: wire.task }));
      }
      if (!(err instanceof DagworkError)) {
        this.options.log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`);
        void this.recover(err, 'INTERNAL');
        return;
      }
    }
    this.serveParked(now);
    this.afterChange();
  }

  /**
   * A create (or replace) whose tasks the job verifiers of their pools must pass first: each runs,
   * and `apply` follows once all passed; the first rejection refuses the request (REJECTED, naming
   * the task; verifications of the batch not started yet are dropped). Bounded: BUSY past
   * JOB_CHECKS_WAITING tasks or JOB_BYTES_WAITING bytes of requests waiting.
   */
  private verifyJobs(envelope: Envelope, checks: JobCheck[], key: string, bytes: number, apply: (now: number) => Reply): void {
    const waiting = this.pendingJobs.get(key);
    if (waiting !== undefined) {
      // The same request again (a client that timed out and sent it anew): it gets the first's answer.
      if (waiting.length < 16) waiting.push(envelope);
      else throw new DagworkError('BUSY', 'this request is waiting for its job verifiers already (sent 16 times): try again later');
      return;
    }
    if (this.jobChecksWaiting + checks.length > JOB_CHECKS_WAITING || this.jobBytesWaiting + bytes > JOB_BYTES_WAITING) {
      throw new DagworkError('BUSY', `the job verifiers have ${this.jobChecksWaiting} tasks waiting (at most ${JOB_CHECKS_WAITING}, ${JOB_BYTES_WAITING >> 20} MiB of requests): nothing was created; try again in a moment`);
    }
    this.jobChecksWaiting += checks.length;
    this.jobBytesWaiting += bytes;
    let settled = false;
    const verdicts = new Promise<void>((resolve, reject) => {
      const refuse = (err: DagworkError): void => {
        settled = true;
        reject(err);
      };
      let left = checks.length;
      for (const { spec, verifier } of checks) {
        const run = (): VerifierRun | undefined => (settled ? undefined : { kind: 'job', command: verifier, input: jobInput(spec), task: spec.name, pool: spec.pool });
        void this.verifier.run(run).then((verdict) => {
          if (settled) return;
          if (verdict === undefined) {
            refuse(new DagworkError('SHUTTING_DOWN', 'the hub is stopping: its verifiers were stopped and nothing was created; try again when it is back'));
          } else if (verdict.fault === true) {
            this.options.log.error(`job verifier of pool "${spec.pool}": ${verdict.reason}`);
            refuse(new DagworkError('INTERNAL', `${verdict.reason} (pool "${spec.pool}", task "${spec.name}"); nothing of the batch was created`, { task: spec.name }));
          } else if (!verdict.passed) {
            refuse(new DagworkError('REJECTED', `the job verifier of pool "${spec.pool}" rejected task "${spec.name}": ${verdict.reason}; nothing of the batch was created`, { task: spec.name }));
          } else if (--left === 0) {
            settled = true;
            resolve();
          }
        });
      }
    });
    const envelopes = [envelope];
    this.pendingJobs.set(key, envelopes);
    // A resend arriving from here on is a new request: by then the tasks exist (or were refused).
    const verified = verdicts.finally(() => this.pendingJobs.delete(key));
    void this.applyAfter(envelopes, verified, apply).finally(() => {
      this.jobChecksWaiting -= checks.length;
      this.jobBytesWaiting -= bytes;
    });
  }

  /**
   * Runs the result verifier of each task that became VERIFYING, and applies its verdict. A
   * verdict reached on a graph since reloaded is dropped: the reload verifies its VERIFYING tasks
   * again.
   */
  private startVerifications(): void {
    if (this.stopping || this.recovering) return;
    const graph = this.graph;
    for (const ticket of graph.takeToVerify()) this.verifyResult(graph, ticket);
  }

  private verifyResult(graph: Graph, ticket: VerifyTicket): void {
    // The pool's verifier was removed since: the result passes without one.
    let noVerifier = false;
    const op = this.verifier
      .run(() => {
        if (this.graph !== graph) return undefined;
        const v = graph.verification(ticket);
        if (v === undefined) return undefined;
        if (v.verifier === '') {
          noVerifier = true;
          return undefined;
        }
        return { kind: 'result', command: v.verifier, input: resultInput(v, (sha) => this.files.pathOf(sha)), task: ticket.name, pool: v.spec.pool };
      })
      .then((verdict) => {
        if (this.graph !== graph || (verdict === undefined && !noVerifier)) return;
        if (verdict?.fault === true) {
          // The hub's trouble, not the task's: no verdict; the task stays VERIFYING and is tried again.
          this.options.log.error(`result verifier of ${ticket.name}: ${verdict.reason}; trying again in ${VERIFY_FAULT_RETRY_MS / 1000} s`);
          if (this.stopping) return;
          const timer = setTimeout(() => {
            this.faultRetries.delete(timer);
            if (!this.stopping && !this.recovering && this.graph === graph) this.verifyResult(graph, ticket);
          }, VERIFY_FAULT_RETRY_MS);
          this.faultRetries.add(timer);
          return;
        }
        const passed = verdict === undefined ? true : verdict.passed;
        const reason = verdict === undefined ? 'the pool has no result verifier any more' : verdict.reason;
        this.applyNow([], (now) => {
          graph.verified(ticket, passed, reason, now);
          return undefined;
        });
      })
      .catch((err: unknown) => this.options.log.error(`verifier: ${(err as Error)?.stack ?? String(err)}`))
      .finally(() => this.verifyOps.delete(op));
    this.verifyOps.add(op);
  }

  /** Steals now; with nothing to hand out and a wait asked for, parks the request instead. */
  private steal(envelope: Envelope, args: StealArgs, now: number, respond: (result: StealResult) => Reply): void {
    const result = this.graph.steal(args.worker, args.n, args.pools, now);
    const mayWait = !result.finished || args.waitWhenFinished;
    if (result.tasks.length === 0 && args.waitMs > 0 && mayWait) {
      const deadline = now + Math.min(args.waitMs, this.options.maxWaitMs);
      if (this.parked.park({ envelope, worker: args.worker, respond }, args, deadline)) return;
      return this.queue(envelope, respond({ ...result, retryAfterMs: PARKED_FULL_RETRY_MS }), args.worker);
    }
    this.queue(envelope, respond(result), args.worker);
  }

  /** Answers the parked steals that have work now, are overdue, or whose pools became finished. */
  private serveParked(now: number): void {
    for (const answer of this.parked.serve(this.graph, now)) {
      const { envelope, worker, respond } = answer.client;
      if ('error' in answer) this.queueError(envelope, toWireError(answer.error));
      else this.queue(envelope, respond(answer.result), worker);
    }
  }

  /** The limits a client needs to size its batches. */
  private limits(): Limits {
    const g = this.graph.options;
    return {
      maxMessageBytes: this.options.maxMessageBytes,
      maxBatch: g.maxBatch,
      maxSteal: g.maxSteal,
      maxPayloadBytes: g.maxPayloadBytes,
      maxResultBytes: g.maxResultBytes,
      maxNameBytes: g.maxNameBytes,
      maxWaitMs: this.options.maxWaitMs,
      maxFileBytes: this.files.options.maxFileBytes,
      maxFilesBytes: this.files.options.maxFilesBytes,
      maxChunkBytes: this.files.options.maxChunkBytes,
    };
  }

  // --- timers ----------------------------------------------------------------------------

  /** Arms one timer for the earliest of: a lease deadline, a backoff end, a parked steal's end. */
  private scheduleTimer(): void {
    if (this.stopping) return;
    let at = this.graph.nextWakeAt() ?? Infinity;
    at = Math.min(at, this.parked.nextDeadline() ?? Infinity);
    if (at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, at - this.options.clock()));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.stopping || this.recovering) return;
    try {
      const now = this.options.clock();
      this.graph.advance(now);
      this.serveParked(now);
    } catch (err) {
      this.options.log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`);
      void this.recover(err, 'INTERNAL');
      return;
    }
    this.afterChange();
  }

  // --- replies and the group commit ------------------------------------------------------

  /** Queues a reply; `worker` names whose leases a steal reply carries, to give back if it cannot be delivered. */
  private queue(envelope: Envelope, reply: Reply, worker = ''): void {
    const stolen = reply.op === 'steal' ? reply.tasks : reply.op === 'complete' ? reply.next?.tasks : undefined;
    const handed = stolen === undefined || stolen.length === 0 ? undefined : { worker, names: stolen.map((t) => t.name) };
    // Encoded now: the reply must show the state at this moment, not at send time.
    const frame = encodeReply(reply);
    this.outboxBytes += frame.length;
    this.outbox.push({ envelope, frame, handed });
  }

  private queueError(envelope: Envelope, error: WireError): void {
    this.queue(envelope, { op: 'error', error });
  }

  private reject(envelope: Envelope, code: WireError['code'], message: string): void {
    this.queueError(envelope, { code, message, task: '' });
  }

  private scheduleFlush(): void {
    if (this.flushing !== undefined) return;
    // setImmediate lets every message already received be applied first, so they share one write.
    this.flushing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.flush())
      .catch((err: unknown) => this.options.log.error(`flush failed: ${(err as Error)?.stack ?? String(err)}`))
      .finally(() => {
        this.flushing = undefined;
        // Replies queued while a failed write was being handled still need their flush.
        if (this.outbox.length > 0 && !this.recovering) this.scheduleFlush();
      });
  }

  private async drain(): Promise<void> {
    this.scheduleFlush();
    while (this.flushing !== undefined) await this.flushing;
  }

  /** Writes every pending change in one batch, then sends the replies that waited for it. */
  private async flush(): Promise<void> {
    for (;;) {
      const records = this.graph.takeDirty();
      const changes = { deleted: this.graph.takeDeleted(), pools: this.graph.takeDirtyPools(), specs: this.graph.takeNewSpecs() };
      const outgoing = this.outbox;
      this.outbox = [];
      this.outboxBytes = 0;
      const callers = this.awaitingWrite;
      this.awaitingWrite = [];
      if (records.length === 0 && outgoing.length === 0 && callers.length === 0 && changes.deleted.length === 0 && changes.pools.length === 0) return;
      const writing = performance.now();
      try {
        await this.store.write(records, changes);
      } catch (err) {
        await this.recover(err, 'STORE_FAILED', outgoing, callers);
        return;
      }
      this.hubMetrics.committed(records.length + changes.deleted.length, performance.now() - writing);
      // The graph holds what the store was given (nothing changed it since the write, or it holds
      // changes not yet taken): a slice of the snapshot here writes only what was acknowledged.
      this.checkpointSlice();
      for (const caller of callers) caller.written();
      let undelivered = false;
      for (const { envelope, frame, handed } of outgoing) {
        const sent = await this.send(envelope, frame);
        this.hubMetrics.requestDone(envelope.op, performance.now() - envelope.arrived);
        if (!sent && handed !== undefined) {
          // Its client is gone or does not read: nobody runs these tasks. They go back now, not
          // when their leases expire (the change is written with the next batch).
          this.graph.undelivered(handed.worker, handed.names, this.options.clock());
          undelivered = true;
        }
      }
      if (undelivered) {
        this.serveParked(this.options.clock());
        this.scheduleTimer();
      }
    }
  }

  /**
   * Begins a snapshot when the store wants one, and writes a slice of it: only where the graph
   * holds nothing the store was not given (no group commit under way, every change taken), so
   * that each task is written as the log has it. Between slices the graph changes; the log kept
   * from the snapshot's beginning replays those changes over it at a start (store.ts). Never throws.
   */
  private checkpointSlice(): void {
    if (this.stopping || this.recovering || this.graph.unwritten) return;
    const running = this.checkpoint;
    try {
      if (running === undefined) {
        const writer = this.store.checkpoint?.();
        if (writer === undefined) return;
        // Tasks created from now on are in the log the snapshot keeps, whole: the walk stops before them.
        this.checkpoint = { writer, nextSeq: 0, beforeSeq: this.graph.nextTaskSeq };
        return this.checkpointSlice();
      }
      const deadline = performance.now() + CHECKPOINT_SLICE_MS;
      let added = 0;
      const next = this.graph.recordsFrom(
        running.nextSeq,
        running.beforeSeq,
        (record, dependedOn) => running.writer.add(record, dependedOn),
        () => (++added & 7) !== 0 || performance.now() < deadline,
      );
      if (next === undefined) {
        this.checkpoint = undefined;
        // Never rejects: the store logs how it ended.
        running.writer.finish().catch(() => undefined);
        return;
      }
      running.nextSeq = next;
      this.wakeCheckpoint();
    } catch (err) {
      this.options.log.warn(`the snapshot being written while serving is given up: ${(err as Error)?.message ?? String(err)}`);
      this.dropCheckpoint();
    }
  }

  /** The next slice: at once when the hub is idle, after a short wait while a group commit is under way (which may write it). */
  private wakeCheckpoint(): void {
    if (this.checkpointWake !== undefined || this.checkpoint === undefined) return;
    const run = (): void => {
      this.checkpointWake = undefined;
      if (this.checkpoint === undefined) return;
      if (this.flushing === undefined) this.checkpointSlice();
      else this.wakeCheckpoint();
    };
    if (this.flushing === undefined) {
      const immediate = setImmediate(run);
      this.checkpointWake = () => clearImmediate(immediate);
    } else {
      const timeout = setTimeout(run, CHECKPOINT_BUSY_WAIT_MS);
      this.checkpointWake = () => clearTimeout(timeout);
    }
  }

  /** Gives up the snapshot being written (the graph is reloaded, or the hub stops). */
  private dropCheckpoint(): void {
    this.checkpointWake?.();
    this.checkpointWake = undefined;
    this.checkpoint?.writer.abort();
    this.checkpoint = undefined;
  }

  /** Sends one reply; false when it could not be (the peer is gone, or its queue is full). */
  private async send(envelope: Envelope, frame: Uint8Array): Promise<boolean> {
    try {
      await envelope.listener.router.send([...envelope.frames, frame]);
      return true;
    } catch (err) {
      if (!this.stopping) this.peerWarning(`could not deliver a reply (the client left or does not read): ${(err as Error).message}`);
      return false;
    }
  }

  /**
   * The graph can no longer be trusted to match the store: a write failed (nothing it carried may
   * be acknowledged), or a transition threw unexpectedly (it may be half-done). Every waiting
   * reply becomes an error with `code`, and the graph is rebuilt from the store, dropping the
   * unwritten changes. If even that fails the hub stops with an error.
   */
  private async recover(err: unknown, code: 'STORE_FAILED' | 'INTERNAL', outgoing: Outgoing[] = [], callers: InProcess[] = []): Promise<void> {
    const log = this.options.log;
    if (this.recovering) {
      for (const caller of callers) caller.failed(new DagworkError(code, `the store could not be written: ${(err as Error).message}`));
      return;
    }
    if (code === 'STORE_FAILED') log.error(`store write failed: ${(err as Error).message}`);
    this.recovering = true;
    this.dropCheckpoint();
    // Parked steals may carry completions of the lost batch (complete with next): fail them too.
    const failed = [...outgoing, ...this.outbox, ...this.parked.takeAll()];
    this.outbox = [];
    this.outboxBytes = 0;
    const message =
      code === 'STORE_FAILED'
        ? `the store could not be written: ${(err as Error).message}`
        : `internal error in the hub: ${(err as Error)?.message ?? String(err)}; it reloaded its graph from the store`;
    const error = encodeReply({ op: 'error', error: { code, message, task: '' } });
    for (const caller of [...callers, ...this.awaitingWrite.splice(0)]) caller.failed(new DagworkError(code, message));
    for (const { envelope } of failed) {
      await this.send(envelope, error);
      this.hubMetrics.requestDone(envelope.op, performance.now() - envelope.arrived);
    }
    try {
      this.graph = await loadGraph(this.store, this.files, this.options);
      this.graph.observer = this.hubMetrics.observer;
      log.warn(`reloaded ${this.graph.size} tasks from the store after ${code === 'STORE_FAILED' ? 'the failed write' : 'an internal error'}`);
      this.recovering = false;
      const held = this.held.splice(0);
      this.heldBytes = 0;
      for (const [listener, frames] of held) this.onMessage(listener, frames);
      this.afterChange();
    } catch (reloadError) {
      log.error(`cannot reload the store: ${(reloadError as Error).message}; stopping`);
      this.stopping = true;
      for (const l of this.listeners) l.router.close();
      await this.store.close().catch(() => undefined);
      this.hubMetrics.close();
      this.settle(reloadError);
    }
  }
}


/**
 * The graph the store holds, its leases renewed from now (the hub was away: see Graph.restore),
 * asking `files` which files the hub holds.
 */
async function loadGraph(store: TaskStore, files: FileStore, options: HubOptions): Promise<Graph> {
  const pools = (await store.loadPools?.()) ?? [];
  const held = (sha256: string, size: number): boolean => files.holds(sha256, size);
  if (store.loadEach === undefined) return Graph.restore(await store.loadAll(), options.clock(), options.graph, held, pools);
  // Record by record: a million records held at once cost more in garbage collection than the reading.
  const restoring = Graph.restoring(options.graph, held, pools);
  await store.loadEach(
    (record) => restoring.add(record),
    (tasks) => restoring.expect(tasks),
  );
  return restoring.finish(options.clock());
}

/** Where verifiers' temporary directories are made: in the store's directory, emptied at start (what a hub killed with kill -9 left). */
function verifierTmpDir(options: HubOptions): string {
  return join(options.db, 'verify');
}

/** Operations that change nothing in the graph: no parked steal can be served after them. */
const READ_ONLY: ReadonlySet<string> = new Set(['status', 'lookup', 'list', 'fileStat', 'filePut', 'fileGet', 'gc', 'poolList', 'graphView']);

function checkBatchOf(count: number, maxBatch: number): void {
  if (count > maxBatch) throw new DagworkError('TOO_LARGE', `file_stat names ${count} hashes; the limit is ${maxBatch} per request`);
}

function toWireError(err: unknown): WireError {
  if (err instanceof DagworkError) return { code: err.code, message: err.message, task: err.task };
  return { code: 'INTERNAL', message: `internal error in the hub: ${(err as Error)?.message ?? String(err)}`, task: '' };
}
