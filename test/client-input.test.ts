/**
 * The Client and what plain JavaScript hands it: every input is checked before it is encoded, so
 * nothing is silently corrupted (a string payload read as base64, a string of deps spread into
 * characters, an unknown key dropped, a number wrapped modulo 2^32). And a wrong or dead address
 * is said at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, DagworkError, HubUnreachableError } from '../worker-kit/src/index.js';
import { cleanTempDirs, freePort, startHub, type RunningHub } from './helpers.js';

let hub: RunningHub;
let client: Client;
beforeAll(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'input-test' });
});
afterAll(async () => {
  client.close();
  await hub.stop();
  cleanTempDirs();
});

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
/** What a call rejected with (fails the test if it resolved). */
async function refusal(call: Promise<unknown>): Promise<Error> {
  try {
    await call;
  } catch (err) {
    return err as Error;
  }
  throw new Error('the call was not refused');
}
/** Lets a plain-JavaScript caller's input through the types, as it would come at run time. */
const untyped = <T>(v: unknown): T => v as T;

describe('Client.create and what it is given', () => {
  it('refuses a name, dependency, pool or param with a lone surrogate, which UTF-8 cannot carry, and sends nothing', async () => {
    const lone = 'lone-\ud800';
    for (const task of [{ name: lone }, { name: 'ok-1', deps: [lone] }, { name: 'ok-2', pool: lone }, { name: 'ok-3', params: { x: lone } }]) {
      const err = await refusal(client.create([task]));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.message).toMatch(/"lone-\\ud800" holds a lone surrogate \(half of a UTF-16 pair\): it is not Unicode text, and cannot be sent as UTF-8$/);
    }
    expect((await refusal(client.lookup(lone))).message).toMatch(/^lookup: name "lone-\\ud800" holds a lone surrogate/);
    expect((await client.list({ prefix: 'ok-' })).tasks).toEqual([]);
    // A pair is text: sent, and found again under the same name.
    await client.create([{ name: 'pair-\ud83d\ude00' }]);
    expect((await client.lookup('pair-\u{1f600}')).task.spec.name).toBe('pair-\u{1f600}');
  });

  it('sends a string payload as UTF-8 text', async () => {
    await client.create([{ name: 'utf8', payload: 'echo héllo' }]);
    expect(text((await client.lookup('utf8')).task.spec.payload)).toBe('echo héllo');
  });

  it('refuses deps given as a string with a TypeError naming the task and the field, creating nothing', async () => {
    const err = await refusal(client.create(untyped([{ name: 'ok' }, { name: 'spread', deps: 'abc' }])));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe('task "spread": deps must be an array of names, not the string "abc" (write ["abc"])');
    await expect(client.lookup('ok')).rejects.toMatchObject({ code: 'UNKNOWN_TASK' });
  });

  it('refuses an unknown field (cmd) with a TypeError saying where the command goes', async () => {
    const err = await refusal(client.create(untyped([{ name: 'typo', cmd: 'echo hi' }])));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/^task "typo": unknown field "cmd" \(a command goes in payload\); the fields are name, deps, payload/);
  });

  it('refuses a priority outside int32 with INVALID_ARGUMENT rather than wrapping it', async () => {
    const err = await refusal(client.create([{ name: 'big', priority: 2 ** 31 }]));
    expect(err).toBeInstanceOf(DagworkError);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', task: 'big', message: 'task "big": priority is 2147483648: the wire carries it as int32, an integer from -2147483648 to 2147483647' });
  });

  it('refuses maxAttempts over uint32 (which would arrive as 1) rather than wrapping it', async () => {
    const err = await refusal(client.create([{ name: 'wraps', maxAttempts: 2 ** 32 + 1 }]));
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', task: 'wraps' });
    await expect(client.lookup('wraps')).rejects.toMatchObject({ code: 'UNKNOWN_TASK' });
  });

  it('refuses a negative or fractional leaseMs', async () => {
    expect(await refusal(client.create([{ name: 'neg', leaseMs: -1 }]))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await refusal(client.create([{ name: 'frac', leaseMs: 1.5 }]))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses a payload that is neither text nor bytes', async () => {
    const err = await refusal(client.create(untyped([{ name: 'obj', payload: { cmd: 'x' } }])));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe('task "obj": payload must be a string (sent as UTF-8) or a Uint8Array, not object');
  });

  it('refuses a task list that is not an array', async () => {
    expect(await refusal(client.create(untyped({ name: 'lone' })))).toBeInstanceOf(TypeError);
  });
});

describe('Client and the other operations', () => {
  it('keeps a string result of complete as UTF-8 text', async () => {
    await client.create([{ name: 'result-text', pool: 'results' }]);
    const { tasks } = await client.steal({ pools: ['results'] });
    expect(tasks.map((t) => t.name)).toEqual(['result-text']);
    await client.complete([{ name: 'result-text', result: 'done ✓' }]);
    expect(text((await client.lookup('result-text')).task.result)).toBe('done ✓');
  });

  it('refuses steal pools given as a string', async () => {
    const err = await refusal(client.steal(untyped({ pools: 'gpu' })));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe('steal options: pools must be an array of names, not the string "gpu" (write ["gpu"])');
  });

  it('refuses an unknown steal option', async () => {
    expect((await refusal(client.steal(untyped({ wait: 1000 })))).message).toMatch(/^steal options: unknown field "wait" \(write waitMs\)/);
  });

  it('refuses a steal of n over uint32', async () => {
    expect(await refusal(client.steal({ n: 2 ** 32 }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses names given as a string to heartbeat, release, retry and cancel', async () => {
    for (const call of [client.heartbeat(untyped('ab')), client.release(untyped('ab')), client.retry(untyped('ab')), client.cancel(untyped('ab'))]) {
      expect(await refusal(call)).toBeInstanceOf(TypeError);
    }
  });

  it('refuses a completion with an unknown field', async () => {
    const err = await refusal(client.complete(untyped([{ name: 'x', output: 'y' }])));
    expect(err.message).toMatch(/^completion of "x": unknown field "output" \(output files go in outputs\); the fields are name, result, outputs$/);
  });
});

describe('Client and the address of the hub', () => {
  it('refuses an address without tcp:// at once, with the endpoint to write', () => {
    expect(() => new Client({ hub: '127.0.0.1:6125' })).toThrow(new TypeError('hub: "127.0.0.1:6125" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://127.0.0.1:6125'));
  });

  it('refuses a bare host name with the port to add', () => {
    expect(() => new Client({ hub: 'localhost' })).toThrow(/write tcp:\/\/HOST:PORT, e\.g\. tcp:\/\/localhost:6125$/);
  });

  it('says "connection refused" within 3 s when nothing listens at the address, not after the whole timeout', async () => {
    const port = await freePort();
    const lonely = new Client({ hub: `tcp://127.0.0.1:${port}`, timeoutMs: 5_000, retries: 2 });
    const started = Date.now();
    const err = await refusal(lonely.status());
    lonely.close();
    expect(err).toBeInstanceOf(HubUnreachableError);
    expect(err.message).toBe(`connection refused at tcp://127.0.0.1:${port}: is dhub running there?`);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('answers once a hub listens at an address that refused connections before', async () => {
    const port = await freePort();
    const early = new Client({ hub: `tcp://127.0.0.1:${port}` });
    await refusal(early.status());
    const late = await startHub({ bind: `tcp://127.0.0.1:${port}` });
    try {
      expect((await early.status()).total).toBe(0);
    } finally {
      early.close();
      await late.stop();
    }
  });
});
