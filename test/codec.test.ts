import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import type { LeasedTask, StealResult, TaskRecord, TaskSpecInput } from '../proto/src/types.js';
import { protoPath } from '../proto/src/proto-path.js';
import { decodeCreate, decodeReply, decodeRequest, decodeRequestGeneral, encodeReply, encodeRequest, encodeRequestGeneral } from '../proto/src/codec.js';
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

describe('create requests, read straight into specs', () => {
  const name = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.constantFrom('a', 'é', '日本', '\u{1f600}', ''));
  const plain = fc.record(
    {
      name,
      deps: fc.array(name, { maxLength: 4 }),
      payload: fc.uint8Array({ maxLength: 8 }),
      priority: fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(-1, -(2 ** 31), 2 ** 31 - 1, 0)),
      pool: name,
      maxAttempts: fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 32 - 1)),
      leaseMs: fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 32 - 1)),
      barrier: fc.boolean(),
      afterEnded: fc.boolean(),
    },
    { requiredKeys: ['name'] },
  );
  const decoded = (data: Uint8Array): unknown => {
    try {
      return decodeRequestGeneral(data);
    } catch (err) {
      return `throws ${(err as Error).message}`;
    }
  };
  const same = (data: Uint8Array): void => {
    let got: unknown;
    try {
      got = decodeRequest(data);
    } catch (err) {
      got = `throws ${(err as Error).message}`;
    }
    expect(got).toEqual(decoded(data));
  };

  it('reads every task of the usual encoding as protobufjs does (and takes them: not handed on)', () => {
    fc.assert(
      fc.property(fc.array(plain, { maxLength: 6 }), (tasks) => {
        // As this codec writes it, and as protobufjs does (which writes a field given at its default).
        for (const encode of [encodeRequest, encodeRequestGeneral]) {
          const data = Buffer.from(encode({ op: 'create', tasks: tasks as TaskSpecInput[] }));
          const fast = decodeCreate(data);
          expect(fast).toBeDefined();
          expect(fast).toEqual(decodeRequestGeneral(data));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('writes a create protobufjs reads as it reads its own, every field of a task included', () => {
    const full = fc.record(
      {
        name,
        deps: fc.array(name, { maxLength: 3 }),
        payload: fc.uint8Array({ maxLength: 300 }),
        priority: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        pool: name,
        maxAttempts: fc.oneof(fc.nat(), fc.constant(2 ** 32 - 1)),
        leaseMs: fc.nat(),
        params: fc.array(fc.record({ name, value: fc.string({ maxLength: 200 }) }), { maxLength: 2 }),
        inputs: fc.array(fc.record({ name, sha256: fc.constantFrom('', 'a'.repeat(64)), size: fc.oneof(fc.nat(), fc.constant(2 ** 40)), executable: fc.boolean() }), { maxLength: 2 }),
        outputs: fc.array(name, { maxLength: 2 }),
        paramFiles: fc.array(fc.record({ name, param: name }), { maxLength: 2 }),
        barrier: fc.boolean(),
        afterEnded: fc.boolean(),
      },
      { requiredKeys: ['name'] },
    );
    fc.assert(
      fc.property(fc.array(full, { maxLength: 4 }), (tasks) => {
        const request = { op: 'create' as const, tasks: tasks as TaskSpecInput[] };
        expect(decodeRequestGeneral(encodeRequest(request))).toEqual(decodeRequestGeneral(encodeRequestGeneral(request)));
      }),
      { numRuns: 500 },
    );
  });

  it('hands anything else to protobufjs: params and files, other requests, a Uint8Array', () => {
    const withParams = Buffer.from(encodeRequest({ op: 'create', tasks: [{ name: 'p', params: [{ name: 'a', value: '1' }] }] }));
    expect(decodeCreate(withParams)).toBeUndefined();
    expect(decodeRequest(withParams)).toEqual(decodeRequestGeneral(withParams));
    const replace = Buffer.from(encodeRequest({ op: 'replace', tasks: [{ name: 'r' }], rerun: false, createMissing: true }));
    expect(decodeCreate(replace)).toBeUndefined();
    const bare = new Uint8Array(encodeRequest({ op: 'create', tasks: [{ name: 'u' }] }));
    expect(decodeCreate(bare)).toBeUndefined();
    expect(decodeRequest(bare)).toEqual(decodeRequestGeneral(bare));
  });

  it('means by any bytes what protobufjs means, or fails as it fails: create frames cut, grown and with bytes changed', () => {
    fc.assert(
      fc.property(
        fc.array(plain, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'cut')), { minLength: 1, maxLength: 3 }),
        (tasks, edits) => {
          const bytes = [...encodeRequest({ op: 'create', tasks: tasks as TaskSpecInput[] })];
          for (const [at, value, how] of edits) {
            const i = at % (bytes.length + 1);
            if (how === 'set' && i < bytes.length) bytes[i] = value;
            else if (how === 'insert') bytes.splice(i, 0, value);
            else bytes.length = Math.max(1, i);
          }
          same(Buffer.from(bytes));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('reads names that are not UTF-8, as protobufjs does, and priority written as 64 bits', () => {
    // Request{create{tasks{name: ff 61, deps: c3, priority: -5 in ten bytes}}}
    const spec = [0x0a, 0x02, 0xff, 0x61, 0x12, 0x01, 0xc3, 0x20, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    const body = [0x0a, spec.length, ...spec];
    const data = Buffer.from([body.length + 2, 0x0a, body.length, ...body]);
    expect(decodeCreate(data)).toMatchObject({ op: 'create', tasks: [{ name: '\ufffda', deps: ['\ufffd'], priority: -5 }] });
    same(data);
  });
});

describe('steal and complete replies, written straight into bytes', () => {
  // protobufjs encoding the same reply from a message object, defaults left out: the reference.
  const ReplyType = protobuf.loadSync(protoPath()).lookupType('dagwork.v1.Reply');
  const unlessDefault = (v: unknown): unknown => (v === 0 || v === '' || v === false || (Array.isArray(v) && v.length === 0) || (v instanceof Uint8Array && v.length === 0) ? undefined : v);
  const stealMessage = (s: StealResult): object => ({
    tasks: s.tasks.map((t) => ({
      name: unlessDefault(t.name),
      payload: unlessDefault(t.payload),
      attempt: unlessDefault(t.attempt),
      leaseDeadlineMs: unlessDefault(t.leaseDeadline),
      leaseMs: unlessDefault(t.leaseMs),
      pool: unlessDefault(t.pool),
      priority: unlessDefault(t.priority),
      params: unlessDefault(t.params.map((p) => ({ name: unlessDefault(p.name), value: unlessDefault(p.value) }))),
      inputs: unlessDefault(t.inputs.map((f) => ({ name: unlessDefault(f.name), sha256: unlessDefault(f.sha256), size: unlessDefault(f.size), executable: unlessDefault(f.executable) }))),
      outputs: unlessDefault(t.outputs),
      paramFiles: unlessDefault(t.paramFiles.map((f) => ({ name: unlessDefault(f.name), param: unlessDefault(f.param) }))),
    })),
    finished: unlessDefault(s.finished),
    retryAfterMs: unlessDefault(s.retryAfterMs),
  });
  const OUTCOMES = ['ACCEPTED', 'NOT_FOUND', 'ALREADY_DONE', 'LEASED_TO_OTHER', 'NOT_LEASED', 'LEASE_EXPIRED', 'MISSING_FILES'] as const;
  const OUTCOME_NUMBERS = ReplyType.root.lookupEnum('dagwork.v1.TaskOutcome').values;

  // Names and values of every kind: empty, ASCII, past the 1-byte lengths, and not ASCII.
  const text = fc.oneof(fc.constant(''), fc.string({ maxLength: 12 }), fc.string({ minLength: 120, maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 70 }));
  const uint32 = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 127 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
  const leased: fc.Arbitrary<LeasedTask> = fc.record({
    name: text,
    payload: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 300 })).map((b) => (b.length === 0 ? new Uint8Array(0) : Buffer.from(b))),
    attempt: uint32,
    leaseDeadline: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    leaseMs: uint32,
    pool: text,
    priority: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    params: fc.array(fc.record({ name: text, value: text }), { maxLength: 3 }),
    inputs: fc.array(fc.record({ name: text, sha256: fc.constantFrom('', 'ab'.repeat(32)), size: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), executable: fc.boolean() }), { maxLength: 2 }),
    outputs: fc.array(text, { maxLength: 3 }),
    paramFiles: fc.array(fc.record({ name: text, param: text }), { maxLength: 2 }),
  });
  const stealResult: fc.Arbitrary<StealResult> = fc.record({ tasks: fc.array(leased, { maxLength: 8 }), finished: fc.boolean(), retryAfterMs: uint32 });
  const taskResult = fc.record({ name: text, outcome: fc.constantFrom(...OUTCOMES), message: text });

  it('gives the bytes protobufjs gives, and reads back the same', () => {
    fc.assert(
      fc.property(stealResult, (s) => {
        const bytes = encodeReply({ op: 'steal', ...s });
        expect(Buffer.from(bytes).equals(Buffer.from(ReplyType.encodeDelimited({ steal: stealMessage(s) }).finish()))).toBe(true);
        expect(decodeReply(bytes)).toEqual({ op: 'steal', ...s });
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.array(taskResult, { maxLength: 8 }), fc.option(stealResult, { nil: undefined }), (results, next) => {
        const bytes = encodeReply({ op: 'complete', results, next });
        const message = {
          results: results.map((r) => ({ name: unlessDefault(r.name), outcome: unlessDefault(OUTCOME_NUMBERS[r.outcome]), message: unlessDefault(r.message) })),
          next: next === undefined ? undefined : stealMessage(next),
        };
        expect(Buffer.from(bytes).equals(Buffer.from(ReplyType.encodeDelimited({ complete: message }).finish()))).toBe(true);
        expect(decodeReply(bytes)).toEqual({ op: 'complete', results, next });
      }),
      { numRuns: 300 },
    );
  });

  it('writes a reply larger than its reused buffer, and the small ones after it', () => {
    const task = (name: string, size: number): LeasedTask => ({
      name, payload: Buffer.alloc(size, 7), attempt: 1, leaseDeadline: 1_795_000_000_000, leaseMs: 60_000, pool: '', priority: 0, params: [], inputs: [], outputs: [], paramFiles: [],
    });
    const big: StealResult = { tasks: [task('a', 3 << 20), task('b', 70_000)], finished: false, retryAfterMs: 0 };
    const back = decodeReply(encodeReply({ op: 'steal', ...big }));
    if (back.op !== 'steal') throw new Error(`read back as ${back.op}`);
    expect(back.tasks.map((t) => [t.name, t.payload.length, t.leaseDeadline])).toEqual([['a', 3 << 20, 1_795_000_000_000], ['b', 70_000, 1_795_000_000_000]]);
    for (const [i, t] of back.tasks.entries()) expect(Buffer.from(t.payload).equals(big.tasks[i]!.payload)).toBe(true);
    const small: StealResult = { tasks: [task('c', 10)], finished: false, retryAfterMs: 0 };
    const reply = encodeReply({ op: 'complete', results: [], next: small });
    expect(reply.length).toBeLessThan(100);
    expect(decodeReply(reply)).toEqual({ op: 'complete', results: [], next: small });
  });
});
