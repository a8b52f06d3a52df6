/**
 * The contract's rules (proto/dagwork.proto, README "How tasks move"), each against the real dhub.
 * One hub for the file; each test uses task names of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, startHub, type RunningHub } from './helpers.js';

let hub: RunningHub;
const clients: Client[] = [];
const client = (worker: string): Client => {
  const c = new Client({ hub: hub.endpoint, worker });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  hub = await startHub({ args: ['--max-result-bytes', '100'] });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await hub.stop();
  cleanTempDirs();
});

const stateOf = async (c: Client, name: string): Promise<string> => (await c.lookup(name)).task.state;

describe('an operator’s decision stands', () => {
  it('refuses the late completion of a cancelled running task, and keeps its descendants blocked', async () => {
    const w = client('c1-worker');
    await w.create([{ name: 'c1', pool: 'c1' }, { name: 'c1-child', deps: ['c1'], pool: 'c1' }]);
    await w.steal({ pools: ['c1'] });
    await w.cancel(['c1'], 'wrong input');
    expect((await w.heartbeat(['c1'])).map((r) => r.outcome)).toEqual(['TASK_CANCELLED']);
    expect((await w.complete([{ name: 'c1' }])).results.map((r) => r.outcome)).toEqual(['TASK_CANCELLED']);
    expect(await stateOf(w, 'c1')).toBe('cancelled');
    expect(await stateOf(w, 'c1-child')).toBe('blocked');
  });

  it('refuses a completion after the worker’s own permanent fail', async () => {
    const w = client('c2-worker');
    await w.create([{ name: 'c2', pool: 'c2' }]);
    await w.steal({ pools: ['c2'] });
    await w.fail('c2', 'bad input', { permanent: true });
    expect((await w.complete([{ name: 'c2' }])).results.map((r) => r.outcome)).toEqual(['TASK_FAILED']);
    expect(await stateOf(w, 'c2')).toBe('failed');
  });

  it('retries every failed task but not the cancelled ones, and a cancelled one by name', async () => {
    const w = client('c3-worker');
    await w.create([{ name: 'c3-cancelled', pool: 'c3' }]);
    await w.cancel(['c3-cancelled']);
    await w.retry('all-failed');
    expect(await stateOf(w, 'c3-cancelled')).toBe('cancelled');
    expect((await w.retry(['c3-cancelled'])).retried).toBe(1);
    expect(await stateOf(w, 'c3-cancelled')).toBe('ready');
  });
});

describe('one rule for late completions', () => {
  it('refuses a completion after the worker released the task', async () => {
    const w = client('l1-worker');
    await w.create([{ name: 'l1', pool: 'l1' }]);
    await w.steal({ pools: ['l1'] });
    await w.release(['l1']);
    expect((await w.complete([{ name: 'l1' }])).results.map((r) => r.outcome)).toEqual(['NOT_LEASED']);
  });

  it('refuses a completion after the worker exited', async () => {
    const w = client('l2-worker');
    await w.create([{ name: 'l2', pool: 'l2' }]);
    await w.steal({ pools: ['l2'] });
    await w.exit();
    expect((await w.complete([{ name: 'l2' }])).results.map((r) => r.outcome)).toEqual(['NOT_LEASED']);
  });

  it('accepts the completion of an expired lease nobody took, after telling the heartbeat LEASE_EXPIRED', async () => {
    const w = client('l3-worker');
    await w.create([{ name: 'l3', pool: 'l3', leaseMs: 100 }]);
    await w.steal({ pools: ['l3'] });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await w.heartbeat(['l3'])).map((r) => r.outcome)).toEqual(['LEASE_EXPIRED']);
    expect((await w.complete([{ name: 'l3' }])).results.map((r) => r.outcome)).toEqual(['ACCEPTED']);
  });
});

describe('per-task answers', () => {
  it('refuses an oversized result alone and keeps the rest of the batch', async () => {
    const w = client('p1-worker');
    await w.create([{ name: 'p1-big', pool: 'p1' }, { name: 'p1-small', pool: 'p1' }]);
    await w.steal({ n: 2, pools: ['p1'] });
    const { results } = await w.complete([
      { name: 'p1-big', result: Buffer.alloc(101) },
      { name: 'p1-small', result: Buffer.from('ok') },
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['RESULT_TOO_LARGE', 'ACCEPTED']);
    expect(await stateOf(w, 'p1-small')).toBe('done');
    expect(await stateOf(w, 'p1-big')).toBe('running');
  });
});

describe('definitions', () => {
  it('reads the pool "" as "default", in a spec and in a steal', async () => {
    const w = client('d1-worker');
    await w.create([{ name: 'd1', pool: '', priority: 1_000_000 }]);
    expect((await w.lookup('d1')).task.spec.pool).toBe('default');
    expect((await w.steal({ pools: [''] })).tasks.map((t) => t.name)).toEqual(['d1']);
  });

  it('counts the same task twice in one batch as created once, then unchanged, and an empty batch as nothing', async () => {
    const w = client('d2-worker');
    expect(await w.create([{ name: 'd2', pool: 'd2' }, { name: 'd2', pool: 'd2' }])).toMatchObject({ created: 1, unchanged: 1 });
    expect(await w.create([])).toMatchObject({ created: 0, unchanged: 0 });
  });

  it('treats defaults given or left out, and deps reordered or repeated, as the same definition', async () => {
    const w = client('d3-worker');
    await w.create([{ name: 'd3', deps: ['x', 'y'], pool: 'd3' }]);
    expect(await w.create([{ name: 'd3', deps: ['y', 'x', 'y'], pool: 'd3', maxAttempts: 3, leaseMs: 60_000, priority: 0 }])).toMatchObject({ created: 0, unchanged: 1 });
    expect((await w.lookup('d3')).task.spec).toMatchObject({ deps: ['x', 'y'], maxAttempts: 3, leaseMs: 60_000 });
  });

  it('says its limits in status', async () => {
    const w = client('d4-worker');
    expect((await w.status()).limits).toMatchObject({ maxMessageBytes: 64 * 2 ** 20, maxBatch: 100_000, maxSteal: 10_000, maxResultBytes: 100, maxNameBytes: 512 });
  });
});
