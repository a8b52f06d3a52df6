/** addfile's two readings of a file: batches cut to the hub's limits, missing dependencies, refusals and interruptions, with a fake hub. */
import { describe, expect, it } from 'vitest';
import { encodeRequest } from '../proto/src/codec.js';
import { DagworkError } from '../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../proto/src/spec.js';
import type { CreateResult, Limits, TaskSpecInput } from '../proto/src/types.js';
import { addFile, AddFileError, AddProgress, batchLimits, Interrupted, MissingDepsError, type AddFileOptions, type Hub, type LineParser } from '../query/src/addfile.js';
import { splitLines, type LineSource } from '../query/src/lines.js';
import { TaskFileError } from '../query/src/taskfile.js';
import { HubUnreachableError } from '../worker-kit/src/client.js';

const NO_LIMITS: Limits = { maxMessageBytes: 0, maxBatch: 0, maxSteal: 0, maxPayloadBytes: 0, maxResultBytes: 0, maxNameBytes: 0, maxWaitMs: 0, maxFileBytes: 0, maxFilesBytes: 0, maxChunkBytes: 0 };

/** `text` as a file read in chunks of `chunk` bytes (small, so that lines span chunks). */
function source(text: string, chunk = 7): LineSource & { reads: number } {
  const bytes = Buffer.from(text);
  const s = {
    reads: 0,
    lines() {
      s.reads++;
      return splitLines(
        (async function* () {
          for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
        })(),
      );
    },
  };
  return s;
}

interface FakeHub extends Hub {
  sent: TaskSpecInput[][];
  names: Set<string>;
  lookups: string[];
}

/**
 * A hub that keeps names, answers create as dhub does (missing deps: those of new tasks in neither
 * the batch nor the hub, at most `listed` named), takes `accept` creates and then throws `error`.
 */
function fakeHub(options: { limits?: Partial<Limits>; accept?: number; error?: unknown; listed?: number; has?: string[] } = {}): FakeHub {
  const names = new Set(options.has ?? []);
  const sent: TaskSpecInput[][] = [];
  const lookups: string[] = [];
  return {
    sent,
    names,
    lookups,
    status: () => Promise.resolve({ limits: { ...NO_LIMITS, ...options.limits } }),
    create: (tasks): Promise<CreateResult> => {
      sent.push(tasks);
      if (sent.length > (options.accept ?? Infinity)) return Promise.reject(options.error);
      const batch = new Set(tasks.map((t) => t.name));
      const missing = new Set<string>();
      let created = 0;
      for (const t of tasks) {
        if (names.has(t.name)) continue;
        created++;
        for (const d of t.deps ?? []) if (!batch.has(d) && !names.has(d)) missing.add(d);
      }
      for (const t of tasks) names.add(t.name);
      const missingDeps = [...missing].slice(0, options.listed ?? 100);
      return Promise.resolve({ created, unchanged: tasks.length - created, missingDeps, missingDepsTotal: missing.size });
    },
    lookup: (name) => {
      lookups.push(name);
      return names.has(name) ? Promise.resolve({}) : Promise.reject(new DagworkError('UNKNOWN_TASK', `no task named "${name}"`, { task: name }));
    },
  };
}

async function failure<E>(run: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as E;
}

const add = (hub: Hub, text: string, options: Partial<AddFileOptions> = {}): ReturnType<typeof addFile> => addFile(hub, source(text), { batch: 5000, ...options });
const names = (hub: FakeHub): string[][] => hub.sent.map((b) => b.map((t) => t.name));
const lines = (n: number, payload = 0): string => Array.from({ length: n }, (_, i) => JSON.stringify({ name: `t${i}`, cmd: 'x'.repeat(payload) })).join('\n');

describe('batchLimits', () => {
  it("falls back to the contract's defaults where the hub says 0, and to --batch alone for the count", () => {
    expect(batchLimits(NO_LIMITS, 5000)).toEqual({
      maxTasks: 5000,
      maxItems: 100_000,
      maxBytes: DEFAULT_MAX_MESSAGE_BYTES / 2,
      maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
      maxPayloadBytes: 1 << 20,
      maxNameBytes: 512,
    });
  });

  it("takes the hub's limits when it gives them", () => {
    const limits = batchLimits({ ...NO_LIMITS, maxMessageBytes: 1000, maxBatch: 10, maxPayloadBytes: 100, maxNameBytes: 20 }, 5000);
    expect(limits).toEqual({ maxTasks: 10, maxItems: 10, maxBytes: 500, maxMessageBytes: 1000, maxPayloadBytes: 100, maxNameBytes: 20 });
    expect(batchLimits({ ...NO_LIMITS, maxBatch: 10 }, 3).maxTasks).toBe(3);
  });
});

describe('addfile batches', () => {
  it('cuts by count, in file order', async () => {
    const hub = fakeHub();
    expect(await add(hub, 'a\nb\n# c next\nc\nd\ne\n', { batch: 2 })).toMatchObject({ created: 5, unchanged: 0 });
    expect(names(hub)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('cuts by bytes, keeping every batch under its share of the message limit', async () => {
    const hub = fakeHub({ limits: { maxMessageBytes: 10_000 } });
    await add(hub, lines(50, 1000));
    expect(hub.sent.length).toBeGreaterThan(5);
    for (const b of hub.sent) expect(encodeRequest({ op: 'create', tasks: b }).length).toBeLessThanOrEqual(5000);
    expect(hub.sent.flat()).toHaveLength(50);
  });

  it('sends a task over the batch share but under the message limit alone', async () => {
    const hub = fakeHub({ limits: { maxMessageBytes: 1000 } });
    await add(hub, `a\n${JSON.stringify({ name: 'big', cmd: 'x'.repeat(700) })}\nb`);
    expect(names(hub)).toEqual([['a'], ['big'], ['b']]);
  });

  it('sends a task repeated identically once', async () => {
    const hub = fakeHub();
    expect(await add(hub, 'b,a\na\nb,a\n')).toMatchObject({ created: 2 });
    expect(names(hub)).toEqual([['b', 'a']]);
  });

  it('reads the file twice: once to check it, once to send it', async () => {
    const file = source('a\nb\n');
    await addFile(fakeHub(), file, { batch: 5000 });
    expect(file.reads).toBe(2);
  });
});

describe('addfile sends while it reads', () => {
  /** A hub whose creates are answered only when the test says, logging what happens in order. */
  function slowHub(events: string[], refuse?: number): Hub & { answer(): void } {
    const waiting: (() => void)[] = [];
    let k = 0;
    return {
      status: () => Promise.resolve({ limits: NO_LIMITS }),
      create: (tasks) => {
        const batch = ++k;
        events.push(`create ${batch} (${tasks.map((t) => t.name).join(' ')})`);
        return new Promise<CreateResult>((resolve, reject) =>
          waiting.push(() => {
            events.push(`answer ${batch}`);
            if (batch === refuse) reject(new DagworkError('CONFLICT', 'differs', { task: tasks[0]?.name ?? '' }));
            else resolve({ created: tasks.length, unchanged: 0, missingDeps: [], missingDepsTotal: 0 });
          }),
        );
      },
      lookup: () => Promise.resolve({}),
      answer: () => waiting.shift()?.(),
    };
  }
  const logged = (events: string[]): (() => LineParser) => () => ({
    parse: (text, line) => {
      events.push(`read ${text}`);
      return { name: text, deps: [] };
    },
  });

  it('reads the next batch while one is in flight, and sends it only once that one is answered', async () => {
    const events: string[] = [];
    const hub = slowHub(events);
    const adding = add(hub, 'a\nb\nc\nd\ne\n', { batch: 2, parser: logged(events) });
    const answers = setInterval(() => hub.answer(), 5);
    try {
      expect((await adding).created).toBe(5);
    } finally {
      clearInterval(answers);
    }
    const sending = events.slice(events.indexOf('create 1 (a b)'));
    expect(sending).toEqual(['create 1 (a b)', 'read c', 'read d', 'answer 1', 'create 2 (c d)', 'read e', 'answer 2', 'create 3 (e)', 'answer 3']);
  });

  it('sends nothing after a refused batch, though it has read the next one', async () => {
    const events: string[] = [];
    const hub = slowHub(events, 1);
    const adding = add(hub, 'a\nb\nc\nd\n', { batch: 2, parser: logged(events) });
    const answers = setInterval(() => hub.answer(), 5);
    try {
      const err = await failure(adding, AddFileError);
      expect((err.cause as Error).message).toBe('line 1: CONFLICT: differs');
      expect(err.added).toBeUndefined();
    } finally {
      clearInterval(answers);
    }
    expect(events.filter((e) => e.startsWith('create'))).toEqual(['create 1 (a b)']);
    expect(events).toContain('read d');
  });
});

describe('addfile checks the whole file before sending anything', () => {
  it('refuses a task over the message limit alone, naming its line', async () => {
    const hub = fakeHub({ limits: { maxMessageBytes: 1000 } });
    const err = await failure(add(hub, `a\n\n${JSON.stringify({ name: 'big', cmd: 'x'.repeat(2000) })}`), TaskFileError);
    expect(err.message).toMatch(/^line 3: task "big" takes 20\d\d bytes in a request; the hub takes requests of at most 1000 bytes/);
    expect(hub.sent).toEqual([]);
  });

  it("refuses a name over the hub's limit, naming its line", async () => {
    const hub = fakeHub({ limits: { maxNameBytes: 20 } });
    const err = await failure(add(hub, 'a\nabcdefghijklmnopqrstuvwxyz'), TaskFileError);
    expect(err.message).toMatch(/^line 2: task name "abcdefghij.*" is longer than 20 bytes/);
    expect(hub.sent).toEqual([]);
  });

  it('refuses a cycle found only at the end of a file of many batches', async () => {
    const hub = fakeHub();
    const err = await failure(add(hub, 'a,z\nb\nc\nd\nz,a\n', { batch: 1 }), TaskFileError);
    expect(err.message).toMatch(/would close a cycle/);
    expect(hub.sent).toEqual([]);
  });
});

describe('addfile when the hub refuses a batch', () => {
  const file = 'a\nb\n# c next\nc\nd\ne\n';

  it('names the line of the task a refusal is about, and says which batches were added', async () => {
    const err = await failure(add(fakeHub({ accept: 2, error: new DagworkError('CONFLICT', 'task "e" differs', { task: 'e' }) }), file, { batch: 2 }), AddFileError);
    expect(err.cause).toBeInstanceOf(TaskFileError);
    expect((err.cause as Error).message).toBe('line 6: CONFLICT: task "e" differs');
    expect(err.added).toBe('batches 1 to 2 of 3 (lines 1 to 5, 4 tasks) were added; nothing from line 6 on was');
  });

  it('says nothing was added when the first batch is refused', async () => {
    const err = await failure(add(fakeHub({ accept: 0, error: new DagworkError('TOO_LARGE', 'too many', { task: '' }) }), file, { batch: 2 }), AddFileError);
    expect(err.cause).toBeInstanceOf(DagworkError);
    expect(err.added).toBeUndefined();
  });

  it('says the batch in flight may have been added when its reply was lost', async () => {
    const err = await failure(add(fakeHub({ accept: 1, error: new HubUnreachableError('no reply') }), file, { batch: 2 }), AddFileError);
    expect(err.added).toBe('batch 1 of 3 (lines 1 to 2, 2 tasks) was added; batch 2 (lines 3 to 5) may or may not have been; nothing after line 5 was');
  });
});

describe('addfile and dependencies that exist nowhere', () => {
  it('does not count a dependency defined in a later batch of the same file', async () => {
    const hub = fakeHub();
    expect((await add(hub, 'b,a\na\n', { batch: 1 })).missing).toEqual({ examples: [], total: 0, atLeast: false });
  });

  it('names a dependency the file never defines and the hub does not have, with the line that needs it', async () => {
    const hub = fakeHub();
    expect((await add(hub, 'a\nb,a,tpyo\nc,b,tpyo\n', { batch: 1 })).missing).toEqual({ examples: [{ name: 'tpyo', line: 2 }], total: 1, atLeast: false });
  });

  it('does not count a dependency the hub has', async () => {
    const hub = fakeHub({ has: ['old'] });
    expect((await add(hub, 'b,old\n')).missing.total).toBe(0);
  });

  it('counts them exactly when the hub listed only some', async () => {
    const hub = fakeHub({ listed: 2 });
    const file = Array.from({ length: 30 }, (_, i) => `t${i},x${i}`).join('\n');
    expect((await add(hub, file, { batch: 10 })).missing).toMatchObject({ total: 30, atLeast: false });
  });

  it('--strict refuses the file, sending nothing, naming the missing names and their lines', async () => {
    const hub = fakeHub({ has: ['old'] });
    const err = await failure(add(hub, 'a,old\nb,a,tpyo\nc,b,other\n', { strict: true }), MissingDepsError);
    expect(err.message).toBe('2 names the file depends on exist neither in it nor in the hub: tpyo (line 2), other (line 3); nothing was added (--strict)');
    expect(hub.sent).toEqual([]);
  });

  it('--strict looks up only the names the file does not define', async () => {
    const hub = fakeHub({ has: ['old'] });
    await add(hub, 'a,old\nb,a\n', { strict: true });
    expect(hub.lookups).toEqual(['old']);
    expect(names(hub)).toEqual([['a', 'b']]);
  });
});

describe('addfile interrupted', () => {
  it('between batches: says which were added, and sends no more', async () => {
    const hub = fakeHub();
    const err = await failure(add(hub, 'a\nb\nc\nd\n', { batch: 2, stopped: () => hub.sent.length >= 1 }), AddFileError);
    expect(err.cause).toBeInstanceOf(Interrupted);
    expect(err.added).toBe('batch 1 of 2 (lines 1 to 2, 2 tasks) was added; nothing from line 3 on was');
    expect(hub.sent).toHaveLength(1);
  });

  it('while checking: sends nothing', async () => {
    const hub = fakeHub();
    await failure(add(hub, 'a\nb\n', { stopped: () => true }), Interrupted);
    expect(hub.sent).toEqual([]);
  });

  it('keeps count of what was sent for a progress line', async () => {
    const progress = new AddProgress();
    const seen: number[] = [];
    await add(fakeHub(), 'a\nb\nc\n', { batch: 1, progress, onProgress: () => seen.push(progress.sent) });
    expect(seen.slice(-3)).toEqual([1, 2, 3]);
    expect(progress.total).toBe(3);
  });
});
