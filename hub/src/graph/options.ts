import { DagworkError } from '../errors.js';

/** Limits and policies of the graph core. */
export interface GraphOptions {
  /** Longest task name, in UTF-8 bytes. Default 512. */
  maxNameBytes: number;
  /** Largest payload, in bytes. Default 1 MiB. */
  maxPayloadBytes: number;
  /** Largest result, in bytes. Default 1 MiB. */
  maxResultBytes: number;
  /** Most dependencies of one task. Default 10,000. */
  maxDeps: number;
  /** Most tasks in one create, complete, heartbeat, release or retry request. Default 100,000. */
  maxBatch: number;
  /** Most tasks one steal may take; a steal asking for more gets TOO_LARGE. Default 10,000. */
  maxSteal: number;
  /** Most tasks in the graph; a create past it gets TOO_LARGE. Default 100,000,000. */
  maxTasks: number;
  /** Attempts of a task that does not say. Default 3. */
  defaultAttempts: number;
  /** Most attempts a task may ask for. Default 1,000. */
  maxAttempts: number;
  /** Lease length of a task that does not say, in ms. Default 60,000. */
  defaultLeaseMs: number;
  /** Longest lease a task may ask for, in ms. Default 7 days. */
  maxLeaseMs: number;
  /** Backoff after the first failure, in ms; doubles with each further failure. Default 1,000. */
  backoffBaseMs: number;
  /** Longest backoff, in ms. Default 60,000. */
  backoffMaxMs: number;
  /** State-log entries kept per task: the first, and the latest ones. Default 64. */
  maxLogEntries: number;
}

export function defaultGraphOptions(): GraphOptions {
  return {
    maxNameBytes: 512,
    maxPayloadBytes: 1 << 20,
    maxResultBytes: 1 << 20,
    maxDeps: 10_000,
    maxBatch: 100_000,
    maxSteal: 10_000,
    maxTasks: 100_000_000,
    defaultAttempts: 3,
    maxAttempts: 1_000,
    defaultLeaseMs: 60_000,
    maxLeaseMs: 7 * 24 * 3600 * 1000,
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
