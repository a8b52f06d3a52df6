/**
 * `dquery addfile`'s sending side: a checked task file cut into batches that fit the hub's limits
 * (by count and by encoded bytes), sent one create at a time. Each create is all or nothing; a
 * file of several batches is not: when the hub refuses batch k, batches 1..k-1 stay added, and the
 * error says so. Adding the file again after fixing it is safe (identical tasks are left alone).
 */
import { encodeRequest } from '../../proto/src/codec.js';
import { DagworkError } from '../../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES, defaultSpecLimits, normalizeSpec, type SpecLimits } from '../../proto/src/spec.js';
import type { Limits, TaskSpecInput } from '../../proto/src/types.js';
import { TaskFileError, type TaskFile } from './taskfile.js';

/** What addfile needs of the hub: two of Client's methods, so tests can pass a fake. */
export interface Hub {
  status(): Promise<{ limits: Limits }>;
  create(tasks: TaskSpecInput[]): Promise<{ created: number; unchanged: number }>;
}

/** The limits batches are cut to, with the hub's zeros (an older hub, or "not said") filled in. */
export interface BatchLimits {
  /** Most tasks in one create: the hub's max_batch, or only `--batch` when the hub does not say. */
  maxTasks: number;
  /** Most bytes of one create, well under the hub's max_message_bytes (see BYTES_SHARE). */
  maxBytes: number;
  /** The hub's max_message_bytes itself: a task alone over it can never be sent. */
  maxMessageBytes: number;
  maxPayloadBytes: number;
  maxNameBytes: number;
}

/**
 * The share of the hub's max_message_bytes one batch may fill. Not all of it: the hub decodes a
 * request in one go, and a smaller request keeps it answering other clients between batches;
 * and our byte count is an estimate (an upper bound, see OVERHEAD_BYTES).
 */
const BYTES_SHARE = 0.5;
/** Bytes a create request holds beyond its tasks' own: tags and length prefixes, 5 bytes at most each. */
const OVERHEAD_BYTES = 16;

export function batchLimits(hub: Limits, batch: number): BatchLimits {
  const spec = defaultSpecLimits();
  const maxMessageBytes = hub.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES;
  return {
    maxTasks: hub.maxBatch === 0 ? batch : Math.min(batch, hub.maxBatch),
    maxBytes: Math.floor(maxMessageBytes * BYTES_SHARE),
    maxMessageBytes,
    maxPayloadBytes: hub.maxPayloadBytes || spec.maxPayloadBytes,
    maxNameBytes: hub.maxNameBytes || spec.maxNameBytes,
  };
}

/** Tasks `start` to `end - 1` of the file; `fromLine` to `toLine` are the lines they cover. */
export interface Batch {
  start: number;
  end: number;
  fromLine: number;
  toLine: number;
}

/**
 * The file cut into batches of at most `limits.maxTasks` tasks and `limits.maxBytes` encoded
 * bytes (a task bigger than that goes alone). Throws TaskFileError naming the line of a task the
 * hub would refuse whatever the batch: over max_message_bytes alone, a payload or name too long.
 */
export function planBatches(file: TaskFile, limits: BatchLimits): Batch[] {
  const specLimits: SpecLimits = {
    ...defaultSpecLimits(),
    maxPayloadBytes: limits.maxPayloadBytes,
    maxNameBytes: limits.maxNameBytes,
    // Left to the hub, which names the task (then its line): not in the limits it tells clients.
    maxDeps: Number.MAX_SAFE_INTEGER,
    maxAttempts: Number.MAX_SAFE_INTEGER,
    maxLeaseMs: Number.MAX_SAFE_INTEGER,
  };
  const batches: Batch[] = [];
  let start = 0;
  let bytes = OVERHEAD_BYTES;
  const cut = (end: number): void => {
    const fromLine = batches.length === 0 ? 1 : (batches[batches.length - 1] as Batch).toLine + 1;
    batches.push({ start, end, fromLine, toLine: file.lines[end - 1] as number });
    start = end;
    bytes = OVERHEAD_BYTES;
  };
  file.specs.forEach((spec, i) => {
    const line = file.lines[i] as number;
    try {
      normalizeSpec(spec, specLimits);
    } catch (err) {
      if (err instanceof DagworkError) throw new TaskFileError(line, `${err.code}: ${err.message}`, { cause: err });
      throw err;
    }
    // The size of a request holding this task alone: the codec is the only one that knows.
    const size = encodeRequest({ op: 'create', tasks: [spec] }).length;
    if (size > limits.maxMessageBytes) {
      throw new TaskFileError(
        line,
        `task "${spec.name}" takes ${size} bytes in a request; the hub takes requests of at most ${limits.maxMessageBytes} bytes (dhub --max-message-bytes)`,
      );
    }
    if (i > start && (i - start >= limits.maxTasks || bytes + size > limits.maxBytes)) cut(i);
    bytes += size;
  });
  if (start < file.specs.length) cut(file.specs.length);
  return batches;
}

/**
 * Sends every batch in order. Throws TaskFileError (`line N: CODE: message`) when the hub refuses a
 * task it names, with `added` saying which batches went in before; other errors likewise carry
 * `added` when some batches were added.
 */
export async function addTaskFile(hub: Hub, file: TaskFile, batch: number): Promise<{ created: number; unchanged: number }> {
  const { limits } = await hub.status();
  const batches = planBatches(file, batchLimits(limits, batch));
  let created = 0;
  let unchanged = 0;
  for (const [k, b] of batches.entries()) {
    try {
      const r = await hub.create(file.specs.slice(b.start, b.end));
      created += r.created;
      unchanged += r.unchanged;
    } catch (err) {
      throw new AddFileError(refusal(err, file, b), batches, k);
    }
  }
  return { created, unchanged };
}

/** The hub's error, as `line N: ...` when it names a task of the batch. */
function refusal(err: unknown, file: TaskFile, b: Batch): unknown {
  if (!(err instanceof DagworkError) || err.task === '') return err;
  for (let i = b.start; i < b.end; i++) {
    if (file.specs[i]?.name === err.task) return new TaskFileError(file.lines[i] as number, `${err.code}: ${err.message}`, { cause: err });
  }
  return err;
}

/** A batch failed: `cause` says why, `added` (if any) which batches went in before it. */
export class AddFileError extends Error {
  override name = 'AddFileError';
  /** For the user, or undefined when nothing was added. */
  readonly added: string | undefined;

  constructor(
    override readonly cause: unknown,
    batches: readonly Batch[],
    failed: number,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    const b = batches[failed] as Batch;
    if (failed === 0) {
      this.added = undefined;
      return;
    }
    const last = batches[failed - 1] as Batch;
    const tasks = last.end;
    const which = failed === 1 ? 'batch 1' : `batches 1 to ${failed}`;
    const what = `${which} of ${batches.length} (lines 1 to ${last.toLine}, ${tasks} task${tasks === 1 ? '' : 's'}) ${failed === 1 ? 'was' : 'were'} added`;
    // A refusal changed nothing; a lost reply may hide a batch the hub did add.
    const rest =
      cause instanceof DagworkError || cause instanceof TaskFileError
        ? `nothing from line ${b.fromLine} on was`
        : `batch ${failed + 1} (lines ${b.fromLine} to ${b.toLine}) may or may not have been; nothing after line ${b.toLine} was`;
    this.added = `${what}; ${rest}. Fix the file and run addfile again: tasks added already are left alone.`;
  }
}
