import { describe, expect, it } from 'vitest';
import type { TaskRecord } from '../proto/src/types.js';
import { decodeReply, decodeRequest, encodeReply, encodeRequest } from '../proto/src/codec.js';
import { decodeRecord, encodeRecord } from '../hub/src/store/record.js';

const full: TaskRecord = {
  spec: {
    name: 'n',
    deps: ['a', 'b'],
    payload: Buffer.from('echo'),
    priority: -3,
    pool: 'gpu',
    maxAttempts: 5,
    leaseMs: 90_000,
    params: [{ name: 'alpha', value: '0.5' }, { name: 'seed', value: '' }],
    inputs: [{ name: 'bin/sim', sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', size: 2 ** 33, executable: true }],
    outputs: ['out.txt'],
    paramFiles: [{ name: 'seed.txt', param: 'seed' }],
    barrier: false,
    afterEnded: true,
  },
  state: 'running',
  attempts: 2,
  worker: 'w',
  holder: 'w',
  leaseDeadline: 1_795_000_000_123,
  notBefore: 1_795_000_000_456,
  result: Buffer.from('r'),
  lastError: 'boom',
  log: [
    { state: 'waiting', at: 1_795_000_000_000, worker: '', note: 'created' },
    { state: 'running', at: 1_795_000_000_100, worker: 'w', note: 'attempt 2' },
  ],
  seq: 2 ** 40,
  outputs: [{ name: 'out.txt', sha256: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', size: 12, executable: false }],
};

describe('store record codec', () => {
  it('round-trips a stored record, full or with every field at its default', () => {
    expect(decodeRecord(encodeRecord(full))).toEqual(full);
    const bare: TaskRecord = {
      ...full,
      spec: { ...full.spec, deps: [], payload: new Uint8Array(0), priority: 0, params: [], inputs: [], outputs: [], paramFiles: [], afterEnded: false },
      state: 'waiting',
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
    };
    expect(decodeRecord(encodeRecord(bare))).toEqual(bare);
    expect(encodeRecord(bare).length).toBeLessThan(40);
  });
});

describe('wire codec', () => {
  it('round-trips a list request and its reply, states included', () => {
    const request = {
      op: 'list' as const,
      states: ['failed' as const, 'cancelled' as const],
      pool: 'gpu',
      prefix: 'run-',
      limit: 50,
      after: 2 ** 40,
      withParams: true,
      withResults: false,
    };
    expect(decodeRequest(encodeRequest(request))).toEqual(request);
    const reply = {
      op: 'list' as const,
      tasks: [
        {
          name: 'run-1',
          state: 'failed' as const,
          pool: 'gpu',
          attempts: 3,
          worker: 'w',
          lastError: 'boom',
          seq: 7,
          resultBytes: 12,
          changedAt: 1_795_000_000_123,
          createdAt: 1_795_000_000_000,
          startedAt: 1_795_000_000_100,
          params: full.spec.params,
          result: Buffer.from('out'),
          outputs: full.outputs,
          barrier: true,
          failedDeps: 2,
        },
      ],
      next: 7,
    };
    expect(decodeReply(encodeReply(reply))).toEqual(reply);
  });

  it('round-trips requests and replies, enums and 64-bit times included', () => {
    const steal = { op: 'steal' as const, worker: 'w', n: 3, pools: ['a'], waitMs: 10, waitWhenFinished: true };
    expect(decodeRequest(encodeRequest(steal))).toEqual(steal);
    const reply = { op: 'complete' as const, results: [{ name: 'x', outcome: 'LEASED_TO_OTHER' as const, message: 'm' }], next: { tasks: [], finished: true, retryAfterMs: 250 } };
    expect(decodeReply(encodeReply(reply))).toEqual(reply);
    expect(decodeReply(encodeReply({ op: 'error', error: { code: 'FORBIDDEN', message: 'no', task: 't' } }))).toEqual({
      op: 'error',
      error: { code: 'FORBIDDEN', message: 'no', task: 't' },
    });
    expect(decodeReply(encodeReply({ op: 'lookup', task: full, dependents: ['d'], missingDeps: ['m'], failedDeps: ['f'] }))).toEqual({ op: 'lookup', task: full, dependents: ['d'], missingDeps: ['m'], failedDeps: ['f'] });
  });

  it('round-trips rerun and replace, their outcomes included', () => {
    const requests = [
      { op: 'rerun' as const, names: ['a', 'b'], descendants: true, prefix: 'p/', pool: 'gpu' },
      { op: 'replace' as const, tasks: [full.spec], rerun: true, createMissing: true },
    ];
    for (const request of requests) expect(decodeRequest(encodeRequest(request))).toEqual(request);
    const replies = [
      { op: 'rerun' as const, rerun: 7, results: [{ name: 'a', outcome: 'NOT_DONE' as const, message: 'task is failed' }] },
      { op: 'replace' as const, replaced: 1, unchanged: 2, created: 3, results: [{ name: 'a', outcome: 'TASK_RUNNING' as const, message: 'm' }] },
    ];
    for (const reply of replies) expect(decodeReply(encodeReply(reply))).toEqual(reply);
  });

  it('round-trips the file operations, a sweep task and a completion with outputs', () => {
    const create = { op: 'create' as const, tasks: [full.spec] };
    expect(decodeRequest(encodeRequest(create))).toEqual(create);
    const complete = { op: 'complete' as const, worker: 'w', tasks: [{ name: 'n', result: Buffer.from('r'), outputs: full.outputs }], next: undefined };
    expect(decodeRequest(encodeRequest(complete))).toEqual(complete);
    const requests = [
      { op: 'fileStat' as const, sha256: ['a'.repeat(64), 'b'.repeat(64)] },
      { op: 'filePut' as const, sha256: 'a'.repeat(64), size: 2 ** 33, offset: 2 ** 32, data: Buffer.from('chunk') },
      { op: 'fileGet' as const, sha256: 'a'.repeat(64), offset: 2 ** 32, length: 1 << 20 },
      { op: 'gc' as const, dryRun: true },
    ];
    for (const request of requests) expect(decodeRequest(encodeRequest(request))).toEqual(request);
    const replies = [
      { op: 'fileStat' as const, files: [{ sha256: 'a'.repeat(64), held: false, size: 0, received: 2 ** 32 }] },
      { op: 'filePut' as const, received: 2 ** 33, held: true },
      { op: 'fileGet' as const, data: Buffer.from('chunk'), size: 2 ** 33 },
      { op: 'gc' as const, removed: 2, removedBytes: 2 ** 35, kept: 1, keptBytes: 10 },
      { op: 'steal' as const, tasks: [{ name: 'n', payload: Buffer.from('x'), attempt: 1, leaseDeadline: 5, leaseMs: 5, pool: 'p', priority: 0, params: full.spec.params, inputs: full.spec.inputs, outputs: full.spec.outputs, paramFiles: full.spec.paramFiles }], finished: false, retryAfterMs: 0 },
    ];
    for (const reply of replies) expect(decodeReply(encodeReply(reply))).toEqual(reply);
  });
});
