/**
 * `dquery addfile`: a task file checked whole, then sent in batches that fit the hub's limits.
 *
 * The file is read twice, a chunk at a time (lines.ts), so memory does not grow with payloads:
 *   1. check: every line parsed and checked by the hub's rules and limits (asked of the hub first),
 *      duplicates and cycles over the whole file (TaskIndex: about 100 bytes a name and 4 a
 *      dependency), the batches planned (count and encoded bytes);
 *   2. send: the lines read again and sent, one create a batch, each batch read and built while
 *      the one before it is in flight (one at a time: a refused batch is the last one sent).
 * Each create is all or nothing; a file of several batches is not: when the hub refuses batch k,
 * batches 1..k-1 stay added, and the error says so. Adding the file again is safe (identical tasks
 * are left alone), which is also how an interrupted addfile is finished.
 *
 * Dependencies the file does not define may exist in the hub. The hub names, for each batch, the
 * dependencies of its new tasks that exist neither in the batch nor in the hub; those the file
 * defines in a later batch are not missing, so dquery keeps only the ones the file never defines.
 * With `strict`, each of those is looked up before anything is sent, and a file that needs a name
 * that exists nowhere is refused.
 */
import { encodeRequest } from '../../proto/src/codec.js';
import { DagworkError } from '../../proto/src/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES, defaultLimits, defaultSpecLimits, taskItems, type SpecLimits } from '../../proto/src/spec.js';
import type { CreateResult, Limits, ReplaceResult, TaskResult, TaskSpecInput } from '../../proto/src/types.js';
import type { LineSource } from './lines.js';
import { checkedSpec, parseLine, TaskFileError, TaskIndex } from './taskfile.js';

/**
 * Turns the lines of one reading of a file into tasks (a new one for each reading). `end` gives
 * tasks that follow the last line (a sweep's barriers), counted as on the line after it, and may
 * throw TaskFileError for a file that is incomplete as a whole.
 */
export interface LineParser {
  parse(text: string, line: number): TaskSpecInput | undefined;
  end?(lastLine: number): TaskSpecInput[];
  /** What a task of `end` is, said in an error about it in place of its line (which is not in the file). */
  describe?(name: string): string;
}

/** A task file's lines (tasks.ts's form), with `"inputs"` refused. */
export const TASK_FILE_PARSER = (): LineParser => ({ parse: (text, line) => parseLine(text, line) });

/** What addfile needs of the hub: three of Client's methods, so tests can pass a fake. */
export interface Hub {
  status(): Promise<{ limits: Limits }>;
  create(tasks: TaskSpecInput[]): Promise<CreateResult>;
  /** Throws DagworkError UNKNOWN_TASK when there is no such task. */
  lookup(name: string): Promise<unknown>;
  /** Only with `replace` (addfile --replace). */
  replace?(tasks: TaskSpecInput[], options: { rerun?: boolean; createMissing?: boolean }): Promise<ReplaceResult>;
}

/** The limits batches are cut to, with the hub's zeros (an older hub, or "not said") filled in. */
export interface BatchLimits {
  /** Most tasks in one create: the hub's max_batch, or only `--batch` when the hub does not say. */
  maxTasks: number;
  /** Most params, inputs, outputs and param files of all the tasks of one create: the hub's max_batch. */
  maxItems: number;
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
/**
 * When the hub's lists of missing names were cut short (it names at most 100 a batch), dquery
 * looks up the names the file needs and does not define, up to this many, to count them exactly;
 * past it the warning says "at least".
 */
const MAX_COUNTING_LOOKUPS = 10_000;
/** Names listed in a missing-dependency warning or error. */
const LISTED_MISSING = 5;

export function batchLimits(hub: Limits, batch: number): BatchLimits {
  const spec = defaultSpecLimits();
  const maxMessageBytes = hub.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES;
  return {
    maxTasks: hub.maxBatch === 0 ? batch : Math.min(batch, hub.maxBatch),
    maxItems: hub.maxBatch || defaultLimits().maxBatch,
    maxBytes: Math.floor(maxMessageBytes * BYTES_SHARE),
    maxMessageBytes,
    maxPayloadBytes: hub.maxPayloadBytes || spec.maxPayloadBytes,
    maxNameBytes: hub.maxNameBytes || spec.maxNameBytes,
  };
}

/** One create: `tasks` tasks from lines `fromLine` to `toLine`. */
export interface Batch {
  fromLine: number;
  toLine: number;
  tasks: number;
}

/** Cuts tasks into batches of at most `maxTasks` tasks and `maxBytes` bytes (a bigger task goes alone). */
class BatchPlanner {
  readonly batches: Batch[] = [];
  private tasks = 0;
  private items = 0;
  private bytes = OVERHEAD_BYTES;
  private lastLine = 0;

  constructor(private readonly limits: BatchLimits) {}

  /** A task of `size` bytes (at most) holding `items` params, inputs, outputs and param files. */
  add(size: number, items: number, line: number): void {
    if (this.tasks > 0 && (this.tasks >= this.limits.maxTasks || this.bytes + size > this.limits.maxBytes || this.items + items > this.limits.maxItems)) this.cut();
    this.tasks++;
    this.items += items;
    this.bytes += size;
    this.lastLine = line;
  }

  finish(): Batch[] {
    if (this.tasks > 0) this.cut();
    return this.batches;
  }

  private cut(): void {
    const previous = this.batches[this.batches.length - 1];
    this.batches.push({ fromLine: previous === undefined ? 1 : previous.toLine + 1, toLine: this.lastLine, tasks: this.tasks });
    this.tasks = 0;
    this.items = 0;
    this.bytes = OVERHEAD_BYTES;
  }
}

/** The names the file needs that exist nowhere: a few of them with the line that first needs each, and how many. */
export interface Missing {
  examples: { name: string; line: number }[];
  total: number;
  /** True when `total` is a lower bound (the hub's lists were cut short and there were too many to look up). */
  atLeast: boolean;
}

export interface AddResult {
  created: number;
  unchanged: number;
  missing: Missing;
  /** With `replace`: tasks given their new definition. */
  replaced: number;
  /** With `replace`: tasks the hub would not replace (done or running, without `rerun`). */
  refused: TaskResult[];
}

/** Where an addfile is, for progress lines and for what to say when it stops half-way. */
export class AddProgress {
  phase: 'checking' | 'looking up' | 'uploading' | 'sending' = 'checking';
  /** Lines read so far (checking). */
  lines = 0;
  /** Names looked up so far, of `toLookUp`. */
  lookedUp = 0;
  toLookUp = 0;
  /** Input files uploaded (or found held) so far, of `toUpload`. */
  uploaded = 0;
  toUpload = 0;
  batches: Batch[] = [];
  /** Batches the hub has answered for. */
  done = 0;
  /** A batch was sent and its answer has not come. */
  inFlight = false;
  /** Tasks in the batches done. */
  sent = 0;
  /** Tasks in all the batches. */
  total = 0;

  /**
   * What was added, for a message when addfile stops before the end: "batch 1 of 3 (lines 1 to 4,
   * 2 tasks) was added; nothing from line 5 on was", or undefined when nothing was. `unsure`: the
   * batch in flight may or may not have been added (its answer did not come).
   */
  added(unsure = this.inFlight): string | undefined {
    const k = this.done;
    const current = this.batches[k];
    const last = this.batches[k - 1];
    const rest =
      current === undefined
        ? undefined
        : unsure
          ? `batch ${k + 1} (lines ${current.fromLine} to ${current.toLine}) may or may not have been; nothing after line ${current.toLine} was`
          : `nothing from line ${current.fromLine} on was`;
    if (last === undefined) {
      return unsure && current !== undefined
        ? `batch 1 of ${this.batches.length} (lines ${current.fromLine} to ${current.toLine}) may or may not have been added; nothing after line ${current.toLine} was`
        : undefined;
    }
    const tasks = this.sent;
    const which = k === 1 ? 'batch 1' : `batches 1 to ${k}`;
    const what = `${which} of ${this.batches.length} (lines 1 to ${last.toLine}, ${tasks} task${tasks === 1 ? '' : 's'}) ${k === 1 ? 'was' : 'were'} added`;
    return rest === undefined ? what : `${what}; ${rest}`;
  }
}

/** addfile stopped before the end: `cause` says why, `added` (if any) which batches went in before. */
export class AddFileError extends Error {
  override name = 'AddFileError';

  constructor(
    override readonly cause: unknown,
    /** For the user, or undefined when nothing was added. */
    readonly added: string | undefined,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** Stopped by the user (Ctrl-C) between two batches, or before any was sent. */
export class Interrupted extends Error {
  override name = 'Interrupted';
}

/** --strict found dependencies that exist neither in the file nor in the hub; nothing was sent. */
export class MissingDepsError extends Error {
  override name = 'MissingDepsError';
  constructor(
    readonly missing: Missing,
    where?: (line: number) => string,
  ) {
    super(`${missingText(missing, where)}; nothing was added (--strict)`);
  }
}

/**
 * "2 names the file needs exist neither in it nor in the hub: fetch-x (line 3), y (line 9)";
 * `where` says where a name came from instead of `line N` (a sweep's --after).
 */
export function missingText(m: Missing, where: (line: number) => string = (line) => `line ${line}`): string {
  const listed = m.examples.map((e) => `${e.name} (${where(e.line)})`);
  const more = m.total - listed.length;
  const names = `${m.atLeast ? 'at least ' : ''}${m.total} name${m.total === 1 ? '' : 's'}`;
  return `${names} the file depends on ${m.total === 1 && !m.atLeast ? 'exists' : 'exist'} neither in it nor in the hub: ${listed.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

export interface AddFileOptions {
  /** Most tasks a batch (the hub's own limits may cut batches smaller). */
  batch: number;
  /** Refuse the file, sending nothing, when a dependency exists neither in it nor in the hub. */
  strict?: boolean;
  /**
   * Send each batch as a replace that creates missing tasks: a task that exists with another
   * definition is replaced instead of being a CONFLICT (addfile --replace). `rerun`: done or
   * running ones too, rerun with their descendants.
   */
  replace?: { rerun: boolean };
  /** Updated as addfile goes on; read it for progress lines and for what to say when interrupted. */
  progress?: AddProgress;
  /** Called at least every chunk of lines and every batch, to show progress. */
  onProgress?: () => void;
  /** Asked between chunks, lookups and batches: true stops addfile there (Interrupted, or AddFileError whose cause is). */
  stopped?: () => boolean;
  /** The tasks of each reading of the file (default: a task file's lines, TASK_FILE_PARSER). */
  parser?: () => LineParser;
  /**
   * Run once the whole file is checked, before the first create (it may send, e.g. upload input
   * files: the file is known good by then). Interrupting it is left to it.
   */
  prepare?: (progress: AddProgress, tick: () => void) => Promise<void>;
  /** Where a missing dependency first needed on `line` came from, for --strict's error (default `line N`). */
  where?: (line: number) => string;
}

/**
 * Adds every task of `source` to `hub`. Throws TaskFileError (`line N: ...`) for a bad file,
 * before anything is sent; MissingDepsError under `strict`; AddFileError when a batch fails after
 * others were added or when interrupted after some were (its `added` says which); Interrupted when
 * stopped before anything was sent.
 */
export async function addFile(hub: Hub, source: LineSource, options: AddFileOptions): Promise<AddResult> {
  const progress = options.progress ?? new AddProgress();
  const tick = options.onProgress ?? ((): void => undefined);
  const stopped = options.stopped ?? ((): boolean => false);

  const limits = batchLimits((await hub.status()).limits, options.batch);
  const parser = options.parser ?? TASK_FILE_PARSER;
  const { index, batches, repeats } = await check(source, parser(), limits, progress, tick, stopped);
  progress.batches = batches;
  progress.total = batches.reduce((n, b) => n + b.tasks, 0);
  const needed = [...index.undefinedDeps()];

  if (options.strict === true && needed.length > 0) {
    progress.phase = 'looking up';
    const missing = await lookUp(hub, needed, progress, tick, stopped);
    if (missing.length > 0) throw new MissingDepsError({ examples: missing.slice(0, LISTED_MISSING), total: missing.length, atLeast: false }, options.where);
  }
  if (options.prepare !== undefined) {
    progress.phase = 'uploading';
    await options.prepare(progress, tick);
  }

  progress.phase = 'sending';
  tick();
  let created = 0;
  let unchanged = 0;
  let replaced = 0;
  const refused: TaskResult[] = [];
  const reported = new Set<string>();
  let cutShort = false;
  let batch: TaskSpecInput[] = [];
  let lines: number[] = [];
  /** Batches handed to `send` so far (progress.done counts those answered). */
  let cut = 0;
  /** The create in flight: the next batch is read and built meanwhile, and sent once it is answered. */
  let inFlight: Promise<void> | undefined;
  const settle = async (): Promise<void> => {
    const request = inFlight;
    inFlight = undefined;
    await request;
  };
  const send = async (): Promise<void> => {
    // One batch in flight at a time: when the hub refuses it, this one is never sent.
    await settle();
    const planned = progress.batches[cut];
    if (planned === undefined || planned.tasks !== batch.length) throw new TypeError('the second reading of the file differs from the first');
    if (stopped()) throw progress.done === 0 ? new Interrupted('interrupted') : new AddFileError(new Interrupted('interrupted'), progress.added(false));
    const tasks = batch;
    const taskLines = lines;
    batch = [];
    lines = [];
    cut++;
    progress.inFlight = true;
    const request = (async (): Promise<void> => {
      let r: CreateResult;
      try {
        if (options.replace === undefined) r = await hub.create(tasks);
        else {
          if (hub.replace === undefined) throw new TypeError('addfile with replace needs a hub that replaces');
          const done = await hub.replace(tasks, { rerun: options.replace.rerun, createMissing: true });
          replaced += done.replaced;
          for (const result of done.results) if (result.outcome !== 'ACCEPTED') refused.push(result);
          // A replace does not name missing dependencies: they are looked up at the end.
          r = { created: done.created, unchanged: done.unchanged, missingDeps: [], missingDepsTotal: Number.MAX_SAFE_INTEGER };
        }
      } catch (err) {
        const cause = refusal(err, tasks, taskLines, endLine, reading);
        // A refusal changed nothing; a lost reply may hide a batch the hub did add.
        const unsure = !(cause instanceof DagworkError || cause instanceof TaskFileError);
        throw new AddFileError(cause, progress.added(unsure));
      }
      progress.inFlight = false;
      progress.done++;
      progress.sent += tasks.length;
      created += r.created;
      unchanged += r.unchanged;
      for (const name of r.missingDeps) if (!index.has(name)) reported.add(name);
      if (r.missingDepsTotal > r.missingDeps.length) cutShort = true;
      tick();
    })();
    // Awaited by the next send or at the end; until then its failure is not an unhandled rejection.
    request.catch(() => undefined);
    inFlight = request;
  };
  const reading = parser();
  let lastLine = 0;
  // The tasks of `end` (a sweep's barriers) come after the last line: on no line of the file.
  let endLine = Number.MAX_SAFE_INTEGER;
  let ordinal = 0;
  const take = async (spec: TaskSpecInput | undefined, line: number): Promise<void> => {
    if (spec === undefined || repeats.has(++ordinal)) return;
    batch.push(spec);
    lines.push(line);
    if (batch.length === (progress.batches[cut] as Batch | undefined)?.tasks) await send();
  };
  try {
    for await (const chunk of source.lines()) {
      for (const { text, line } of chunk) {
        lastLine = line;
        await take(reading.parse(text, line), line);
      }
    }
    endLine = lastLine + 1;
    for (const spec of reading.end?.(lastLine) ?? []) await take(spec, endLine);
    await settle();
    if (batch.length > 0 || progress.done !== progress.batches.length) await send();
    await settle();
  } catch (err) {
    // A failure of the batch in flight comes first; else the reading's own (the file changed?), said with what was added.
    await settle();
    if (err instanceof AddFileError || err instanceof Interrupted || progress.done === 0) throw err;
    throw new AddFileError(err, progress.added(false));
  }

  // Not interruptible: everything is added by now, and an interruption would say otherwise.
  return { created, unchanged, replaced, refused, missing: await missingAfter(hub, needed, reported, cutShort) };
}

/**
 * An upper bound of the bytes `task` takes in a create request, without encoding it (which would
 * take as long as all the other checks together): each string or bytes field a tag, a length of
 * at most 5 bytes and its bytes; each number a tag and at most 10 bytes; the TaskSpec itself a tag
 * and a length. Batches cut by it are never over their share.
 */
export function sizeBound(task: TaskSpecInput): number {
  let n = 6 + 3 * 11 + 6 + Buffer.byteLength(task.name) + 6 + Buffer.byteLength(task.pool ?? '') + 6 + (task.payload?.length ?? 0) + 2;
  for (const d of task.deps ?? []) n += 6 + Buffer.byteLength(d);
  for (const p of task.params ?? []) n += 6 + 6 + Buffer.byteLength(p.name) + 6 + Buffer.byteLength(p.value);
  // name, a 64-digit hash, a size and the run bit
  for (const f of task.inputs ?? []) n += 6 + 6 + Buffer.byteLength(f.name) + 6 + 64 + 11 + 2;
  for (const o of task.outputs ?? []) n += 6 + Buffer.byteLength(o);
  for (const f of task.paramFiles ?? []) n += 6 + 6 + Buffer.byteLength(f.name) + 6 + Buffer.byteLength(f.param);
  return n;
}

/** The first reading: every line checked, the index of names and deps built, the batches planned. */
async function check(
  source: LineSource,
  reading: LineParser,
  limits: BatchLimits,
  progress: AddProgress,
  tick: () => void,
  stopped: () => boolean,
): Promise<{ index: TaskIndex; batches: Batch[]; repeats: Set<number> }> {
  const specLimits: SpecLimits = {
    ...defaultSpecLimits(),
    maxPayloadBytes: limits.maxPayloadBytes,
    maxNameBytes: limits.maxNameBytes,
    // Left to the hub, which names the task (then its line): not in the limits it tells clients.
    maxDeps: Number.MAX_SAFE_INTEGER,
    maxAttempts: Number.MAX_SAFE_INTEGER,
    maxLeaseMs: Number.MAX_SAFE_INTEGER,
  };
  const index = new TaskIndex();
  const planner = new BatchPlanner(limits);
  // Which tasks, counted in the order read, repeat an earlier line's definition (not sent again).
  const repeats = new Set<number>();
  let ordinal = 0;
  const take = (input: TaskSpecInput | undefined, line: number): void => {
    if (input === undefined) return;
    ordinal++;
    const spec = checkedSpec(input, line, specLimits);
    if (!index.add(spec, line)) {
      repeats.add(ordinal);
      return;
    }
    const items = taskItems(input);
    if (items > limits.maxItems) {
      throw new TaskFileError(
        line,
        `task "${spec.name}" has ${items} params, inputs, outputs and param files; the hub takes at most ${limits.maxItems} a request (dhub --max-batch)`,
      );
    }
    const size = sizeBound(input);
    // Past the bound, the exact size of a request holding this task alone: the codec is the only one that knows.
    const exact = size > limits.maxMessageBytes ? encodeRequest({ op: 'create', tasks: [input] }).length : size;
    if (exact > limits.maxMessageBytes) {
      throw new TaskFileError(
        line,
        `task "${spec.name}" takes ${exact} bytes in a request; the hub takes requests of at most ${limits.maxMessageBytes} bytes (dhub --max-message-bytes)`,
      );
    }
    planner.add(size, items, line);
  };
  let lastLine = 0;
  for await (const chunk of source.lines()) {
    if (stopped()) throw new Interrupted('interrupted');
    for (const { text, line } of chunk) take(reading.parse(text, line), line);
    lastLine = chunk[chunk.length - 1]?.line ?? lastLine;
    progress.lines = lastLine;
    tick();
  }
  for (const input of reading.end?.(lastLine) ?? []) {
    try {
      take(input, lastLine + 1);
    } catch (err) {
      throw reading.describe === undefined || !(err instanceof TaskFileError) ? err : new TaskFileError(err.line, err.reason, { cause: err, where: reading.describe(input.name) });
    }
  }
  index.checkCycles();
  return { index, batches: planner.finish(), repeats };
}

/** Which of `names` the hub does not have, one lookup each, in order. */
async function lookUp(
  hub: Hub,
  names: { name: string; line: number }[],
  progress: AddProgress,
  tick: () => void,
  stopped: () => boolean,
): Promise<{ name: string; line: number }[]> {
  const missing: { name: string; line: number }[] = [];
  progress.toLookUp = names.length;
  for (const n of names) {
    if (stopped()) throw new Interrupted('interrupted');
    try {
      await hub.lookup(n.name);
    } catch (err) {
      if (!(err instanceof DagworkError) || err.code !== 'UNKNOWN_TASK') throw err;
      missing.push(n);
    }
    progress.lookedUp++;
    if (progress.lookedUp % 100 === 0) tick();
  }
  return missing;
}

/** The names the file needs and does not define that the hub said were missing (looked up when its lists were cut short). */
async function missingAfter(
  hub: Hub,
  needed: { name: string; line: number }[],
  reported: Set<string>,
  cutShort: boolean,
): Promise<Missing> {
  if (needed.length === 0) return { examples: [], total: 0, atLeast: false };
  if (cutShort && needed.length <= MAX_COUNTING_LOOKUPS) {
    const unknown = needed.filter((n) => !reported.has(n.name));
    const progress = new AddProgress();
    for (const n of await lookUp(hub, unknown, progress, () => undefined, () => false)) reported.add(n.name);
  }
  const missing = needed.filter((n) => reported.has(n.name));
  return { examples: missing.slice(0, LISTED_MISSING), total: missing.length, atLeast: cutShort && needed.length > MAX_COUNTING_LOOKUPS };
}

/**
 * The hub's error, as `line N: ...` when it names a task of the batch (for a task of the parser's
 * `end`, on `endLine`: what the parser says it is).
 */
function refusal(err: unknown, batch: TaskSpecInput[], lines: number[], endLine: number, parser: LineParser): unknown {
  if (!(err instanceof DagworkError) || err.task === '') return err;
  const i = batch.findIndex((t) => t.name === err.task);
  if (i === -1) return err;
  const line = lines[i] as number;
  const where = line >= endLine && parser.describe !== undefined ? parser.describe(err.task) : undefined;
  return new TaskFileError(line, `${err.code}: ${err.message}`, { cause: err, ...(where === undefined ? {} : { where }) });
}
