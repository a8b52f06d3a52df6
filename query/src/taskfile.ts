/**
 * Task files for `dquery addfile`: pure parsing and checking, no I/O.
 *
 * One task a line, in either of two forms (they may be mixed):
 *   dwork's:     name,dep1,dep2,...          (no payload)
 *   JSON Lines:  {"name": "b", "deps": ["a"], "cmd": "echo hi", "priority": 2, "pool": "gpu",
 *                 "attempts": 5, "lease": "10m", "params": {"alpha": "0.50"}, "inputs": {...},
 *                 "outputs": [...], "param_files": {"alpha.txt": "alpha"}, "after": "ended"}
 *   ("after": "ended" runs the task once every dependency has ended, done or failed: after_ended;
 *   "after": "done", the default, blocks it when one failed)
 *   (param values are JSON strings: JSON.parse keeps no number's text, 1.0 would become 1)
 * Blank lines are skipped, and so is a line whose first character is # (a comment). A task whose
 * name starts with # is written as JSON: in dwork's form a name may not start with #, so an
 * indented "# ..." is refused rather than guessed to be a comment or a task.
 * The text must be UTF-8 (checked as it is read, in lines.ts): a file in another encoding would merge names.
 *
 * A whole file is checked before anything is sent (duplicates, cycles: TaskIndex), keeping only
 * what those checks need, compactly: each name once, its dependencies as numbers, and a digest of
 * its definition; never the payloads.
 */
import { checkLeaseMs, checkRange, INT32_MAX, INT32_MIN, parseDuration, UINT32_MAX } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { defaultSpecLimits, normalizeSpec, type SpecLimits } from '../../proto/src/spec.js';
import type { FileRef, Param, TaskSpec, TaskSpecInput } from '../../proto/src/types.js';

/**
 * Turns a task file's `"inputs": {"name_in_scratch": "local/path"}` into FileRefs: `path` as
 * written in the file (relative to it), `name` its place in the scratch directory. Throws
 * TaskFileError naming `line` when the file cannot be used (query/src/files.ts: LocalFiles).
 */
export type FileResolver = (path: string, name: string, line: number) => FileRef;

/** A problem with one line of a task file. */
export class TaskFileError extends Error {
  override name = 'TaskFileError';
  /** `options.where` names what is wrong instead of a line (a task that comes from no line: a sweep's barrier). */
  constructor(
    readonly line: number,
    message: string,
    options: { cause?: unknown; where?: string } = {},
  ) {
    super(`${options.where ?? `line ${line}`}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = message;
  }

  /** The message without `line N: `. */
  readonly reason: string;
}

const encoder = new TextEncoder();
const JSON_KEYS = new Set(['name', 'deps', 'cmd', 'payload', 'priority', 'pool', 'attempts', 'lease', 'params', 'inputs', 'outputs', 'param_files', 'after']);

/** `paramFiles` as `param_files`: a field written in camelCase, for the hint. */
const snakeCase = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The text of each value of the object at top-level key `field` in `text`, a JSON object that
 * JSON.parse took (so well formed): what a number was written as, which JSON.parse forgets.
 */
function rawValues(text: string, field: string): Map<string, string> {
  const found = new Map<string, string>();
  let i = 0;
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const string = (): string => {
    const start = i;
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  // Skips one value, returning its text; `keep` records the text of each member of an object.
  const value = (keep?: Map<string, string>): string => {
    space();
    const start = i;
    const c = text[i];
    if (c === '"') string();
    else if (c === '{' || c === '[') {
      i++;
      space();
      while (text[i] !== '}' && text[i] !== ']') {
        if (c === '{') {
          const key = string();
          space();
          i++; // :
          const v = value();
          keep?.set(key, v);
        } else value();
        space();
        if (text[i] === ',') i++;
        space();
      }
      i++;
    } else while (i < text.length && !',]} \t\n\r'.includes(text[i] as string)) i++;
    return text.slice(start, i);
  };
  space();
  if (text[i] !== '{') return found;
  i++;
  space();
  while (i < text.length && text[i] !== '}') {
    const key = string();
    space();
    i++; // :
    value(key === field ? found : undefined);
    space();
    if (text[i] === ',') i++;
    space();
  }
  return found;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function fromJson(text: string, line: number, files?: FileResolver): TaskSpecInput {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TaskFileError(line, `not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new TaskFileError(line, 'expected a JSON object');
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (JSON_KEYS.has(key)) continue;
    const snake = snakeCase(key);
    throw new TaskFileError(line, JSON_KEYS.has(snake) ? `unknown field "${key}": write "${snake}"` : `unknown field "${key}" (known: ${[...JSON_KEYS].join(', ')})`);
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
    spec.payload = encoder.encode(payload);
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
  // Names and paths are checked by the hub's rules (checkedSpec), which name the task and the line.
  if (o.params !== undefined) {
    if (!isPlainObject(o.params)) throw new TaskFileError(line, '"params" must be an object: {"name": "value", ...}');
    const params: Param[] = [];
    for (const [name, value] of Object.entries(o.params)) {
      if (typeof value !== 'string') throw new TaskFileError(line, paramNotString(name, value, text));
      params.push({ name, value });
    }
    spec.params = params;
  }
  if (o.inputs !== undefined) {
    if (!isPlainObject(o.inputs)) throw new TaskFileError(line, '"inputs" must be an object: {"name_in_scratch": "local/path", ...}');
    const inputs: FileRef[] = [];
    for (const [name, path] of Object.entries(o.inputs)) {
      if (typeof path !== 'string' || path === '') throw new TaskFileError(line, `"inputs": "${name}" must be a local file's path`);
      if (files === undefined) throw new TaskFileError(line, '"inputs" cannot be read here (no local files)');
      inputs.push(files(path, name, line));
    }
    spec.inputs = inputs;
  }
  if (o.outputs !== undefined) {
    if (!Array.isArray(o.outputs) || !o.outputs.every((d) => typeof d === 'string')) throw new TaskFileError(line, '"outputs" must be a list of file names');
    spec.outputs = o.outputs as string[];
  }
  if (o.param_files !== undefined) {
    if (!isPlainObject(o.param_files)) throw new TaskFileError(line, '"param_files" must be an object: {"name_in_scratch": "param", ...}');
    spec.paramFiles = Object.entries(o.param_files).map(([name, param]) => {
      if (typeof param !== 'string') throw new TaskFileError(line, `"param_files": "${name}" must be the name of one of the task's params`);
      return { name, param };
    });
  }
  if (o.after !== undefined) {
    if (o.after !== 'ended' && o.after !== 'done') throw new TaskFileError(line, '"after" must be "done" (the default: run once every dependency is done) or "ended" (once every dependency has ended, done or failed)');
    if (o.after === 'ended') spec.afterEnded = true;
  }
  return spec;
}

/** Why a param's JSON value is refused: values are text, and a JSON number does not keep its text. */
function paramNotString(name: string, value: unknown, text: string): string {
  if (typeof value === 'number' || typeof value === 'boolean') {
    const written = rawValues(text, 'params').get(name) ?? String(value);
    return (
      `params "${name}": write the value as a string, ${JSON.stringify(written)}` +
      (typeof value === 'number' ? ': a JSON number loses its form (1.0 becomes 1, big integers are rounded)' : ': param values are text')
    );
  }
  return `params "${name}": a param's value is a string, not ${value === null ? 'null' : Array.isArray(value) ? 'a list' : 'an object'}`;
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
  const fields = text.split(',');
  for (let i = 0; i < fields.length; i++) {
    const field = (fields[i] as string).trim();
    if (field === '') throw new TaskFileError(line, `empty name in "${text}" (expected name,dep1,dep2,...)`);
    fields[i] = field;
  }
  const name = fields[0] as string;
  if (name.startsWith('#')) {
    throw new TaskFileError(
      line,
      `a task name in dwork's form may not start with # (a comment starts with # as the line's first character; write a task named "${name}" as JSON: {"name": "${name}"})`,
    );
  }
  return { name, deps: fields.slice(1) };
}


/**
 * The task on one line of a task file, or undefined for a blank line or a comment. Throws
 * TaskFileError. `files` resolves the local paths of `"inputs"` (a line with inputs is refused without it).
 */
export function parseLine(row: string, line: number, files?: FileResolver): TaskSpecInput | undefined {
  if (row.startsWith('#')) return undefined;
  const raw = row.trim();
  if (raw === '') return undefined;
  return raw.startsWith('{') ? fromJson(raw, line, files) : fromDwork(raw, line);
}

/**
 * `input` with the hub's defaults filled in, checked against `limits`; throws TaskFileError naming
 * the line (and the hub's code, TOO_LARGE, for what is over a size limit the hub may be told).
 */
export function checkedSpec(input: TaskSpecInput, line: number, limits: SpecLimits): TaskSpec {
  try {
    return normalizeSpec(input, limits);
  } catch (err) {
    if (err instanceof DagworkError) throw new TaskFileError(line, err.code === 'TOO_LARGE' ? `${err.code}: ${err.message}` : err.message, { cause: err });
    throw err;
  }
}

/** Limits for checking a file when the hub's are not known: sizes are left to the hub, names are not. */
export const UNBOUNDED: SpecLimits = {
  ...defaultSpecLimits(),
  maxPayloadBytes: Number.MAX_SAFE_INTEGER,
  maxDeps: Number.MAX_SAFE_INTEGER,
  maxAttempts: Number.MAX_SAFE_INTEGER,
  maxLeaseMs: Number.MAX_SAFE_INTEGER,
};

/** A growable list of 32-bit integers: 4 bytes an entry, where an array of numbers takes 8 or more. */
class IntList {
  private data = new Int32Array(1024);
  length = 0;

  push(n: number): void {
    if (this.length === this.data.length) {
      const bigger = new Int32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = n;
  }

  get(i: number): number {
    return this.data[i] as number;
  }

  set(i: number, n: number): void {
    this.data[i] = n;
  }
}

/**
 * What a whole task file's checks need, kept compactly as the file is read: every name once
 * (task or dependency) with a number, the line that first defines it and the first that depends on
 * it, a task's dependencies as numbers, and a 64-bit digest of its definition (defaults filled in,
 * dependencies as a set) to tell a repeated definition from a different one. About 100 bytes a
 * name plus 4 a dependency, whatever the payloads. Throws TaskFileError naming the line.
 */
export class TaskIndex {
  private readonly ids = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly defined = new IntList(); // line of the first definition, 0 for a name only depended on
  private readonly needed = new IntList(); // first line that depends on it, 0 if none
  private readonly digests = new IntList(); // two entries a name
  private readonly digest = new Int32Array(2);
  private readonly depStart = new IntList();
  private readonly depCount = new IntList();
  private readonly deps = new IntList();
  /** Tasks defined (each name once). */
  tasks = 0;

  private id(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(name, id);
      this.names.push(name);
      this.defined.push(0);
      this.needed.push(0);
      this.digests.push(0);
      this.digests.push(0);
      this.depStart.push(0);
      this.depCount.push(0);
    }
    return id;
  }

  /**
   * Adds the task defined on `line`; returns false when an earlier line defines it identically
   * (then it is not sent again). Throws TaskFileError when an earlier line defines it differently.
   */
  add(spec: TaskSpec, line: number): boolean {
    const id = this.id(spec.name);
    digest(spec, this.digest);
    const a = this.digest[0] as number;
    const b = this.digest[1] as number;
    const earlier = this.defined.get(id);
    if (earlier !== 0) {
      if (this.digests.get(2 * id) === a && this.digests.get(2 * id + 1) === b) return false;
      throw new TaskFileError(line, `task "${spec.name}" is defined differently on line ${earlier}`);
    }
    this.defined.set(id, line);
    this.digests.set(2 * id, a);
    this.digests.set(2 * id + 1, b);
    this.depStart.set(id, this.deps.length);
    this.depCount.set(id, spec.deps.length);
    for (const dep of spec.deps) {
      const d = this.id(dep);
      this.deps.push(d);
      if (this.needed.get(d) === 0) this.needed.set(d, line);
    }
    this.tasks++;
    return true;
  }

  /** True when some line of the file defines `name`. */
  has(name: string): boolean {
    const id = this.ids.get(name);
    return id !== undefined && this.defined.get(id) !== 0;
  }

  /** The names the file depends on but does not define, each with the first line that needs it, in the order first needed. */
  *undefinedDeps(): Iterable<{ name: string; line: number }> {
    const found: { name: string; line: number }[] = [];
    for (let id = 0; id < this.names.length; id++) {
      if (this.defined.get(id) === 0) found.push({ name: this.names[id] as string, line: this.needed.get(id) });
    }
    yield* found.sort((x, y) => x.line - y.line);
  }

  /**
   * Throws TaskFileError if the file's dependencies make a cycle, naming it and the line of its
   * first task. Iterative: a chain of millions of tasks must not overflow the stack.
   */
  checkCycles(): void {
    const ON_PATH = 1;
    const FINISHED = 2;
    const color = new Uint8Array(this.names.length);
    const path = new IntList();
    const next = new IntList(); // per path entry: the index of its next dependency to visit
    for (let root = 0; root < this.names.length; root++) {
      if (color[root] !== 0) continue;
      color[root] = ON_PATH;
      path.push(root);
      next.push(0);
      while (path.length > 0) {
        const top = path.length - 1;
        const id = path.get(top);
        const k = next.get(top);
        if (this.defined.get(id) !== 0 && k < this.depCount.get(id)) {
          next.set(top, k + 1);
          const dep = this.deps.get(this.depStart.get(id) + k);
          if (color[dep] === ON_PATH) {
            const cycle: string[] = [];
            let from = top;
            while (path.get(from) !== dep) from--;
            for (let i = from; i <= top; i++) cycle.push(this.names[path.get(i)] as string);
            cycle.push(this.names[dep] as string);
            const task = cycle[0] as string;
            throw new TaskFileError(this.defined.get(dep), `task "${task}" would close a cycle: ${cycle.join(' -> ')} (each depends on the next)`);
          }
          if (color[dep] === 0) {
            color[dep] = ON_PATH;
            path.push(dep);
            next.push(0);
          }
        } else {
          color[id] = FINISHED;
          path.length--;
          next.length--;
        }
      }
    }
  }
}

/**
 * A 64-bit digest of a task's definition (defaults filled in; deps as a set), as two 32-bit
 * hashes (FNV-1a and a multiplicative one, with different seeds). Not cryptographic: it only tells
 * a repeated line from a different definition of the same name; were two definitions ever to
 * collide (about 2^-64 for a pair), the second would be taken for a repeat and not sent.
 */
function digest(spec: TaskSpec, out: Int32Array): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  const mix = (c: number): void => {
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  };
  const text = (s: string): void => {
    for (let i = 0; i < s.length; i++) mix(s.charCodeAt(i));
    mix(0x10000); // after every field: no two field lists run together alike
  };
  // A number as its two 32-bit halves (counts, limits and sizes are below 2^53).
  const number = (n: number): void => {
    mix(n | 0);
    mix(Math.floor(n / 0x100000000) | 0);
    mix(0x10000);
  };
  text(spec.name);
  number(spec.priority);
  text(spec.pool);
  number(spec.maxAttempts);
  number(spec.leaseMs);
  // Dependencies as a set (they come without repeats): each hashed alone, the hashes added up.
  if (spec.deps.length === 1) text(spec.deps[0] as string);
  else if (spec.deps.length > 1) {
    let sumA = 0;
    let sumB = 0;
    const outerA = a;
    const outerB = b;
    for (const d of spec.deps) {
      a = 0x811c9dc5;
      b = 0x9747b28c;
      text(d);
      sumA = (sumA + a) | 0;
      sumB = (sumB + b) | 0;
    }
    a = outerA;
    b = outerB;
    number(spec.deps.length);
    mix(sumA);
    mix(sumB);
  }
  mix(0x10001);
  // Params, files and the barrier flag count in order, as the hub compares them (sameSpec).
  for (const p of spec.params) {
    text(p.name);
    text(p.value);
  }
  mix(0x10002);
  for (const f of spec.inputs) {
    text(f.name);
    text(f.sha256);
    number(f.size);
    mix(f.executable ? 1 : 0);
  }
  mix(0x10003);
  for (const o of spec.outputs) text(o);
  mix(0x10004);
  for (const f of spec.paramFiles) {
    text(f.name);
    text(f.param);
  }
  mix(spec.barrier ? 0x10005 : 0x10006);
  mix(spec.afterEnded ? 0x10007 : 0x10008);
  for (let i = 0; i < spec.payload.length; i++) mix(spec.payload[i] as number);
  number(spec.payload.length);
  out[0] = a;
  out[1] = b;
}

/**
 * Every task of `text` with its line, checked as addfile checks a file (names, duplicates,
 * cycles; sizes are left to the hub). For small texts and tests; addfile streams its file.
 */
export function parseTaskFile(text: string, files?: FileResolver): { specs: TaskSpecInput[]; lines: number[] } {
  const specs: TaskSpecInput[] = [];
  const lines: number[] = [];
  const index = new TaskIndex();
  const rows = text.split('\n');
  for (let i = 0; i < rows.length; i++) {
    const row = (rows[i] as string).replace(/\r$/, '');
    const spec = parseLine(row, i + 1, files);
    if (spec === undefined) continue;
    index.add(checkedSpec(spec, i + 1, UNBOUNDED), i + 1);
    specs.push(spec);
    lines.push(i + 1);
  }
  index.checkCycles();
  return { specs, lines };
}
