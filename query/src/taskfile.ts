/**
 * Task files for `dquery addfile`: pure parsing and checking, no I/O.
 *
 * One task a line, in either of two forms (they may be mixed):
 *   dwork's:     name,dep1,dep2,...          (no payload)
 *   JSON Lines:  {"name": "b", "deps": ["a"], "cmd": "echo hi", "priority": 2, "pool": "gpu",
 *                 "attempts": 5, "lease": "10m"}
 * Blank lines are skipped, and so is a line whose first character is # (a comment). A task whose
 * name starts with # is written as JSON: in dwork's form a name may not start with #, so an
 * indented "# ..." is refused rather than guessed to be a comment or a task.
 * The text must be UTF-8 (decodeTaskFile): a file in another encoding would merge names.
 */
import { checkLeaseMs, checkRange, INT32_MAX, INT32_MIN, parseDuration, UINT32_MAX } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { defaultSpecLimits, dependencyOrder, normalizeSpec, sameSpec, type SpecLimits } from '../../proto/src/spec.js';
import type { TaskSpec, TaskSpecInput } from '../../proto/src/types.js';

/** A problem with one line of a task file. */
export class TaskFileError extends Error {
  override name = 'TaskFileError';
  constructor(
    readonly line: number,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`line ${line}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** The tasks of a file, each with the line it came from (`lines[i]` is the line of `specs[i]`). */
export interface TaskFile {
  specs: TaskSpecInput[];
  lines: number[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The text of a task file's bytes (a byte order mark dropped); throws TaskFileError naming the
 * first line that is not valid UTF-8. Decoding it lossily would turn "café" and "cafè" in Latin-1
 * into the same name.
 */
export function decodeTaskFile(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    // Find the line: decode line by line (a newline byte never occurs inside a UTF-8 sequence).
    let start = 0;
    for (let line = 1; ; line++) {
      const newline = bytes.indexOf(0x0a, start);
      const end = newline === -1 ? bytes.length : newline;
      const text = bytes.subarray(start, end);
      if (!validUtf8(text)) {
        const bad = firstInvalidByte(text);
        const byte = (text[bad] as number).toString(16).padStart(2, '0');
        throw new TaskFileError(line, `not valid UTF-8 (byte 0x${byte} at byte ${bad + 1} of the line); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8`);
      }
      if (newline === -1) throw new TypeError('TextDecoder refused text that is valid UTF-8 line by line');
      start = newline + 1;
    }
  }
}

function validUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where the first bad sequence of `bytes` starts, for the message only (TextDecoder decides
 * whether the text is valid): the ranges of RFC 3629's table, so overlong forms and surrogates
 * count as bad, as they do for TextDecoder.
 */
function firstInvalidByte(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    const trail = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (trail === 0) return i;
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= trail; k++) {
      const b = bytes[i + k];
      if (b === undefined || b < (k === 1 ? low : 0x80) || b > (k === 1 ? high : 0xbf)) return i;
    }
    i += trail + 1;
  }
  return 0;
}

const JSON_KEYS = new Set(['name', 'deps', 'cmd', 'payload', 'priority', 'pool', 'attempts', 'lease']);

function fromJson(text: string, line: number): TaskSpecInput {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TaskFileError(line, `not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new TaskFileError(line, 'expected a JSON object');
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!JSON_KEYS.has(key)) throw new TaskFileError(line, `unknown field "${key}" (known: ${[...JSON_KEYS].join(', ')})`);
  }
  if (typeof o.name !== 'string') throw new TaskFileError(line, '"name" must be a string');
  const spec: TaskSpecInput = { name: o.name };
  if (o.deps !== undefined) {
    if (!Array.isArray(o.deps) || !o.deps.every((d) => typeof d === 'string')) throw new TaskFileError(line, '"deps" must be a list of task names');
    spec.deps = o.deps as string[];
  }
  if (o.cmd !== undefined && o.payload !== undefined) throw new TaskFileError(line, 'give "cmd" or "payload", not both');
  const payload = o.cmd ?? o.payload;
  if (payload !== undefined) {
    if (typeof payload !== 'string') throw new TaskFileError(line, `"${o.cmd !== undefined ? 'cmd' : 'payload'}" must be a string`);
    spec.payload = new TextEncoder().encode(payload);
  }
  // Each number is checked against its wire type: protobuf would write it modulo 2^32.
  if (o.priority !== undefined) spec.priority = integerField(o, 'priority', INT32_MIN, INT32_MAX, line);
  if (o.pool !== undefined) {
    if (typeof o.pool !== 'string' || o.pool === '') throw new TaskFileError(line, '"pool" must be a non-empty string');
    spec.pool = o.pool;
  }
  // 1 to 2^32-1 here; the hub refuses more than its own maximum (1,000), naming the task.
  if (o.attempts !== undefined) spec.maxAttempts = integerField(o, 'attempts', 1, UINT32_MAX, line);
  if (o.lease !== undefined) {
    const lease = o.lease;
    if (typeof lease !== 'string' && typeof lease !== 'number') throw new TaskFileError(line, '"lease" must be seconds or a duration like "10m"');
    try {
      spec.leaseMs = checkLeaseMs(parseDuration(lease), lease);
    } catch (err) {
      const message = (err as Error).message;
      throw new TaskFileError(line, message.startsWith('"') ? message : `"lease" ${message}`);
    }
  }
  return spec;
}

function integerField(o: Record<string, unknown>, key: string, min: number, max: number, line: number): number {
  const value = o[key];
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TaskFileError(line, `"${key}" must be an integer`);
  try {
    return checkRange(value, min, max);
  } catch (err) {
    throw new TaskFileError(line, `"${key}" ${(err as Error).message}`);
  }
}

function fromDwork(text: string, line: number): TaskSpecInput {
  const fields = text.split(',').map((f) => f.trim());
  if (fields.some((f) => f === '')) throw new TaskFileError(line, `empty name in "${text}" (expected name,dep1,dep2,...)`);
  const [name, ...deps] = fields as [string, ...string[]];
  if (name.startsWith('#')) {
    throw new TaskFileError(
      line,
      `a task name in dwork's form may not start with # (a comment starts with # as the line's first character; write a task named "${name}" as JSON: {"name": "${name}"})`,
    );
  }
  return { name, deps };
}

/**
 * Every task of `text` with its line, checked by the hub's own rules (names, duplicates, cycles)
 * so that a bad file is refused before anything is sent. Sizes are checked against the hub's
 * limits when they are known (see addfile.ts). Throws TaskFileError naming the line.
 */
export function parseTaskFile(text: string): TaskFile {
  const specs: TaskSpecInput[] = [];
  const lines: number[] = [];
  const rows = text.split(/\r?\n/);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as string;
    if (row.startsWith('#')) continue;
    const raw = row.trim();
    if (raw === '') continue;
    specs.push(raw.startsWith('{') ? fromJson(raw, i + 1) : fromDwork(raw, i + 1));
    lines.push(i + 1);
  }
  checkSpecs({ specs, lines });
  return { specs, lines };
}

// Sizes are left to the hub, whose limits may be raised; names, duplicates and cycles are not.
const UNBOUNDED: SpecLimits = {
  ...defaultSpecLimits(),
  maxPayloadBytes: Number.MAX_SAFE_INTEGER,
  maxDeps: Number.MAX_SAFE_INTEGER,
  maxAttempts: Number.MAX_SAFE_INTEGER,
  maxLeaseMs: Number.MAX_SAFE_INTEGER,
};

/** The checks the hub makes of one create, by the contract's rules; throws TaskFileError naming the line. */
function checkSpecs({ specs, lines }: TaskFile): void {
  const byName = new Map<string, { spec: TaskSpec; line: number }>();
  specs.forEach((input, i) => {
    const line = lines[i] as number;
    let spec: TaskSpec;
    try {
      spec = normalizeSpec(input, UNBOUNDED);
    } catch (err) {
      if (err instanceof DagworkError) throw new TaskFileError(line, err.message, { cause: err });
      throw err;
    }
    const earlier = byName.get(spec.name);
    if (earlier === undefined) byName.set(spec.name, { spec, line });
    else if (!sameSpec(earlier.spec, spec)) {
      throw new TaskFileError(line, `task "${spec.name}" is defined differently on line ${earlier.line}`);
    }
  });
  try {
    dependencyOrder(byName.keys(), (name) => byName.has(name), (name) => byName.get(name)?.spec.deps ?? []);
  } catch (err) {
    if (err instanceof DagworkError) throw new TaskFileError(byName.get(err.task)?.line ?? 0, err.message, { cause: err });
    throw err;
  }
}
