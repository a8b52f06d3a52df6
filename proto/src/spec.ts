/**
 * The rules of a task definition: what a name may hold, the defaults of the fields a client leaves
 * at zero, the bounds of each, and the order dependencies impose. The hub applies them to every
 * create; `dquery addfile` applies the same ones to a whole file before it sends anything.
 */
import { DagworkError } from './errors.js';
import type { Limits, TaskSpec, TaskSpecInput } from './types.js';

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
  };
}

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
  if (Buffer.byteLength(name, 'utf8') > options.maxNameBytes) {
    throw new DagworkError('INVALID_NAME', `${what} "${name.slice(0, 40)}..." is longer than ${options.maxNameBytes} bytes`, {
      task: name,
    });
  }
  if (CONTROL.test(name)) {
    throw new DagworkError('INVALID_NAME', `${what} ${JSON.stringify(name)} holds a control character`, { task: name });
  }
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

/** The spec with defaults filled in and duplicate deps dropped; throws on anything out of bounds. */
export function normalizeSpec(input: TaskSpecInput, options: SpecLimits): TaskSpec {
  checkName(input.name, options);
  const name = input.name;
  const deps = [...new Set(input.deps ?? [])];
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
  return { name, deps, payload, priority, pool, maxAttempts, leaseMs };
}

/** True when two specs define the same task (dependency order does not matter). */
export function sameSpec(a: TaskSpec, b: TaskSpec): boolean {
  if (
    a.name !== b.name ||
    a.priority !== b.priority ||
    a.pool !== b.pool ||
    a.maxAttempts !== b.maxAttempts ||
    a.leaseMs !== b.leaseMs ||
    a.deps.length !== b.deps.length ||
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
