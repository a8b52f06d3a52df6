/**
 * delete (issue 13) against the real dhub, through dquery and the Client.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeReply, decodeRequest, encodeReply, encodeRequest, inspectRequest } from '../proto/src/codec.js';
import { DagworkError } from '../proto/src/errors.js';
import { Client } from '../worker-kit/src/index.js';
import type { DeleteResult } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub, tempDir, type RunningHub } from './helpers.js';

afterAll(() => cleanTempDirs());

async function withHub(fn: (hub: RunningHub, client: Client) => Promise<void>): Promise<void> {
  const hub = await startHub();
  const client = new Client({ hub: hub.endpoint, worker: 'w' });
  try {
    await fn(hub, client);
  } finally {
    client.close();
    await hub.stop();
  }
}

async function names(client: Client): Promise<string[]> {
  return (await client.list({ limit: 1000 })).tasks.map((t) => t.name).sort();
}

describe('the delete operation on the wire', () => {
  it('round-trips its request and reply, HAS_DEPENDENTS included', () => {
    const request = { op: 'delete' as const, names: ['a', 'b'], descendants: true };
    expect(decodeRequest(encodeRequest(request))).toEqual(request);
    const reply = { op: 'delete' as const, deleted: 3, results: [{ name: 'a', outcome: 'HAS_DEPENDENTS' as const, message: 'task "c" depends on it' }] };
    expect(decodeReply(encodeReply(reply))).toEqual(reply);
  });

  it('counts its names against max_batch before the request is decoded', () => {
    const frame = encodeRequest({ op: 'delete', names: ['a', 'b', 'c'], descendants: false });
    const bounds = { maxBatch: 2, maxRepeated: 1000 } as unknown as Parameters<typeof inspectRequest>[1];
    let thrown: unknown;
    try {
      inspectRequest(frame, bounds, () => undefined);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DagworkError);
    expect(thrown).toMatchObject({ code: 'TOO_LARGE', message: 'delete holds more than 2 names; that is the limit per request' });
    expect(inspectRequest(frame, { ...bounds, maxBatch: 3 }, () => undefined)).toBe('delete');
  });
});

describe('dquery delete', () => {
  it('is refused while another task depends on the named one, naming it, and nothing is deleted', async () => {
    await withHub(async (hub, client) => {
      await client.create([{ name: 'fetch' }, { name: 'render', deps: ['fetch'] }, { name: 'alone' }]);
      const refused = await dquery(hub, ['delete', 'fetch']);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('deleted 0 tasks\n');
      expect(refused.stderr).toBe('dquery: delete fetch: HAS_DEPENDENTS: task "render" depends on it: delete it too, or use descendants\n');
      expect(await names(client)).toEqual(['alone', 'fetch', 'render']);
      // Its dependent named too: both go.
      const both = await dquery(hub, ['delete', 'render', 'fetch', '--json']);
      expect(both.code, both.stderr).toBe(0);
      const r = JSON.parse(both.stdout) as DeleteResult;
      expect(r.deleted).toBe(2);
      expect(r.results.map((x) => x.outcome)).toEqual(['ACCEPTED', 'ACCEPTED']);
      expect(await names(client)).toEqual(['alone']);
      const missing = await dquery(hub, ['delete', 'nope']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/delete nope: NOT_FOUND/);
    });
  });

  it('with --descendants deletes the downstream cone and nothing else', async () => {
    await withHub(async (hub, client) => {
      await client.create([
        { name: 'up' },
        { name: 'root', deps: ['up'] },
        { name: 'side' },
        { name: 'mid1', deps: ['root'] },
        { name: 'mid2', deps: ['root', 'side'] },
        { name: 'leaf', deps: ['mid1', 'mid2'] },
        { name: 'other' },
      ]);
      const r = await dquery(hub, ['delete', 'root', '--descendants']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('deleted 4 tasks\n');
      expect(await names(client)).toEqual(['other', 'side', 'up']);
      expect((await client.lookup('side')).dependents).toEqual([]);
      expect((await client.status()).total).toBe(3);
    });
  });

  it("takes a running task away: its worker gets NOT_FOUND at its next heartbeat, and its completion is refused", async () => {
    await withHub(async (_hub, client) => {
      await client.create([{ name: 'long' }, { name: 'next' }]);
      expect((await client.steal({ n: 1 })).tasks.map((t) => t.name)).toEqual(['long']);
      expect(await client.heartbeat(['long'])).toEqual([]);
      const admin = new Client({ hub: _hub.endpoint, worker: 'admin' });
      try {
        expect(await admin.deleteTasks(['long'])).toEqual({ deleted: 1, results: [{ name: 'long', outcome: 'ACCEPTED', message: '' }] });
      } finally {
        admin.close();
      }
      expect(await client.heartbeat(['long'])).toEqual([{ name: 'long', outcome: 'NOT_FOUND', message: 'no task named "long"' }]);
      expect((await client.complete([{ name: 'long', result: Buffer.from('late') }])).results).toEqual([{ name: 'long', outcome: 'NOT_FOUND', message: 'no task named "long"' }]);
      expect((await client.status()).counts).toMatchObject({ running: 0, ready: 1 });
    });
  });

  it('stays deleted after the hub is killed (kill -9) and started again', async () => {
    const db = join(tempDir(), 'db');
    let hub = await startHub({ db });
    let client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'a' }, { name: 'b', deps: ['a'] }, { name: 'keep' }]);
      expect((await client.steal({ n: 1 })).tasks.map((t) => t.name)).toEqual(['a']);
      await client.complete([{ name: 'a', result: Buffer.from('ra') }]);
      const r = await dquery(hub, ['delete', 'a', '--descendants', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as DeleteResult).deleted).toBe(2);
      client.close();
      expect(await hub.stop('SIGKILL')).toBe(null);
      hub = await startHub({ db });
      client = new Client({ hub: hub.endpoint, worker: 'w2' });
      expect(await names(client)).toEqual(['keep']);
      const gone = await dquery(hub, ['lookup', 'a']);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/UNKNOWN_TASK/);
      expect((await client.status()).total).toBe(1);
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('counts names against max_batch', async () => {
    const hub = await startHub({ args: ['--max-batch', '2'] });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'a' }]);
      await expect(client.deleteTasks(['a', 'b', 'c'])).rejects.toMatchObject({ code: 'TOO_LARGE', message: 'delete holds more than 2 names; that is the limit per request' });
      expect(await names(client)).toEqual(['a']);
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('has --help with an example', async () => {
    await withHub(async (hub) => {
      const help = await dquery(hub, ['delete', '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--descendants/);
      expect(help.stdout).toMatch(/dquery delete fetch-7 --descendants/);
    });
  });
});
