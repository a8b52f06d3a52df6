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
 * two together are the whole record of formats 2 to 5 (encodeRecord, kept to read and convert them).
 */
import protobuf from 'protobufjs/light.js';
import { bool, bytes, fileRefsFrom, list, namesFrom, num, paramFilesFrom, paramsFrom, str, unlessEmpty, unlessNone, type Obj } from '../../../proto/src/fields.js';
import { TASK_STATES, type TaskRecord, type TaskSpec, type TaskState } from '../../../proto/src/types.js';

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

/** Format 6: the part of a task written when it is created or replaced. */
export function encodeSpecRecord(spec: TaskSpec, seq: number): Uint8Array {
  return StoredTask.encode({ spec: specMessage(spec), seq }).finish();
}

/** Format 6: the part of a task written at every transition (never empty: it has the state). */
export function encodeStateRecord(r: TaskRecord): Uint8Array {
  return StoredTask.encode({
    state: STATE_NUMBER[r.state],
    attempts: unlessEmpty(r.attempts),
    worker: unlessEmpty(r.worker),
    leaseDeadlineMs: unlessEmpty(r.leaseDeadline),
    notBeforeMs: unlessEmpty(r.notBefore),
    result: unlessEmpty(r.result),
    lastError: unlessEmpty(r.lastError),
    log: r.log.map((c) => ({ state: STATE_NUMBER[c.state], atMs: c.at, worker: unlessEmpty(c.worker), note: unlessEmpty(c.note) })),
    holder: unlessEmpty(r.holder),
    outputs: unlessNone(r.outputs),
  }).finish();
}

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

/** Format 6: the task whose spec record is `spec` and state record `state`; throws RecordError naming what is wrong. */
export function decodeSplitRecord(spec: Uint8Array, state: Uint8Array): TaskRecord {
  const m = decodeMessage(state, "task's stored state");
  if (!Object.hasOwn(m, 'state') || Object.hasOwn(m, 'spec')) throw new RecordError("not a task's stored state");
  const s = decodeMessage(spec, "task's stored spec");
  if (Object.hasOwn(s, 'state')) throw new RecordError("not a task's stored spec");
  m.spec = s.spec;
  m.seq = s.seq;
  return recordOf(m);
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
