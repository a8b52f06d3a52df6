/**
 * The stored form of a task: the store's own schema, versioned with the store (STORE_FORMAT), not
 * the wire's. Today it has the field numbers the wire's TaskRecord had when the two were one
 * (stores of format 2 read as they are); from here on each can change without the other.
 * Fields are only ever added, under new numbers: format 4 added params, inputs, outputs, param
 * files and the barrier flag to the spec, and the output files to the task; a record of format 3
 * reads as a task without them.
 *
 * Format 6 stores a task as two records, both StoredTask messages holding part of its fields: the
 * spec record (spec and seq: written when the task is created or replaced) and the state record
 * (everything else: written at every transition). Protobuf merges concatenated messages, so the
 * two together are the whole record of formats 2 to 5. Format 6's records are written and read
 * field by field (WireWriter, WireReader); protobufjs reads the whole records of formats 2 to 5
 * (decodeRecord), which the store converts at open, and writes them for tests (encodeRecord).
 */
import protobuf from 'protobufjs/light.js';
import { bool, bytes, EMPTY, fileRefsFrom, list, namesFrom, NONE, num, paramFilesFrom, paramsFrom, str, unlessEmpty, unlessNone, type Obj } from '../../../proto/src/fields.js';
import { LENGTH, VARINT, WireWriter } from '../../../proto/src/wire-writer.js';
import { TASK_STATES, type FileRef, type TaskRecord, type TaskSpec, type TaskState } from '../../../proto/src/types.js';

const root = protobuf.Root.fromJSON({
  nested: {
    StoredSpec: {
      fields: {
        name: { type: 'string', id: 1 },
        deps: { rule: 'repeated', type: 'string', id: 2 },
        payload: { type: 'bytes', id: 3 },
        priority: { type: 'int32', id: 4 },
        pool: { type: 'string', id: 5 },
        maxAttempts: { type: 'uint32', id: 6 },
        leaseMs: { type: 'uint32', id: 7 },
        // Format 4.
        params: { rule: 'repeated', type: 'StoredParam', id: 8 },
        inputs: { rule: 'repeated', type: 'StoredFile', id: 9 },
        outputs: { rule: 'repeated', type: 'string', id: 10 },
        paramFiles: { rule: 'repeated', type: 'StoredParamFile', id: 11 },
        barrier: { type: 'bool', id: 12 },
        // Added with after_ended (issue 13); absent in older records: false.
        afterEnded: { type: 'bool', id: 13 },
      },
    },
    StoredParam: {
      fields: {
        name: { type: 'string', id: 1 },
        value: { type: 'string', id: 2 },
      },
    },
    StoredFile: {
      fields: {
        name: { type: 'string', id: 1 },
        sha256: { type: 'string', id: 2 },
        size: { type: 'uint64', id: 3 },
        executable: { type: 'bool', id: 4 },
      },
    },
    StoredParamFile: {
      fields: {
        name: { type: 'string', id: 1 },
        param: { type: 'string', id: 2 },
      },
    },
    StoredChange: {
      fields: {
        state: { type: 'uint32', id: 1 },
        atMs: { type: 'int64', id: 2 },
        worker: { type: 'string', id: 3 },
        note: { type: 'string', id: 4 },
      },
    },
    StoredTask: {
      fields: {
        spec: { type: 'StoredSpec', id: 1 },
        state: { type: 'uint32', id: 2 },
        attempts: { type: 'uint32', id: 3 },
        worker: { type: 'string', id: 4 },
        leaseDeadlineMs: { type: 'int64', id: 5 },
        notBeforeMs: { type: 'int64', id: 6 },
        result: { type: 'bytes', id: 7 },
        lastError: { type: 'string', id: 8 },
        log: { rule: 'repeated', type: 'StoredChange', id: 9 },
        seq: { type: 'uint64', id: 10 },
        holder: { type: 'string', id: 11 },
        // Format 4.
        outputs: { rule: 'repeated', type: 'StoredFile', id: 12 },
      },
    },
  },
});
const StoredTask = root.lookupType('StoredTask');

/** The number each state is stored as. Numbers are never reused: a store outlives hub versions. */
const STATE_NUMBER: Record<TaskState, number> = { waiting: 1, ready: 2, running: 3, done: 4, failed: 5, blocked: 6, cancelled: 7, verifying: 8 };
const STATE_OF = new Map<number, TaskState>(TASK_STATES.map((s) => [STATE_NUMBER[s], s]));

/** A stored record that cannot be read: names what is wrong, for the store to name the key. */
export class RecordError extends Error {
  override name = 'RecordError';
}


function stateOf(v: unknown): TaskState {
  const state = STATE_OF.get(num(v));
  if (state === undefined) throw new RecordError(`unknown state number ${num(v)}`);
  return state;
}

/** Lists left out when empty. */

function specMessage(spec: TaskSpec): Obj {
  return {
    name: spec.name,
    deps: unlessNone(spec.deps),
    payload: unlessEmpty(spec.payload),
    priority: unlessEmpty(spec.priority),
    pool: spec.pool,
    maxAttempts: spec.maxAttempts,
    leaseMs: spec.leaseMs,
    params: unlessNone(spec.params),
    inputs: unlessNone(spec.inputs),
    outputs: unlessNone(spec.outputs),
    paramFiles: unlessNone(spec.paramFiles),
    barrier: spec.barrier || undefined,
    afterEnded: spec.afterEnded || undefined,
  };
}

/** A whole record of formats 2 to 5 (a store of format 6 never writes one: for tests that make old stores). */
export function encodeRecord(r: TaskRecord): Uint8Array {
  return StoredTask.encode({
    spec: specMessage(r.spec),
    state: STATE_NUMBER[r.state],
    attempts: unlessEmpty(r.attempts),
    worker: unlessEmpty(r.worker),
    leaseDeadlineMs: unlessEmpty(r.leaseDeadline),
    notBeforeMs: unlessEmpty(r.notBefore),
    result: unlessEmpty(r.result),
    lastError: unlessEmpty(r.lastError),
    log: r.log.map((c) => ({ state: STATE_NUMBER[c.state], atMs: c.at, worker: unlessEmpty(c.worker), note: unlessEmpty(c.note) })),
    seq: r.seq,
    holder: unlessEmpty(r.holder),
    outputs: unlessNone(r.outputs),
  }).finish();
}

/** Format 6: the part of a task written when it is created or replaced; written field by field as encodeStateRecord. */
export function encodeSpecRecord(spec: TaskSpec, seq: number): Uint8Array {
  const w = recordWriter;
  w.at = 0;
  writeSpecRecord(w, spec, seq);
  return Buffer.from(w.buf.subarray(0, w.at));
}

/**
 * Writes the spec record (encodeSpecRecord) at `w.at`, straight into `w` (a log frame: CommitBuilder).
 * `back`: a snapshot's (snapshot.ts): how many records before this one the dependency's task is
 * in the snapshot, if it is one of the last few; a dependency it gives is written as that number
 * (field DEP_BACK, where its order among the dependencies is kept), not as its name.
 */
export function writeSpecRecord(w: WireWriter, spec: TaskSpec, seq: number, back?: (dep: string) => number | undefined): void {
  const start = w.open(1);
  w.string(1, spec.name);
  for (const dep of spec.deps) {
    const n = back?.(dep);
    if (n === undefined) w.string(2, dep, true);
    else w.uint(DEP_BACK, n);
  }
  w.bytes(3, spec.payload);
  w.int64(4, spec.priority);
  w.string(5, spec.pool);
  w.uint(6, spec.maxAttempts);
  w.uint(7, spec.leaseMs);
  for (const p of spec.params) {
    const param = w.open(8);
    w.string(1, p.name);
    w.string(2, p.value);
    w.close(param);
  }
  for (const f of spec.inputs) writeFile(w, 9, f);
  for (const name of spec.outputs) w.string(10, name, true);
  for (const f of spec.paramFiles) {
    const file = w.open(11);
    w.string(1, f.name);
    w.string(2, f.param);
    w.close(file);
  }
  w.uint(12, spec.barrier ? 1 : 0);
  w.uint(13, spec.afterEnded ? 1 : 0);
  w.close(start);
  w.uint(10, seq);
}

function writeFile(w: WireWriter, field: number, f: FileRef): void {
  const file = w.open(field);
  w.string(1, f.name);
  w.string(2, f.sha256);
  w.uint(3, f.size);
  w.uint(4, f.executable ? 1 : 0);
  w.close(file);
}

/**
 * Format 6: the part of a task written at every transition (never empty: it has the state). Its
 * StoredTask fields written straight into bytes, in protobufjs's order and encoding (it is the
 * hub's most frequent write: protobufjs would build a message object for it and its log first).
 */
export function encodeStateRecord(r: TaskRecord): Uint8Array {
  const w = recordWriter;
  w.at = 0;
  writeStateRecord(w, r);
  return Buffer.from(w.buf.subarray(0, w.at));
}

/** Writes the state record (encodeStateRecord) at `w.at`, straight into `w` (a log frame: CommitBuilder). */
export function writeStateRecord(w: WireWriter, r: TaskRecord): void {
  w.uint(2, STATE_NUMBER[r.state]);
  w.uint(3, r.attempts);
  w.string(4, r.worker);
  w.int64(5, r.leaseDeadline);
  w.int64(6, r.notBefore);
  w.bytes(7, r.result);
  w.string(8, r.lastError);
  for (const c of r.log) {
    const entry = w.open(9);
    w.uint(1, STATE_NUMBER[c.state]);
    w.int64(2, c.at);
    w.string(3, c.worker);
    w.string(4, c.note);
    w.close(entry);
  }
  w.string(11, r.holder);
  for (const f of r.outputs) writeFile(w, 12, f);
}

/** encodeSpecRecord's and encodeStateRecord's output. */
const recordWriter = new WireWriter();

function decodeMessage(data: Uint8Array, what: string): Obj {
  try {
    return StoredTask.decode(data) as unknown as Obj;
  } catch (err) {
    throw new RecordError(`not a ${what}: ${(err as Error).message}`);
  }
}

/** The record of formats 2 to 5 in `data`; throws RecordError naming what is wrong. */
export function decodeRecord(data: Uint8Array): TaskRecord {
  return recordOf(decodeMessage(data, 'stored task'));
}

/**
 * Format 6: the task whose spec record is `spec` and state record `state`; throws RecordError
 * naming what is wrong. Read field by field, straight into the record: a restart reads millions,
 * and protobufjs's message objects and Longs cost more than the reading.
 */
export function decodeSplitRecord(spec: Uint8Array, state: Uint8Array): TaskRecord {
  return decodeSplitRecordIn(asBuffer(spec), 0, spec.length, asBuffer(state), 0, state.length);
}

/**
 * decodeSplitRecord of the spec record at `specFrom` to `specEnd` of `specBuf` and the state
 * record at `stateFrom` to `stateEnd` of `stateBuf`: a snapshot's records, read where they lie.
 * `recent`: a snapshot's: the names of the records before this one, for dependencies written as
 * how many records back their task is (writeSpecRecord's `back`); this record's name is added.
 */
export function decodeSplitRecordIn(
  specBuf: Buffer,
  specFrom: number,
  specEnd: number,
  stateBuf: Buffer,
  stateFrom: number,
  stateEnd: number,
  recent?: RecentNames,
): TaskRecord {
  const record = emptyRecord();
  const r = reader;
  r.recent = recent;
  try {
    try {
      readSpecRecord(r.reset(specBuf, specFrom, specEnd), record);
    } catch (err) {
      throw new RecordError(`not a task's stored spec: ${(err as Error).message}`);
    }
    if (record.spec.name === '') throw new RecordError('the record has no task name');
    recent?.add(record.spec.name);
    readState(r.reset(stateBuf, stateFrom, stateEnd), record);
    return record;
  } finally {
    // The shared reader keeps neither the chunk nor the names once the record is read.
    r.reset(NO_BYTES, 0, 0);
    r.recent = undefined;
  }
}

/**
 * `record` with its state fields read from the state record `state` instead (a snapshot's task
 * whose state the log wrote again since); throws RecordError naming what is wrong.
 */
export function withStateRecord(record: TaskRecord, state: Uint8Array): TaskRecord {
  const newer = emptyRecord();
  newer.spec = record.spec;
  newer.seq = record.seq;
  try {
    readState(reader.reset(asBuffer(state), 0, state.length), newer);
    return newer;
  } finally {
    reader.reset(NO_BYTES, 0, 0);
  }
}

/** readStateRecord, its failures and a record without a state as RecordError. */
function readState(r: WireReader, record: TaskRecord): void {
  let hasState: boolean;
  try {
    hasState = readStateRecord(r, record);
  } catch (err) {
    throw new RecordError(`not a task's stored state: ${(err as Error).message}`);
  }
  if (!hasState) throw new RecordError("not a task's stored state: it has no state");
}

const NO_BYTES = Buffer.alloc(0);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function emptyRecord(): TaskRecord {
  return {
    spec: {
      name: '',
      deps: [],
      payload: EMPTY,
      priority: 0,
      pool: '',
      maxAttempts: 0,
      leaseMs: 0,
      params: NONE,
      inputs: NONE,
      outputs: NONE,
      paramFiles: NONE,
      barrier: false,
      afterEnded: false,
    },
    state: 'waiting',
    attempts: 0,
    worker: '',
    holder: '',
    leaseDeadline: 0,
    notBefore: 0,
    result: EMPTY,
    lastError: '',
    log: [],
    seq: 0,
    outputs: NONE,
  };
}

const FIXED64 = 1;
const FIXED32 = 5;

/**
 * Protobuf's wire format, read without objects in between (the fields of StoredTask only): one
 * reader for every record (`reset`), nested messages read in place (`enter`, `leave`). A restart
 * reads millions of records; an object a record or a field is most of what that would cost.
 */
class WireReader {
  at = 0;
  end = 0;
  private buf: Buffer = NO_BYTES;
  /** The names of the records read before, for dependencies written by how far back they are (DEP_BACK). */
  recent: RecentNames | undefined;
  /** Where the last length-delimited field read starts (it ends at `at`). */
  private spanFrom = 0;

  reset(buf: Buffer, from: number, end: number): this {
    this.buf = buf;
    this.at = from;
    this.end = end;
    return this;
  }

  /** The low and high 32 bits of the last varint read. */
  private lo = 0;
  private hi = 0;

  private read64(): void {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new RangeError('a varint runs past the end');
      const byte = buf[this.at++] as number;
      const bits = byte & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= bits << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (byte < 0x80) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new RangeError('a varint of more than 10 bytes');
  }

  /** uint64 (exact up to 2^53). */
  varint(): number {
    // Tags and small numbers: one byte.
    if (this.at < this.end) {
      const byte = this.buf[this.at] as number;
      if (byte < 0x80) {
        this.at++;
        return byte;
      }
    }
    this.read64();
    return this.hi * 2 ** 32 + this.lo;
  }

  /** int64 (exact within ±2^53): negative numbers are written as their 64-bit two's complement. */
  int64(): number {
    this.read64();
    if (this.hi < 0x80000000) return this.hi * 2 ** 32 + this.lo;
    return -((~this.hi >>> 0) * 2 ** 32 + (~this.lo >>> 0) + 1);
  }

  uint32(): number {
    this.read64();
    return this.lo;
  }

  int32(): number {
    this.read64();
    return this.lo | 0;
  }

  /** Skips a length-delimited field, from `spanFrom` to `at`. */
  private span(): void {
    const length = this.varint();
    const from = this.at;
    if (from + length > this.end) throw new RangeError('a field runs past the end');
    this.spanFrom = from;
    this.at = from + length;
  }

  string(): string {
    this.span();
    return this.at === this.spanFrom ? '' : this.buf.toString('utf8', this.spanFrom, this.at);
  }

  /**
   * A string that repeats from record to record at one place (a pool, a log note, a worker):
   * `last`'s string when the bytes are its bytes, without decoding them again.
   */
  repeated(last: LastString): string {
    this.span();
    const from = this.spanFrom;
    const length = this.at - from;
    if (length === 0) return '';
    const buf = this.buf;
    if (length === last.length) {
      let i = 0;
      while (i < length && buf[from + i] === last.bytes[i]) i++;
      if (i === length) return last.value;
    }
    const value = buf.toString('utf8', from, this.at);
    if (length <= last.bytes.length) {
      buf.copy(last.bytes, 0, from, this.at);
      last.length = length;
      last.value = value;
    }
    return value;
  }

  bytes(): Uint8Array {
    this.span();
    return this.at > this.spanFrom ? this.buf.subarray(this.spanFrom, this.at) : EMPTY;
  }

  /** Into a nested message: its fields are read until `at` reaches `end`; `leave` with what this returned. */
  enter(): number {
    const outer = this.end;
    this.span();
    this.end = this.at;
    this.at = this.spanFrom;
    return outer;
  }

  /** Out of the nested message `enter` went into (`at` is at its end), back to the message around it. */
  leave(outer: number): void {
    this.at = this.end;
    this.end = outer;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.at += 8;
        break;
      case LENGTH:
        this.span();
        return;
      case FIXED32:
        this.at += 4;
        break;
      default:
        throw new RangeError(`wire type ${wireType} at byte ${this.at}`);
    }
    if (this.at > this.end) throw new RangeError('a field runs past the end');
  }
}

/** decodeSplitRecordIn's reader: decoding calls out to nothing, so one is enough. */
const reader = new WireReader();

/**
 * A spec record's field in a snapshot only (snapshot.ts): a dependency given as how many records
 * back in the snapshot its task is (1: the record before), in the place of its name (field 2).
 */
const DEP_BACK = 14;
/** How many of the last names a snapshot's writer and reader keep for DEP_BACK (a power of two). */
export const RECENT_NAMES = 1 << 16;

/**
 * The names of the last RECENT_NAMES records read or written in a snapshot, by place. A
 * dependency on one of them is written as how far back it is and read back as the very string
 * that task's name was read as: no name decoded again, and none for the graph to drop once it
 * links the task (a stencil has three a task).
 */
export class RecentNames {
  private readonly names: string[] = new Array<string>(RECENT_NAMES).fill('');
  /** Records so far (the next one's place). */
  private count = 0;
  /**
   * The writer's: the places of the names of the last half window of records, and of the half
   * before (two maps dropped whole, never an entry deleted: a map that deletes one entry a record
   * cost more than the rest of the snapshot's writing).
   */
  private places: Map<string, number> | undefined;
  private older: Map<string, number> | undefined;

  /** `writing`: keep each name's place, for `backTo`. */
  constructor(writing = false) {
    if (writing) {
      this.places = new Map();
      this.older = new Map();
    }
  }

  /** `keep` false (the writer's): no later record names it as a dependency, so `backTo` never needs its place. */
  add(name: string, keep = true): void {
    if (this.places !== undefined && keep) {
      if (this.places.size === RECENT_NAMES / 2) {
        this.older = this.places;
        this.places = new Map();
      }
      this.places.set(name, this.count);
    }
    this.names[this.count & (RECENT_NAMES - 1)] = name;
    this.count++;
  }

  /** The writer's: how many records back `name`'s is, if it is one of the recent ones. */
  backTo(name: string): number | undefined {
    const at = this.places?.get(name) ?? this.older?.get(name);
    return at === undefined || this.count - at > RECENT_NAMES ? undefined : this.count - at;
  }

  /** The reader's: the name of the record `n` back (1: the last one added). */
  back(n: number): string {
    if (n < 1 || n > RECENT_NAMES || n > this.count) throw new RangeError(`a dependency ${n} records back, where ${Math.min(this.count, RECENT_NAMES)} are kept`);
    return this.names[(this.count - n) & (RECENT_NAMES - 1)] as string;
  }
}

/** The last string read at one place (WireReader.repeated), with its bytes. */
class LastString {
  readonly bytes = Buffer.alloc(64);
  length = -1;
  value = '';
}
const lastPool = new LastString();
const lastWorker = new LastString();
const lastHolder = new LastString();
const lastChangeWorker = new LastString();
const lastNote = new LastString();

function readSpecRecord(r: WireReader, record: TaskRecord): void {
  while (r.at < r.end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH)) {
      const outer = r.enter();
      readSpec(r, record.spec);
      r.leave(outer);
    } else if (tag === ((10 << 3) | VARINT)) record.seq = r.varint();
    else if (tag >>> 3 === 2 && (tag & 7) === VARINT) throw new RangeError('it holds a state');
    else r.skip(tag & 7);
  }
}

function readSpec(r: WireReader, spec: TaskSpec): void {
  let params: TaskSpec['params'] | undefined;
  let inputs: TaskSpec['inputs'] | undefined;
  let outputs: string[] | undefined;
  let paramFiles: TaskSpec['paramFiles'] | undefined;
  while (r.at < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | LENGTH:
        spec.name = r.string();
        break;
      case (2 << 3) | LENGTH:
        spec.deps.push(r.string());
        break;
      case (DEP_BACK << 3) | VARINT: {
        if (r.recent === undefined) throw new RangeError('a dependency written as a place in a snapshot, outside one');
        spec.deps.push(r.recent.back(r.varint()));
        break;
      }
      case (3 << 3) | LENGTH:
        spec.payload = r.bytes();
        break;
      case (4 << 3) | VARINT:
        spec.priority = r.int32();
        break;
      case (5 << 3) | LENGTH:
        spec.pool = r.repeated(lastPool);
        break;
      case (6 << 3) | VARINT:
        spec.maxAttempts = r.uint32();
        break;
      case (7 << 3) | VARINT:
        spec.leaseMs = r.uint32();
        break;
      case (8 << 3) | LENGTH: {
        const [name, value] = readStringPair(r);
        (params ??= []).push({ name, value });
        break;
      }
      case (9 << 3) | LENGTH:
        (inputs ??= []).push(readFile(r));
        break;
      case (10 << 3) | LENGTH:
        (outputs ??= []).push(r.string());
        break;
      case (11 << 3) | LENGTH: {
        const [name, param] = readStringPair(r);
        (paramFiles ??= []).push({ name, param });
        break;
      }
      case (12 << 3) | VARINT:
        spec.barrier = r.varint() !== 0;
        break;
      case (13 << 3) | VARINT:
        spec.afterEnded = r.varint() !== 0;
        break;
      default:
        r.skip(tag & 7);
    }
  }
  if (params !== undefined) spec.params = params;
  if (inputs !== undefined) spec.inputs = inputs;
  if (outputs !== undefined) spec.outputs = outputs;
  if (paramFiles !== undefined) spec.paramFiles = paramFiles;
}

/** The nested message of two strings, fields 1 and 2, that `r` is at (StoredParam, StoredParamFile). */
function readStringPair(r: WireReader): [string, string] {
  let first = '';
  let second = '';
  const outer = r.enter();
  while (r.at < r.end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH)) first = r.string();
    else if (tag === ((2 << 3) | LENGTH)) second = r.string();
    else r.skip(tag & 7);
  }
  r.leave(outer);
  return [first, second];
}

/** The nested StoredFile that `r` is at. */
function readFile(r: WireReader): FileRef {
  const file: FileRef = { name: '', sha256: '', size: 0, executable: false };
  const outer = r.enter();
  while (r.at < r.end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH)) file.name = r.string();
    else if (tag === ((2 << 3) | LENGTH)) file.sha256 = r.string();
    else if (tag === ((3 << 3) | VARINT)) file.size = r.varint();
    else if (tag === ((4 << 3) | VARINT)) file.executable = r.varint() !== 0;
    else r.skip(tag & 7);
  }
  r.leave(outer);
  return file;
}

function stateAt(n: number): TaskState {
  const state = STATE_OF.get(n);
  if (state === undefined) throw new RecordError(`unknown state number ${n}`);
  return state;
}

/** Reads the state record's fields into `record`; false when it has no state field. */
function readStateRecord(r: WireReader, record: TaskRecord): boolean {
  let hasState = false;
  let outputs: FileRef[] | undefined;
  while (r.at < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | LENGTH:
        throw new RangeError('it holds a spec');
      case (2 << 3) | VARINT:
        record.state = stateAt(r.uint32());
        hasState = true;
        break;
      case (3 << 3) | VARINT:
        record.attempts = r.uint32();
        break;
      case (4 << 3) | LENGTH:
        record.worker = r.repeated(lastWorker);
        break;
      case (5 << 3) | VARINT:
        record.leaseDeadline = r.int64();
        break;
      case (6 << 3) | VARINT:
        record.notBefore = r.int64();
        break;
      case (7 << 3) | LENGTH:
        record.result = r.bytes();
        break;
      case (8 << 3) | LENGTH:
        record.lastError = r.string();
        break;
      case (9 << 3) | LENGTH: {
        const change: TaskRecord['log'][number] = { state: 'waiting', at: 0, worker: '', note: '' };
        let changeState: number | undefined;
        const outer = r.enter();
        while (r.at < r.end) {
          const t = r.varint();
          if (t === ((1 << 3) | VARINT)) changeState = r.uint32();
          else if (t === ((2 << 3) | VARINT)) change.at = r.int64();
          else if (t === ((3 << 3) | LENGTH)) change.worker = r.repeated(lastChangeWorker);
          else if (t === ((4 << 3) | LENGTH)) change.note = r.repeated(lastNote);
          else r.skip(t & 7);
        }
        r.leave(outer);
        change.state = stateAt(changeState ?? 0);
        record.log.push(change);
        break;
      }
      case (11 << 3) | LENGTH:
        record.holder = r.repeated(lastHolder);
        break;
      case (12 << 3) | LENGTH:
        (outputs ??= []).push(readFile(r));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  if (outputs !== undefined) record.outputs = outputs;
  return hasState;
}

function recordOf(m: Obj): TaskRecord {
  const spec = (m.spec ?? {}) as Obj;
  const name = str(spec.name);
  if (name === '') throw new RecordError('the record has no task name');
  return {
    spec: {
      name,
      deps: Array.isArray(spec.deps) ? spec.deps.map(str) : [],
      payload: bytes(spec.payload),
      priority: num(spec.priority),
      pool: str(spec.pool),
      maxAttempts: num(spec.maxAttempts),
      leaseMs: num(spec.leaseMs),
      params: paramsFrom(spec.params),
      inputs: fileRefsFrom(spec.inputs),
      outputs: namesFrom(spec.outputs),
      paramFiles: paramFilesFrom(spec.paramFiles),
      barrier: bool(spec.barrier),
      afterEnded: bool(spec.afterEnded),
    },
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
