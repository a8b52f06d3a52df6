/** addfile's batches, cut to the hub's limits, and what it says when one is refused: with a fake hub. */
import { describe, expect, it } from 'vitest';
import { encodeRequest } from '../proto/src/codec.js';
import { DagworkError } from '../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../proto/src/spec.js';
import type { Limits, TaskSpecInput } from '../proto/src/types.js';
import { addTaskFile, AddFileError, batchLimits, planBatches, type Hub } from '../query/src/addfile.js';
import { parseTaskFile, TaskFileError } from '../query/src/taskfile.js';
import { HubUnreachableError } from '../worker-kit/src/client.js';

const NO_LIMITS: Limits = { maxMessageBytes: 0, maxBatch: 0, maxSteal: 0, maxPayloadBytes: 0, maxResultBytes: 0, maxNameBytes: 0, maxWaitMs: 0 };

describe('batchLimits', () => {
  it("falls back to the contract's defaults where the hub says 0, and to --batch alone for the count", () => {
    expect(batchLimits(NO_LIMITS, 5000)).toEqual({
      maxTasks: 5000,
      maxBytes: DEFAULT_MAX_MESSAGE_BYTES / 2,
      maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
      maxPayloadBytes: 1 << 20,
      maxNameBytes: 512,
    });
  });

  it("takes the hub's limits when it gives them", () => {
    const limits = batchLimits({ ...NO_LIMITS, maxMessageBytes: 1000, maxBatch: 10, maxPayloadBytes: 100, maxNameBytes: 20 }, 5000);
    expect(limits).toEqual({ maxTasks: 10, maxBytes: 500, maxMessageBytes: 1000, maxPayloadBytes: 100, maxNameBytes: 20 });
    expect(batchLimits({ ...NO_LIMITS, maxBatch: 10 }, 3).maxTasks).toBe(3);
  });
});

describe('planBatches', () => {
  const lines = (n: number, payload = 0): string => Array.from({ length: n }, (_, i) => JSON.stringify({ name: `t${i}`, cmd: 'x'.repeat(payload) })).join('\n');

  it('cuts by count', () => {
    const file = parseTaskFile(lines(5));
    expect(planBatches(file, batchLimits(NO_LIMITS, 2)).map((b) => [b.start, b.end, b.fromLine, b.toLine])).toEqual([
      [0, 2, 1, 2],
      [2, 4, 3, 4],
      [4, 5, 5, 5],
    ]);
  });

  it('cuts by bytes, keeping every batch under the share of the message limit it is given', () => {
    const file = parseTaskFile(lines(50, 1000));
    const limits = batchLimits({ ...NO_LIMITS, maxMessageBytes: 10_000 }, 5000);
    const batches = planBatches(file, limits);
    expect(batches.length).toBeGreaterThan(5);
    for (const b of batches) {
      expect(encodeRequest({ op: 'create', tasks: file.specs.slice(b.start, b.end) }).length).toBeLessThanOrEqual(limits.maxBytes);
    }
    expect(batches.map((b) => b.end - b.start).reduce((a, n) => a + n)).toBe(50);
  });

  it('sends a task over the batch share but under the message limit alone', () => {
    const file = parseTaskFile(`a\n${JSON.stringify({ name: 'big', cmd: 'x'.repeat(700) })}\nb`);
    const batches = planBatches(file, batchLimits({ ...NO_LIMITS, maxMessageBytes: 1000 }, 5000));
    expect(batches.map((b) => [b.start, b.end])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
  });

  it('refuses a task over the message limit alone, naming its line', () => {
    const file = parseTaskFile(`a\n\n${JSON.stringify({ name: 'big', cmd: 'x'.repeat(2000) })}`);
    expect(() => planBatches(file, batchLimits({ ...NO_LIMITS, maxMessageBytes: 1000 }, 5000))).toThrow(
      /^line 3: task "big" takes 20\d\d bytes in a request; the hub takes requests of at most 1000 bytes/,
    );
  });

  it("refuses a name over the hub's limit, naming its line", () => {
    const file = parseTaskFile('a\nabcdefghijklmnopqrstuvwxyz');
    expect(() => planBatches(file, batchLimits({ ...NO_LIMITS, maxNameBytes: 20 }, 5000))).toThrow(/^line 2: INVALID_NAME: task name "abcdefghij/);
  });
});

/** A hub that takes `accept` creates, then answers with `error`. */
function fakeHub(accept: number, error: unknown): Hub & { sent: TaskSpecInput[][] } {
  const sent: TaskSpecInput[][] = [];
  return {
    sent,
    status: () => Promise.resolve({ limits: NO_LIMITS }),
    create: (tasks) => {
      sent.push(tasks);
      return sent.length <= accept ? Promise.resolve({ created: tasks.length, unchanged: 0 }) : Promise.reject(error);
    },
  };
}

async function failure(run: Promise<unknown>): Promise<AddFileError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AddFileError);
  return err as AddFileError;
}

describe('addTaskFile', () => {
  const file = parseTaskFile('a\nb\n# c next\nc\nd\ne\n');

  it('sends every batch in order and adds up the counts', async () => {
    const hub = fakeHub(10, undefined);
    expect(await addTaskFile(hub, file, 2)).toMatchObject({ created: 5, unchanged: 0 });
    expect(hub.sent.map((b) => b.map((t) => t.name))).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('names the line of the task a refusal is about, and says which batches were added', async () => {
    const err = await failure(addTaskFile(fakeHub(2, new DagworkError('CONFLICT', 'task "e" differs', { task: 'e' })), file, 2));
    expect(err.cause).toBeInstanceOf(TaskFileError);
    expect((err.cause as Error).message).toBe('line 6: CONFLICT: task "e" differs');
    expect(err.added).toBe('batches 1 to 2 of 3 (lines 1 to 5, 4 tasks) were added; nothing from line 6 on was. Fix the file and run addfile again: tasks added already are left alone.');
  });

  it('says nothing was added when the first batch is refused', async () => {
    const err = await failure(addTaskFile(fakeHub(0, new DagworkError('TOO_LARGE', 'too many', { task: '' })), file, 2));
    expect(err.cause).toBeInstanceOf(DagworkError);
    expect(err.added).toBeUndefined();
  });

  it('says the batch in flight may have been added when its reply was lost', async () => {
    const err = await failure(addTaskFile(fakeHub(1, new HubUnreachableError('no reply')), file, 2));
    expect(err.added).toBe(
      'batch 1 of 3 (lines 1 to 2, 2 tasks) was added; batch 2 (lines 3 to 5) may or may not have been; nothing after line 5 was. Fix the file and run addfile again: tasks added already are left alone.',
    );
  });
});
