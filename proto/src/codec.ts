/**
 * The wire codec: turns frames of proto/dagwork.proto into the contract's TypeScript types and
 * back. It owns the framing (one length-delimited message per ZeroMQ frame) and knows nothing of
 * sockets, of the graph's rules or of how the hub stores tasks.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs/light.js';
import { DESCRIPTOR_FILE, protoPath } from './proto-path.js';
import { DagworkError, type ErrorCode } from './errors.js';
import { bool, bytes, EMPTY, fileRefsFrom, list, namesFrom, NONE, num, obj, paramFilesFrom, paramsFrom, str, strings, unlessEmpty, unlessNone, type Obj } from './fields.js';
import { emptyCounts, TASK_STATES } from './types.js';
import { LENGTH, varintSize, WireWriter, writeVarint } from './wire-writer.js';
import type {
  Completion,
  FileStat,
  GcResult,
  PoolDeleteResult,
  PoolInfo,
  PoolListResult,
  PoolSetArgs,
  CreateResult,
  ListQuery,
  ListResult,
  LookupResult,
  FailResult,
  LeasedTask,
  Limits,
  StateCounts,
  Status,
  StealResult,
  TaskRecord,
  TaskResult,
  TaskSpec,
  TaskSpecInput,
  TaskState,
  RerunQuery,
  RerunResult,
  DeleteResult,
  ReplaceResult,
  Collapse,
  GraphView,
  GraphViewQuery,
} from './types.js';

/** The parameters of a steal, as sent on its own or as `next` of a complete. */
export interface StealArgs {
  worker: string;
  n: number;
  pools: string[];
  waitMs: number;
  /** Wait even when the pools are finished (for tasks not created yet). */
  waitWhenFinished: boolean;
}

export type Request =
  | { op: 'create'; tasks: TaskSpecInput[] }
  | ({ op: 'steal' } & StealArgs)
  | { op: 'complete'; worker: string; tasks: Completion[]; next: StealArgs | undefined }
  | { op: 'fail'; worker: string; name: string; reason: string; permanent: boolean }
  | { op: 'heartbeat'; worker: string; names: string[] }
  | { op: 'release'; worker: string; names: string[] }
  | { op: 'workerExit'; worker: string }
  | { op: 'retry'; names: string[]; allFailed: boolean }
  | { op: 'status' }
  | { op: 'lookup'; name: string }
  | { op: 'cancel'; names: string[]; reason: string }
  | ({ op: 'list' } & ListQuery)
  | { op: 'fileStat'; sha256: string[] }
  | { op: 'filePut'; sha256: string; size: number; offset: number; data: Uint8Array }
  | { op: 'fileGet'; sha256: string; offset: number; length: number }
  | { op: 'gc'; dryRun: boolean }
  // Pools.
  | { op: 'poolList'; pool: string }
  | ({ op: 'poolSet' } & PoolSetArgs)
  | { op: 'poolDelete'; pool: string; force: boolean }
  // Changing the graph after the fact.
  | ({ op: 'rerun' } & RerunQuery)
  | { op: 'replace'; tasks: TaskSpecInput[]; rerun: boolean; createMissing: boolean }
  | { op: 'delete'; names: string[]; descendants: boolean }
  // The graph as a picture.
  | ({ op: 'graphView' } & GraphViewQuery);

export type Operation = Request['op'];

export interface WireError {
  code: ErrorCode;
  message: string;
  task: string;
}

export type Reply =
  | { op: 'error'; error: WireError }
  | ({ op: 'create' } & CreateResult)
  | ({ op: 'steal' } & StealResult)
  | { op: 'complete'; results: TaskResult[]; next: StealResult | undefined }
  | ({ op: 'fail' } & FailResult)
  | { op: 'heartbeat'; lost: TaskResult[] }
  | { op: 'release'; results: TaskResult[] }
  | { op: 'workerExit'; released: number }
  | { op: 'retry'; retried: number; results: TaskResult[] }
  | ({ op: 'status' } & Status)
  | ({ op: 'lookup' } & LookupResult)
  | { op: 'cancel'; cancelled: number; results: TaskResult[] }
  | ({ op: 'list' } & ListResult)
  | { op: 'fileStat'; files: FileStat[] }
  | { op: 'filePut'; received: number; held: boolean }
  | { op: 'fileGet'; data: Uint8Array; size: number }
  | ({ op: 'gc' } & GcResult)
  // Pools.
  | ({ op: 'poolList' } & PoolListResult)
  | { op: 'poolSet'; pool: PoolInfo }
  | ({ op: 'poolDelete' } & PoolDeleteResult)
  | ({ op: 'rerun' } & RerunResult)
  | ({ op: 'replace' } & ReplaceResult)
  | ({ op: 'delete' } & DeleteResult)
  | ({ op: 'graphView' } & GraphView);

/**
 * The contract: from the JSON descriptor the build writes beside this module (no parsing at
 * start), or, when running from sources, from the .proto itself.
 */
function loadRoot(): protobuf.Root {
  const descriptor = join(dirname(fileURLToPath(import.meta.url)), DESCRIPTOR_FILE);
  // addJSON, not Root.fromJSON: that resolves every field of every message at once; a type's
  // fields are resolved when it is first used instead (dquery uses a few of them).
  if (existsSync(descriptor)) {
    const root = new protobuf.Root();
    root.addJSON((JSON.parse(readFileSync(descriptor, 'utf8')) as protobuf.INamespace).nested ?? {});
    return root;
  }
  const full = createRequire(import.meta.url)('protobufjs') as typeof protobuf & { loadSync(path: string): protobuf.Root };
  return full.loadSync(protoPath());
}

/**
 * Sets a type up, on its first encode or decode, with its encoder and decoder only: Type.setup
 * also generates verify, fromObject and toObject, which this codec never calls, and that was
 * most of the codec's share of a dquery start. Called later, those set the type up in full.
 */
function leanSetup(this: protobuf.Type): protobuf.Type {
  const types = this.fieldsArray.map((f) => f.resolve().resolvedType);
  this.encode = protobuf.encoder(this)({ Writer: protobuf.Writer, types, util: protobuf.util }) as protobuf.Type['encode'];
  this.decode = protobuf.decoder(this)({ Reader: protobuf.Reader, types, util: protobuf.util }) as protobuf.Type['decode'];
  delete (this as { setup?: unknown }).setup;
  return this;
}

function setUpLean(ns: protobuf.NamespaceBase): void {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) Object.defineProperty(nested, 'setup', { value: leanSetup, configurable: true, writable: true });
    if (nested instanceof protobuf.Namespace) setUpLean(nested);
  }
}

const root = loadRoot();
setUpLean(root);
const RequestType = root.lookupType('dagwork.v1.Request');
const ReplyType = root.lookupType('dagwork.v1.Reply');
const STEAL_REPLY_FIELD = ReplyType.fields.steal!.id;
const COMPLETE_REPLY_FIELD = ReplyType.fields.complete!.id;

// Messages are encoded from plain objects and read from decoded messages directly (no
// fromObject/toObject copies: they cost more than the encoding itself). So enums travel as
// numbers here, mapped to and from the domain's names below.
const stateEnum = root.lookupEnum('dagwork.v1.TaskState');
const outcomeEnum = root.lookupEnum('dagwork.v1.TaskOutcome');
const errorEnum = root.lookupEnum('dagwork.v1.ErrorCode');
const collapseEnum = root.lookupEnum('dagwork.v1.Collapse');

const enumName = (e: protobuf.Enum, v: unknown): string => e.valuesById[num(v)] ?? `UNKNOWN_${num(v)}`;
const stateOf = (v: unknown): TaskState => enumName(stateEnum, v).toLowerCase() as TaskState;
const stateNumber = (s: TaskState | undefined): number => (s === undefined ? 0 : (stateEnum.values[s.toUpperCase()] ?? 0));
const outcomeOf = (v: unknown): TaskResult['outcome'] => enumName(outcomeEnum, v) as TaskResult['outcome'];
const collapseNumber = (c: Collapse): number => collapseEnum.values[`COLLAPSE_${c.toUpperCase()}`] ?? 0;
/** Throws INVALID_ARGUMENT for a number the contract does not know (from a newer client). */
function collapseOf(v: unknown): Collapse {
  const name = collapseEnum.valuesById[num(v)];
  if (name === undefined) throw new DagworkError('INVALID_ARGUMENT', `collapse ${num(v)} is not one this hub knows (none, pool, prefix)`);
  return name.slice('COLLAPSE_'.length).toLowerCase() as Collapse;
}
const results = (rs: readonly TaskResult[]): Obj[] => rs.map((r) => ({ name: r.name, outcome: outcomeEnum.values[r.outcome], message: r.message }));

// --- framing ---------------------------------------------------------------------------------

function frame(type: protobuf.Type, message: Obj): Uint8Array {
  return type.encodeDelimited(message).finish();
}

/**
 * A reader of the one length-delimited message filling exactly `data`, placed after its length
 * prefix; throws MALFORMED otherwise (and protobufjs's errors for a truncated prefix).
 */
function openFrame(data: Uint8Array): { reader: protobuf.Reader; length: number } {
  if (data.length === 0) throw new DagworkError('MALFORMED', 'empty frame: expected a length-delimited message');
  const reader = protobuf.Reader.create(data);
  const length = reader.uint32();
  if (reader.pos + length !== data.length) {
    throw new DagworkError(
      'MALFORMED',
      `length prefix says ${length} bytes but the frame holds ${data.length - reader.pos} after it: expected one length-delimited message per frame`,
    );
  }
  return { reader, length };
}

/** Decodes one length-delimited message filling exactly `data`; throws MALFORMED otherwise. */
function unframe(type: protobuf.Type, data: Uint8Array): Obj {
  try {
    const { reader, length } = openFrame(data);
    return type.decode(reader, length) as unknown as Obj;
  } catch (err) {
    if (err instanceof DagworkError) throw err;
    throw new DagworkError('MALFORMED', `frame is not a valid ${type.name}: ${(err as Error).message}`, { cause: err });
  }
}

// --- requests --------------------------------------------------------------------------------

function stealArgs(m: Obj): StealArgs {
  return { worker: str(m.worker), n: num(m.n), pools: strings(m.pools), waitMs: num(m.waitMs), waitWhenFinished: bool(m.waitWhenFinished) };
}


/** A TaskSpec message's fields; in a request, zero values mean "the default". */
function specFrom(m: Obj): TaskSpec {
  return {
    name: str(m.name),
    deps: strings(m.deps),
    payload: bytes(m.payload),
    priority: num(m.priority),
    pool: str(m.pool),
    maxAttempts: num(m.maxAttempts),
    leaseMs: num(m.leaseMs),
    params: paramsFrom(m.params),
    inputs: fileRefsFrom(m.inputs),
    outputs: namesFrom(m.outputs),
    paramFiles: paramFilesFrom(m.paramFiles),
    barrier: bool(m.barrier),
    afterEnded: bool(m.afterEnded),
  };
}

/** A TaskSpec as a message, fields at their default left out. */
function specTo(spec: TaskSpec): Obj {
  return {
    ...spec,
    payload: unlessEmpty(spec.payload),
    priority: unlessEmpty(spec.priority),
    deps: unlessNone(spec.deps),
    params: unlessNone(spec.params),
    inputs: unlessNone(spec.inputs),
    outputs: unlessNone(spec.outputs),
    paramFiles: unlessNone(spec.paramFiles),
    barrier: spec.barrier || undefined,
    afterEnded: spec.afterEnded || undefined,
  };
}

// --- reading a request's shape before decoding it ------------------------------------------
//
// Decoding allocates an object per element of every repeated field: 64 MiB of two-byte empty
// TaskSpecs would be 33 million objects. So the hub first walks the frame without allocating:
// which operation it carries (to check the role before anything else), and how many elements
// each repeated field holds (to refuse TOO_LARGE before decoding).

/** Counts a request may not exceed, checked before decoding. */
export interface RequestBounds {
  /**
   * Tasks or names in one request (create, complete, heartbeat, release, retry, cancel, file_stat);
   * and, apart, the params, inputs, outputs and param files of all its tasks together.
   */
  maxBatch: number;
  /** Dependencies of one task. */
  maxDeps: number;
  /** Pools named by one steal. */
  maxPools: number;
}

/** The operation of each field number of Request's `op` oneof, from the contract itself. */
const OP_OF_FIELD = new Map<number, Operation>(
  (RequestType.oneofs.op as protobuf.OneOf).fieldsArray.map((f) => [f.id, f.name as Operation]),
);

/**
 * A repeated field to count (by field number), with its bound, and messages to look into. A count
 * with `shared` adds up over the whole request, whichever message holds the field.
 */
interface Shape {
  counts?: Record<number, { bound: keyof RequestBounds; what: string; shared?: boolean }>;
  /** Message fields to look into (each element of a repeated one has its own counts). */
  nested?: Record<number, Shape>;
}
const ITEMS = { bound: 'maxBatch', what: 'params, inputs, outputs and param files (all tasks together)', shared: true } as const;
const TASK_SPEC: Shape = { counts: { 2: { bound: 'maxDeps', what: 'dependencies of one task' }, 8: ITEMS, 9: ITEMS, 10: ITEMS, 11: ITEMS } };
const COMPLETION: Shape = { counts: { 3: ITEMS } };
const STEAL: Shape = { counts: { 3: { bound: 'maxPools', what: 'pools' } } };
const NAMES_AT = (field: number, what: string): Shape => ({ counts: { [field]: { bound: 'maxBatch', what } } });
const SHAPES: Record<Operation, Shape> = {
  create: { counts: { 1: { bound: 'maxBatch', what: 'tasks' } }, nested: { 1: TASK_SPEC } },
  steal: STEAL,
  complete: { counts: { 2: { bound: 'maxBatch', what: 'completions' } }, nested: { 2: COMPLETION, 3: STEAL } },
  fail: {},
  heartbeat: NAMES_AT(2, 'names'),
  release: NAMES_AT(2, 'names'),
  workerExit: {},
  retry: NAMES_AT(1, 'names'),
  status: {},
  lookup: {},
  cancel: NAMES_AT(1, 'names'),
  list: { counts: { 1: { bound: 'maxBatch', what: 'states' } } },
  fileStat: NAMES_AT(1, 'hashes'),
  filePut: {},
  fileGet: {},
  gc: {},
  poolList: {},
  poolSet: {},
  poolDelete: {},
  rerun: NAMES_AT(1, 'names'),
  replace: { counts: { 1: { bound: 'maxBatch', what: 'tasks' } }, nested: { 1: TASK_SPEC } },
  delete: NAMES_AT(1, 'names'),
  graphView: {},
};

/** The key under which a shared count adds up. */
const SHARED = -1;

const LENGTH_DELIMITED = 2;

/** Walks the message in data[start, end) by `shape`, throwing TOO_LARGE past a bound. */
function checkShape(data: Uint8Array, start: number, end: number, shape: Shape, bounds: RequestBounds, op: Operation, shared: Map<number, number>): void {
  const reader = protobuf.Reader.create(data.subarray(start, end));
  const counted = new Map<number, number>();
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const count = shape.counts?.[field];
    if (count !== undefined) {
      const counter = count.shared === true ? shared : counted;
      const key = count.shared === true ? SHARED : field;
      const n = (counter.get(key) ?? 0) + 1;
      counter.set(key, n);
      if (n > bounds[count.bound]) {
        throw new DagworkError('TOO_LARGE', `${op} holds more than ${bounds[count.bound]} ${count.what}; that is the limit per request`);
      }
    }
    const inner = shape.nested?.[field];
    if (inner !== undefined && (tag & 7) === LENGTH_DELIMITED) {
      const length = reader.uint32();
      checkShape(data, start + reader.pos, start + reader.pos + length, inner, bounds, op, shared);
      reader.skip(length);
    } else {
      reader.skipType(tag & 7);
    }
  }
}

/**
 * The operation `data` carries, read without decoding it; then, once `allowed` said yes (a role
 * check: it throws to refuse), the counts of its repeated fields are checked against `bounds`.
 * Throws MALFORMED (not one length-delimited Request, or more than one operation),
 * UNKNOWN_OPERATION, what `allowed` throws, or TOO_LARGE.
 */
export function inspectRequest(data: Uint8Array, bounds: RequestBounds, allowed: (op: Operation) => void): Operation {
  try {
    const { reader } = openFrame(data);
    let found: { op: Operation; start: number; end: number } | undefined;
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const op = OP_OF_FIELD.get(tag >>> 3);
      if (op === undefined) {
        reader.skipType(tag & 7);
        continue;
      }
      if (found !== undefined) throw new DagworkError('MALFORMED', `the request carries two operations (${found.op} and ${op}); send one per request`);
      if ((tag & 7) !== LENGTH_DELIMITED) throw new DagworkError('MALFORMED', `field ${op} of Request is not a message`);
      const size = reader.uint32();
      found = { op, start: reader.pos, end: reader.pos + size };
      reader.skip(size);
    }
    if (found === undefined) throw new DagworkError('UNKNOWN_OPERATION', 'the request carries no operation this hub knows (is the client newer than the hub?)');
    allowed(found.op);
    checkShape(data, found.start, found.end, SHAPES[found.op], bounds, found.op, new Map());
    return found.op;
  } catch (err) {
    if (err instanceof DagworkError) throw err;
    throw new DagworkError('MALFORMED', `frame is not a valid Request: ${(err as Error).message}`, { cause: err });
  }
}

/** The request in `data`; throws MALFORMED or UNKNOWN_OPERATION. */
export function decodeRequest(data: Uint8Array): Request {
  return decodeCreate(data) ?? decodeRequestGeneral(data);
}

// --- create requests, read straight into specs ------------------------------------------------
//
// Creates are the hub's bulk request: protobufjs builds a message object a task, which specFrom
// then copies. This reads each TaskSpec into its spec at once, for the usual encoding only: a
// Buffer, the Request's one field `create`, TaskSpec's scalar fields (name, deps, payload,
// priority, pool, max_attempts, lease_ms, barrier, after_ended) each of its wire type, varints of
// at most 32 bits (priority's 64-bit form of a negative number too). Anything else (params and
// files, unknown fields, a second `create`, a frame that does not add up) goes to protobufjs:
// every odd but valid encoding means exactly what it meant before, and every bad one gets the
// same error. Strings are read as protobufjs reads them from a Buffer (utf8Slice).

const CREATE_FIELD = RequestType.fields.create!.id;
/** The fast path cannot read what is at `at`: protobufjs takes the request. */
const BAIL = -1;
const EMPTY_BUFFER = Buffer.alloc(0);
let cBuf: Buffer = EMPTY_BUFFER;
let cAt = 0;

/** A varint of at most 32 bits at cAt, or BAIL. */
function cVarint(): number {
  const buf = cBuf;
  let value = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    const b = buf[cAt++];
    if (b === undefined) return BAIL;
    value |= (b & 0x7f) << shift;
    if (b < 0x80) return value >>> 0;
  }
  const last = buf[cAt++];
  if (last === undefined || last > 0x0f) return BAIL;
  return (value | (last << 28)) >>> 0;
}

/** An int32 at cAt: a varint of 32 bits, or the 10 bytes of a negative one; undefined to bail. */
function cInt32(): number | undefined {
  const start = cAt;
  const small = cVarint();
  if (small !== BAIL) return small | 0;
  cAt = start;
  let value = 0;
  for (let shift = 0; shift < 28; shift += 7) value |= ((cBuf[cAt++] as number) & 0x7f) << shift;
  const fifth = cBuf[cAt++];
  // A negative int32 is sign-extended to 64 bits: 1111 in the fifth byte's top, then 0xff x 4, 0x01.
  if (fifth === undefined || (fifth & 0xf0) !== 0xf0) return undefined;
  for (let k = 0; k < 4; k++) if (cBuf[cAt++] !== 0xff) return undefined;
  if (cBuf[cAt++] !== 0x01) return undefined;
  return (value | ((fifth & 0x0f) << 28)) | 0;
}

function cSpec(end: number): TaskSpec | undefined {
  const buf = cBuf as Buffer & { utf8Slice(start: number, end: number): string };
  let name = '';
  const deps: string[] = [];
  let payload: Uint8Array = EMPTY;
  let priority = 0;
  let pool = '';
  let maxAttempts = 0;
  let leaseMs = 0;
  let barrier = false;
  let afterEnded = false;
  while (cAt < end) {
    const tag = cVarint();
    if (tag === BAIL) return undefined;
    const wire = tag & 7;
    const field = tag >>> 3;
    if (wire === LENGTH && (field === 1 || field === 2 || field === 3 || field === 5)) {
      const length = cVarint();
      if (length === BAIL || cAt + length > end) return undefined;
      const from = cAt;
      cAt += length;
      if (field === 3) payload = length === 0 ? EMPTY : buf.subarray(from, cAt);
      else {
        const text = buf.utf8Slice(from, cAt);
        if (field === 1) name = text;
        else if (field === 2) deps.push(text);
        else pool = text;
      }
    } else if (wire === 0 && field >= 4 && field <= 13 && field !== 8 && field !== 9 && field !== 10 && field !== 11) {
      if (field === 4) {
        const n = cInt32();
        if (n === undefined) return undefined;
        priority = n;
        continue;
      }
      const n = cVarint();
      if (n === BAIL) return undefined;
      if (field === 6) maxAttempts = n;
      else if (field === 7) leaseMs = n;
      else if (field === 12) barrier = n !== 0;
      else if (field === 13) afterEnded = n !== 0;
      else return undefined;
    } else return undefined;
  }
  if (cAt !== end) return undefined;
  return { name, deps, payload, priority, pool, maxAttempts, leaseMs, params: NONE, inputs: NONE, outputs: NONE, paramFiles: NONE, barrier, afterEnded };
}

/** `data` as a create request read by the fast path, or undefined when it is anything else (see above). */
export function decodeCreate(data: Uint8Array): Request | undefined {
  if (!Buffer.isBuffer(data)) return undefined;
  cBuf = data;
  cAt = 0;
  try {
    const length = cVarint();
    if (length === BAIL || cAt + length !== data.length) return undefined;
    if (cVarint() !== ((CREATE_FIELD << 3) | LENGTH)) return undefined;
    const bodyLength = cVarint();
    if (bodyLength === BAIL || cAt + bodyLength !== data.length) return undefined;
    const tasks: TaskSpec[] = [];
    while (cAt < data.length) {
      if (cVarint() !== ((1 << 3) | LENGTH)) return undefined;
      const specLength = cVarint();
      if (specLength === BAIL || cAt + specLength > data.length) return undefined;
      const spec = cSpec(cAt + specLength);
      if (spec === undefined) return undefined;
      tasks.push(spec);
    }
    return { op: 'create', tasks };
  } finally {
    cBuf = EMPTY_BUFFER;
  }
}

/** decodeRequest without the create fast path: protobufjs reads every request (what the fast path falls back to). */
export function decodeRequestGeneral(data: Uint8Array): Request {
  const m = unframe(RequestType, data);
  const op = str(m.op);
  const body = obj(m[op]) ?? {};
  switch (op) {
    case 'create':
      return { op, tasks: list(body.tasks).map(specFrom) };
    case 'steal':
      return { op, ...stealArgs(body) };
    case 'complete': {
      const next = obj(body.next);
      return {
        op,
        worker: str(body.worker),
        tasks: list(body.tasks).map((c) => ({ name: str(c.name), result: bytes(c.result), outputs: fileRefsFrom(c.outputs) })),
        next: next === undefined ? undefined : stealArgs(next),
      };
    }
    case 'fail':
      return { op, worker: str(body.worker), name: str(body.name), reason: str(body.reason), permanent: bool(body.permanent) };
    case 'heartbeat':
    case 'release':
      return { op, worker: str(body.worker), names: strings(body.names) };
    case 'workerExit':
      return { op, worker: str(body.worker) };
    case 'retry':
      return { op, names: strings(body.names), allFailed: bool(body.allFailed) };
    case 'status':
      return { op };
    case 'lookup':
      return { op, name: str(body.name) };
    case 'cancel':
      return { op, names: strings(body.names), reason: str(body.reason) };
    case 'list':
      return {
        op,
        states: (Array.isArray(body.states) ? body.states : []).map(stateOf),
        pool: str(body.pool),
        prefix: str(body.prefix),
        limit: num(body.limit),
        after: num(body.after),
        withParams: bool(body.withParams),
        withResults: bool(body.withResults),
        ...(bool(body.withDeps) ? { withDeps: true } : {}),
      };
    case 'fileStat':
      return { op, sha256: strings(body.sha256) };
    case 'filePut':
      return { op, sha256: str(body.sha256), size: num(body.size), offset: num(body.offset), data: bytes(body.data) };
    case 'fileGet':
      return { op, sha256: str(body.sha256), offset: num(body.offset), length: num(body.length) };
    case 'gc':
      return { op, dryRun: bool(body.dryRun) };
    case 'poolList':
      return { op, pool: str(body.pool) };
    case 'poolSet':
      return {
        op,
        pool: str(body.pool),
        maxRunning: bool(body.setMaxRunning) ? num(body.maxRunning) : undefined,
        paused: bool(body.setPaused) ? bool(body.paused) : undefined,
        jobVerifier: bool(body.setJobVerifier) ? str(body.jobVerifier) : undefined,
        resultVerifier: bool(body.setResultVerifier) ? str(body.resultVerifier) : undefined,
      };
    case 'poolDelete':
      return { op, pool: str(body.pool), force: bool(body.force) };
    case 'rerun':
      return { op, names: strings(body.names), descendants: bool(body.descendants), prefix: str(body.prefix), pool: str(body.pool) };
    case 'replace':
      return { op, tasks: list(body.tasks).map(specFrom), rerun: bool(body.rerun), createMissing: bool(body.createMissing) };
    case 'delete':
      return { op, names: strings(body.names), descendants: bool(body.descendants) };
    case 'graphView':
      return { op, pool: str(body.pool), around: str(body.around), depth: num(body.depth), collapse: collapseOf(body.collapse), maxNodes: num(body.maxNodes) };
    default:
      throw new DagworkError('UNKNOWN_OPERATION', 'the request carries no operation this hub knows (is the client newer than the hub?)');
  }
}

export function encodeRequest(request: Request): Uint8Array {
  return request.op === 'create' ? encodeCreate(request.tasks) : encodeRequestGeneral(request);
}

/**
 * A create request written straight into bytes (protobufjs would build a writer's list of
 * operations a field first: a tenth of `dquery addfile`'s time). Fields at their default are
 * left out, as protobufjs leaves out what is not given.
 */
function encodeCreate(tasks: readonly TaskSpecInput[]): Uint8Array {
  const w = requestWriter;
  w.at = 0;
  for (const t of tasks) {
    const task = w.open(1);
    w.string(1, t.name);
    for (const dep of t.deps ?? NONE) w.string(2, dep, true);
    if (t.payload !== undefined) w.bytes(3, t.payload);
    w.int64(4, t.priority ?? 0);
    w.string(5, t.pool ?? '');
    w.uint(6, t.maxAttempts ?? 0);
    w.uint(7, t.leaseMs ?? 0);
    for (const p of t.params ?? NONE) {
      const param = w.open(8);
      w.string(1, p.name);
      w.string(2, p.value);
      w.close(param);
    }
    for (const f of t.inputs ?? NONE) {
      const file = w.open(9);
      w.string(1, f.name);
      w.string(2, f.sha256);
      w.uint(3, f.size);
      w.uint(4, f.executable === true ? 1 : 0);
      w.close(file);
    }
    for (const name of t.outputs ?? NONE) w.string(10, name, true);
    for (const f of t.paramFiles ?? NONE) {
      const file = w.open(11);
      w.string(1, f.name);
      w.string(2, f.param);
      w.close(file);
    }
    w.uint(12, t.barrier === true ? 1 : 0);
    w.uint(13, t.afterEnded === true ? 1 : 0);
    w.close(task);
  }
  return oneFieldFrame(w, CREATE_FIELD);
}

/** Every request through protobufjs (encodeRequest writes creates itself). */
export function encodeRequestGeneral(request: Request): Uint8Array {
  if (request.op === 'list') return frame(RequestType, { list: { ...request, op: undefined, states: request.states.map(stateNumber) } });
  if (request.op === 'graphView') return frame(RequestType, { graphView: { ...request, op: undefined, collapse: collapseNumber(request.collapse) } });
  if (request.op === 'poolSet') {
    const { pool, maxRunning, paused, jobVerifier, resultVerifier } = request;
    return frame(RequestType, {
      poolSet: { pool, setMaxRunning: maxRunning !== undefined, maxRunning: maxRunning ?? 0, setPaused: paused !== undefined, paused: paused ?? false,
        setJobVerifier: jobVerifier !== undefined, jobVerifier: jobVerifier ?? '', setResultVerifier: resultVerifier !== undefined, resultVerifier: resultVerifier ?? '' },
    });
  }
  const { op, ...body } = request;
  return frame(RequestType, { [op]: body });
}

// --- replies ---------------------------------------------------------------------------------

function leasedTask(m: Obj): LeasedTask {
  return {
    name: str(m.name),
    payload: bytes(m.payload),
    attempt: num(m.attempt),
    leaseDeadline: num(m.leaseDeadlineMs),
    leaseMs: num(m.leaseMs),
    pool: str(m.pool),
    priority: num(m.priority),
    params: paramsFrom(m.params),
    inputs: fileRefsFrom(m.inputs),
    outputs: namesFrom(m.outputs),
    paramFiles: paramFilesFrom(m.paramFiles),
  };
}

function stealResultFrom(m: Obj): StealResult {
  return { tasks: list(m.tasks).map(leasedTask), finished: bool(m.finished), retryAfterMs: num(m.retryAfterMs) };
}

// The steal and complete replies, the hub's most frequent, are written straight into bytes
// (protobufjs would build an object a task first, and copy each task's fields into it).
const replyWriter = new WireWriter();
const requestWriter = new WireWriter();
/** A reply writer grown past this is let go once the reply is out: one huge steal does not hold its memory for good. */
const KEPT_REPLY_BUFFER = 1 << 20;

function writeStealResult(w: WireWriter, s: StealResult): void {
  for (const t of s.tasks) {
    const task = w.open(1);
    w.string(1, t.name);
    w.bytes(2, t.payload);
    w.uint(3, t.attempt);
    w.int64(4, t.leaseDeadline);
    w.uint(5, t.leaseMs);
    w.string(6, t.pool);
    w.int64(7, t.priority);
    for (const p of t.params) {
      const param = w.open(8);
      w.string(1, p.name);
      w.string(2, p.value);
      w.close(param);
    }
    for (const f of t.inputs) {
      const file = w.open(9);
      w.string(1, f.name);
      w.string(2, f.sha256);
      w.uint(3, f.size);
      w.uint(4, f.executable ? 1 : 0);
      w.close(file);
    }
    for (const name of t.outputs) w.string(10, name, true);
    for (const f of t.paramFiles) {
      const file = w.open(11);
      w.string(1, f.name);
      w.string(2, f.param);
      w.close(file);
    }
    w.close(task);
  }
  w.uint(2, s.finished ? 1 : 0);
  w.uint(3, s.retryAfterMs);
}

/** The Request or Reply frame whose one field `field` is the message written into `w` (from 0): its length, the field's tag and length, then the message. */
function oneFieldFrame(w: WireWriter, field: number): Uint8Array {
  const length = w.at;
  const tag = (field << 3) | LENGTH;
  const reply = varintSize(tag) + varintSize(length) + length;
  const out = Buffer.allocUnsafe(varintSize(reply) + reply);
  let at = writeVarint(out, 0, reply);
  at = writeVarint(out, at, tag);
  at = writeVarint(out, at, length);
  w.buf.copy(out, at, 0, length);
  if (w.buf.length > KEPT_REPLY_BUFFER) w.buf = Buffer.allocUnsafe(1 << 16);
  return out;
}

function encodeStealReply(s: StealResult): Uint8Array {
  const w = replyWriter;
  w.at = 0;
  writeStealResult(w, s);
  return oneFieldFrame(w, STEAL_REPLY_FIELD);
}

function encodeCompleteReply(results: readonly TaskResult[], next: StealResult | undefined): Uint8Array {
  const w = replyWriter;
  w.at = 0;
  for (const r of results) {
    const result = w.open(1);
    w.string(1, r.name);
    w.uint(2, outcomeEnum.values[r.outcome] ?? 0);
    w.string(3, r.message);
    w.close(result);
  }
  if (next !== undefined) {
    const steal = w.open(2);
    writeStealResult(w, next);
    w.close(steal);
  }
  return oneFieldFrame(w, COMPLETE_REPLY_FIELD);
}

function taskResult(m: Obj): TaskResult {
  return { name: str(m.name), outcome: outcomeOf(m.outcome), message: str(m.message) };
}

function counts(m: Obj | undefined): StateCounts {
  const c = emptyCounts();
  for (const state of TASK_STATES) c[state] = num(m?.[state]);
  return c;
}

/** Only the states with tasks (the rest decode as 0). */
function nonZero(c: StateCounts): Obj {
  const out: Obj = {};
  for (const state of TASK_STATES) if (c[state] !== 0) out[state] = c[state];
  return out;
}

function limitsFrom(m: Obj | undefined): Limits {
  return {
    maxMessageBytes: num(m?.maxMessageBytes),
    maxBatch: num(m?.maxBatch),
    maxSteal: num(m?.maxSteal),
    maxPayloadBytes: num(m?.maxPayloadBytes),
    maxResultBytes: num(m?.maxResultBytes),
    maxNameBytes: num(m?.maxNameBytes),
    maxWaitMs: num(m?.maxWaitMs),
    maxFileBytes: num(m?.maxFileBytes),
    maxFilesBytes: num(m?.maxFilesBytes),
    maxChunkBytes: num(m?.maxChunkBytes),
  };
}


function recordToMessage(r: TaskRecord): Obj {
  return {
    spec: specTo(r.spec),
    state: stateNumber(r.state),
    attempts: unlessEmpty(r.attempts),
    worker: unlessEmpty(r.worker),
    leaseDeadlineMs: unlessEmpty(r.leaseDeadline),
    notBeforeMs: unlessEmpty(r.notBefore),
    result: unlessEmpty(r.result),
    lastError: unlessEmpty(r.lastError),
    log: r.log.map((c) => ({ state: stateNumber(c.state), atMs: c.at, worker: unlessEmpty(c.worker), note: unlessEmpty(c.note) })),
    seq: r.seq,
    holder: unlessEmpty(r.holder),
    outputs: unlessNone(r.outputs),
  };
}

function recordFromMessage(m: Obj): TaskRecord {
  return {
    spec: specFrom(obj(m.spec) ?? {}),
    state: stateOf(m.state),
    attempts: num(m.attempts),
    worker: str(m.worker),
    holder: str(m.holder),
    leaseDeadline: num(m.leaseDeadlineMs),
    notBefore: num(m.notBeforeMs),
    result: bytes(m.result),
    lastError: str(m.lastError),
    log: list(m.log).map((c) => ({ state: stateOf(c.state), at: num(c.atMs), worker: str(c.worker), note: str(c.note) })),
    seq: num(m.seq),
    outputs: fileRefsFrom(m.outputs),
  };
}

function poolInfoFrom(m: Obj | undefined): PoolInfo {
  return { pool: str(m?.pool), counts: counts(obj(m?.counts)), maxRunning: num(m?.maxRunning), paused: bool(m?.paused), donePerSecond: num(m?.donePerSecond), jobVerifier: str(m?.jobVerifier), resultVerifier: str(m?.resultVerifier) };
}

export function encodeReply(reply: Reply): Uint8Array {
  switch (reply.op) {
    case 'error':
      return frame(ReplyType, { error: { ...reply.error, code: errorEnum.values[reply.error.code] } });
    case 'steal':
      return encodeStealReply(reply);
    case 'complete':
      return encodeCompleteReply(reply.results, reply.next);
    case 'fail':
      return frame(ReplyType, { fail: { result: results([reply.result])[0], state: stateNumber(reply.state), notBeforeMs: reply.notBefore } });
    case 'heartbeat':
      return frame(ReplyType, { heartbeat: { lost: results(reply.lost) } });
    case 'release':
      return frame(ReplyType, { release: { results: results(reply.results) } });
    case 'retry':
      return frame(ReplyType, { retry: { retried: reply.retried, results: results(reply.results) } });
    case 'cancel':
      return frame(ReplyType, { cancel: { cancelled: reply.cancelled, results: results(reply.results) } });
    case 'delete':
      return frame(ReplyType, { delete: { deleted: reply.deleted, results: results(reply.results) } });
    case 'rerun':
      return frame(ReplyType, { rerun: { rerun: reply.rerun, results: results(reply.results) } });
    case 'replace':
      return frame(ReplyType, { replace: { replaced: reply.replaced, unchanged: reply.unchanged, created: reply.created, results: results(reply.results) } });
    case 'status':
      return frame(ReplyType, {
        status: {
          counts: reply.counts,
          pools: reply.pools,
          workers: reply.workers.map((w) => ({ ...w, lastSeenMs: w.lastSeen })),
          donePerSecond: reply.donePerSecond,
          nowMs: reply.now,
          total: reply.total,
          limits: reply.limits,
          workersTotal: reply.workersTotal,
          poolsTotal: reply.poolsTotal,
          waitingOnMissing: reply.waitingOnMissing,
          missingNames: reply.missingNames,
          missingExamples: reply.missingExamples,
          storeId: reply.storeId,
          startedMs: reply.startedMs,
          files: reply.files,
          filesBytes: reply.filesBytes,
        },
      });
    case 'list':
      return frame(ReplyType, {
        list: {
          tasks: reply.tasks.map((t) => ({
            ...t,
            state: stateNumber(t.state),
            changedMs: t.changedAt,
            createdMs: t.createdAt,
            startedMs: unlessEmpty(t.startedAt),
            lastError: unlessEmpty(t.lastError),
            worker: unlessEmpty(t.worker),
            params: unlessNone(t.params),
            result: unlessEmpty(t.result),
            outputs: unlessNone(t.outputs),
            barrier: t.barrier || undefined,
            failedDeps: unlessEmpty(t.failedDeps),
          })),
          next: reply.next,
        },
      });
    case 'graphView':
      return frame(ReplyType, {
        graphView: {
          // Zero counts and an empty pool left out: a task node is then its name, one count and its state.
          nodes: reply.nodes.map((n) => ({ id: n.id, counts: nonZero(n.counts), state: stateNumber(n.state), pool: unlessEmpty(n.pool), tasks: n.tasks })),
          edges: reply.edges,
          tasks: reply.tasks,
        },
      });
    case 'lookup':
      return frame(ReplyType, {
        lookup: { task: recordToMessage(reply.task), dependents: reply.dependents, missingDeps: reply.missingDeps, failedDeps: unlessNone(reply.failedDeps) },
      });
    default: {
      const { op, ...body } = reply;
      return frame(ReplyType, { [op]: body });
    }
  }
}

/** The reply in `data`; throws MALFORMED if it is not one. */
export function decodeReply(data: Uint8Array): Reply {
  const m = unframe(ReplyType, data);
  const error = obj(m.error);
  if (error !== undefined) {
    return { op: 'error', error: { code: enumName(errorEnum, error.code) as ErrorCode, message: str(error.message), task: str(error.task) } };
  }
  const op = str(m.result);
  const body = obj(m[op]) ?? {};
  switch (op) {
    case 'create':
      return { op, created: num(body.created), unchanged: num(body.unchanged), missingDeps: strings(body.missingDeps), missingDepsTotal: num(body.missingDepsTotal) };
    case 'steal':
      return { op, ...stealResultFrom(body) };
    case 'complete': {
      const next = obj(body.next);
      return { op, results: list(body.results).map(taskResult), next: next === undefined ? undefined : stealResultFrom(next) };
    }
    case 'fail': {
      return {
        op,
        result: taskResult(obj(body.result) ?? {}),
        state: num(body.state) === 0 ? undefined : stateOf(body.state),
        notBefore: num(body.notBeforeMs),
      };
    }
    case 'heartbeat':
      return { op, lost: list(body.lost).map(taskResult) };
    case 'release':
      return { op, results: list(body.results).map(taskResult) };
    case 'workerExit':
      return { op, released: num(body.released) };
    case 'retry':
      return { op, retried: num(body.retried), results: list(body.results).map(taskResult) };
    case 'status':
      return {
        op,
        counts: counts(obj(body.counts)),
        pools: list(body.pools).map((p) => ({ pool: str(p.pool), counts: counts(obj(p.counts)), donePerSecond: num(p.donePerSecond) })),
        workers: list(body.workers).map((w) => ({
          worker: str(w.worker),
          lastSeen: num(w.lastSeenMs),
          running: num(w.running),
          done: num(w.done),
          failed: num(w.failed),
          exited: bool(w.exited),
          runs: num(w.runs),
          busyMs: num(w.busyMs),
          maxRunMs: num(w.maxRunMs),
          tasks: strings(w.tasks),
        })),
        donePerSecond: num(body.donePerSecond),
        now: num(body.nowMs),
        total: num(body.total),
        limits: limitsFrom(obj(body.limits)),
        workersTotal: num(body.workersTotal),
        poolsTotal: num(body.poolsTotal),
        waitingOnMissing: num(body.waitingOnMissing),
        missingNames: num(body.missingNames),
        missingExamples: strings(body.missingExamples),
        storeId: str(body.storeId),
        startedMs: num(body.startedMs),
        files: num(body.files),
        filesBytes: num(body.filesBytes),
      };
    case 'lookup':
      return {
        op,
        task: recordFromMessage(obj(body.task) ?? {}),
        dependents: strings(body.dependents),
        missingDeps: strings(body.missingDeps),
        failedDeps: strings(body.failedDeps),
      };
    case 'cancel':
      return { op, cancelled: num(body.cancelled), results: list(body.results).map(taskResult) };
    case 'list':
      return {
        op,
        tasks: list(body.tasks).map((t) => ({
          name: str(t.name),
          state: stateOf(t.state),
          pool: str(t.pool),
          attempts: num(t.attempts),
          worker: str(t.worker),
          lastError: str(t.lastError),
          seq: num(t.seq),
          resultBytes: num(t.resultBytes),
          changedAt: num(t.changedMs),
          createdAt: num(t.createdMs),
          startedAt: num(t.startedMs),
          params: paramsFrom(t.params),
          result: bytes(t.result),
          outputs: fileRefsFrom(t.outputs),
          barrier: bool(t.barrier),
          failedDeps: num(t.failedDeps),
          ...(Array.isArray(t.deps) && t.deps.length > 0 ? { deps: strings(t.deps) } : {}),
        })),
        next: num(body.next),
      };
    case 'fileStat':
      return {
        op,
        files: list(body.files).map((f) => ({ sha256: str(f.sha256), held: bool(f.held), size: num(f.size), received: num(f.received) })),
      };
    case 'filePut':
      return { op, received: num(body.received), held: bool(body.held) };
    case 'fileGet':
      return { op, data: bytes(body.data), size: num(body.size) };
    case 'delete':
      return { op, deleted: num(body.deleted), results: list(body.results).map(taskResult) };
    case 'rerun':
      return { op, rerun: num(body.rerun), results: list(body.results).map(taskResult) };
    case 'replace':
      return { op, replaced: num(body.replaced), unchanged: num(body.unchanged), created: num(body.created), results: list(body.results).map(taskResult) };
    case 'graphView':
      return {
        op,
        nodes: list(body.nodes).map((n) => ({
          id: str(n.id),
          counts: counts(obj(n.counts)),
          state: num(n.state) === 0 ? undefined : stateOf(n.state),
          pool: str(n.pool),
          tasks: num(n.tasks),
        })),
        edges: list(body.edges).map((e) => ({ from: str(e.from), to: str(e.to), count: num(e.count) })),
        tasks: num(body.tasks),
      };
    case 'gc':
      return { op, removed: num(body.removed), removedBytes: num(body.removedBytes), kept: num(body.kept), keptBytes: num(body.keptBytes) };
    case 'poolList':
      return { op, pools: list(body.pools).map(poolInfoFrom), poolsTotal: num(body.poolsTotal) };
    case 'poolSet':
      return { op, pool: poolInfoFrom(obj(body.pool)) };
    case 'poolDelete':
      return { op, deleted: num(body.deleted), blocked: num(body.blocked) };
    default:
      throw new DagworkError('MALFORMED', 'the reply carries no result this client knows (is the hub newer than the client?)');
  }
}
