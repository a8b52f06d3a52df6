import { DagworkError } from '../../../proto/src/errors.js';
import { defaultLimits, defaultSpecLimits, type SpecLimits } from '../../../proto/src/spec.js';

/** Limits and policies of the graph core: the task-definition limits of the contract, and more. */
export interface GraphOptions extends SpecLimits {
  /** Largest result, in bytes. Default 1 MiB. */
  maxResultBytes: number;
  /** Most tasks in one create, complete, heartbeat, release or retry request. Default 100,000. */
  maxBatch: number;
  /** Most tasks one steal may take; a steal asking for more gets TOO_LARGE. Default 10,000. */
  maxSteal: number;
  /** Payload bytes one steal hands out at most (past it the reply holds fewer tasks; one always goes). Default 16 MiB. */
  maxStealBytes: number;
  /** Most pools one steal may name. Default 1,000. */
  maxPools: number;
  /** Most tasks in the graph; a create past it gets TOO_LARGE. Default 100,000,000. */
  maxTasks: number;
  /** Backoff after the first failure, in ms; doubles with each further failure. Default 1,000. */
  backoffBaseMs: number;
  /** Longest backoff, in ms. Default 60,000. */
  backoffMaxMs: number;
  /** State-log entries kept per task: the first, and the latest ones. Default 64. */
  maxLogEntries: number;
}

export function defaultGraphOptions(): GraphOptions {
  const wire = defaultLimits();
  return {
    ...defaultSpecLimits(),
    maxResultBytes: wire.maxResultBytes,
    maxBatch: wire.maxBatch,
    maxSteal: wire.maxSteal,
    maxStealBytes: 16 << 20,
    maxPools: 1_000,
    maxTasks: 100_000_000,
    backoffBaseMs: 1_000,
    backoffMaxMs: 60_000,
    maxLogEntries: 64,
  };
}

/** Defaults overlaid with `overrides`, checked: every field a non-negative integer, logs ≥ 2. */
export function graphOptions(overrides: Partial<GraphOptions> = {}): GraphOptions {
  const options = { ...defaultGraphOptions(), ...overrides };
  for (const [key, value] of Object.entries(options)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new DagworkError('INVALID_ARGUMENT', `graph option ${key} must be a non-negative integer, got ${value}`);
    }
  }
  if (options.maxLogEntries < 2) throw new DagworkError('INVALID_ARGUMENT', 'graph option maxLogEntries must be at least 2');
  return options;
}

/** Throws TOO_LARGE when a request names more than `options.maxBatch` tasks. */
export function checkBatch(count: number, options: GraphOptions, what: string): void {
  if (count > options.maxBatch) {
    throw new DagworkError('TOO_LARGE', `${what} names ${count} tasks; the limit is ${options.maxBatch} per request`);
  }
}
