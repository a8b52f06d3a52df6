/**
 * The dashboard's HTTP server (dhub --http): a thin shell over the hub. Pages are static files;
 * what they show comes from one server-sent-events stream (/events, a snapshot a second, computed
 * once per tick for every subscriber and only while someone listens) and a few JSON reads. The
 * buttons (retry, cancel) go through the hub as requests do: answered once written.
 *
 * Bounded: connections, event subscribers, request bodies, query values, each subscriber's backlog.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { DagworkError, type ErrorCode } from '../../../proto/src/errors.js';
import { VIEW_MAX_DEPTH, VIEW_MAX_NODES } from '../../../proto/src/graph-view.js';
import type { Collapse, GraphView, GraphViewQuery, ListQuery, ListResult, LookupResult, Status, TaskResult, WorkerStatus } from '../../../proto/src/types.js';
import type { Logger } from '../log.js';
import { accessOf, hostAllowed, isOwnToken, presentedToken, tokenCookie, type Access, type Tokens } from './access.js';
import type { ThroughputSeries } from './history.js';
import { HISTORY_MINUTES } from './history.js';
import { loadAssets, type Asset } from './assets.js';

/** What the dashboard reads from the hub and asks of it. */
export interface DashboardSource {
  status(): Status;
  workers(): WorkerStatus[];
  list(query: ListQuery): ListResult;
  lookup(name: string): LookupResult;
  throughput(lastMinutes?: number): ThroughputSeries;
  graphView(query: GraphViewQuery): GraphView;
  /** Both resolve once the change is written (as a request's reply would be sent). */
  retry(names: string[]): Promise<{ retried: number; results: TaskResult[] }>;
  cancel(names: string[], reason: string): Promise<{ cancelled: number; results: TaskResult[] }>;
}

/** Prometheus text, when the hub has metrics (served at /metrics; 404 otherwise). */
export type MetricsSource = () => Promise<{ contentType: string; body: string }>;

export interface DashboardOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  tokens: Tokens;
  /** Open connections at most; past it a new one is answered 503 and closed. */
  maxConnections: number;
  /** /events streams at most; past it 503. */
  maxSubscribers: number;
  /** Largest request body, in bytes; larger: 413. */
  maxBodyBytes: number;
  /** How often /events sends a snapshot, in ms. */
  tickMs: number;
  log: Logger;
  metrics: MetricsSource | undefined;
}

/** Failed tasks a snapshot carries (the Failed page pages through the rest with /api/failed). */
const SNAPSHOT_FAILED = 200;
/** Workers a snapshot carries. */
const SNAPSHOT_WORKERS = 200;
/** Minutes of throughput a snapshot carries (the page loads the whole history once). */
const SNAPSHOT_MINUTES = 3;
/** A subscriber whose unsent snapshots pass this many bytes is dropped (it does not read). */
const SUBSCRIBER_BACKLOG_BYTES = 4 << 20;
/** Names one retry or cancel may carry (the hub's --max-batch applies too). */
const MAX_ACT_NAMES = 1_000;
/**
 * A graph view costs the hub a pass over every task: pages asking the same view within this long
 * (ms) share one, and at most GRAPH_VIEWS_KEPT different views are kept.
 */
const GRAPH_VIEW_MS = 2_000;
const GRAPH_VIEWS_KEPT = 16;
const MAX_NAME_CHARS = 4_096;
const MAX_REASON_CHARS = 1_000;
/** A request's headers must arrive within this, and the whole request within REQUEST_MS. */
const HEADERS_MS = 10_000;
const REQUEST_MS = 30_000;

/** A JSON error answer: the status, and a message saying what was wrong. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class DashboardServer {
  private readonly subscribers = new Set<ServerResponse>();
  private connections = 0;
  private ticker: NodeJS.Timeout | undefined;
  /** The last snapshot, and when it was made: a new subscriber gets it if it is fresh. */
  private snapshot: { at: number; frame: string } | undefined;
  /** Graph views made lately, by their query: the JSON sent. */
  private readonly graphViews = new Map<string, { at: number; body: string }>();

  private constructor(
    private readonly source: DashboardSource,
    private readonly options: DashboardOptions,
    private readonly server: Server,
    private readonly assets: Map<string, Asset>,
  ) {}

  static async start(source: DashboardSource, options: DashboardOptions): Promise<DashboardServer> {
    const assets = loadAssets();
    // Timeouts checked every second (Node's default is every 30 s), and a connection idle for
    // HEADERS_MS closed: one that never sends a byte would otherwise hold a slot for ever. A
    // stream of /events is written to every second, so it is never idle.
    const server = createServer({ headersTimeout: HEADERS_MS, requestTimeout: REQUEST_MS, connectionsCheckingInterval: 1_000 });
    server.timeout = HEADERS_MS;
    const dashboard = new DashboardServer(source, options, server, assets);
    server.on('connection', (socket: Socket) => dashboard.onConnection(socket));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => dashboard.onRequest(req, res));
    server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) socket.end(rawJsonAnswer(400, 'Bad Request', 'the request could not be read as HTTP/1.1 (malformed, or headers too large or too slow)'));
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new DagworkError('INVALID_ARGUMENT', `--http: cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err })));
      server.listen(options.port, options.host, () => resolve());
    });
    server.on('error', (err) => options.log.error(`dashboard: ${err.message}`));
    return dashboard;
  }

  /** The address it listens on, as a URL. */
  get url(): string {
    const address = this.server.address();
    if (address === null || typeof address === 'string') return String(address);
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    this.ticker = undefined;
    for (const res of this.subscribers) res.end();
    this.subscribers.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private onConnection(socket: Socket): void {
    if (this.connections >= this.options.maxConnections) {
      socket.end(rawJsonAnswer(503, 'Service Unavailable', `the dashboard has ${this.connections} connections open, its limit: try again in a moment`, 'Retry-After: 5\r\n'));
      socket.destroySoon();
      return;
    }
    this.connections++;
    socket.once('close', () => this.connections--);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // Nothing a browser sends may throw out of here: every failure becomes an answer.
    this.route(req, res).catch((err: unknown) => {
      if (!(err instanceof HttpError || err instanceof DagworkError)) this.options.log.error(`dashboard: ${(err as Error)?.stack ?? String(err)}`);
      const [status, message] = err instanceof HttpError ? [err.status, err.message] : err instanceof DagworkError ? [httpStatusOf(err.code), err.message] : [500, `internal error: ${(err as Error)?.message ?? String(err)}`];
      if (res.headersSent) res.destroy();
      else sendJson(res, status, { error: message });
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const method = req.method ?? 'GET';
    if (!hostAllowed(this.options.tokens, req.headers.host)) {
      throw new HttpError(421, 'this dashboard has no token, so it answers only requests addressed to a loopback name or an IP address (Host header), not to a domain name');
    }
    const given = url.searchParams.get('token');
    if (given !== null && method === 'GET') {
      // A token in the address, given once: kept in a cookie, and dropped from the address. Only
      // the dashboard's own tokens, whose form was checked at start, ever reach the cookie.
      if (!isOwnToken(this.options.tokens, given)) throw new HttpError(401, "that token is not this dashboard's");
      url.searchParams.delete('token');
      // One leading slash: '//host/...' would send the browser to another site.
      res.writeHead(303, { Location: `/${url.pathname.replace(/^\/+/, '')}${url.search}`, 'Set-Cookie': tokenCookie(given), 'Cache-Control': 'no-store' });
      res.end();
      return;
    }
    const access = accessOf(this.options.tokens, presentedToken(req.headers.authorization, req.headers.cookie));
    if (access === 'none') {
      throw new HttpError(401, 'this dashboard needs its token: open it once as /?token=TOKEN (it is then kept in a cookie), or send Authorization: Bearer TOKEN');
    }
    const path = url.pathname;
    if (path === '/api/retry' || path === '/api/cancel') {
      if (method !== 'POST') throw new HttpError(405, `${path} takes POST`);
      return this.act(req, res, path, access);
    }
    if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, `${path} takes GET`);
    const asset = this.assets.get(path === '/' ? '/index.html' : path);
    if (asset !== undefined) {
      res.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' });
      res.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    const q = url.searchParams;
    switch (path) {
      case '/events':
        return this.subscribe(req, res);
      case '/api/session':
        return sendJson(res, 200, { admin: access === 'admin', adminEnabled: this.options.tokens.admin !== undefined });
      case '/api/status':
        return sendJson(res, 200, this.source.status());
      case '/api/workers':
        return sendJson(res, 200, { workers: this.source.workers() });
      case '/api/failed': {
        const limit = intParam(q, 'limit', 1, 1_000, 100);
        const after = intParam(q, 'after', 0, Number.MAX_SAFE_INTEGER, 0);
        return sendJson(res, 200, this.source.list(failedQuery(limit, after)));
      }
      case '/api/throughput':
        return sendJson(res, 200, this.source.throughput(intParam(q, 'minutes', 1, HISTORY_MINUTES, HISTORY_MINUTES)));
      case '/api/task':
        return sendJson(res, 200, lookupView(this.source.lookup(textParam(q, 'name', MAX_NAME_CHARS, true))));
      case '/api/graph':
        return sendText(res, 200, this.graphView(q));
      case '/metrics': {
        if (this.options.metrics === undefined) throw new HttpError(404, 'this hub serves no metrics');
        const { contentType, body } = await this.options.metrics();
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
        res.end(body);
        return;
      }
      default:
        throw new HttpError(404, `nothing at ${path}`);
    }
  }

  /**
   * A graph view; with collapse=auto (the default) a node per task while they fit in max_nodes,
   * else grouped by name prefix, else by pool. Says which it used.
   */
  private graphView(q: URLSearchParams): string {
    const asked = q.get('collapse') ?? 'auto';
    if (asked !== 'auto' && asked !== 'none' && asked !== 'pool' && asked !== 'prefix') throw new HttpError(400, `collapse=${asked.slice(0, 40)}: expected auto, none, pool or prefix`);
    const query: GraphViewQuery = {
      pool: textParam(q, 'pool', MAX_NAME_CHARS, false),
      around: textParam(q, 'around', MAX_NAME_CHARS, false),
      depth: intParam(q, 'depth', 0, VIEW_MAX_DEPTH, 0),
      collapse: 'none',
      maxNodes: intParam(q, 'max_nodes', 0, VIEW_MAX_NODES, 0),
    };
    const key = JSON.stringify([asked, query]);
    const now = Date.now();
    const kept = this.graphViews.get(key);
    if (kept !== undefined && now - kept.at < GRAPH_VIEW_MS) return kept.body;
    const tries: Collapse[] = asked === 'auto' ? ['none', 'prefix', 'pool'] : [asked];
    for (const [i, collapse] of tries.entries()) {
      try {
        const body = toJson({ ...this.source.graphView({ ...query, collapse }), collapse });
        this.graphViews.delete(key);
        this.graphViews.set(key, { at: now, body });
        // The oldest first in the map: past the bound, it goes.
        if (this.graphViews.size > GRAPH_VIEWS_KEPT) this.graphViews.delete(this.graphViews.keys().next().value as string);
        return body;
      } catch (err) {
        if (!(err instanceof DagworkError && err.code === 'TOO_LARGE') || i === tries.length - 1) throw err;
      }
    }
    throw new TypeError('unreachable: the last try throws');
  }

  /** POST /api/retry {"names": [...]}, /api/cancel {"names": [...], "reason": "..."}: admin only, answered once written. */
  private async act(req: IncomingMessage, res: ServerResponse, path: string, access: Access): Promise<void> {
    if (this.options.tokens.admin === undefined) throw new HttpError(403, 'this dashboard has no admin token (dhub --http-admin-token FILE): it retries and cancels nothing');
    if (access !== 'admin') throw new HttpError(403, `${path} needs the admin token`);
    // A page of another site cannot send this: JSON needs a CORS preflight, which is not answered.
    const origin = req.headers.origin;
    // A sandboxed or data: page sends Origin: null: refused too.
    if (origin !== undefined && (origin === 'null' || hostOf(origin) !== req.headers.host)) throw new HttpError(403, `requests from ${origin.slice(0, 100)} are not accepted`);
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'send the body as Content-Type: application/json');
    const body = await readBody(req, this.options.maxBodyBytes);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (err) {
      throw new HttpError(400, `the body is not JSON: ${(err as Error).message}`);
    }
    const names = namesOf(parsed);
    if (path === '/api/retry') return sendJson(res, 200, await this.source.retry(names));
    const reason = (parsed as { reason?: unknown }).reason ?? 'cancelled from the dashboard';
    if (typeof reason !== 'string' || reason.length > MAX_REASON_CHARS) throw new HttpError(400, `"reason" must be a string of at most ${MAX_REASON_CHARS} characters`);
    return sendJson(res, 200, await this.source.cancel(names, reason));
  }

  // --- /events ---------------------------------------------------------------------------

  private subscribe(req: IncomingMessage, res: ServerResponse): void {
    if (this.subscribers.size >= this.options.maxSubscribers) {
      throw new HttpError(503, `the dashboard streams to ${this.subscribers.size} pages, its limit: try again in a moment`);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // The browser reconnects by itself after this long if the stream breaks.
    res.write(`retry: ${Math.max(1_000, this.options.tickMs * 2)}\n\n`);
    this.subscribers.add(res);
    req.socket.setNoDelay(true);
    const drop = (): void => {
      this.subscribers.delete(res);
      if (this.subscribers.size === 0) {
        clearInterval(this.ticker);
        this.ticker = undefined;
      }
    };
    res.once('close', drop);
    const fresh = this.snapshot !== undefined && Date.now() - this.snapshot.at < this.options.tickMs ? this.snapshot.frame : this.makeSnapshot();
    res.write(fresh);
    this.ticker ??= setInterval(() => this.tick(), this.options.tickMs);
  }

  private tick(): void {
    let frame: string;
    try {
      frame = this.makeSnapshot();
    } catch (err) {
      this.options.log.error(`dashboard snapshot: ${(err as Error)?.stack ?? String(err)}`);
      return;
    }
    for (const res of this.subscribers) {
      if (res.writableLength > SUBSCRIBER_BACKLOG_BYTES) {
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  }

  /** One snapshot for every subscriber: the overview, the failed tasks, the workers, the last minutes. */
  private makeSnapshot(): string {
    const status = this.source.status();
    const failed = status.counts.failed === 0 ? { tasks: [], next: 0 } : this.source.list(failedQuery(SNAPSHOT_FAILED, 0));
    const snapshot = {
      now: status.now,
      startedMs: status.startedMs,
      counts: status.counts,
      total: status.total,
      donePerSecond: status.donePerSecond,
      pools: status.pools,
      poolsTotal: status.poolsTotal,
      waitingOnMissing: status.waitingOnMissing,
      workers: status.workers.slice(0, SNAPSHOT_WORKERS),
      workersTotal: status.workersTotal,
      failed: failed.tasks,
      failedMore: failed.next !== 0,
      throughput: this.source.throughput(SNAPSHOT_MINUTES),
    };
    const frame = `data: ${toJson(snapshot)}\n\n`;
    this.snapshot = { at: Date.now(), frame };
    return frame;
  }
}

/** A lookup's fields, and only those: the record may be the graph's own object, with its links to other tasks. */
function lookupView({ task, dependents, missingDeps, failedDeps }: LookupResult): LookupResult {
  const { spec, state, attempts, worker, holder, leaseDeadline, notBefore, result, lastError, log, seq, outputs } = task;
  return { task: { spec, state, attempts, worker, holder, leaseDeadline, notBefore, result, lastError, log, seq, outputs }, dependents, missingDeps, failedDeps };
}

function failedQuery(limit: number, after: number): ListQuery {
  return { states: ['failed'], pool: '', prefix: '', limit, after, withParams: false, withResults: false };
}

/** The host:port of a URL; undefined if it is none. */
function hostOf(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}

/** An integer query value within [min, max]; `fallback` when absent. */
function intParam(q: URLSearchParams, key: string, min: number, max: number, fallback: number): number {
  const text = q.get(key);
  if (text === null || text === '') return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) throw new HttpError(400, `${key}=${text.slice(0, 40)}: expected a whole number from ${min} to ${max}`);
  return value;
}

function textParam(q: URLSearchParams, key: string, maxChars: number, required: boolean): string {
  const text = q.get(key) ?? '';
  if (required && text === '') throw new HttpError(400, `${key} is missing`);
  if (text.length > maxChars) throw new HttpError(400, `${key} is ${text.length} characters long; at most ${maxChars}`);
  return text;
}

function namesOf(body: unknown): string[] {
  const names = (body as { names?: unknown } | null)?.names;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_ACT_NAMES) throw new HttpError(400, `"names" must be a list of 1 to ${MAX_ACT_NAMES} task names`);
  for (const name of names) {
    if (typeof name !== 'string' || name === '' || name.length > MAX_NAME_CHARS) throw new HttpError(400, '"names" must hold task names (non-empty strings)');
  }
  return names as string[];
}

/** The body as text; 413 past `maxBytes` (read no further). */
function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) return Promise.reject(new HttpError(413, `the body is ${declared} bytes; at most ${maxBytes}`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        reject(new HttpError(413, `the body is over ${maxBytes} bytes`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', (err) => reject(new HttpError(400, `the body could not be read: ${err.message}`)));
  });
}

/** Bytes shown on a page: their size, and as text (cut at 64 KiB). */
const SHOWN_BYTES = 65_536;
function toJson(value: unknown): string {
  // The holder's own value: a Buffer reaches a replacer already turned into { type, data } by its toJSON.
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    return raw instanceof Uint8Array ? { bytes: raw.length, text: Buffer.from(raw.subarray(0, SHOWN_BYTES)).toString('utf8'), cut: raw.length > SHOWN_BYTES } : v;
  });
}

/** A whole HTTP/1.1 answer with a JSON {"error"} body, for a socket the HTTP server does not handle (over the limit, unreadable). */
function rawJsonAnswer(status: number, reason: string, message: string, extraHeaders = ''): string {
  const body = `${JSON.stringify({ error: message })}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extraHeaders}\r\n${body}`;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  sendText(res, status, toJson(value));
}

function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

/** The HTTP status that says what a hub error code means. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'MALFORMED':
    case 'INVALID_ARGUMENT':
    case 'INVALID_NAME':
    case 'CYCLE':
    case 'HASH_MISMATCH':
      return 400;
    case 'FORBIDDEN':
      return 403;
    case 'UNKNOWN_TASK':
    case 'UNKNOWN_FILE':
    case 'UNKNOWN_POOL':
    case 'UNKNOWN_OPERATION':
      return 404;
    case 'CONFLICT':
    case 'REJECTED':
      return 409;
    case 'TOO_LARGE':
      return 413;
    case 'STORE_FAILED':
    case 'SHUTTING_DOWN':
    case 'BUSY':
    case 'NO_SPACE':
    case 'STANDBY':
      return 503;
    case 'INTERNAL':
      return 500;
    default: {
      const missing: never = code;
      throw new TypeError(`no HTTP status for ${String(missing)}`);
    }
  }
}
