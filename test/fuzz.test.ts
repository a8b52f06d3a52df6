/** Garbage on the wire against a running dhub: every frame gets an error reply, nothing changes. */
import fc from 'fast-check';
import { Dealer, Request } from 'zeromq';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeReply, encodeRequest, type Reply } from '../proto/src/codec.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, startHub } from './helpers.js';

afterAll(cleanTempDirs);

/** A varint length prefix, as the framing writes it. */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.from(out);
}

describe('wire fuzzing', () => {
  it('answers random and hostile frames with errors, keeps serving, and leaves the store unchanged', async () => {
    const hub = await startHub({ args: ['--max-message-bytes', '20000000'] });
    const client = new Client({ hub: hub.endpoint, worker: 'fuzz' });
    await client.create([{ name: 'a', payload: Buffer.from('x') }, { name: 'b', deps: ['a'] }]);
    await client.steal();
    // A restart renews every lease to its full length (see Graph.restore): compare the rest.
    const state = async (c: Client, renewed = false): Promise<string> => {
      const a = (await c.lookup('a')).task;
      return JSON.stringify([(await c.status()).counts, renewed ? { ...a, leaseDeadline: 0 } : a, (await c.lookup('b')).task]);
    };
    const before = await state(client);
    const beforeRenewed = await state(client, true);
    const leaseBefore = (await client.lookup('a')).task.leaseDeadline;

    const raw = new Request({ receiveTimeout: 10_000, linger: 0 });
    raw.connect(hub.endpoint);
    const ask = async (frame: Uint8Array): Promise<Reply> => {
      await raw.send(frame);
      const [reply] = await raw.receive();
      return decodeReply(reply as Buffer);
    };
    const codes = new Map<string, number>();
    const expectError = (reply: Reply, what: string): void => {
      expect(reply.op, what).toBe('error');
      if (reply.op === 'error') codes.set(reply.error.code, (codes.get(reply.error.code) ?? 0) + 1);
    };
    try {
      // Random bytes: a valid Request only by a fluke, so these are all refused.
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), async (bytes) => {
          const reply = await ask(bytes);
          // A random frame that happens to decode as a request that changes nothing may be answered.
          const harmless = ['status', 'lookup', 'list', 'poolList', 'graphView'].includes(reply.op) || (reply.op === 'retry' && reply.retried === 0);
          if (!harmless) expectError(reply, Buffer.from(bytes).toString('hex'));
        }),
        { numRuns: 300 },
      );
      // Valid framing around garbage, and the framing's own edge cases.
      const garbage = Buffer.from('this is not a protobuf message at all, not even close');
      const hostile: [string, Buffer][] = [
        ['empty frame', Buffer.alloc(0)],
        ['truncated varint', Buffer.from([0x80, 0x80, 0x80])],
        ['length over the frame', Buffer.concat([varint(1000), Buffer.from([1, 2, 3])])],
        ['length under the frame', Buffer.concat([varint(1), Buffer.from([0x4a, 0x00, 0x00])])],
        ['varint of 2^35', Buffer.concat([varint(2 ** 35), garbage])],
        ['framed garbage', Buffer.concat([varint(garbage.length), garbage])],
        // Field 255 (tag 0xf8 0x0f, a varint): no operation has it.
        ['only an unknown field', Buffer.from([0x03, 0xf8, 0x0f, 0x01])],
      ];
      for (const [what, frame] of hostile) expectError(await ask(frame), what);
      // Valid messages with absurd values.
      const absurd: [string, Uint8Array][] = [
        ['n = 2^31', encodeRequest({ op: 'steal', worker: 'w', n: 2 ** 31, pools: [], waitMs: 0, waitWhenFinished: false })],
        ['a 10 MB name', encodeRequest({ op: 'create', tasks: [{ name: 'x'.repeat(10_000_000) }] })],
        ['a 10 MB worker id', encodeRequest({ op: 'steal', worker: 'w'.repeat(10_000_000), n: 1, pools: [], waitMs: 0, waitWhenFinished: false })],
        ['a 10 MB pool', encodeRequest({ op: 'steal', worker: 'w', n: 1, pools: ['p'.repeat(10_000_000)], waitMs: 0, waitWhenFinished: false })],
        ['attempts 2^31', encodeRequest({ op: 'create', tasks: [{ name: 'z', maxAttempts: 2 ** 31 }] })],
        ['a dependency on itself', encodeRequest({ op: 'create', tasks: [{ name: 'self', deps: ['self'] }] })],
        ['a redefinition', encodeRequest({ op: 'create', tasks: [{ name: 'a', payload: Buffer.from('other') }] })],
        ['complete of 200,000 names', encodeRequest({ op: 'complete', worker: 'w', tasks: Array.from({ length: 200_000 }, (_, i) => ({ name: `n${i}` })), next: undefined })],
        ['an empty worker id', encodeRequest({ op: 'heartbeat', worker: '', names: ['a'] })],
        // The lease holder's own completion, with a next steal out of bounds: refused whole, a stays running.
        ['complete with n = 2^31 next', encodeRequest({ op: 'complete', worker: 'fuzz', tasks: [{ name: 'a' }], next: { worker: '', n: 2 ** 31, pools: [], waitMs: 0, waitWhenFinished: false } })],
        ['lookup of nothing', encodeRequest({ op: 'lookup', name: '' })],
      ];
      for (const [what, frame] of absurd) expectError(await ask(frame), what);

      // Several frames after the envelope, from a DEALER.
      const dealer = new Dealer({ receiveTimeout: 10_000, linger: 0 });
      dealer.connect(hub.endpoint);
      await dealer.send([Buffer.alloc(0), encodeRequest({ op: 'status' }), encodeRequest({ op: 'status' })]);
      const [, frame] = await dealer.receive();
      expectError(decodeReply(frame as Buffer), 'two frames');
      dealer.close();

      expect([...codes.keys()].sort()).toEqual(
        expect.arrayContaining(['CONFLICT', 'CYCLE', 'INVALID_ARGUMENT', 'INVALID_NAME', 'MALFORMED', 'TOO_LARGE', 'UNKNOWN_OPERATION']),
      );
      // Still serving, and nothing changed.
      expect(await state(client)).toBe(before);
    } finally {
      raw.close();
      client.close();
    }
    // Nor in the store: a restarted hub sees exactly the state from before the fuzzing.
    expect(await hub.stop()).toBe(0);
    const again = await startHub({ db: hub.db });
    const check = new Client({ hub: again.endpoint, worker: 'fuzz' });
    try {
      expect(await state(check, true)).toBe(beforeRenewed);
      expect((await check.lookup('a')).task.leaseDeadline).toBeGreaterThan(leaseBefore);
    } finally {
      check.close();
      await again.stop();
    }
  });
});
