import { DagworkError } from '../errors.js';
import type { GraphOptions } from './options.js';
import type { TaskSpec, TaskSpecInput } from './types.js';

const EMPTY = new Uint8Array(0);
// C0 and C1 control characters and DEL: they break line-based files and terminals.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Throws INVALID_NAME or TOO_LARGE unless `name` is a usable task name. */
export function checkName(name: string, options: GraphOptions, what = 'task name'): void {
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

/** Throws TOO_LARGE when a request names more than `options.maxBatch` tasks. */
export function checkBatch(count: number, options: GraphOptions, what: string): void {
  if (count > options.maxBatch) {
    throw new DagworkError('TOO_LARGE', `${what} names ${count} tasks; the limit is ${options.maxBatch} per request`);
  }
}

/** The spec with defaults filled in and duplicate deps dropped; throws on anything out of bounds. */
export function normalizeSpec(input: TaskSpecInput, options: GraphOptions): TaskSpec {
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
  if (!Number.isInteger(priority) || Math.abs(priority) > 2 ** 31) {
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
  const pool = input.pool || 'default';
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
