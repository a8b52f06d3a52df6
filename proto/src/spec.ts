/**
 * The rules of a task definition: what a name may hold, the defaults of the fields a client leaves
 * at zero, the bounds of each, and the order dependencies impose. The hub applies them to every
 * create; `dquery addfile` applies the same ones to a whole file before it sends anything.
 */
import { DagworkError } from './errors.js';
import type { FileRef, Limits, Param, ParamFile, TaskSpec, TaskSpecInput } from './types.js';

/** The limits and defaults of task definitions, each with its unit. The hub may be told others. */
export interface SpecLimits {
  /** Longest task, pool or dependency name, in UTF-8 bytes. Default 512. */
  maxNameBytes: number;
  /** Largest payload, in bytes. Default 1 MiB. */
  maxPayloadBytes: number;
  /** Most dependencies of one task. Default 10,000. */
  maxDeps: number;
  /** Attempts of a task that does not say (max_attempts = 0). Default 3. */
  defaultAttempts: number;
  /** Most attempts a task may ask for. Default 1,000. */
  maxAttempts: number;
  /** Lease length of a task that does not say (lease_ms = 0), in ms. Default 60,000. */
  defaultLeaseMs: number;
  /** Longest lease a task may ask for, in ms. Default 7 days. */
  maxLeaseMs: number;
}

export function defaultSpecLimits(): SpecLimits {
  return {
    maxNameBytes: 512,
    maxPayloadBytes: 1 << 20,
    maxDeps: 10_000,
    defaultAttempts: 3,
    maxAttempts: 1_000,
    defaultLeaseMs: 60_000,
    maxLeaseMs: 7 * 24 * 3600 * 1000,
  };
}

/** The largest request a hub accepts unless told otherwise (dhub --max-message-bytes), in bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 << 20;

/**
 * The limits a hub started without options reports in StatusReply.limits: where each default
 * lives (the hub's options derive from these), and what a client assumes of a hub that does not say.
 */
export function defaultLimits(): Limits {
  const spec = defaultSpecLimits();
  return {
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    maxBatch: 100_000,
    maxSteal: 10_000,
    maxPayloadBytes: spec.maxPayloadBytes,
    maxResultBytes: 1 << 20,
    maxNameBytes: spec.maxNameBytes,
    maxWaitMs: 300_000,
    maxFileBytes: 16 * 2 ** 30,
    maxFilesBytes: 0,
    maxChunkBytes: 4 << 20,
  };
}

/** Most params, inputs, outputs or param files of one task (each list on its own). */
export const MAX_TASK_ITEMS = 1_000;
/** Longest param name, in bytes. */
const MAX_PARAM_NAME_BYTES = 128;
/** Longest path of a file in a task's scratch directory, in bytes. */
const MAX_SCRATCH_PATH_BYTES = 1_024;
/** Longest segment of such a path, in bytes (NAME_MAX). */
const MAX_SCRATCH_SEGMENT_BYTES = 255;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Throws INVALID_ARGUMENT unless `sha` is 64 lowercase hex digits. */
export function checkSha256(sha: string, what = 'file hash'): void {
  if (typeof sha !== 'string' || !SHA256.test(sha)) {
    throw new DagworkError('INVALID_ARGUMENT', `${what} ${JSON.stringify(String(sha).slice(0, 80))} is not a SHA-256 (64 lowercase hex digits)`);
  }
}

/**
 * Throws INVALID_ARGUMENT unless `path` is usable as a file's place in a scratch directory: relative,
 * segments separated by "/", none empty, "." or "..", no control characters or backslashes.
 */
export function checkScratchPath(path: string, what: string): void {
  const fail = (why: string): never => {
    throw new DagworkError('INVALID_ARGUMENT', `${what} ${JSON.stringify(String(path).slice(0, 80))} ${why}`);
  };
  if (typeof path !== 'string' || path.length === 0) fail('is empty');
  if (Buffer.byteLength(path, 'utf8') > MAX_SCRATCH_PATH_BYTES) fail(`is longer than ${MAX_SCRATCH_PATH_BYTES} bytes`);
  if (CONTROL.test(path) || path.includes('\\')) fail('holds a control character or a backslash');
  if (!wellFormed(path)) fail(LONE_SURROGATE);
  if (path.startsWith('/')) fail('is absolute; give a path relative to the scratch directory');
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') fail('has an empty, "." or ".." segment');
    if (Buffer.byteLength(segment, 'utf8') > MAX_SCRATCH_SEGMENT_BYTES) fail(`has a segment longer than ${MAX_SCRATCH_SEGMENT_BYTES} bytes (no file system takes it)`);
  }
}

/**
 * Throws INVALID_ARGUMENT when one of `paths` lies inside another (`a` and `a/b`: one would have to
 * be a file and a directory at once; no run could ever succeed). `paths` are checked scratch paths,
 * each once.
 */
function checkNoNesting(paths: readonly string[], task: string): void {
  const all = new Set(paths);
  for (const path of paths) {
    for (let cut = path.indexOf('/'); cut !== -1; cut = path.indexOf('/', cut + 1)) {
      const parent = path.slice(0, cut);
      if (all.has(parent)) {
        throw new DagworkError('INVALID_ARGUMENT', `task "${task}" has a file "${parent}" and a file "${path}" inside it: a path cannot be both a file and a directory`, { task });
      }
    }
  }
}

/** Params checked: identifiers, each once, values within `maxBytes` together. */
function checkParams(params: readonly Param[], maxBytes: number, task: string): Param[] {
  const seen = new Set<string>();
  let bytes = 0;
  for (const p of params) {
    if (typeof p.name !== 'string' || !PARAM_NAME.test(p.name) || p.name.length > MAX_PARAM_NAME_BYTES) {
      throw new DagworkError('INVALID_ARGUMENT', `task "${task}" has a param named ${JSON.stringify(String(p.name).slice(0, 80))}; a param name is letters, digits and _, not starting with a digit, at most ${MAX_PARAM_NAME_BYTES} bytes`, { task });
    }
    if (seen.has(p.name)) throw new DagworkError('INVALID_ARGUMENT', `task "${task}" has the param "${p.name}" twice`, { task });
    seen.add(p.name);
    // An environment variable cannot hold a NUL: no worker could run the task.
    if (typeof p.value === 'string' && p.value.includes('\0')) throw new DagworkError('INVALID_ARGUMENT', `param "${p.name}" of task "${task}" holds a NUL character, which no environment variable can`, { task });
    if (typeof p.value === 'string' && !wellFormed(p.value)) throw new DagworkError('INVALID_ARGUMENT', `param "${p.name}" of task "${task}" ${LONE_SURROGATE}`, { task });
    bytes += Buffer.byteLength(p.value ?? '', 'utf8');
  }
  if (bytes > maxBytes) throw new DagworkError('TOO_LARGE', `task "${task}" has ${bytes} bytes of param values; the limit is ${maxBytes}`, { task });
  return params.map((p) => ({ name: p.name, value: p.value ?? '' }));
}

/** File references checked: a scratch path each, once, and a SHA-256. */
export function checkFileRefs(refs: readonly FileRef[], what: string, task: string): FileRef[] {
  const names = new Set<string>();
  for (const f of refs) {
    checkScratchPath(f.name, `${what} of task "${task}"`);
    if (names.has(f.name)) throw new DagworkError('INVALID_ARGUMENT', `task "${task}" names the ${what} "${f.name}" twice`, { task });
    names.add(f.name);
    checkSha256(f.sha256, `${what} "${f.name}" of task "${task}" has a hash that`);
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new DagworkError('INVALID_ARGUMENT', `${what} "${f.name}" of task "${task}" has size ${f.size}`, { task });
  }
  return refs.map((f) => ({ name: f.name, sha256: f.sha256, size: f.size, executable: f.executable === true }));
}

function checkCount(count: number, what: string, task: string): void {
  if (count > MAX_TASK_ITEMS) throw new DagworkError('TOO_LARGE', `task "${task}" has ${count} ${what}; the limit is ${MAX_TASK_ITEMS}`, { task });
}

// Shared by every spec without them: a graph of a million tasks holds one of each, not a million.
const NO_PARAMS: Param[] = [];
const NO_FILES: FileRef[] = [];
const NO_NAMES: string[] = [];
const NO_PARAM_FILES: ParamFile[] = [];
const NO_FILE_FIELDS = { params: NO_PARAMS, inputs: NO_FILES, outputs: NO_NAMES, paramFiles: NO_PARAM_FILES, barrier: false, afterEnded: false };

/** The params, inputs, outputs, param files and barrier flag of `input`, checked. */
function fileFields(input: TaskSpecInput, payload: Uint8Array, options: SpecLimits): Pick<TaskSpec, 'params' | 'inputs' | 'outputs' | 'paramFiles' | 'barrier' | 'afterEnded'> {
  // Most tasks have none of them: nothing to check, and nothing to allocate.
  if (!input.params?.length && !input.inputs?.length && !input.outputs?.length && !input.paramFiles?.length && input.barrier !== true && input.afterEnded !== true) return NO_FILE_FIELDS;
  const task = input.name;
  const given = { params: input.params ?? [], inputs: input.inputs ?? [], outputs: input.outputs ?? [], paramFiles: input.paramFiles ?? [] };
  checkCount(given.params.length, 'params', task);
  checkCount(given.inputs.length, 'inputs', task);
  checkCount(given.outputs.length, 'outputs', task);
  checkCount(given.paramFiles.length, 'param files', task);
  const params = given.params.length === 0 ? NO_PARAMS : checkParams(given.params, options.maxPayloadBytes, task);
  const inputs = given.inputs.length === 0 ? NO_FILES : checkFileRefs(given.inputs, 'input', task);
  const placed = new Set(inputs.map((f) => f.name));
  const paramFiles = given.paramFiles.length === 0 ? NO_PARAM_FILES : given.paramFiles.map((f) => ({ name: f.name, param: f.param }));
  const paramNames = new Set(params.map((p) => p.name));
  for (const f of paramFiles) {
    checkScratchPath(f.name, `param file of task "${task}"`);
    if (placed.has(f.name)) throw new DagworkError('INVALID_ARGUMENT', `task "${task}" places two files at "${f.name}" (inputs and param files)`, { task });
    placed.add(f.name);
    if (!paramNames.has(f.param)) throw new DagworkError('INVALID_ARGUMENT', `param file "${f.name}" of task "${task}" holds param "${f.param}", which the task does not have`, { task });
  }
  const outputs = given.outputs.length === 0 ? NO_NAMES : [...given.outputs];
  const outputNames = new Set<string>();
  for (const name of outputs) {
    checkScratchPath(name, `output of task "${task}"`);
    if (outputNames.has(name)) throw new DagworkError('INVALID_ARGUMENT', `task "${task}" names the output "${name}" twice`, { task });
    if (placed.has(name)) throw new DagworkError('INVALID_ARGUMENT', `output "${name}" of task "${task}" is also one of its inputs or param files`, { task });
    outputNames.add(name);
  }
  if (placed.size + outputs.length > 1) checkNoNesting([...placed, ...outputs], task);
  const barrier = input.barrier === true;
  if (barrier && (payload.length > 0 || inputs.length > 0 || outputs.length > 0 || paramFiles.length > 0)) {
    throw new DagworkError('INVALID_ARGUMENT', `task "${task}" is a barrier: it runs nothing, so it has no payload, inputs, outputs or param files`, { task });
  }
  const afterEnded = input.afterEnded === true;
  if (barrier && afterEnded) {
    throw new DagworkError('INVALID_ARGUMENT', `task "${task}" is a barrier, done once every dependency is done: it cannot run after failed dependencies (after_ended)`, { task });
  }
  return { params, inputs, outputs, paramFiles, barrier, afterEnded };
}

/**
 * False for a string with a lone surrogate (a JSON line's "\ud800", say): UTF-8 cannot carry one,
 * so it would reach the hub as U+FFFD (one or three of them, by the encoder): another string
 * than the one a later lookup of it sends.
 */
export const wellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();
export const LONE_SURROGATE = 'holds a lone surrogate (half of a UTF-16 pair): it is not Unicode text, and cannot be sent as UTF-8';

/** The pool of a task that names none. */
export const DEFAULT_POOL = 'default';

const EMPTY = new Uint8Array(0);
// C0 and C1 control characters and DEL: they break line-based files and terminals.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Throws INVALID_NAME or TOO_LARGE unless `name` is a usable task name. */
export function checkName(name: string, options: SpecLimits, what = 'task name'): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new DagworkError('INVALID_NAME', `${what} is empty`);
  }
  // A UTF-16 unit is at most 3 bytes of UTF-8: a short name needs no count of its bytes.
  if (name.length * 3 > options.maxNameBytes && Buffer.byteLength(name, 'utf8') > options.maxNameBytes) {
    throw new DagworkError('INVALID_NAME', `${what} "${name.slice(0, 40)}..." is longer than ${options.maxNameBytes} bytes`, {
      task: name,
    });
  }
  if (CONTROL.test(name)) {
    throw new DagworkError('INVALID_NAME', `${what} ${JSON.stringify(name)} holds a control character`, { task: name });
  }
  if (!wellFormed(name)) throw new DagworkError('INVALID_NAME', `${what} ${JSON.stringify(name.slice(0, 80))} ${LONE_SURROGATE}`, { task: name });
}

/** Throws INVALID_ARGUMENT unless `worker` is a usable worker id. */
export function checkWorker(worker: string): void {
  if (typeof worker !== 'string' || worker.length === 0) {
    throw new DagworkError('INVALID_ARGUMENT', 'worker id is empty');
  }
  if (worker.length > 256 || CONTROL.test(worker)) {
    throw new DagworkError('INVALID_ARGUMENT', `worker id ${JSON.stringify(worker.slice(0, 60))} is over 256 characters or holds a control character`);
  }
}

/**
 * `names` without repeats, in order of first mention, in an array of its own of exactly that
 * length (the graph keeps it: an array grown by push reserves 17 slots). Short lists are checked
 * pairwise, with no Set built.
 */
function withoutRepeats(names: readonly string[]): string[] {
  if (names.length > 8) return [...new Set(names)];
  for (let i = 1; i < names.length; i++) if (names.indexOf(names[i] as string) < i) return [...new Set(names)];
  return names.slice();
}

/** The spec with defaults filled in and duplicate deps dropped; throws on anything out of bounds. */
export function normalizeSpec(input: TaskSpecInput, options: SpecLimits): TaskSpec {
  checkName(input.name, options);
  const name = input.name;
  const deps = withoutRepeats(input.deps ?? NO_NAMES);
  if (deps.length > options.maxDeps) {
    throw new DagworkError('TOO_LARGE', `task "${name}" has ${deps.length} dependencies; the limit is ${options.maxDeps}`, { task: name });
  }
  for (const dep of deps) checkName(dep, options, `dependency of task "${name}"`);
  const payload = input.payload ?? EMPTY;
  if (payload.length > options.maxPayloadBytes) {
    throw new DagworkError('TOO_LARGE', `task "${name}" has a payload of ${payload.length} bytes; the limit is ${options.maxPayloadBytes}`, {
      task: name,
    });
  }
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < -(2 ** 31) || priority > 2 ** 31 - 1) {
    throw new DagworkError('INVALID_ARGUMENT', `task "${name}" has priority ${priority}; it must be a 32-bit integer`, { task: name });
  }
  const maxAttempts = input.maxAttempts || options.defaultAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > options.maxAttempts) {
    throw new DagworkError('INVALID_ARGUMENT', `task "${name}" asks for ${maxAttempts} attempts; allowed: 1 to ${options.maxAttempts}`, {
      task: name,
    });
  }
  const leaseMs = input.leaseMs || options.defaultLeaseMs;
  if (!Number.isInteger(leaseMs) || leaseMs < 1 || leaseMs > options.maxLeaseMs) {
    throw new DagworkError('INVALID_ARGUMENT', `task "${name}" asks for a lease of ${leaseMs} ms; allowed: 1 to ${options.maxLeaseMs}`, {
      task: name,
    });
  }
  const pool = input.pool || DEFAULT_POOL;
  checkName(pool, options, `pool of task "${name}"`);
  const more = fileFields(input, payload, options);
  // Written out, not spread: every spec gets the same shape at a fraction of a spread's cost.
  return {
    name,
    deps,
    payload,
    priority,
    pool,
    maxAttempts,
    leaseMs,
    params: more.params,
    inputs: more.inputs,
    outputs: more.outputs,
    paramFiles: more.paramFiles,
    barrier: more.barrier,
    afterEnded: more.afterEnded,
  };
}

/** How many params, inputs, outputs and param files a batch's tasks hold: they count against max_batch. */
export function taskItems(spec: TaskSpecInput): number {
  return (spec.params?.length ?? 0) + (spec.inputs?.length ?? 0) + (spec.outputs?.length ?? 0) + (spec.paramFiles?.length ?? 0);
}

const sameList = <T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean => a.length === b.length && a.every((x, i) => same(x, b[i] as T));

/** True when two specs define the same task (dependency order does not matter). */
export function sameSpec(a: TaskSpec, b: TaskSpec): boolean {
  if (
    a.name !== b.name ||
    a.priority !== b.priority ||
    a.pool !== b.pool ||
    a.maxAttempts !== b.maxAttempts ||
    a.leaseMs !== b.leaseMs ||
    a.deps.length !== b.deps.length ||
    a.barrier !== b.barrier ||
    a.afterEnded !== b.afterEnded ||
    !sameList(a.params, b.params, (x, y) => x.name === y.name && x.value === y.value) ||
    !sameList(a.inputs, b.inputs, (x, y) => x.name === y.name && x.sha256 === y.sha256 && x.size === y.size && x.executable === y.executable) ||
    !sameList(a.outputs, b.outputs, (x, y) => x === y) ||
    !sameList(a.paramFiles, b.paramFiles, (x, y) => x.name === y.name && x.param === y.param) ||
    !Buffer.from(a.payload.buffer, a.payload.byteOffset, a.payload.byteLength).equals(b.payload)
  ) {
    return false;
  }
  const deps = new Set(a.deps);
  return b.deps.every((d) => deps.has(d));
}

/**
 * The names of a batch of new tasks ordered dependencies first; throws CYCLE naming the cycle.
 * `depsOf` gives the dependencies of any name (a new task's, or an existing task's where a cycle
 * could run through it; [] elsewhere). Iterative: a chain of a million tasks must not overflow the
 * stack.
 */
export function dependencyOrder(fresh: Iterable<string>, isFresh: (name: string) => boolean, depsOf: (name: string) => readonly string[]): string[] {
  const ON_PATH = 1;
  const FINISHED = 2;
  const color = new Map<string, number>();
  const order: string[] = [];
  for (const root of fresh) {
    if (color.has(root)) continue;
    const path: { name: string; next: number }[] = [{ name: root, next: 0 }];
    color.set(root, ON_PATH);
    while (path.length > 0) {
      const frame = path[path.length - 1] as { name: string; next: number };
      const deps = depsOf(frame.name);
      if (frame.next < deps.length) {
        const dep = deps[frame.next++] as string;
        const seen = color.get(dep);
        if (seen === ON_PATH) {
          const names = path.map((f) => f.name);
          const cycle = [...names.slice(names.indexOf(dep)), dep];
          const task = cycle.find(isFresh) ?? root;
          throw new DagworkError('CYCLE', `task "${task}" would close a cycle: ${cycle.join(' -> ')} (each depends on the next)`, { task });
        }
        if (seen === undefined) {
          color.set(dep, ON_PATH);
          path.push({ name: dep, next: 0 });
        }
      } else {
        color.set(frame.name, FINISHED);
        if (isFresh(frame.name)) order.push(frame.name);
        path.pop();
      }
    }
  }
  return order;
}
