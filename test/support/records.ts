/** Task records for the store's tests: every field at a plain value, any of them overridden. */
import type { LeasedTask, TaskRecord } from '../../proto/src/types.js';

export function taskRecord(name: string, overrides: Partial<Omit<TaskRecord, 'spec'>> & { payload?: Uint8Array } = {}): TaskRecord {
  const { payload, ...fields } = overrides;
  return {
    spec: {
      name,
      deps: [],
      payload: payload ?? new Uint8Array(0),
      priority: 0,
      pool: 'default',
      maxAttempts: 3,
      leaseMs: 60_000,
      params: [],
      inputs: [],
      outputs: [],
      paramFiles: [],
      barrier: false,
      afterEnded: false,
    },
    state: 'ready',
    attempts: 0,
    worker: '',
    holder: '',
    leaseDeadline: 0,
    notBefore: 0,
    result: new Uint8Array(0),
    lastError: '',
    log: [],
    seq: 1,
    outputs: [],
    ...fields,
  };
}

/** A task as a steal hands it out: every field at a plain value, any of them overridden. */
export function leasedTask(name: string, overrides: Partial<LeasedTask> = {}): LeasedTask {
  return {
    name,
    payload: new Uint8Array(0),
    attempt: 1,
    leaseDeadline: 0,
    leaseMs: 60_000,
    pool: 'default',
    priority: 0,
    params: [],
    inputs: [],
    outputs: [],
    paramFiles: [],
    ...overrides,
  };
}
