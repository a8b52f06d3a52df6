/**
 * What a caller hands the Client, checked before anything is encoded. Pure: no sockets.
 *
 * protobufjs takes whatever it is given: a string where bytes are expected is read as base64
 * (`payload: 'echo hi'` arrives as garbage), a string where a list is expected is spread into one
 * element per character (`deps: 'a'`), a key it does not know (`cmd:`) is dropped, and a number
 * over its field's width is written modulo 2^32. Plain JavaScript callers have no types to catch
 * any of this, so every request is checked here: a wrong type or an unknown key is a TypeError
 * naming the task and the field (a programming mistake), a number out of its wire range is
 * DagworkError INVALID_ARGUMENT (what the hub answers for a value out of its own bounds). Strings
 * given for bytes (a payload, a result) are taken as UTF-8 text.
 */
import { INT32_MAX, INT32_MIN, UINT32_MAX } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { LONE_SURROGATE, wellFormed } from '../../proto/src/spec.js';
import type { Collapse, Completion, FileRef, GraphViewQuery, Param, ParamFile, TaskSpecInput } from '../../proto/src/types.js';

/** A task as the Client takes it: TaskSpecInput, with a payload that may be text (sent as UTF-8). */
export interface TaskInput extends Omit<TaskSpecInput, 'payload' | 'params' | 'inputs'> {
  payload?: Uint8Array | string;
  /** The parameter set: [{ name, value }] in order, or an object { name: value } (values as text). */
  params?: readonly Param[] | Record<string, string | number | boolean>;
  /** Files for the scratch directory, uploaded first (Client.uploadFile gives a FileRef; set its name). */
  inputs?: readonly FileRef[];
}

/** A completion as the Client takes it: a result that may be text (sent as UTF-8). */
export interface CompletionInput {
  name: string;
  result?: Uint8Array | string;
  /** The task's declared outputs, each uploaded first (Client.uploadFile). */
  outputs?: readonly FileRef[];
}

export interface StealOptions {
  /** How many tasks at most. Default 1. */
  n?: number;
  /** Pools to take from; empty or absent means every pool. */
  pools?: string[];
  /** With nothing ready, wait up to this long for work (ms). Default 0. */
  waitMs?: number;
  /** Keep waiting even when the pools are finished, for tasks not created yet. Default false. */
  waitWhenFinished?: boolean;
}

const TASK_FIELDS = ['name', 'deps', 'payload', 'priority', 'pool', 'maxAttempts', 'leaseMs', 'params', 'inputs', 'outputs', 'paramFiles', 'barrier', 'afterEnded'] as const;
const COMPLETION_FIELDS = ['name', 'result', 'outputs'] as const;
const FILE_REF_FIELDS = ['name', 'sha256', 'size', 'executable'] as const;
/** A FileRef may come straight from uploadFile (an UploadResult): its `sent` is taken and dropped. */
const UPLOAD_RESULT_FIELDS = [...FILE_REF_FIELDS, 'sent'] as const;
const STEAL_FIELDS = ['n', 'pools', 'waitMs', 'waitWhenFinished'] as const;
/** Keys people reach for, and where what they meant goes. */
const FIELD_HINTS: Record<string, string> = {
  cmd: 'a command goes in payload',
  command: 'a command goes in payload',
  dependencies: 'dependencies go in deps',
  attempts: 'the number of attempts goes in maxAttempts',
  lease: 'the lease goes in leaseMs, in ms',
  max_attempts: 'write maxAttempts',
  lease_ms: 'write leaseMs',
  wait: 'write waitMs',
  param_files: 'write paramFiles',
  files: 'input files go in inputs (FileRefs from Client.uploadFile)',
  output: 'output files go in outputs',
  input: 'input files go in inputs',
};

const encoder = new TextEncoder();

const describe = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}` : typeof v;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const hint = FIELD_HINTS[key];
    throw new TypeError(`${where}: unknown field "${key}"${hint === undefined ? '' : ` (${hint})`}; the fields are ${allowed.join(', ')}`);
  }
}

/** `v` as a string, or a TypeError naming `what`. */
export function checkString(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string, not ${describe(v)}`);
  if (!wellFormed(v)) throw new TypeError(`${what} ${JSON.stringify(v.slice(0, 40))} ${LONE_SURROGATE}`);
  return v;
}

/** `v` as an array of strings, or a TypeError naming `what`: a lone string is not a list of one. */
export function checkNames(v: unknown, what: string): string[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of names, not ${describe(v)}${typeof v === 'string' ? ` (write [${JSON.stringify(v)}])` : ''}`);
  for (let i = 0; i < v.length; i++) {
    const name: unknown = v[i];
    if (typeof name !== 'string') throw new TypeError(`${what}[${i}] must be a string, not ${describe(name)}`);
    if (!wellFormed(name)) throw new TypeError(`${what}[${i}] ${JSON.stringify(name.slice(0, 40))} ${LONE_SURROGATE}`);
  }
  return v as string[];
}

/** Bytes from a Uint8Array (a Buffer is one) or UTF-8 text; TypeError otherwise. */
export function toBytes(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return encoder.encode(v);
  throw new TypeError(`${what} must be a string (sent as UTF-8) or a Uint8Array, not ${describe(v)}`);
}

function checkInteger(v: unknown, min: number, max: number, wire: string, what: string, task?: string): number {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number, not ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new DagworkError('INVALID_ARGUMENT', `${what} is ${v}: the wire carries it as ${wire}, an integer from ${min} to ${max}`, task === undefined ? {} : { task });
  }
  return v;
}

/** A task to create, checked and with its payload as bytes. */
export function checkTask(v: unknown, index: number): TaskSpecInput {
  if (!isObject(v)) throw new TypeError(`task ${index} must be an object with a name, not ${describe(v)}`);
  const name = checkString(v.name, `task ${index}: name`);
  const where = `task "${name}"`;
  checkKeys(v, TASK_FIELDS, where);
  const out: TaskSpecInput = { name };
  if (v.deps !== undefined) out.deps = checkNames(v.deps, `${where}: deps`);
  if (v.payload !== undefined) out.payload = toBytes(v.payload, `${where}: payload`);
  if (v.priority !== undefined) out.priority = checkInteger(v.priority, INT32_MIN, INT32_MAX, 'int32', `${where}: priority`, name);
  if (v.pool !== undefined) out.pool = checkString(v.pool, `${where}: pool`);
  if (v.maxAttempts !== undefined) out.maxAttempts = checkInteger(v.maxAttempts, 0, UINT32_MAX, 'uint32', `${where}: maxAttempts`, name);
  if (v.leaseMs !== undefined) out.leaseMs = checkInteger(v.leaseMs, 0, UINT32_MAX, 'uint32', `${where}: leaseMs`, name);
  if (v.params !== undefined) out.params = checkParams(v.params, `${where}: params`);
  if (v.inputs !== undefined) out.inputs = checkFileRefs(v.inputs, `${where}: inputs`);
  if (v.outputs !== undefined) out.outputs = checkNames(v.outputs, `${where}: outputs`);
  if (v.paramFiles !== undefined) out.paramFiles = checkParamFiles(v.paramFiles, `${where}: paramFiles`);
  if (v.barrier !== undefined) {
    if (typeof v.barrier !== 'boolean') throw new TypeError(`${where}: barrier must be a boolean, not ${describe(v.barrier)}`);
    out.barrier = v.barrier;
  }
  if (v.afterEnded !== undefined) {
    if (typeof v.afterEnded !== 'boolean') throw new TypeError(`${where}: afterEnded must be a boolean, not ${describe(v.afterEnded)}`);
    out.afterEnded = v.afterEnded;
  }
  return out;
}

function checkParams(v: unknown, what: string): Param[] {
  if (isObject(v)) {
    return Object.entries(v).map(([name, value]) => {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw new TypeError(`${what}.${name} must be a string, number or boolean, not ${describe(value)}`);
      return { name, value: typeof value === 'string' ? checkString(value, `${what}.${name}`) : String(value) };
    });
  }
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of { name, value } or an object, not ${describe(v)}`);
  return v.map((p: unknown, i) => {
    if (!isObject(p)) throw new TypeError(`${what}[${i}] must be an object { name, value }, not ${describe(p)}`);
    checkKeys(p, ['name', 'value'], `${what}[${i}]`);
    return { name: checkString(p.name, `${what}[${i}].name`), value: checkString(p.value, `${what}[${i}].value`) };
  });
}

function checkFileRefs(v: unknown, what: string): FileRef[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of { name, sha256, size, executable }, not ${describe(v)}`);
  return v.map((f: unknown, i) => {
    if (!isObject(f)) throw new TypeError(`${what}[${i}] must be an object { name, sha256, size, executable }, not ${describe(f)}`);
    checkKeys(f, UPLOAD_RESULT_FIELDS, `${what}[${i}]`);
    if (f.executable !== undefined && typeof f.executable !== 'boolean') throw new TypeError(`${what}[${i}].executable must be a boolean`);
    const size = f.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new TypeError(`${what}[${i}].size must be a non-negative integer, not ${describe(size)}`);
    return { name: checkString(f.name, `${what}[${i}].name`), sha256: checkString(f.sha256, `${what}[${i}].sha256`), size, executable: f.executable === true };
  });
}

function checkParamFiles(v: unknown, what: string): ParamFile[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of { name, param }, not ${describe(v)}`);
  return v.map((f: unknown, i) => {
    if (!isObject(f)) throw new TypeError(`${what}[${i}] must be an object { name, param }, not ${describe(f)}`);
    checkKeys(f, ['name', 'param'], `${what}[${i}]`);
    return { name: checkString(f.name, `${what}[${i}].name`), param: checkString(f.param, `${what}[${i}].param`) };
  });
}

export function checkTasks(v: unknown): TaskSpecInput[] {
  if (!Array.isArray(v)) throw new TypeError(`create takes an array of tasks, not ${describe(v)}`);
  return v.map(checkTask);
}

export function checkCompletions(v: unknown): Completion[] {
  if (!Array.isArray(v)) throw new TypeError(`complete takes an array of completions, not ${describe(v)}`);
  return v.map((c: unknown, i) => {
    if (!isObject(c)) throw new TypeError(`completion ${i} must be an object { name, result }, not ${describe(c)}`);
    const name = checkString(c.name, `completion ${i}: name`);
    checkKeys(c, COMPLETION_FIELDS, `completion of "${name}"`);
    const out: Completion = { name };
    if (c.result !== undefined) out.result = toBytes(c.result, `completion of "${name}": result`);
    if (c.outputs !== undefined) out.outputs = checkFileRefs(c.outputs, `completion of "${name}": outputs`);
    return out;
  });
}

/** Steal options with their defaults, checked. */
export function checkSteal(v: unknown): Required<StealOptions> {
  if (!isObject(v)) throw new TypeError(`steal options must be an object, not ${describe(v)}`);
  checkKeys(v, STEAL_FIELDS, 'steal options');
  if (v.waitWhenFinished !== undefined && typeof v.waitWhenFinished !== 'boolean') {
    throw new TypeError(`steal options: waitWhenFinished must be a boolean, not ${describe(v.waitWhenFinished)}`);
  }
  return {
    n: v.n === undefined ? 1 : checkInteger(v.n, 0, UINT32_MAX, 'uint32', 'steal options: n'),
    pools: v.pools === undefined ? [] : checkNames(v.pools, 'steal options: pools'),
    waitMs: v.waitMs === undefined ? 0 : checkInteger(v.waitMs, 0, UINT32_MAX, 'uint32', 'steal options: waitMs'),
    waitWhenFinished: v.waitWhenFinished === true,
  };
}

const COLLAPSES: readonly Collapse[] = ['none', 'pool', 'prefix'];
const GRAPH_VIEW_FIELDS = ['pool', 'around', 'depth', 'collapse', 'maxNodes'];

/** A graph view's query with its defaults (zero: the hub's), checked. */
export function checkGraphViewQuery(v: unknown): GraphViewQuery {
  if (!isObject(v)) throw new TypeError(`graph view query must be an object, not ${describe(v)}`);
  checkKeys(v, GRAPH_VIEW_FIELDS, 'graph view query');
  if (v.collapse !== undefined && !(COLLAPSES as readonly unknown[]).includes(v.collapse)) {
    throw new TypeError(`graph view query: collapse must be one of ${COLLAPSES.join(', ')}, not ${describe(v.collapse)}`);
  }
  return {
    pool: v.pool === undefined ? '' : checkString(v.pool, 'graph view query: pool'),
    around: v.around === undefined ? '' : checkString(v.around, 'graph view query: around'),
    depth: v.depth === undefined ? 0 : checkInteger(v.depth, 0, UINT32_MAX, 'uint32', 'graph view query: depth'),
    collapse: (v.collapse as Collapse | undefined) ?? 'none',
    maxNodes: v.maxNodes === undefined ? 0 : checkInteger(v.maxNodes, 0, UINT32_MAX, 'uint32', 'graph view query: maxNodes'),
  };
}
