/** worker-kit and dworker against the real dhub. */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, DagworkError, HubUnreachableError, PermanentError, replyTimeout, runWorker, type TaskRecord } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub, tempDir, type RunningHub } from './helpers.js';
import { pause, spawnDworker, type Dworker } from './support/dworker.js';

afterAll(cleanTempDirs);

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** Polls the hub until `check` holds for the task (bounded: 20 s). */
async function waitFor(client: Client, name: string, check: (t: TaskRecord) => boolean): Promise<TaskRecord> {
  for (let i = 0; i < 400; i++) {
    const { task } = await client.lookup(name);
    if (check(task)) return task;
    await pause(50);
  }
  throw new Error(`task ${name} never got there: ${JSON.stringify((await client.lookup(name)).task.state)}`);
}

/** A handler whose runs all return together once `n` have started (so that their results go in one batch). */
function together(n: number, result: string | ((name: string) => string)): (task: { name: string }) => Promise<string> {
  let started = 0;
  let go: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (go = resolve));
  return async (task) => {
    if (++started === n) go();
    await all;
    return typeof result === 'string' ? result : result(task.name);
  };
}

/** The worker's summary, or a failure naming the wait if it does not stop within `ms`. */
async function within<T>(done: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`did not end within ${ms} ms`)), ms)));
  try {
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}

function startDworker(hub: RunningHub, args: string[]): Dworker {
  return spawnDworker(['--hub', hub.endpoint, ...args]);
}

describe('runWorker', () => {
  it("keeps a handler's result, and exits by itself when the graph is finished", async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    try {
      await client.create([{ name: 'a', payload: Buffer.from('2') }, { name: 'b', deps: ['a'], payload: Buffer.from('3') }, { name: 'c', payload: Buffer.from('4') }]);
      const order: string[] = [];
      const worker = runWorker({
        hub: hub.endpoint,
        worker: 'kit',
        concurrency: 2,
        handleSignals: false,
        handler: (task) => {
          order.push(task.name);
          return String(Number(text(task.payload)) ** 2);
        },
      });
      const summary = await worker.done;
      expect(summary).toMatchObject({ worker: 'kit', reason: 'finished', done: 3, failed: 0, lost: 0, released: 0 });
      expect(order.indexOf('a')).toBeLessThan(order.indexOf('b'));
      expect(text((await client.lookup('b')).task.result)).toBe('9');
      expect((await client.status()).counts.done).toBe(3);
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('retries a thrown error and then fails the task with its message; a permanent error uses one attempt', async () => {
    const hub = await startHub({ args: ['--retry-backoff-ms', '50'] });
    const client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    try {
      await client.create([
        { name: 'flaky', maxAttempts: 2 },
        { name: 'broken', maxAttempts: 5 },
        { name: 'after', deps: ['flaky'] },
      ]);
      let runs = 0;
      const failures: string[] = [];
      const worker = runWorker({
        hub: hub.endpoint,
        handleSignals: false,
        handler: (task) => {
          if (task.name === 'broken') throw new PermanentError('input file is corrupt');
          throw new Error(`boom ${++runs}`);
        },
      });
      worker.on('failed', (task, err, permanent) => failures.push(`${task.name}:${err.message}:${permanent}`));
      const summary = await worker.done;
      expect(summary).toMatchObject({ reason: 'finished', done: 0, failed: 3 });
      expect(failures.sort()).toEqual(['broken:input file is corrupt:true', 'flaky:boom 1:false', 'flaky:boom 2:false'].sort());
      expect((await client.lookup('flaky')).task).toMatchObject({ state: 'failed', attempts: 2, lastError: 'boom 2' });
      expect((await client.lookup('broken')).task).toMatchObject({ state: 'failed', attempts: 1, lastError: 'input file is corrupt' });
      expect((await client.lookup('after')).task.state).toBe('blocked');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('aborts a handler whose lease was lost, and reports nothing for it', async () => {
    const hub = await startHub();
    const admin = new Client({ hub: hub.endpoint, worker: 'admin' });
    try {
      await admin.create([{ name: 'long', leaseMs: 600 }]);
      let calls = 0;
      let abortedWith = '';
      const worker = runWorker({
        hub: hub.endpoint,
        worker: 'loser',
        handleSignals: false,
        handler: (_task, { signal }) => {
          if (++calls > 1) return 'second run';
          return new Promise<string>((_, reject) =>
            signal.addEventListener('abort', () => {
              abortedWith = (signal.reason as Error).message;
              reject(signal.reason as Error);
            }),
          );
        },
      });
      await waitFor(admin, 'long', (t) => t.state === 'running');
      // Someone declares the worker gone: its lease goes back, and the next heartbeat learns it.
      expect(await admin.exit('loser')).toBe(1);
      const summary = await worker.done;
      expect(abortedWith).toMatch(/lease lost: NOT_LEASED/);
      expect(summary).toMatchObject({ reason: 'finished', lost: 1, done: 1, failed: 0 });
      expect(text((await admin.lookup('long')).task.result)).toBe('second run');
    } finally {
      admin.close();
      await hub.stop();
    }
  });

  it('keeps a lease alive with heartbeats while a handler runs longer than the lease', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'c' });
    try {
      await client.create([{ name: 'slow', leaseMs: 300 }]);
      const worker = runWorker({ hub: hub.endpoint, handleSignals: false, handler: () => pause(1200).then(() => 'made it') });
      const summary = await worker.done;
      expect(summary).toMatchObject({ done: 1, lost: 0 });
      expect((await client.lookup('slow')).task).toMatchObject({ attempts: 1, result: Buffer.from('made it') });
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('stops at --max-tasks, and at the idle timeout when told to wait for new work', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'c' });
    try {
      await client.create(Array.from({ length: 5 }, (_, i) => ({ name: `t${i}` })));
      const capped = await runWorker({ hub: hub.endpoint, maxTasks: 2, handleSignals: false, handler: () => 'ok' }).done;
      expect(capped).toMatchObject({ reason: 'max-tasks', done: 2 });
      const rest = await runWorker({ hub: hub.endpoint, handleSignals: false, handler: () => 'ok' }).done;
      expect(rest).toMatchObject({ reason: 'finished', done: 3 });
      const idle = await runWorker({ hub: hub.endpoint, exitWhenFinished: false, idleTimeoutMs: 300, handleSignals: false, handler: () => 'ok' }).done;
      expect(idle).toMatchObject({ reason: 'idle', done: 0 });
      const timed = runWorker({ hub: hub.endpoint, exitWhenFinished: false, maxTimeMs: 300, handleSignals: false, handler: () => 'ok' });
      expect(await timed.done).toMatchObject({ reason: 'max-time' });
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it("splits a batch of completions that would be over the hub's message limit, so that every result arrives", async () => {
    // Scaled down from dworker -c 140 with 1 MB outputs against 64 MiB: 8 results of 120 kB at once
    // against a hub whose socket drops anything over 150 kB + 64 kB without a reply.
    const hub = await startHub({ args: ['--max-message-bytes', '150000'] });
    const client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    try {
      await client.create(Array.from({ length: 8 }, (_, i) => ({ name: `out${i}` })));
      const worker = runWorker({ hub: hub.endpoint, concurrency: 8, handleSignals: false, client: { timeoutMs: 1_000, retries: 1 }, handler: together(8, 'o'.repeat(120_000)) });
      const summary = await within(worker.done, 20_000);
      expect(summary).toMatchObject({ reason: 'finished', done: 8, failed: 0, lost: 0 });
      expect((await client.lookup('out5')).task.result.length).toBe(120_000);
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it("fails only the task whose result is over the hub's limit, and completes the others of its batch", async () => {
    const hub = await startHub({ args: ['--max-result-bytes', '1000'] });
    const client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    try {
      await client.create([{ name: 'huge', maxAttempts: 1 }, { name: 'r1' }, { name: 'r2' }, { name: 'r3' }]);
      const results: Record<string, string> = { huge: 'h'.repeat(2000) };
      const worker = runWorker({ hub: hub.endpoint, concurrency: 4, handleSignals: false, handler: together(4, (name) => results[name] ?? name) });
      const summary = await within(worker.done, 20_000);
      expect(summary).toMatchObject({ reason: 'finished', done: 3, failed: 1 });
      expect((await client.lookup('huge')).task).toMatchObject({ state: 'failed', lastError: "result of 2000 bytes is over the hub's limit of 1000" });
      expect(text((await client.lookup('r2')).task.result)).toBe('r2');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('tells the caller clearly when the hub is unreachable, and that it may require CURVE', async () => {
    const client = new Client({ hub: 'tcp://127.0.0.1:9', timeoutMs: 200, retries: 1 });
    const err = await client.status().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubUnreachableError);
    expect((err as Error).message).toBe(
      "no reply from the hub at tcp://127.0.0.1:9 within 200 ms, 2 times: is dhub running there? (A hub that uses CURVE never answers a client without CURVE keys: its handshake fails silently.)",
    );
    client.close();
  });
});

describe('Client and the size of requests', () => {
  it("refuses locally, with TOO_LARGE naming the size and the limit, a request over its maxMessageBytes", async () => {
    // No hub at all: a request that is sent would end in HubUnreachableError instead.
    const client = new Client({ hub: 'tcp://127.0.0.1:9', timeoutMs: 200, retries: 0, maxMessageBytes: 10_000 });
    const err = await client.create([{ name: 'big', payload: new Uint8Array(20_000) }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DagworkError);
    expect(err).toMatchObject({ code: 'TOO_LARGE' });
    expect((err as Error).message).toMatch(/^create request of 200\d\d bytes is over the hub's limit of 10000 bytes per message/);
    client.close();
  });

  it('gives a large request more time for its reply, so that a slow but successful create is not a failure', async () => {
    const hub = await startHub();
    // 40 MiB of payloads take the hub far longer than 50 ms to read, check and log.
    const client = new Client({ hub: hub.endpoint, worker: 'big', timeoutMs: 50, retries: 0 });
    try {
      const tasks = Array.from({ length: 40 }, (_, i) => ({ name: `big${i}`, payload: new Uint8Array(1 << 20).fill(65) }));
      expect(await client.create(tasks)).toMatchObject({ created: 40, unchanged: 0 });
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('allows timeoutMs, the wait and timeoutPerMiBMs for each MiB of the request', () => {
    expect(replyTimeout({ timeoutMs: 5_000, timeoutPerMiBMs: 1_000 }, 32 << 20, 2_000)).toBe(39_000);
  });
});

describe('dworker', () => {
  it('runs a DAG of real commands: results kept, a failure and a timeout reported, scratch dirs removed', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'c' });
    const scratch = tempDir();
    try {
      const lines = [
        { name: 'a', cmd: 'echo "$TASK_NAME $TASK_ATTEMPT $DAGWORK_WORKER"; pwd; touch here' },
        { name: 'b', deps: ['a'], cmd: 'echo $((1 + 2 + 3 + 4 + 5))' },
        { name: 'bad', deps: ['a'], cmd: 'echo partial; echo "no such input" >&2; exit 2', attempts: 1 },
        { name: 'slow', deps: ['a'], cmd: 'sleep 30 & sleep 30', attempts: 1 },
        { name: 'c', deps: ['b'], cmd: 'head -c 3000 /dev/zero | tr "\\0" x' },
        { name: 'never', deps: ['bad'] },
      ];
      await dquery(hub, ['addfile', '-'], { input: lines.map((l) => JSON.stringify(l)).join('\n') });
      const run = startDworker(hub, ['--worker', 'dw', '-c', '3', '--task-timeout', '700ms', '--scratch', scratch, '--max-output-bytes', '1000']);
      const { code, stdout, stderr } = await run.exit;
      expect(code).toBe(3); // finished, with failed and blocked tasks
      expect(stdout).toMatch(/^dworker dw: finished: 3 done, 2 failed, 0 lost, 0 released in [\d.]+ s \(busy [\d.]+ s\)\n$/);
      expect(stderr).toMatch(/fail {2}bad: exit 2: no such input\n/);
      expect(stderr).toMatch(/dworker: the pools finished with 2 failed, 1 blocked and 0 cancelled tasks \(dquery list --state failed --state blocked --state cancelled names them\)\n$/);

      const a = text((await client.lookup('a')).task.result).split('\n');
      expect(a[0]).toBe('a 1 dw');
      expect(a[1]).toMatch(new RegExp(`^${scratch}/dagwork-a-`));
      expect(existsSync(a[1] as string)).toBe(false); // removed afterwards
      expect(text((await client.lookup('b')).task.result).trim()).toBe('15');
      const c = text((await client.lookup('c')).task.result);
      expect(c).toBe(`${'x'.repeat(1000)}\n[dagwork: output cut: first 1000 of 3000 bytes kept]\n`);
      expect((await client.lookup('bad')).task).toMatchObject({ state: 'failed', lastError: 'exit 2: no such input\n--- stderr (14 bytes) ---\nno such input\n--- stdout (8 bytes) ---\npartial' });
      expect((await client.lookup('slow')).task).toMatchObject({ state: 'failed', lastError: 'timed out after 700 ms' });
      expect((await client.lookup('never')).task.state).toBe('blocked');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('a worker killed with SIGKILL mid-task: another runs the task after the lease expires', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'c' });
    try {
      // The first run takes long (its orphaned sleep ends by itself); the second is quick.
      await client.create([{ name: 'job', payload: Buffer.from('[ "$TASK_ATTEMPT" = 1 ] && sleep 5; echo "ran by $DAGWORK_WORKER"'), leaseMs: 1000 }]);
      const first = startDworker(hub, ['--worker', 'doomed']);
      await waitFor(client, 'job', (t) => t.state === 'running' && t.worker === 'doomed');
      first.proc.kill('SIGKILL');
      await first.exit;
      const second = startDworker(hub, ['--worker', 'rescuer']);
      expect((await second.exit).code).toBe(0);
      const job = (await client.lookup('job')).task;
      expect(job).toMatchObject({ state: 'done', attempts: 2, worker: 'rescuer' });
      expect(text(job.result)).toBe('ran by rescuer\n');
      expect(job.log.map((c) => c.note)).toContain('lease expired (worker doomed, attempt 1)');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('on SIGTERM releases what it runs, so that another worker takes it at once', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'other' });
    try {
      await client.create([{ name: 'long', payload: Buffer.from('sleep 30'), leaseMs: 600_000 }]);
      const run = startDworker(hub, ['--worker', 'leaving', '--grace', '200ms']);
      await waitFor(client, 'long', (t) => t.state === 'running');
      run.proc.kill('SIGTERM');
      const { code, stdout } = await run.exit;
      expect(code).toBe(0);
      expect(stdout).toMatch(/^dworker leaving: signal: 0 done, 0 failed, 0 lost, 1 released/);
      const { tasks } = await client.steal();
      expect(tasks.map((t) => [t.name, t.attempt])).toEqual([['long', 1]]);
      const status = await client.status();
      expect(status.workers.find((w) => w.worker === 'leaving')).toMatchObject({ running: 0 });
    } finally {
      client.close();
      await hub.stop();
    }
  });
});
