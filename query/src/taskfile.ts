/**
 * Task files for `dquery addfile`: pure parsing and checking, no I/O.
 *
 * One task a line, in either of two forms (they may be mixed):
 *   dwork's:     name,dep1,dep2,...          (no payload)
 *   JSON Lines:  {"name": "b", "deps": ["a"], "cmd": "echo hi", "priority": 2, "pool": "gpu",
 *                 "attempts": 5, "lease": "10m"}
 * Blank lines and lines starting with # are skipped.
 */
import { parseDuration } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { defaultSpecLimits, dependencyOrder, normalizeSpec, sameSpec, type SpecLimits } from '../../proto/src/spec.js';
import type { TaskSpecInput } from '../../proto/src/types.js';

/** A problem with one line of a task file. */
export class TaskFileError extends Error {
  override name = 'TaskFileError';
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
  }
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
  if (o.priority !== undefined) {
    if (!Number.isInteger(o.priority)) throw new TaskFileError(line, '"priority" must be an integer');
    spec.priority = o.priority as number;
  }
  if (o.pool !== undefined) {
    if (typeof o.pool !== 'string' || o.pool === '') throw new TaskFileError(line, '"pool" must be a non-empty string');
    spec.pool = o.pool;
  }
  if (o.attempts !== undefined) {
    if (!Number.isInteger(o.attempts) || (o.attempts as number) < 1) throw new TaskFileError(line, '"attempts" must be a positive integer');
    spec.maxAttempts = o.attempts as number;
  }
  if (o.lease !== undefined) {
    if (typeof o.lease !== 'string' && typeof o.lease !== 'number') throw new TaskFileError(line, '"lease" must be seconds or a duration like "10m"');
    try {
      spec.leaseMs = parseDuration(o.lease);
    } catch (err) {
      throw new TaskFileError(line, (err as Error).message);
    }
  }
  return spec;
}

function fromDwork(text: string, line: number): TaskSpecInput {
  const fields = text.split(',').map((f) => f.trim());
  if (fields.some((f) => f === '')) throw new TaskFileError(line, `empty name in "${text}" (expected name,dep1,dep2,...)`);
  const [name, ...deps] = fields as [string, ...string[]];
  return { name, deps };
}

/**
 * Every task of `text`, checked by the hub's own rules (names, sizes, duplicates, cycles) so that
 * a bad file is refused before anything is sent (limits of size are the hub's to check). Throws TaskFileError naming the line.
 */
export function parseTaskFile(text: string): TaskSpecInput[] {
  const specs: TaskSpecInput[] = [];
  const lineOf = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const spec = raw.startsWith('{') ? fromJson(raw, i + 1) : fromDwork(raw, i + 1);
    specs.push(spec);
    // The line a task-level error points at: the last definition of the name (a conflict is the later one).
    lineOf.set(spec.name, i + 1);
  }
  try {
    checkSpecs(specs);
  } catch (err) {
    if (err instanceof DagworkError) throw new TaskFileError(lineOf.get(err.task) ?? 0, err.message);
    throw err;
  }
  return specs;
}

// Sizes are left to the hub, whose limits may be raised; names, duplicates and cycles are not.
const UNBOUNDED: SpecLimits = {
  ...defaultSpecLimits(),
  maxPayloadBytes: Number.MAX_SAFE_INTEGER,
  maxDeps: Number.MAX_SAFE_INTEGER,
  maxAttempts: Number.MAX_SAFE_INTEGER,
  maxLeaseMs: Number.MAX_SAFE_INTEGER,
};

/** The checks the hub makes of one create, by the contract's rules: throws DagworkError naming the task. */
function checkSpecs(specs: readonly TaskSpecInput[]): void {
  const byName = new Map<string, ReturnType<typeof normalizeSpec>>();
  for (const input of specs) {
    const spec = normalizeSpec(input, UNBOUNDED);
    const earlier = byName.get(spec.name);
    if (earlier === undefined) byName.set(spec.name, spec);
    else if (!sameSpec(earlier, spec)) throw new DagworkError('CONFLICT', `task "${spec.name}" already exists with a different definition`, { task: spec.name });
  }
  dependencyOrder(byName.keys(), (name) => byName.has(name), (name) => byName.get(name)?.deps ?? []);
}
